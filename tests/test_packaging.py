"""Packaging promises: the MIT licence ships in the wheel, every tox environment says what it
is for, and the bench extra holds exactly what the benchmarks import."""

from __future__ import annotations

import ast
import configparser
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_file_is_mit_and_ships_in_the_wheel(tmp_path: Path) -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    assert PYPROJECT["project"]["license"] == "MIT"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("iommu_uapi-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        shipped = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
        assert zf.read(shipped).decode() == text
    assert "License-Expression: MIT" in meta.splitlines()


def tox_sections() -> configparser.ConfigParser:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    return ini


def test_every_tox_environment_has_a_description() -> None:
    ini = tox_sections()
    envs = [e.strip() for e in ini["tox"]["env_list"].split(",")]
    named = [s.removeprefix("testenv:") for s in ini.sections() if s.startswith("testenv:")]
    for env in [*envs, *named]:
        section = f"testenv:{env}" if f"testenv:{env}" in ini else "testenv"
        description = ini[section].get("description", "").strip()
        assert description, f"{env} has no description"
        if section == "testenv":  # factor-conditional lines: one for each factor combination
            lines = [line.strip() for line in description.splitlines()]
            factors = set(env.split("-"))
            chosen = [line for line in lines
                      if (line.startswith("!vtd:") and "vtd" not in factors)
                      or (line.startswith("vtd:") and "vtd" in factors)]
            assert len(chosen) == 1, (env, lines)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_the_bench_extra_is_what_the_benchmarks_import() -> None:
    scripts = list((ROOT / "bench").glob("*.py"))
    imported = set().union(*(_imports(p) for p in scripts))
    local = {p.stem for p in scripts} | {p.stem for p in (ROOT / "tests").glob("*.py")}
    # the core and the plugins of this repository (iommu_uapi_vtd, iommu_uapi_smmu, ...)
    ours = {m for m in imported if m == "iommu_uapi" or m.startswith("iommu_uapi_")}
    third_party = imported - set(sys.stdlib_module_names) - local - ours
    extra = {req.split(">")[0].split("=")[0].strip()
             for req in PYPROJECT["project"]["optional-dependencies"]["bench"]}
    core = {req.split(">")[0].strip() for req in PYPROJECT["project"]["dependencies"]}
    assert extra <= third_party, f"bench extra lists what no benchmark uses: {extra - third_party}"
    assert third_party <= extra | core, third_party - extra - core
    ini = tox_sections()
    assert "-e .[bench]" in ini["testenv:bench"]["deps"]


def test_every_backends_iommufd_tests_run_in_its_tox_environment() -> None:
    """tests/iommufd drive VT-d (py311-vtd); the SMMUv3's iommufd tests live with its plugin's
    tests, which py311-smmu runs (so does the suite's iommufd area, against smmuv3)."""
    ini = tox_sections()
    generic = ini["testenv"]["commands"]
    assert "vtd: pytest -p no:cacheprovider tests/trace/test_backends.py tests/iommufd" in generic
    smmu = ini["testenv:py311-smmu"]["commands"]
    assert "{posargs:plugins/smmu/tests}" in smmu and "--iommu-backend smmuv3" in smmu
    held = {p.name for p in (ROOT / "plugins" / "smmu" / "tests").glob("test_iommufd*.py")}
    assert {"test_iommufd.py", "test_iommufd_nested.py"} <= held

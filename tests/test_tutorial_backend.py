"""docs/writing-a-backend.md is complete on its own: its code blocks, in order, build a real
third-party distribution that installs, is found through its entry point, and passes every
conformance area it declares; docs/examples/iommu-uapi-simple/ holds the same files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from iommu_uapi.hookspecs import hook_names

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGE = DOCS / "writing-a-backend.md"
EXAMPLE = DOCS / "examples" / "iommu-uapi-simple"


def blocks(lang: str) -> list[str]:
    """The page's fenced ``lang`` blocks, in order."""
    return re.findall(rf"^```{lang}\n(.*?)^```$", PAGE.read_text(), flags=re.S | re.M)


def hooks_module() -> str:
    """``hooks.py`` as the page writes it: its Python blocks in order, a block that starts
    inside a class continuing the previous one after a blank line, a top-level block after
    two."""
    code = ""
    for block in blocks("python"):
        if code:
            code += "\n" if block.startswith(" ") else "\n\n"
        code += block
    return code


def build_from_page(root: Path) -> Path:
    """The distribution the page describes, written from its blocks only."""
    (toml,) = blocks("toml")
    package = root / "iommu_uapi_simple"
    package.mkdir(parents=True)
    (root / "pyproject.toml").write_text(toml)
    (package / "__init__.py").write_text("")
    (package / "hooks.py").write_text(hooks_module())
    return root


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("simple")
    target = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target),
                    str(build_from_page(root / "src"))], check=True, capture_output=True)
    return target


def run(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    env.pop("IOMMU_UAPI_BACKEND", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_tutorial_backend_passes_what_it_declares(site: Path) -> None:
    out = run(site, "-m", "iommu_uapi.cli", "matrix", "--backend", "simple", "--json")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    areas = json.loads(out.stdout)[0]["areas"]
    for area in ("size rules", "negotiation", "isolation", "faults", "pasids", "fuzz"):
        assert areas[area]["verdict"] == "passed", (area, areas[area])
    assert areas["bind lifecycle"]["verdict"] == "not supported"
    assert "BIND_PGTBL" in areas["bind lifecycle"]["skip_reasons"][0]


def test_the_example_directory_is_what_the_page_builds() -> None:
    assert (EXAMPLE / "iommu_uapi_simple" / "hooks.py").read_text() == hooks_module()
    assert (EXAMPLE / "pyproject.toml").read_text() == blocks("toml")[0]


def test_the_page_names_and_shows_every_hook_it_implements() -> None:
    """Every hook the tutorial's backend implements appears in the page's prose and code, the
    plumbing hooks (devices, attach, domain free, iova_to_phys) included."""
    code = hooks_module()
    implemented = [h for h in hook_names() if f"def {h}(" in code]
    assert {"iommu_device_add", "iommu_device_remove", "iommu_attach_dev", "iommu_detach_dev",
            "iommu_domain_alloc", "iommu_domain_free", "iommu_map", "iommu_unmap",
            "iommu_iova_to_phys", "iommu_translation_context", "iommu_instance_init",
            "iommu_capabilities", "iommu_cache_invalidate",
            "iommu_register_backends"} <= set(implemented)
    prose = re.sub(r"^```.*?^```$", "", PAGE.read_text(), flags=re.S | re.M)
    for hook in implemented:
        assert f"`{hook}" in prose, f"{hook} is implemented but never explained"
    compile(code, "hooks.py", "exec")  # the imports and bodies are all there

"""iommu-uapi new-backend: the skeleton installs, is found through its entry point, and the
conformance suite runs on it (everything not supported yet skips with a reason; nothing fails)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from iommu_uapi import UAPIError
from iommu_uapi.cli import main
from iommu_uapi.scaffold import generate


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("newbackend")
    src, site = root / "toy", root / "site"
    assert main(["new-backend", "toy", str(src)]) == 0
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(src)],
                   check=True, capture_output=True)
    return src, site


def run_in(site: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    env.pop("IOMMU_UAPI_BACKEND", None)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_generated_backend_is_found_through_its_entry_point(installed: tuple[Path, Path]
                                                            ) -> None:
    _, site = installed
    out = run_in(site, "-m", "iommu_uapi.cli", "backends", "--json")
    assert out.returncode == 0, out.stderr
    assert '"name": "toy"' in out.stdout and '"distribution": "iommu-uapi-toy"' in out.stdout


def test_suite_runs_on_the_skeleton_and_skips_with_reasons(installed: tuple[Path, Path]
                                                           ) -> None:
    src, site = installed
    out = run_in(site, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests",
                 cwd=src)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "skipped" in out.stdout and "failed" not in out.stdout
    assert "backend cannot build a host yet" in out.stdout or "does not declare" in out.stdout


def test_generate_refuses_bad_names_and_non_empty_directories(tmp_path: Path) -> None:
    with pytest.raises(UAPIError) as err:
        generate("Bad-Name", tmp_path / "x")
    assert err.value.errno == errno.EINVAL
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(UAPIError) as err:
        generate("ok", tmp_path / "full")
    assert err.value.errno == errno.EEXIST

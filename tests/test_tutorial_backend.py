"""docs/writing-a-backend.md's example backend: a real third-party distribution that installs,
is found through its entry point, and passes every conformance area it declares."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "iommu-uapi-simple"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("simple") / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(EXAMPLE)],
                   check=True, capture_output=True)
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


def test_tutorial_names_the_files_it_describes() -> None:
    text = (EXAMPLE.parent.parent / "writing-a-backend.md").read_text()
    hooks = (EXAMPLE / "iommu_uapi_simple" / "hooks.py").read_text()
    for name in ("iommu_domain_alloc", "iommu_map", "iommu_unmap", "iommu_capabilities",
                 "iommu_cache_invalidate", "iommu_translation_context", "iommu_instance_init"):
        assert name in text and f"def {name}" in hooks

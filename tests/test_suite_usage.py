"""Running the packaged conformance suite: a selection that cannot work is one usage error
(pytest's exit status 4, no traceback), never a page of errors, a green run of skips or an
INTERNALERROR."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def suite(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("IOMMU_UAPI_BACKEND", "IOMMU_UAPI_KNOWN_GAPS")}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "--pyargs", "iommu_uapi.testing.suite", *args],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


@pytest.mark.parametrize(("args", "message"), [
    (("--iommu-backend", "nosuch"),
     "--iommu-backend nosuch: no backend named 'nosuch' (available: "),
    ((), "the iommu-uapi conformance suite needs a backend: --iommu-backend NAME"),
    (("--iommu-backend", "vtd", "--iommu-known-gaps", "missing.txt"),
     "--iommu-known-gaps missing.txt: cannot read it: No such file or directory"),
], ids=["unknown backend", "no backend", "missing known-gaps file"])
def test_a_selection_that_cannot_work_is_one_usage_error(
        tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    out = suite(*args, cwd=tmp_path)
    assert out.returncode == pytest.ExitCode.USAGE_ERROR, out.stdout[-2000:] + out.stderr[-2000:]
    assert message in out.stderr
    assert out.stderr.count("ERROR") == 1
    text = out.stdout + out.stderr
    assert "Traceback" not in text and "INTERNALERROR" not in text and "skipped" not in text


def test_a_projects_reexport_of_the_suite_stays_inert_without_a_selection(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_reexport="""
        from iommu_uapi.testing.suite.test_conformance import *  # noqa: F403

        def test_own(): assert True
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    assert result.ret == pytest.ExitCode.OK
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] == 1 and outcomes["skipped"] > 100

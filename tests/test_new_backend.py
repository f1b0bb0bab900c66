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
from iommu_uapi.errors import errno_name
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
    # the stubs raise EOPNOTSUPP, and that is the name the reasons give (not libc's ENOTSUP)
    assert "[EOPNOTSUPP] toy:" in out.stdout and "ENOTSUP]" not in out.stdout


def test_errno_names_are_the_kernels() -> None:
    assert errno_name(errno.EOPNOTSUPP) == "EOPNOTSUPP"
    assert str(UAPIError(errno.EOPNOTSUPP, "x")) == "[EOPNOTSUPP] x"
    assert errno_name(errno.EINVAL) == "EINVAL" and errno_name(524) == "ENOTSUPP"


def test_generate_refuses_bad_names_and_non_empty_directories(tmp_path: Path) -> None:
    with pytest.raises(UAPIError) as err:
        generate("Bad-Name", tmp_path / "x")
    assert err.value.errno == errno.EINVAL
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(UAPIError) as err:
        generate("ok", tmp_path / "full")
    assert err.value.errno == errno.EEXIST


@pytest.mark.parametrize(("where", "err", "rule"), [
    ("file", errno.ENOTDIR, "new_backend.not_dir"),
    ("under a file", errno.ENOTDIR, "new_backend.write"),
    ("read-only", errno.EACCES, "new_backend.write"),
])
def test_generate_refuses_paths_it_cannot_use_and_leaves_nothing(
        tmp_path: Path, where: str, err: int, rule: str) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "ok").mkdir()
    (locked / "ok").chmod(0o500)
    if os.geteuid() == 0 and where == "read-only":
        pytest.skip("root writes anywhere")
    target = {"file": afile, "under a file": afile / "sub",
              "read-only": locked / "ok" / "skeleton"}[where]
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(UAPIError) as info:
        generate("ok", target)
    assert (info.value.errno, info.value.rule) == (err, rule)
    assert sorted(p for p in tmp_path.rglob("*")) == before
    (locked / "ok").chmod(0o700)


def test_new_backend_usage_errors_exit_2_without_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for argv in (["new-backend", "ok", str(afile)], ["new-backend", "ok", "/proc/nosuch"],
                 ["new-backend", "Bad-Name", str(tmp_path / "x")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("iommu-uapi: usage error: E") and "[new_backend." in err, err


def test_a_half_written_skeleton_is_removed(tmp_path: Path) -> None:
    """The skeleton's package directory cannot be created (a file is in the way, made after the
    emptiness check): nothing the call created is left behind."""
    target = tmp_path / "skel"
    target.mkdir()
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: object, **kwargs: object) -> None:
        if self.name == "iommu_uapi_ok":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Path, "mkdir", mkdir)
        with pytest.raises(UAPIError) as info:
            generate("ok", target)
    assert info.value.errno == errno.EACCES and info.value.rule == "new_backend.write"
    assert list(target.iterdir()) == []

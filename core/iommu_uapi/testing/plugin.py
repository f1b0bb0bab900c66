"""pytest plugin: ``--iommu-backend NAME`` (or ``IOMMU_UAPI_BACKEND``) selects the backend the
conformance suite runs against. Without a selection the plugin adds nothing to a test run that
merely collects the suite's tests among its own (they skip); running the suite module itself
without a backend is a usage error, and so are a backend name that is not installed and a
known-gaps file that cannot be read: one message, pytest's usage-error exit status (4)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from .. import plugins
from ..errors import UAPIError
from ..guest import GuestFormat
from ..iommu import IOMMU
from ..memory import GuestMemory, PhysicalMemory
from .harness import Harness


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--iommu-backend``."""
    group = parser.getgroup("iommu-uapi")
    group.addoption("--iommu-backend", action="store", default=None, metavar="NAME",
                    help="run the iommu-uapi conformance suite against this backend "
                         "(default: $IOMMU_UAPI_BACKEND)")
    group.addoption("--iommu-known-gaps", action="store", default=None, metavar="FILE",
                    help="a backend's known gaps: lines 'TEST-ID-PART: reason' mark matching "
                         "suite tests as expected failures (default: $IOMMU_UAPI_KNOWN_GAPS)")


def read_known_gaps(path: Path) -> dict[str, str]:
    """Parse a known-gaps file: ``TEST-ID-PART: reason`` per line, ``#`` comments. A file
    that cannot be read or parsed is a :class:`pytest.UsageError` naming it."""
    gaps: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise pytest.UsageError(f"--iommu-known-gaps {path}: cannot read it: "
                                f"{getattr(exc, 'strerror', None) or exc}") from None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        part, sep, reason = line.partition(":")
        if not sep or not part.strip() or not reason.strip():
            raise pytest.UsageError(f"{path}:{number}: expected 'TEST-ID-PART: reason'")
        gaps[part.strip()] = reason.strip()
    return gaps


#: The directory of the packaged suite: its own tests, as opposed to a project's re-export.
SUITE_DIR = Path(__file__).resolve().parent / "suite"


def selected_backend(config: pytest.Config) -> str | None:
    """The backend named by ``--iommu-backend`` or ``IOMMU_UAPI_BACKEND``, if any."""
    name = config.getoption("--iommu-backend") or os.environ.get("IOMMU_UAPI_BACKEND")
    return str(name) if name else None


def check_backend(name: str) -> None:
    """A :class:`pytest.UsageError` unless backend ``name`` is installed and loads."""
    try:
        plugins.get_backend(name)
    except UAPIError as exc:
        raise pytest.UsageError(f"--iommu-backend {name}: {exc.message}") from None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check the selection once for the whole run when suite tests are collected, then mark
    the tests a backend's known-gaps file names as expected failures (not strict: a gap that
    gets fixed shows as XPASS)."""
    path = config.getoption("--iommu-known-gaps") or os.environ.get("IOMMU_UAPI_KNOWN_GAPS")
    gaps = read_known_gaps(Path(path)) if path else {}
    _check_selection(config, items)
    for item in items:
        for part, reason in gaps.items():
            if part in item.nodeid:
                item.add_marker(pytest.mark.xfail(reason=f"known gap: {reason}", strict=False))
                break


def _check_selection(config: pytest.Config, items: list[pytest.Item]) -> None:
    """When suite tests are collected: the selected backend must be installed, and the suite's
    own module needs a selection (a project's re-export of it may stay inert)."""
    suite = [item for item in items if "iommu_backend_name" in getattr(item, "fixturenames", ())]
    if not suite:
        return
    name = selected_backend(config)
    if name is not None:
        check_backend(name)
    elif any(SUITE_DIR in Path(item.path).resolve().parents for item in suite):
        have = ", ".join(sorted(plugins.registry().backends)) or "none installed"
        raise pytest.UsageError("the iommu-uapi conformance suite needs a backend: "
                                f"--iommu-backend NAME or IOMMU_UAPI_BACKEND (installed: {have})")


@pytest.fixture(scope="session")
def iommu_backend_name(request: pytest.FixtureRequest) -> str:
    """The selected backend's name; tests using it skip when none is selected."""
    name = selected_backend(request.config)
    if not name:
        pytest.skip("no backend selected (--iommu-backend NAME or IOMMU_UAPI_BACKEND)")
    return name


@pytest.fixture
def iommu_guest_format() -> GuestFormat | None:
    """The guest format the harness builds guests in. None (the default) takes the first one
    the backend's ``iommu_guest_formats`` hook describes and declares; a backend's conftest may
    override this fixture to run the suite with another of its formats (an unknown one fails)."""
    return None


@pytest.fixture
def harness(iommu_backend_name: str, iommu_guest_format: GuestFormat | None) -> Harness:
    """A fresh host-and-guest rig on the selected backend (see :mod:`.harness`).

    A backend that does not implement devices, domains or mapping yet (``EOPNOTSUPP``, or a
    missing hook, while the rig is built) skips the tests that need the rig, naming the step.
    An unknown backend name is an error, not a skip.
    """
    try:
        return Harness(iommu_backend_name, guest_format=iommu_guest_format)
    except UAPIError as exc:
        if exc.errno == errno.EOPNOTSUPP or exc.rule == "op.missing":
            pytest.skip(f"backend cannot build a host yet: {exc}")
        raise


@pytest.fixture
def iommu(harness: Harness) -> IOMMU:
    """The harness's IOMMU model (devices ``harness.dev``/``dev2`` attached to a domain)."""
    return harness.iommu


@pytest.fixture
def memory(harness: Harness) -> PhysicalMemory:
    """The physical memory the model's tables and the guest's RAM live in."""
    return harness.memory


@pytest.fixture
def guest(harness: Harness) -> GuestMemory:
    """The guest's physical address space (1 MiB of RAM mapped at stage 2)."""
    return harness.guest

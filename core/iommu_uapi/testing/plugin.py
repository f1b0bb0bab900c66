"""pytest plugin: ``--iommu-backend NAME`` (or ``IOMMU_UAPI_BACKEND``) selects the backend the
conformance suite runs against. Without a selection the plugin adds nothing to a test run."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

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
    """Parse a known-gaps file: ``TEST-ID-PART: reason`` per line, ``#`` comments."""
    gaps: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        part, sep, reason = line.partition(":")
        if not sep or not part.strip() or not reason.strip():
            raise pytest.UsageError(f"{path}:{number}: expected 'TEST-ID-PART: reason'")
        gaps[part.strip()] = reason.strip()
    return gaps


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests a backend's known-gaps file names as expected failures (not strict: a
    gap that gets fixed shows as XPASS)."""
    path = config.getoption("--iommu-known-gaps") or os.environ.get("IOMMU_UAPI_KNOWN_GAPS")
    if not path:
        return
    gaps = read_known_gaps(Path(path))
    for item in items:
        for part, reason in gaps.items():
            if part in item.nodeid:
                item.add_marker(pytest.mark.xfail(reason=f"known gap: {reason}", strict=False))
                break


@pytest.fixture(scope="session")
def iommu_backend_name(request: pytest.FixtureRequest) -> str:
    """The selected backend's name; tests using it skip when none is selected."""
    name = request.config.getoption("--iommu-backend") or os.environ.get("IOMMU_UAPI_BACKEND")
    if not name:
        pytest.skip("no backend selected (--iommu-backend NAME or IOMMU_UAPI_BACKEND)")
    return str(name)


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

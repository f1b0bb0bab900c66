"""The shipped conformance suite, run against the test backend (the fsspec pattern: subclass the
suite's classes and provide the backend fixture)."""

from __future__ import annotations

from collections.abc import Iterator

import minibackend
import pytest

from iommu_uapi import plugins
from iommu_uapi.guest import GuestEntry, GuestFormat
from iommu_uapi.testing import conformance
from iommu_uapi.testing.harness import Harness


@pytest.fixture
def iommu_backend_name() -> Iterator[str]:
    plugins.register_plugin("mini", minibackend)
    yield "mini"
    plugins.unregister_plugin("mini")


class TestSizeRules(conformance.SizeRuleTests):
    pass


class TestRules(conformance.RuleTests):
    pass


class TestNegotiation(conformance.NegotiationTests):
    pass


class TestBindLifecycle(conformance.BindLifecycleTests):
    pass


class TestInvalidation(conformance.InvalidationTests):
    pass


class TestIsolation(conformance.IsolationTests):
    pass


class TestConcurrency(conformance.ConcurrencyTests):
    pass


class TestFaults(conformance.FaultTests):
    pass


class TestPasids(conformance.PasidTests):
    pass


class TestFuzz(conformance.FuzzTests):
    pass


class TestStateful(conformance.StatefulTests):
    pass


class TestInvalidationThroughItsPasidTable(conformance.InvalidationTests):
    """The backend's second guest format, chosen by overriding the suite's fixture."""

    @pytest.fixture
    def iommu_guest_format(self) -> GuestFormat:
        return minibackend.MiniTableFormat()

    def test_the_override_is_used(self, harness: Harness) -> None:
        assert harness.entry is GuestEntry.PASID_TABLE and harness.table is not None


def test_a_guest_format_the_backend_does_not_describe_fails_loudly(
        iommu_backend_name: str) -> None:
    from iommu_uapi.uapi.consts import IOMMU_PASID_FORMAT_SMMUV3

    class Foreign(GuestFormat):
        pass

    with pytest.raises(ValueError, match="not a guest format"):
        Harness(iommu_backend_name,
                guest_format=Foreign(IOMMU_PASID_FORMAT_SMMUV3, GuestEntry.PASID_TABLE))


def test_suite_fixtures_expose_the_rig(iommu: object, memory: object, guest: object) -> None:
    from iommu_uapi.iommu import IOMMU
    from iommu_uapi.memory import GuestMemory, PhysicalMemory

    assert isinstance(iommu, IOMMU) and iommu.backend_name == "mini"
    assert isinstance(memory, PhysicalMemory) and isinstance(guest, GuestMemory)
    assert guest.host is memory

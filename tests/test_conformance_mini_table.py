"""The shipped conformance suite against ``mini-table``: the test backend whose guest contexts
enter only through a guest PASID table (``attach_pasid_table``, then the guest's table entries
and PASID-cache invalidations), described by its ``iommu_guest_formats`` hook."""

from __future__ import annotations

from collections.abc import Iterator

import minibackend
import pytest

from iommu_uapi import plugins
from iommu_uapi.guest import GuestEntry
from iommu_uapi.testing import conformance
from iommu_uapi.testing.harness import Harness
from iommu_uapi.testing.suite.test_conformance import (  # every area, as the packaged suite
    TestBindLifecycle,
    TestConcurrency,
    TestFaults,
    TestFuzz,
    TestInvalidation,
    TestIsolation,
    TestNegotiation,
    TestPasids,
    TestRules,
    TestSizeRules,
    TestStateful,
)

__all__ = ["TestBindLifecycle", "TestConcurrency", "TestFaults", "TestFuzz", "TestInvalidation",
           "TestIsolation", "TestNegotiation", "TestPasids", "TestRules", "TestSizeRules",
           "TestStateful"]


@pytest.fixture
def iommu_backend_name() -> Iterator[str]:
    plugins.register_plugin("mini-table", minibackend.table_plugin)
    yield "mini-table"
    plugins.unregister_plugin("mini-table")


def test_the_harness_enters_through_the_guest_pasid_table(harness: Harness) -> None:
    assert harness.entry is GuestEntry.PASID_TABLE and harness.table is not None
    pasid = harness.vm.alloc()
    gpa = harness.gmap(conformance.VA)
    harness.enter(pasid, harness.dev2)
    assert harness.iommu.bound_pasids(harness.dev2) == []  # no bind: the table entry
    assert harness.translate(conformance.VA, pasid, dev=harness.dev2).paddr == harness.hpa(gpa)

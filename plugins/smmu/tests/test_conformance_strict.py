"""The conformance suite against ``smmuv3`` on a ``strict`` instance, where a guest enters
each PASID through its CD table (the packaged suite runs the default ``linux-5.10`` instance,
where the guest is v15's single CD: the areas that need PASID-tagged contexts, or the cells v15
refuses, skip there and run here)."""

from __future__ import annotations

import pytest

from iommu_uapi.testing import conformance
from iommu_uapi.testing.harness import Harness


@pytest.fixture
def iommu_backend_name() -> str:
    """The backend under test, whatever --iommu-backend says."""
    return "smmuv3"


@pytest.fixture
def harness() -> Harness:
    """A strict host-and-guest rig on the SMMU."""
    return Harness("smmuv3", profile="strict")


def test_the_strict_rig_nests_a_guest_through_its_cd_table(harness: Harness) -> None:
    assert harness.nesting and harness.table is not None
    assert harness.caps.profiles == ("strict",)


class TestSizeRules(conformance.SizeRuleTests):
    """Size discipline of the argsz records."""


class TestRules(conformance.RuleTests):
    """Every core rule through the backend's entry points."""


class TestNegotiation(conformance.NegotiationTests):
    """Negotiation refuses upfront."""


class TestBindLifecycle(conformance.BindLifecycleTests):
    """Guest contexts entered through the CD table."""


class TestInvalidation(conformance.InvalidationTests):
    """Invalidation completeness."""


class TestIommufd(conformance.IommufdTests):
    """iommufd: nested HWPTs carrying the guest STE, commands through the vIOMMU, both
    generations agreeing."""


class TestIsolation(conformance.IsolationTests):
    """Isolation between domains and PASIDs."""


class TestFaults(conformance.FaultTests):
    """Faults."""


class TestPasids(conformance.PasidTests):
    """PASID allocation."""


class TestFuzz(conformance.FuzzTests):
    """Bounded fuzzing of the user-bytes entry points."""


class TestStateful(conformance.StatefulTests):
    """The backend against the reference model, its guest PASIDs entered through the CD
    table."""

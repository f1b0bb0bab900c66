"""Every area of the conformance suite, against the backend chosen with --iommu-backend."""

from __future__ import annotations

from iommu_uapi.testing import conformance


class TestSizeRules(conformance.SizeRuleTests):
    """Size discipline of the argsz records."""


class TestRules(conformance.RuleTests):
    """Every core rule through the backend's entry points."""


class TestNegotiation(conformance.NegotiationTests):
    """Negotiation refuses upfront."""


class TestBindLifecycle(conformance.BindLifecycleTests):
    """Guest PASID bind and unbind."""


class TestInvalidation(conformance.InvalidationTests):
    """Invalidation completeness."""


class TestIommufd(conformance.IommufdTests):
    """iommufd: HW_INFO, nested HWPTs, array invalidation, both generations agreeing."""


class TestIsolation(conformance.IsolationTests):
    """Isolation between domains and PASIDs."""


class TestConcurrency(conformance.ConcurrencyTests):
    """DMA in several threads against control calls."""


class TestFaults(conformance.FaultTests):
    """Faults, page requests and responses."""


class TestPasids(conformance.PasidTests):
    """PASID allocation."""


class TestFuzz(conformance.FuzzTests):
    """Bounded fuzzing of the user-bytes entry points."""


class TestStateful(conformance.StatefulTests):
    """The backend against the reference model."""

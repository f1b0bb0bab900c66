"""The iommu-uapi conformance suite, run against simple."""

from iommu_uapi.testing.suite.test_conformance import *  # noqa: F403

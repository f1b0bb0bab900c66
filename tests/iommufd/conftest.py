"""Fixtures of the iommufd tests: a VT-d host driven through iommufd."""

from __future__ import annotations

import pytest

from iommu_uapi.testing.iommufd_rig import IommufdRig


@pytest.fixture
def rig() -> IommufdRig:
    """A VT-d host with guest RAM in an IOAS, a nesting parent and two attached devices."""
    return IommufdRig("vtd")

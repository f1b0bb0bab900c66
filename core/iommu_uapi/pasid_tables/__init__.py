"""Guest PASID-table formats the UAPI names (``IOMMU_PASID_FORMAT_*``): their entry layout and a
reader that fetches one entry the way the IOMMU does, through a host stage 2 when nested.

:mod:`.smmuv3` holds ``IOMMU_PASID_FORMAT_SMMUV3``: the Arm SMMUv3 context-descriptor table
(linear or two-level, 64-byte CDs), shared by the SMMUv3 model and by any backend whose guest
programs SMMUv3 CD tables.
"""

from __future__ import annotations

from .smmuv3 import (
    CD_SIZE,
    Cd,
    CdFetch,
    CdFetchError,
    CdFetchErrorKind,
    CdTableReader,
    L1Cd,
    S1Fmt,
)

__all__ = [
    "CD_SIZE",
    "Cd",
    "CdFetch",
    "CdFetchError",
    "CdFetchErrorKind",
    "CdTableReader",
    "L1Cd",
    "S1Fmt",
]

"""``struct iommu_cache_invalidate_info`` and its granularity union (reference a.3, c.1, c.2).

A guest asks the host to invalidate IOMMU caches (``cache``: IOTLB, device IOTLB, PASID cache)
at a granularity (whole domain, one PASID/ARCHID, or an address range within one). Only the
union member the granularity selects is meaningful, and argsz must cover it.
"""

from __future__ import annotations

import msgspec

from .. import checks as _checks
from ..abi import U8, U32, U64, CRecord, Pad6, SizeDiscipline, copy_from_user, cstruct, cunion
from ..profiles import ProfileLike

__all__ = ["CacheInvalidateInfo", "InvAddrInfo", "InvGranu", "InvPasidInfo"]


@cstruct(cname="iommu_inv_pasid_info")
class InvPasidInfo(CRecord, frozen=True, gc=False):
    """PASID-selective invalidation: ``flags`` (``InvPasidFlags``) say whether ``pasid`` and/or
    ``archid`` (an architecture ID such as an SMMU ASID) select the entries."""

    flags: U32 = 0
    archid: U32 = 0
    pasid: U64 = 0


@cstruct(cname="iommu_inv_addr_info")
class InvAddrInfo(CRecord, frozen=True, gc=False):
    """Address-selective invalidation of ``nb_granules`` granules of ``granule_size`` bytes from
    the first-stage input address ``addr``; ``flags`` (``InvAddrFlags``) add PASID, ARCHID and
    LEAF (only leaf entries changed)."""

    flags: U32 = 0
    archid: U32 = 0
    pasid: U64 = 0
    addr: U64 = 0
    granule_size: U64 = 0
    nb_granules: U64 = 0


@cunion(cname="granu")
class InvGranu(CRecord, frozen=True, gc=False):
    """The ``granu`` union: ``pasid_info`` (PASID granularity) or ``addr_info`` (ADDR)."""

    pasid_info: InvPasidInfo = msgspec.field(default_factory=InvPasidInfo)
    addr_info: InvAddrInfo = msgspec.field(default_factory=InvAddrInfo)


@cstruct(cname="iommu_cache_invalidate_info", minsz="granu")
class CacheInvalidateInfo(CRecord, frozen=True, gc=False):
    """A cache invalidation request: which caches (``CacheType`` bits) at which granularity
    (``InvGranularity``), with the matching member of ``granu``."""

    argsz: U32 = 0
    version: U32 = 0
    cache: U8 = 0
    granularity: U8 = 0
    padding: Pad6 = bytes(6)
    granu: InvGranu = msgspec.field(default_factory=InvGranu)

    @classmethod
    def from_user(
        cls,
        buf: bytes | bytearray | memoryview,
        profile: ProfileLike = "linux-5.10",
        discipline: SizeDiscipline = SizeDiscipline.ARGSZ,
    ) -> CacheInvalidateInfo:
        """What ``iommu_uapi_cache_invalidate()`` does before calling the driver (c.1, c.2):
        copy minsz, check argsz and the granularity's minimum, copy the rest, check content."""
        prof = _checks.profile_of(profile)
        info = copy_from_user(
            cls, buf, "cache_invalidate", discipline, _checks.cache_invalidate_argsz, prof
        )
        _checks.cache_invalidate_content(info, prof)
        return info

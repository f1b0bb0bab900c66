"""The 2020 nesting UAPI as the Jan 2021 RFC's requests (the driver side of :mod:`.tables`).

``attach_pasid_table`` with an SMMUv3 PASID-table config becomes ATTACH_TABLE (format
PSTF_ARM_SMMU_V3, the config's S1Fmt, S1DSS, table pointer and PASID bits as S1CDMax);
``cache_invalidate`` becomes one INVALIDATE for the cells it can express (:data:`CELLS`): the
IOTLB at every granularity, the PASID (CD) cache by domain and by PASID. The device has no ATS
endpoint, so no device-TLB cell is declared. A record naming a cell outside :data:`CELLS` is
refused (``strict``) or has that cache dropped (``linux-5.10``: the quirk
``virtio.quirk.drop_inexpressible_cells`` of :data:`~.rules.VIRTIO_TABLE`).
"""

from __future__ import annotations

import errno
from typing import Final

from iommu_uapi import profiles
from iommu_uapi.errors import UAPIError
from iommu_uapi.features import CacheCell
from iommu_uapi.ruletable import fail
from iommu_uapi.uapi import CacheInvalidateInfo, PasidTableConfig
from iommu_uapi.uapi.consts import (
    IOMMU_PASID_FORMAT_SMMUV3,
    CacheType,
    InvAddrFlags,
    InvGranularity,
    InvPasidFlags,
    PasidConfig,
)

from .tables import (
    PSTF_ARM_SMMU_V3,
    InvFlags,
    InvGran,
    InvType,
    SharedTable,
    encode_invalidate,
)

__all__ = ["CELLS", "invalidate_request", "table_of", "wire_format"]

_G = InvGranularity
#: The invalidations INVALIDATE expresses and the device executes.
CELLS: Final = frozenset({
    CacheCell(CacheType.IOTLB, _G.DOMAIN), CacheCell(CacheType.IOTLB, _G.PASID),
    CacheCell(CacheType.IOTLB, _G.ADDR), CacheCell(CacheType.PASID, _G.DOMAIN),
    CacheCell(CacheType.PASID, _G.PASID)})
_GRAN: Final = {_G.DOMAIN: InvGran.DOMAIN, _G.PASID: InvGran.PASID, _G.ADDR: InvGran.VA}
_TYPE: Final = ((CacheType.IOTLB, InvType.IOTLB), (CacheType.PASID, InvType.PASID))
_FORMATS: Final = {IOMMU_PASID_FORMAT_SMMUV3: PSTF_ARM_SMMU_V3}
_U32: Final = 0xFFFF_FFFF


def wire_format(uapi_format: int) -> int:
    """ATTACH_TABLE's ``format`` for an ``IOMMU_PASID_FORMAT_*`` (0, which the device does not
    support, for any other)."""
    return _FORMATS.get(uapi_format, 0)


def table_of(cfg: PasidTableConfig) -> SharedTable | None:
    """The table ATTACH_TABLE carries for ``cfg``; None for ``config`` BYPASS (stage 2 only:
    no table); EINVAL for a format other than SMMUV3 (checked first, as the SMMUv3 driver
    does) and for ABORT, which the draft cannot express."""
    if cfg.format not in _FORMATS:
        raise fail("virtio.backend.pasid_format", format=cfg.format)
    if cfg.config == PasidConfig.BYPASS:
        return None
    if cfg.config != PasidConfig.TRANSLATE:
        raise UAPIError(errno.EINVAL, "attach_pasid_table: ATTACH_TABLE has no abort "
                        "configuration", rule="virtio.backend.pasid_config")
    v3 = cfg.vendor_data.smmuv3
    return SharedTable(v3.s1fmt, v3.s1dss, cfg.base_ptr, cfg.pasid_bits)


def invalidate_request(domain: int, info: CacheInvalidateInfo, profile: str) -> bytes | None:
    """The INVALIDATE for ``info`` (None: nothing left to send once ``linux-5.10`` dropped
    the caches the draft cannot express)."""
    granu = _G(info.granularity)
    pasid = info.granu.addr_info.pasid if granu == _G.ADDR else info.granu.pasid_info.pasid
    if granu != _G.DOMAIN and pasid > _U32:
        raise UAPIError(errno.EINVAL, f"cache_invalidate: PASID {pasid:#x} does not fit "
                        "INVALIDATE's le32", rule="virtio.backend.pasid_width")
    unknown = [CacheType(b) for b in (CacheType.IOTLB, CacheType.DEV_IOTLB, CacheType.PASID)
               if info.cache & b and CacheCell(CacheType(b), granu) not in CELLS]
    if unknown and not profiles.get(profile).quirk("virtio.quirk.drop_inexpressible_cells"):
        raise UAPIError(errno.EINVAL, "cache_invalidate: INVALIDATE cannot express "
                        f"{', '.join(f'{c.name}x{granu.name}' for c in unknown)}",
                        rule="virtio.backend.cell")
    types = sum(int(t) for c, t in _TYPE if info.cache & c
                and CacheCell(c, granu) in CELLS)
    if not types:
        return None
    if granu == _G.DOMAIN:
        return encode_invalidate(domain, InvGran.DOMAIN, types)
    if granu == _G.PASID:
        p = info.granu.pasid_info
        flags = (InvFlags.PASID if p.flags & InvPasidFlags.PASID else 0) | \
            (InvFlags.ARCHID if p.flags & InvPasidFlags.ARCHID else 0)
        return encode_invalidate(domain, InvGran.PASID, types, flags=flags, pasid=p.pasid,
                                 archid=p.archid)
    a = info.granu.addr_info
    flags = sum(int(w) for u, w in ((InvAddrFlags.PASID, InvFlags.PASID),
                                    (InvAddrFlags.ARCHID, InvFlags.ARCHID),
                                    (InvAddrFlags.LEAF, InvFlags.LEAF)) if a.flags & u)
    size = a.granule_size
    granule = size.bit_length() - 1 if size and not size & (size - 1) else 0
    return encode_invalidate(domain, _GRAN[granu], types, flags=flags, pasid=a.pasid,
                             archid=a.archid, virt_start=a.addr,
                             nr_pages=min(a.nb_granules, (1 << 64) - 1), granule=granule)

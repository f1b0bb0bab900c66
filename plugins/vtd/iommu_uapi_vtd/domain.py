"""A host domain of the VT-d unit: its domain id, its second-level tables, and the host driver's
bookkeeping around them (``max_addr``, the nesting attribute, the IOTLB flush after an unmap).

The second level's AW is the one Linux gives every domain on a unit (``iommu->agaw``): the
largest SAGAW value whose width does not exceed ``ceil((MGAW - 30) / 9)`` levels; the domain's
address width (``gaw``) is that table width capped at MGAW.
"""

from __future__ import annotations

import errno

from iommu_uapi.errors import UAPIError
from iommu_uapi.hw.ats import ats_size_encoding
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable.vtd_sl import SLPageTable

from .context import sl_config
from .invalidate import DevTlbTarget
from .qi import Descriptor, DevTlbInv, IotlbGranularity, IotlbInv
from .registers import VtdConfig

__all__ = ["VtdDomain", "domain_aw"]

_PAGE_SHIFT = 12


def domain_aw(cfg: VtdConfig) -> int:
    """The second-level AW (1, 2, 3) of every domain on a unit with ``cfg``; ``EINVAL`` when
    SAGAW offers none that fits MGAW (Linux then does not use the unit)."""
    top = -(-(cfg.mgaw - 30) // 9)
    for aw in range(min(top, 3), 0, -1):
        if cfg.aw_supported(aw):
            return aw
    raise UAPIError(errno.EINVAL, f"vtd: SAGAW {cfg.sagaw:#x} has no width within MGAW "
                    f"{cfg.mgaw}", rule="vtd.agaw")


class VtdDomain:
    """Backend state of one host domain (``Domain.data``)."""

    __slots__ = ("aw", "did", "gaw", "mappings", "max_addr", "mem", "nesting", "pt")

    def __init__(self, did: int, cfg: VtdConfig, aw: int, mem: PhysicalMemory) -> None:
        self.did = did
        self.aw = aw
        self.gaw = min(30 + 9 * aw, cfg.mgaw)
        self.pt = SLPageTable(sl_config(cfg, aw), mem)
        self.mem = mem
        self.nesting = False
        #: the end of the highest mapping, as the driver tracks it (a bind's gpgd must be below)
        self.max_addr = 0
        self.mappings: dict[int, int] = {}

    def map(self, iova: int, paddr: int, size: int, prot: int) -> None:
        """Map one page or large page; ``EINVAL`` beyond the domain's width."""
        if iova + size > 1 << self.gaw:
            raise UAPIError(errno.EINVAL, f"map: [{iova:#x}, {iova + size:#x}) beyond the "
                            f"domain's {self.gaw}-bit width", rule="vtd.map.width")
        self.pt.map(iova, paddr, size, prot)
        self.mappings[iova] = size
        self.max_addr = max(self.max_addr, iova + size)

    def unmap(self, iova: int, size: int) -> int:
        """Unmap; returns the bytes unmapped."""
        unmapped = int(self.pt.unmap(iova, size))
        if unmapped:
            self.mappings.pop(iova, None)
            if self.max_addr == iova + size:
                self.max_addr = iova
        return unmapped

    def flush_range(self, cfg: VtdConfig, iova: int, size: int,
                    devtlbs: list[DevTlbTarget]) -> list[Descriptor]:
        """``iommu_flush_iotlb_psi`` and ``iommu_flush_dev_iotlb`` after an unmap: a
        page-selective IOTLB invalidation of the range (domain-selective when PSI is missing
        or the range needs a mask above MAMV), then a device-TLB invalidation per ATS device."""
        pages = max(1, size >> _PAGE_SHIFT)
        mask = (pages - 1).bit_length()
        if not cfg.psi or mask > cfg.mamv:
            out: list[Descriptor] = [IotlbInv(G=IotlbGranularity.DOMAIN, DID=self.did,
                                              DW=cfg.dwd, DR=cfg.drd)]
        else:
            out = [IotlbInv(G=IotlbGranularity.PAGE, DID=self.did, DW=cfg.dwd, DR=cfg.drd,
                            AM=mask, ADDR=iova & ~((1 << (_PAGE_SHIFT + mask)) - 1))]
        for t in devtlbs:
            addr, s = ats_size_encoding(iova, mask)
            out.append(DevTlbInv(MIP=t.qdep & 0x1F, SID=t.sid, PFSID_LO=t.pfsid & 0xF,
                                 PFSID_HI=t.pfsid >> 4, S=s, ADDR=addr))
        return out

    def release(self) -> None:
        """Unmap everything and free the root table (the domain is being freed)."""
        for iova, size in list(self.mappings.items()):
            self.pt.unmap(iova, size)
        self.mappings.clear()
        self.mem.free(self.pt.root)

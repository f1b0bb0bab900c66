"""The guest side of virtio-iommu nesting: an Arm SMMUv3 guest sharing its CD table.

A guest whose vIOMMU is an SMMUv3 builds LPAE stage-1 tables (4 KiB granule, 48-bit VA) and a
CD table in guest memory; its VMM attaches the CD table with ``attach_pasid_table`` (format
``IOMMU_PASID_FORMAT_SMMUV3``), which this backend sends as ATTACH_TABLE. The table is
two-level with 4 KiB leaves (S1Fmt 1, 64 CDs per leaf table, allocated when the first CD of a
leaf is written) covering 10 PASID bits, as the SMMUv3 backend's guest; requests without PASID
bypass stage 1 (S1DSS 1). Each CD is the one the SMMUv3 tests write (V, AA64, T0SZ 16, TG0
4 KiB, EPD1, IPS 48 bits, R, A, ASID = PASID, TTB0 = the tables' root).
"""

from __future__ import annotations

from typing import Final

from iommu_uapi.guest import GuestEntry, GuestFormat, GuestTables
from iommu_uapi.memory import GuestMemory
from iommu_uapi.pasid_tables.smmuv3 import CD_SIZE, L1CD_SIZE, L2_SHIFT, Cd, L1Cd, S1Fmt
from iommu_uapi.pgtable.lpae import LPAEConfig, LPAEPageTable
from iommu_uapi.uapi import PasidTableConfig
from iommu_uapi.uapi.consts import (
    IOMMU_PASID_FORMAT_SMMUV3,
    PASID_TABLE_SMMUV3_CFG_VERSION_1,
    PasidConfig,
)
from iommu_uapi.uapi.pasid_table import PasidSmmuv3, PasidTableVendor

from .tables import S1Dss

__all__ = ["GUEST_PASID_BITS", "SMMUV3_GUEST", "SmmuV3GuestFormat", "guest_cd"]

#: The PASID bits of the guest's CD table.
GUEST_PASID_BITS: Final = 10
_FMT: Final = S1Fmt.TWO_LEVEL_4K
_SHIFT: Final = L2_SHIFT[_FMT]
_STAGE1: Final = LPAEConfig(stage=1, granule=4096, t0sz=16, oas=48)


def guest_cd(root: int, asid: int) -> Cd:
    """The CD a guest writes for stage-1 tables at ``root`` (4 KiB granule, 48-bit VA)."""
    return Cd(V=True, AA64=True, T0SZ=_STAGE1.t0sz, TG0=0, EPD1=True, IPS=5, R=True, A=True,
              ASID=asid, TTB0=root)


class SmmuV3GuestFormat(GuestFormat):
    """LPAE stage-1 tables under a two-level CD table attached by ``attach_pasid_table``."""

    def __init__(self) -> None:
        # a domain sharing a guest table takes no MAP/UNMAP: the host does not change stage 2
        super().__init__(IOMMU_PASID_FORMAT_SMMUV3, GuestEntry.PASID_TABLE, host_stage2=False)

    def tables(self, guest: GuestMemory) -> GuestTables:
        """Empty LPAE stage-1 tables in guest memory."""
        return LPAEPageTable(_STAGE1, guest)

    def pasid_table(self, guest: GuestMemory) -> PasidTableConfig:
        """An empty L1 CD table in guest memory and the config attaching it."""
        l1_bytes = max(4096, (1 << (GUEST_PASID_BITS - _SHIFT)) * L1CD_SIZE)
        base = guest.alloc(l1_bytes)
        return PasidTableConfig(
            argsz=PasidTableConfig.SIZE, version=1, base_ptr=base,
            format=IOMMU_PASID_FORMAT_SMMUV3, pasid_bits=GUEST_PASID_BITS,
            config=PasidConfig.TRANSLATE, vendor_data=PasidTableVendor(smmuv3=PasidSmmuv3(
                version=PASID_TABLE_SMMUV3_CFG_VERSION_1, s1fmt=_FMT, s1dss=S1Dss.BYPASS)))

    def write_entry(self, guest: GuestMemory, cfg: PasidTableConfig, pasid: int,
                    root: int | None) -> None:
        """Write the CD of ``pasid`` (an L2 table allocated on first use), or clear it."""
        l1_gpa = cfg.base_ptr + (pasid >> _SHIFT) * L1CD_SIZE
        desc = L1Cd.from_int(guest.read64(l1_gpa))
        if not desc.V:
            if root is None:
                return
            desc = L1Cd(V=True, L2Ptr=guest.alloc())
            guest.write64(l1_gpa, desc.to_int())
        cd = guest_cd(root, pasid) if root is not None else Cd()
        guest.write(desc.L2Ptr + (pasid & ((1 << _SHIFT) - 1)) * CD_SIZE, cd.to_bytes())


#: The one guest format a table-sharing virtio-iommu accepts.
SMMUV3_GUEST = SmmuV3GuestFormat()

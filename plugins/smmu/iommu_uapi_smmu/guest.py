"""The guest side of SMMUv3 nesting: what a guest's ``arm-smmu-v3`` driver builds and how its
VMM hands it over.

The guest builds VMSAv8-64 stage-1 tables (LPAE, 4 KiB granule, 48-bit VA by default) and a CD
table in guest memory — two-level with 4 KiB leaves (S1Fmt 1) — one CD per PASID, ASID = PASID;
the VMM attaches the whole table once with ``attach_pasid_table`` (format
``IOMMU_PASID_FORMAT_SMMUV3``, config TRANSLATE, S1DSS bypass so traffic without a PASID sees
the host's stage 2 alone). A PASID then enters by the guest writing its CD (and, first, the L2
table's L1 descriptor) and invalidating the PASID cache (CFGI_CD on the host).

With ``pasid_bits`` 0 the table is a single CD (:data:`SMMU_SINGLE_CD_GUEST`), what the nested
series' attach takes: the guest's STE has S1CDMax = 0, its one context is reached by DMA without
a SubstreamID, and it enters by the VMM attaching the table after the guest wrote the CD (the
guest's CFGI_STE) and leaves by the VMM detaching it.
"""

from __future__ import annotations

from iommu_uapi.guest import GuestEntry, GuestFormat, GuestTables
from iommu_uapi.memory import GuestMemory
from iommu_uapi.pasid_tables.smmuv3 import CD_SIZE, L1CD_SIZE, L2_SHIFT, Cd, L1Cd, S1Fmt
from iommu_uapi.pgtable.lpae import LPAEConfig, LPAEPageTable
from iommu_uapi.uapi import PasidSmmuv3, PasidTableConfig, PasidTableVendor
from iommu_uapi.uapi.consts import IOMMU_PASID_FORMAT_SMMUV3, PasidConfig

from .ste import S1Dss

__all__ = ["SMMU_GUEST", "SMMU_SINGLE_CD_GUEST", "SmmuGuestFormat", "guest_cd"]

#: CD.TG0 encoding per granule
_TG0 = {4096: 0b00, 65536: 0b01, 16384: 0b10}
_IPS_48 = 5


def guest_cd(root: int, asid: int, granule: int = 4096, t0sz: int = 16) -> Cd:
    """The CD a guest driver writes for stage-1 tables at GPA ``root`` (TTB1 disabled, faults
    recorded and aborted, IPS 48 bits)."""
    return Cd(V=True, AA64=True, T0SZ=t0sz, TG0=_TG0[granule], EPD1=True, IPS=_IPS_48, R=True,
              A=True, ASID=asid, TTB0=root)


class SmmuGuestFormat(GuestFormat):
    """LPAE stage-1 tables under a guest CD table of 2^``pasid_bits`` CDs in ``s1fmt``."""

    def __init__(self, pasid_bits: int = 10, s1fmt: S1Fmt = S1Fmt.TWO_LEVEL_4K,
                 granule: int = 4096) -> None:
        super().__init__(IOMMU_PASID_FORMAT_SMMUV3, GuestEntry.PASID_TABLE,
                         single_context=pasid_bits == 0)
        self.pasid_bits = pasid_bits
        self.s1fmt = s1fmt
        self.granule = granule

    def tables(self, guest: GuestMemory) -> GuestTables:
        """Empty stage-1 tables in guest memory."""
        return LPAEPageTable(LPAEConfig(stage=1, granule=self.granule, t0sz=16, oas=48), guest)

    def pasid_table(self, guest: GuestMemory) -> PasidTableConfig:
        """An empty CD table (linear, or the L1 table of a two-level one) and its config."""
        if self.s1fmt == S1Fmt.LINEAR:
            size = CD_SIZE << self.pasid_bits
        else:
            size = L1CD_SIZE << max(0, self.pasid_bits - L2_SHIFT[self.s1fmt])
        base = guest.alloc(max(4096, size))
        return PasidTableConfig(
            argsz=PasidTableConfig.SIZE, version=1, base_ptr=base,
            format=IOMMU_PASID_FORMAT_SMMUV3, pasid_bits=self.pasid_bits,
            config=PasidConfig.TRANSLATE, vendor_data=PasidTableVendor(smmuv3=PasidSmmuv3(
                version=1, s1fmt=int(self.s1fmt), s1dss=int(S1Dss.BYPASS))))

    def write_entry(self, guest: GuestMemory, cfg: PasidTableConfig, pasid: int,
                    root: int | None) -> None:
        """Write the CD of ``pasid`` (an invalid one for None), allocating its L2 table."""
        cd = Cd() if root is None else guest_cd(root, pasid, self.granule)
        guest.write(self.cd_address(guest, cfg, pasid), cd.to_bytes())

    def cd_address(self, guest: GuestMemory, cfg: PasidTableConfig, pasid: int) -> int:
        """The GPA of ``pasid``'s CD in the table ``cfg`` attaches (an L2 table allocated and
        linked when missing)."""
        if not cfg.pasid_bits:  # a single CD: S1CDMax = 0, whatever the PASID
            return cfg.base_ptr
        fmt = S1Fmt(cfg.vendor_data.smmuv3.s1fmt)
        if fmt == S1Fmt.LINEAR:
            return cfg.base_ptr + pasid * CD_SIZE
        shift = L2_SHIFT[fmt]
        l1 = cfg.base_ptr + (pasid >> shift) * L1CD_SIZE
        desc = L1Cd.from_int(guest.read64(l1))
        if not desc.V:
            desc = L1Cd(V=True, L2Ptr=guest.alloc(CD_SIZE << shift))
            guest.write64(l1, desc.to_int())
        return desc.L2Ptr + (pasid & ((1 << shift) - 1)) * CD_SIZE


#: The guest format the backend describes under ``strict``: a CD per PASID.
SMMU_GUEST = SmmuGuestFormat()
#: The single-CD guest format, the one the nested series (``linux-5.10``) accepts.
SMMU_SINGLE_CD_GUEST = SmmuGuestFormat(pasid_bits=0, s1fmt=S1Fmt.LINEAR)

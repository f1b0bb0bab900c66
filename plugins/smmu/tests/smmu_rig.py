"""A programmed SMMU for the translation tests: a linear stream table, STEs, CD tables and
page tables built with the core's LPAE builders (stage 1 in guest memory when nested)."""

from __future__ import annotations

from typing import Any

from iommu_uapi.memory import GuestMemory, PhysicalMemory
from iommu_uapi.pgtable.common import Prot, TableMemory
from iommu_uapi.pgtable.lpae import LPAEConfig, LPAEPageTable
from iommu_uapi_smmu.cd import TG0_GRANULE, Cd
from iommu_uapi_smmu.idr import SmmuCaps
from iommu_uapi_smmu.registers import Cr0, Cr2, Reg, StrtabBase, StrtabBaseCfg
from iommu_uapi_smmu.smmu import Smmu
from iommu_uapi_smmu.ste import Ste, SteConfig

RW = Prot.READ | Prot.WRITE
TG0 = {g: code for code, g in TG0_GRANULE.items()}
S2TG = {4096: 0, 65536: 1, 16384: 2}
#: (granule, S2T0SZ, S2SL0) of a 40-bit IPA per granule (4 KiB: 2 concatenated L1 tables)
S2_GEOMETRY = {4096: (24, 1), 16384: (24, 1), 65536: (24, 1)}
GUEST_RAM = 0x4000_0000


class Rig:
    """An enabled SMMU with a 256-entry linear stream table in ``mem``."""

    def __init__(self, caps: SmmuCaps | None = None, *, recinvsid: bool = True,
                 addr_bits: int = 52) -> None:
        self.mem = PhysicalMemory(addr_bits)
        self.smmu = Smmu(self.mem, caps)
        self.strtab = self.mem.alloc(256 * 64)
        regs = self.smmu.regs
        regs.write(Reg.STRTAB_BASE, StrtabBase(ADDR=self.strtab).to_int())
        regs.write(Reg.STRTAB_BASE_CFG, StrtabBaseCfg(LOG2SIZE=8).to_int())
        regs.write(Reg.CR2, Cr2(RECINVSID=recinvsid).to_int())
        regs.write(Reg.CR0, Cr0(SMMUEN=True).to_int())

    def set_ste(self, sid: int, ste: Ste) -> None:
        self.mem.write(self.strtab + sid * 64, ste.to_bytes())

    # -- stage 1 ------------------------------------------------------------------------------

    def s1(self, granule: int = 4096, t0sz: int = 16,
           mem: TableMemory | None = None) -> LPAEPageTable:
        return LPAEPageTable(LPAEConfig(stage=1, granule=granule, t0sz=t0sz, oas=48),
                             self.mem if mem is None else mem)

    @staticmethod
    def cd(pt: LPAEPageTable, asid: int = 1, **fields: Any) -> Cd:
        values: dict[str, Any] = dict(V=True, AA64=True, T0SZ=pt.cfg.t0sz,
                                         TG0=TG0[pt.cfg.granule], EPD1=True, IPS=5, R=True,
                                         A=True, ASID=asid, TTB0=pt.root)
        values.update(fields)
        return Cd(**values)

    def cd_table(self, cds: dict[int, Cd], cdmax: int = 0) -> int:
        """A linear CD table holding ``cds`` by SubstreamID; returns its address."""
        ptr = self.mem.alloc(max(4096, 64 << cdmax))
        for ssid, cd in cds.items():
            self.mem.write(ptr + ssid * 64, cd.to_bytes())
        return ptr

    def s1_stream(self, sid: int, cds: dict[int, Cd], cdmax: int = 0, **ste: Any) -> None:
        ptr = self.cd_table(cds, cdmax)
        self.set_ste(sid, Ste(V=True, Config=SteConfig.S1_TRANS, S1ContextPtr=ptr,
                              S1CDMax=cdmax, **ste))

    # -- stage 2 ------------------------------------------------------------------------------

    def s2(self, granule: int = 4096) -> LPAEPageTable:
        t0sz, sl0 = S2_GEOMETRY[granule]
        return LPAEPageTable(LPAEConfig(stage=2, granule=granule, t0sz=t0sz, sl0=sl0, oas=48),
                             self.mem)

    @staticmethod
    def s2_fields(pt: LPAEPageTable, vmid: int = 1, **fields: Any) -> dict[str, Any]:
        assert pt.cfg.sl0 is not None
        values: dict[str, Any] = dict(S2VMID=vmid, S2T0SZ=pt.cfg.t0sz, S2SL0=pt.cfg.sl0,
                                         S2TG=S2TG[pt.cfg.granule], S2PS=5, S2AA64=True,
                                         S2R=True, S2TTB=pt.root)
        values.update(fields)
        return values

    def guest(self, s2: LPAEPageTable, size: int = 1 << 21) -> GuestMemory:
        """Guest RAM at :data:`GUEST_RAM`, mapped read/write by stage 2 granule by granule."""
        guest = GuestMemory(self.mem)
        hpa = self.mem.alloc(size)
        guest.add_ram(GUEST_RAM, size, hpa)
        g = s2.cfg.granule
        for off in range(0, size, g):
            s2.map(GUEST_RAM + off, hpa + off, g, RW)
        return guest

"""A host and a guest on the ``smmuv3`` backend: a nesting domain with guest RAM mapped at
stage 2, two devices attached (one with ATS), and the guest's LPAE stage-1 tables and CD table
in guest memory."""

from __future__ import annotations

from typing import Any

from iommu_uapi.iommu import IOMMU
from iommu_uapi.memory import GuestMemory, PhysicalMemory
from iommu_uapi.pasid_tables.smmuv3 import S1Fmt
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.pgtable.lpae import LPAEConfig, LPAEPageTable
from iommu_uapi.uapi import (
    CacheInvalidateInfo,
    InvAddrInfo,
    InvGranu,
    InvPasidInfo,
    PasidSmmuv3,
    PasidTableConfig,
    PasidTableVendor,
)
from iommu_uapi.uapi.consts import (
    CacheType,
    InvAddrFlags,
    InvGranularity,
    InvPasidFlags,
    PasidConfig,
)
from iommu_uapi_smmu.backend import SmmuBackend
from iommu_uapi_smmu.cmds import Command, Sync
from iommu_uapi_smmu.guest import SmmuGuestFormat

RW = Prot.READ | Prot.WRITE
RAM_GPA, RAM_HPA, RAM_SIZE = 0, 0x1_0000_0000, 0x20_0000
VA = 0x7F12_3450_0000


class Rig:
    """See the module docstring; ``profile`` is the IOMMU's, ``config`` the backend's."""

    def __init__(self, profile: str = "linux-5.10", *, granule: int = 4096,
                 pasid_bits: int | None = None, s1fmt: S1Fmt = S1Fmt.TWO_LEVEL_4K,
                 attach: bool = True, **config: Any) -> None:
        self.memory = PhysicalMemory()
        self.iommu = IOMMU("smmuv3", memory=self.memory, profile=profile, **config)
        self.backend: SmmuBackend = self.iommu.backend  # type: ignore[assignment]
        self.dev = self.iommu.add_device(0x0100, ats=True)
        self.dev2 = self.iommu.add_device(0x0208)
        self.domain = self.iommu.domain_alloc(nesting=True)
        self.iommu.attach_device(self.domain, self.dev)
        self.iommu.attach_device(self.domain, self.dev2)
        self.guest = GuestMemory(self.memory)
        self.guest.add_ram(RAM_GPA, RAM_SIZE, RAM_HPA)
        g = self.backend.geometry.granule
        for off in range(0, RAM_SIZE, g):
            self.iommu.map(self.domain, RAM_GPA + off, RAM_HPA + off, g, RW)
        if pasid_bits is None:
            pasid_bits = 0 if profile == "linux-5.10" else 10
        self.format = SmmuGuestFormat(pasid_bits, s1fmt, granule)
        self.gpt = LPAEPageTable(LPAEConfig(stage=1, granule=granule, t0sz=16, oas=48),
                                 self.guest)
        self.table = self.format.pasid_table(self.guest)
        if attach:
            self.iommu.uapi_attach_pasid_table(self.domain, self.table.to_bytes())

    def gmap(self, va: int = VA) -> int:
        """Map guest VA ``va`` to a fresh guest page in the guest's tables; returns the GPA."""
        gpa = self.guest.alloc(self.format.granule)
        self.gpt.map(va, gpa, self.format.granule, RW)
        return gpa

    def hpa(self, gpa: int) -> int:
        return self.guest.gpa_to_hpa(gpa)

    def enter(self, pasid: int, root: int | None = None) -> None:
        """Write the CD of ``pasid`` (no invalidation)."""
        self.format.write_entry(self.guest, self.table, pasid,
                                self.gpt.root if root is None else root)

    def invalidate(self, info: CacheInvalidateInfo, profile: str | None = None) -> None:
        self.iommu.uapi_cache_invalidate(self.domain, self.dev, info.to_bytes(),
                                         profile=profile)

    def commands(self) -> list[Command]:
        """The last batch of commands the host driver issued, its CMD_SYNC left out."""
        last = self.backend.host.last
        assert last and isinstance(last[-1], Sync)
        return last[:-1]


def pasid_inv(cache: int = CacheType.IOTLB, *, pasid: int | None = None,
              archid: int | None = None) -> CacheInvalidateInfo:
    flags = (InvPasidFlags.PASID if pasid is not None else 0) | (
        InvPasidFlags.ARCHID if archid is not None else 0)
    return CacheInvalidateInfo(argsz=32, version=1, cache=cache,
                               granularity=InvGranularity.PASID, granu=InvGranu(
                                   pasid_info=InvPasidInfo(flags=flags, pasid=pasid or 0,
                                                           archid=archid or 0)))


def addr_inv(addr: int, *, cache: int = CacheType.IOTLB, pasid: int | None = None,
             archid: int | None = None, granule: int = 4096, pages: int = 1,
             leaf: bool = False) -> CacheInvalidateInfo:
    flags = (InvAddrFlags.PASID if pasid is not None else 0) | (
        InvAddrFlags.ARCHID if archid is not None else 0) | (InvAddrFlags.LEAF if leaf else 0)
    return CacheInvalidateInfo(argsz=56, version=1, cache=cache,
                               granularity=InvGranularity.ADDR, granu=InvGranu(
                                   addr_info=InvAddrInfo(flags=flags, pasid=pasid or 0,
                                                         archid=archid or 0, addr=addr,
                                                         granule_size=granule,
                                                         nb_granules=pages)))


def domain_inv(cache: int = CacheType.IOTLB) -> CacheInvalidateInfo:
    return CacheInvalidateInfo(argsz=16, version=1, cache=cache,
                               granularity=InvGranularity.DOMAIN)


def table_config(**fields: Any) -> PasidTableConfig:
    """A PASID-table config (single CD, TRANSLATE) with ``fields`` replaced; ``smmuv3`` takes
    the vendor fields as a dict."""
    v3 = dict(version=1, s1fmt=0, s1dss=0)
    v3.update(fields.pop("smmuv3", {}))
    values: dict[str, Any] = dict(argsz=32, version=1, base_ptr=0x10_0000, format=1,
                                  pasid_bits=0, config=PasidConfig.TRANSLATE)
    values.update(fields)
    return PasidTableConfig(**values, vendor_data=PasidTableVendor(smmuv3=PasidSmmuv3(**v3)))

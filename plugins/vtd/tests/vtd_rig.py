"""A host with the ``vtd`` backend, one nesting domain, guest RAM mapped at second level with
4 KiB pages, and a guest building its own first-level tables in guest memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from iommu_uapi import PhysicalMemory, UAPIError
from iommu_uapi.device import Device
from iommu_uapi.iommu import IOMMU
from iommu_uapi.memory import GuestMemory
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.pgtable.x86 import X86Config, X86PageTable
from iommu_uapi.uapi import (
    CacheInvalidateInfo,
    GpasidBindData,
    GpasidBindDataVtd,
    GpasidBindVendor,
    InvAddrInfo,
    InvGranu,
    InvPasidInfo,
)
from iommu_uapi.uapi.consts import InvAddrFlags, InvGranularity, InvPasidFlags
from iommu_uapi_vtd.backend import VtdBackend
from iommu_uapi_vtd.qi import Descriptor

GUEST_RAM = 0x4000_0000      # host physical address of guest RAM (GPA 0)
RAM_SIZE = 0x20_0000         # 2 MiB of guest RAM, 512 pages
GVA = 0x7000_0000            # where the guest maps its buffer
RW = Prot.READ | Prot.WRITE


def errno_of(call: Callable[[], object]) -> UAPIError:
    with pytest.raises(UAPIError) as info:
        call()
    return info.value


def bind_data(hpasid: int, gpgd: int, *, addr_width: int = 48, vflags: int = 0,
              **fields: Any) -> GpasidBindData:
    base: dict[str, Any] = {"argsz": GpasidBindData.SIZE, "version": 1, "format": 1,
                            "addr_width": addr_width, "gpgd": gpgd, "hpasid": hpasid,
                            "vendor": GpasidBindVendor(vtd=GpasidBindDataVtd(flags=vflags))}
    base.update(fields)
    return GpasidBindData(**base)


def inv_pasid(cache: int, pasid: int, *, flags: int = InvPasidFlags.PASID) -> bytes:
    return CacheInvalidateInfo(
        argsz=CacheInvalidateInfo.SIZE, version=1, cache=cache,
        granularity=InvGranularity.PASID,
        granu=InvGranu(pasid_info=InvPasidInfo(flags=flags, pasid=pasid))).to_bytes()


def inv_addr(cache: int, pasid: int, addr: int, pages: int = 1, *, leaf: bool = False,
             flags: int = InvAddrFlags.PASID) -> bytes:
    return CacheInvalidateInfo(
        argsz=CacheInvalidateInfo.SIZE, version=1, cache=cache,
        granularity=InvGranularity.ADDR,
        granu=InvGranu(addr_info=InvAddrInfo(
            flags=flags | (InvAddrFlags.LEAF if leaf else 0), pasid=pasid, addr=addr,
            granule_size=0x1000, nb_granules=pages))).to_bytes()


def inv_domain(cache: int) -> bytes:
    return CacheInvalidateInfo(argsz=CacheInvalidateInfo.SIZE, version=1, cache=cache,
                               granularity=InvGranularity.DOMAIN).to_bytes()


class Rig:
    """The host (see the module docstring); ``ats`` gives the device ATS and PRI."""

    def __init__(self, *, profile: str = "linux-5.10", ats: bool = False,
                 **config: Any) -> None:
        self.mem = PhysicalMemory()
        self.iommu = IOMMU("vtd", memory=self.mem, profile=profile, **config)
        backend = self.iommu.backend
        assert isinstance(backend, VtdBackend)
        self.b = backend
        self.dev = self.iommu.add_device(0x0300, ats=ats, pri=ats)
        self.domain = self.iommu.domain_alloc(nesting=True)
        self.iommu.attach_device(self.domain, self.dev)
        self.guest = GuestMemory(self.mem)
        self.guest.add_ram(0, RAM_SIZE, GUEST_RAM)
        for off in range(0, RAM_SIZE, 0x1000):   # the VMM maps guest RAM at 4 KiB
            self.iommu.map(self.domain, off, GUEST_RAM + off, 0x1000, RW)
        self.gpt = X86PageTable(X86Config(levels=4, haw=48), self.guest)
        self.vm = self.iommu.pasid_set("vm0", quota=64)
        self.buf = self.guest.alloc()             # the guest page the buffer maps to
        self.gpt.map(GVA, self.buf, 0x1000, RW)

    def bind(self, *, dev: Device | None = None, **kw: Any) -> int:
        pasid = self.vm.alloc()
        self.iommu.uapi_sva_bind_gpasid(self.domain, dev or self.dev,
                                        bind_data(pasid, self.gpt.root, **kw).to_bytes())
        return pasid

    def pasid_entry(self, pasid: int, dev: Device | None = None) -> bytes:
        """The raw 64-byte PASID entry in memory (zeros when no PASID table holds it)."""
        addr = self.b.tables.pasid_entry_addr((dev or self.dev).sid, pasid)
        return bytes(64) if addr is None else self.mem.read(addr, 64)

    def submitted(self, since: int = 0) -> list[Descriptor]:
        return [r.descriptor for r in self.b.queue.executed_since(since)]

    def state(self, *pasids: int) -> tuple[object, ...]:
        """Everything a refused call must leave unchanged."""
        c = self.b.caches
        return (tuple(self.pasid_entry(p) for p in pasids), dict(c.context.entries),
                dict(c.pasid.entries), dict(self.iommu.iotlb.entries),
                dict(self.dev.atc.entries) if self.dev.atc is not None else None,
                self.b.queue.executed, dict(self.b.binds), dict(self.b.bound_per_sid),
                self.mem.allocated_bytes,
                self.b.queue.iqt, len(self.b.responses), len(self.b.faults.log))

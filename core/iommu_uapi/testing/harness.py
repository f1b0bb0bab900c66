"""A host-and-guest rig for driving any backend through the UAPI, chosen by capabilities.

:class:`Harness` builds what a VMM builds: an IOMMU model of the selected backend, a device (with
ATS when the backend executes device-TLB invalidations, PRI when it declares page requests), a
host domain (in nesting mode when the backend binds guest page tables), guest RAM mapped at stage
2 page by page, and a guest that builds its own stage-1 tables in guest memory in the format the
backend declares. Tests then speak the UAPI: bind bytes, invalidation records, page responses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..device import Device, Domain
from ..features import CacheCell, Capabilities, Feature
from ..iommu import IOMMU
from ..memory import GuestMemory, PhysicalMemory
from ..pgtable.common import Prot
from ..pgtable.x86 import X86Config, X86PageTable
from ..translation import Translation
from ..uapi import (
    CacheInvalidateInfo,
    GpasidBindData,
    GpasidBindDataVtd,
    GpasidBindVendor,
    InvAddrInfo,
    InvGranu,
    InvPasidInfo,
    PageResponse,
)
from ..uapi.consts import (
    CacheType,
    FaultPerm,
    InvAddrFlags,
    InvGranularity,
    InvPasidFlags,
    PageResponseCode,
    PageResponseFlags,
    PasidFormat,
)

__all__ = ["GUEST_RAM_GPA", "GUEST_RAM_SIZE", "GUEST_VA", "Harness", "guest_format"]

GUEST_RAM_GPA = 0
GUEST_RAM_SIZE = 0x10_0000  # 1 MiB of guest RAM, mapped 4 KiB page by page at stage 2
GUEST_RAM_HPA = 0x1_0000_0000
#: A guest virtual address the suite's tests map in the guest's own tables.
GUEST_VA = 0x7F12_3450_0000
RW = Prot.READ | Prot.WRITE
READ, WRITE = int(FaultPerm.READ), int(FaultPerm.WRITE)
#: The stage-1 formats a guest can build, by the PASID format a backend declares.
GUEST_FORMATS: dict[int, Callable[[GuestMemory], Any]] = {
    PasidFormat.INTEL_VTD: lambda guest: X86PageTable(X86Config(levels=4, haw=48), guest),
}


def guest_format(caps: Capabilities) -> int | None:
    """The first PASID format the backend declares that a guest here can build tables for."""
    return next((f for f in caps.formats if f in GUEST_FORMATS), None)


class Harness:
    """One host IOMMU model plus one guest, for the conformance suite (see the module doc)."""

    def __init__(self, backend: str, *, profile: str = "linux-5.10", **config: Any) -> None:
        self.memory = PhysicalMemory()
        self.iommu = IOMMU(backend, memory=self.memory, profile=profile, **config)
        self.caps = self.iommu.capabilities
        self.nesting = bool(self.caps.features & Feature.BIND_PGTBL) and \
            guest_format(self.caps) is not None
        ats = any(c.cache == CacheType.DEV_IOTLB for c in self.caps.cache_cells)
        pri = bool(self.caps.features & Feature.PAGE_REQUEST)
        self.dev = self.iommu.add_device(0x0100, ats=ats, pri=pri)
        self.dev2 = self.iommu.add_device(0x0208, pri=pri)
        self.domain = self.iommu.domain_alloc(nesting=self.nesting)
        self.iommu.attach_device(self.domain, self.dev)
        self.iommu.attach_device(self.domain, self.dev2)
        self.guest = GuestMemory(self.memory)
        self.guest.add_ram(GUEST_RAM_GPA, GUEST_RAM_SIZE, GUEST_RAM_HPA)
        for off in range(0, GUEST_RAM_SIZE, 0x1000):
            self.iommu.map(self.domain, GUEST_RAM_GPA + off, GUEST_RAM_HPA + off, 0x1000, RW)
        fmt = guest_format(self.caps)
        self.gpt = GUEST_FORMATS[fmt](self.guest) if fmt is not None else None
        self.vm = self.iommu.pasid_set("guest", quota=64)
        self.handled: list[Any] = []
        self.iommu.register_fault_handler(self.dev, self.handled.append)

    # -- the guest ------------------------------------------------------------------------------

    def guest_page(self) -> int:
        """A fresh guest page (GPA), zeroed."""
        return self.guest.alloc()

    def gmap(self, va: int, gpa: int | None = None, prot: int = RW) -> int:
        """Map guest VA ``va`` to ``gpa`` (a fresh page if None) in the guest's tables."""
        assert self.gpt is not None
        gpa = self.guest_page() if gpa is None else gpa
        self.gpt.map(va, gpa, 0x1000, prot)
        return gpa

    def gunmap(self, va: int) -> None:
        """Remove guest VA ``va`` from the guest's tables (no invalidation)."""
        assert self.gpt is not None
        self.gpt.unmap(va, 0x1000)

    def hpa(self, gpa: int) -> int:
        """Where guest page ``gpa`` lives in host memory."""
        return self.guest.gpa_to_hpa(gpa)

    # -- the UAPI -------------------------------------------------------------------------------

    def bind_bytes(self, hpasid: int, **fields: Any) -> bytes:
        """``iommu_gpasid_bind_data`` (VT-d vendor data) binding the guest's tables."""
        import msgspec

        assert self.gpt is not None
        data = GpasidBindData(argsz=72, version=1, format=PasidFormat.INTEL_VTD, addr_width=48,
                              gpgd=self.gpt.root, hpasid=hpasid,
                              vendor=GpasidBindVendor(vtd=GpasidBindDataVtd()))
        return msgspec.structs.replace(data, **fields).to_bytes() if fields else data.to_bytes()

    def bind(self, hpasid: int, dev: Device | None = None) -> None:
        """Bind the guest's tables to host PASID ``hpasid`` of ``dev`` (default: the ATS one)."""
        self.iommu.uapi_sva_bind_gpasid(self.domain, dev or self.dev, self.bind_bytes(hpasid))

    def unbind(self, hpasid: int, dev: Device | None = None) -> None:
        """Unbind through the user-bytes entry point."""
        self.iommu.uapi_sva_unbind_gpasid(self.domain, dev or self.dev, self.bind_bytes(hpasid))

    def translate(self, va: int, pasid: int | None = None, access: int = READ,
                  dev: Device | None = None) -> Translation:
        """One DMA of ``dev`` (default: the ATS device)."""
        return self.iommu.translate(dev or self.dev, va, pasid=pasid, access=access)

    def invalidate(self, info: CacheInvalidateInfo, dev: Device | None = None) -> None:
        """``uapi_cache_invalidate`` with ``info``'s bytes."""
        self.iommu.uapi_cache_invalidate(self.domain, dev or self.dev, info.to_bytes())

    @staticmethod
    def inv_info(cell: CacheCell, pasid: int, addr: int = 0, pages: int = 1) -> CacheInvalidateInfo:
        """The invalidation record a guest driver sends for ``cell`` covering ``pages`` pages
        at ``addr`` of ``pasid`` (PASID in the PASID field; ARCHID unused)."""
        cache, granu = int(cell.cache), int(cell.granularity)
        if granu == InvGranularity.DOMAIN:
            return CacheInvalidateInfo(argsz=16, version=1, cache=cache, granularity=granu)
        if granu == InvGranularity.PASID:
            return CacheInvalidateInfo(argsz=32, version=1, cache=cache, granularity=granu,
                                       granu=InvGranu(pasid_info=InvPasidInfo(
                                           flags=InvPasidFlags.PASID, pasid=pasid)))
        return CacheInvalidateInfo(argsz=56, version=1, cache=cache, granularity=granu,
                                   granu=InvGranu(addr_info=InvAddrInfo(
                                       flags=InvAddrFlags.PASID, pasid=pasid, addr=addr,
                                       granule_size=0x1000, nb_granules=pages)))

    def response(self, grpid: int, pasid: int | None = None,
                 code: int = PageResponseCode.SUCCESS) -> bytes:
        """``iommu_page_response`` bytes answering group ``grpid``."""
        flags = PageResponseFlags.PASID_VALID if pasid is not None else 0
        return PageResponse(argsz=24, version=1, flags=flags, pasid=pasid or 0, grpid=grpid,
                            code=code).to_bytes()

    def new_domain(self) -> Domain:
        """A second host domain with its own stage-2 tables."""
        return self.iommu.domain_alloc()

    def snapshot(self) -> tuple[Any, ...]:
        """The observable state a refused call must not change: bindings, IOTLB and device-TLB
        contents, pending page requests, PASID allocations, and every backed memory page."""
        io = self.iommu
        pages = tuple(sorted((pfn, self.memory.read(pfn << 12, 0x1000))
                             for pfn in self.memory.backed_page_numbers()))
        atc = dict(self.dev.atc.entries) if self.dev.atc is not None else None
        return (dict(io.uapi.bindings), dict(io.iotlb.entries), atc,
                [list(io.pending_page_requests(d)) for d in (self.dev, self.dev2)],
                sorted(io.pasids._owner), pages)

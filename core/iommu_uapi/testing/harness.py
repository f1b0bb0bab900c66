"""A host-and-guest rig for driving any backend through the UAPI, chosen by capabilities.

:class:`Harness` builds what a VMM builds: an IOMMU model of the selected backend, a device (with
ATS when the backend executes device-TLB invalidations, PRI when it declares page requests), a
host domain (in nesting mode when a guest can nest), guest RAM mapped at stage 2 page by page,
and a guest that builds its own stage-1 tables in guest memory. What the guest builds and how its
contexts enter the IOMMU come from the backend's ``iommu_guest_formats`` hook
(:mod:`iommu_uapi.guest`): the harness uses the first format whose entry the backend declares,
and :meth:`Harness.enter`/:meth:`Harness.leave` bind a PASID (``sva_bind_gpasid``) or write
and invalidate its entry in the guest PASID table it attached (``attach_pasid_table``). A
single-context table (:attr:`~iommu_uapi.guest.GuestFormat.single_context`) is attached when
its one context enters and detached when it leaves, and its DMA carries no PASID: the
``pasid`` a test names the context by is not sent. Tests then speak the UAPI: bind bytes,
invalidation records, page responses.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..device import Device, Domain
from ..features import CacheCell, Feature
from ..guest import GuestEntry, GuestFormat, GuestTables
from ..iommu import IOMMU
from ..memory import GuestMemory, PhysicalMemory
from ..pgtable.common import Prot
from ..translation import Translation
from ..uapi import (
    CacheInvalidateInfo,
    InvAddrInfo,
    InvGranu,
    InvPasidInfo,
    PageResponse,
    PasidTableConfig,
)
from ..uapi.consts import (
    CacheType,
    FaultPerm,
    InvAddrFlags,
    InvGranularity,
    InvPasidFlags,
    PageResponseCode,
    PageResponseFlags,
)

__all__ = ["GUEST_RAM_GPA", "GUEST_RAM_SIZE", "GUEST_VA", "Harness", "guest_formats",
           "no_guest_reason", "usable_format"]

GUEST_RAM_GPA = 0
GUEST_RAM_SIZE = 0x10_0000  # 1 MiB of guest RAM, mapped 4 KiB page by page at stage 2
GUEST_RAM_HPA = 0x1_0000_0000
#: A guest virtual address the suite's tests map in the guest's own tables.
GUEST_VA = 0x7F12_3450_0000
RW = Prot.READ | Prot.WRITE
READ, WRITE = int(FaultPerm.READ), int(FaultPerm.WRITE)
#: What the backend must declare for a guest context to enter each way: the UAPI feature, and
#: the invalidations the guest sends (a table entry needs the PASID cache invalidated, and its
#: IOTLB entries dropped when it goes).
_ENTRY_NEEDS: dict[GuestEntry, tuple[Feature, frozenset[CacheCell]]] = {
    GuestEntry.BIND_GPASID: (Feature.BIND_PGTBL, frozenset()),
    GuestEntry.PASID_TABLE: (Feature.BIND_PASID_TABLE, frozenset({
        CacheCell(CacheType.PASID, InvGranularity.PASID),
        CacheCell(CacheType.IOTLB, InvGranularity.PASID)})),
}

_NESTING_FEATURES = Feature.BIND_PASID_TABLE | Feature.BIND_PGTBL


def guest_formats(iommu: IOMMU) -> list[GuestFormat]:
    """The guest formats ``iommu``'s backend describes (none without the hook)."""
    if "iommu_guest_formats" not in iommu.ops:
        return []
    return list(iommu.dispatch.call("iommu_guest_formats") or ())


def no_guest_reason(iommu: IOMMU) -> str:
    """Why no guest can nest on ``iommu``'s backend (for a skip message)."""
    features = iommu.capabilities.features
    lacking = [f.name for f, _ in _ENTRY_NEEDS.values() if not features & f]
    if len(lacking) == len(_ENTRY_NEEDS):
        return f"backend declares neither {' nor '.join(str(n) for n in lacking)}"
    described = guest_formats(iommu)
    if not described:
        return "backend describes no guest format (iommu_guest_formats)"
    return (f"no guest format of {described} has its entry declared (feature, and the cells "
            "its invalidations use)")


def _declared(iommu: IOMMU, fmt: GuestFormat) -> bool:
    caps = iommu.capabilities
    feature, cells = _ENTRY_NEEDS[fmt.entry]
    if fmt.single_context:  # its attach and detach make changes visible: no invalidation
        cells = frozenset()
    if not caps.features & feature or not cells <= caps.cache_cells:
        return False
    return fmt.entry is not GuestEntry.BIND_GPASID or fmt.format in caps.formats


def usable_format(iommu: IOMMU, wanted: GuestFormat | None = None) -> GuestFormat | None:
    """The first guest format whose entry the backend declares (the feature, the cells the
    guest's invalidations use, and for a bind the PASID format), or None. With ``wanted``:
    that format, which must be one the backend describes and declares (else ``ValueError``)."""
    described = guest_formats(iommu)
    if wanted is not None:
        if not any(type(f) is type(wanted) and f.format == wanted.format
                   and f.entry is wanted.entry for f in described) or not _declared(iommu,
                                                                                   wanted):
            raise ValueError(f"{wanted!r} is not a guest format {iommu.backend_name!r} "
                             f"describes and declares (it describes {described})")
        return wanted
    return next((f for f in described if _declared(iommu, f)), None)


class Harness:
    """One host IOMMU model plus one guest, for the conformance suite (see the module doc)."""

    def __init__(self, backend: str, *, profile: str = "linux-5.10",
                 guest_format: GuestFormat | None = None, **config: Any) -> None:
        self.memory = PhysicalMemory()
        self.iommu = IOMMU(backend, memory=self.memory, profile=profile, **config)
        self.caps = self.iommu.capabilities
        #: the guest format in use (None: no guest can nest on this backend): ``guest_format``,
        #: which must be one the backend describes and declares, or the first such
        self.format = usable_format(self.iommu, guest_format)
        self.nesting = self.format is not None
        ats = any(c.cache == CacheType.DEV_IOTLB for c in self.caps.cache_cells)
        pri = bool(self.caps.features & Feature.PAGE_REQUEST)
        self.dev = self.iommu.add_device(0x0100, ats=ats, pri=pri)
        self.dev2 = self.iommu.add_device(0x0208, pri=pri)
        # a VMM that may attach a guest PASID table or bind guest tables opens a nesting
        # container (VFIO_TYPE1_NESTING_IOMMU) whether or not the suite's guest can enter
        nests = self.nesting or bool(self.caps.features & _NESTING_FEATURES)
        self.domain = self.iommu.domain_alloc(nesting=nests)
        self.iommu.attach_device(self.domain, self.dev)
        self.iommu.attach_device(self.domain, self.dev2)
        self.guest = GuestMemory(self.memory)
        self.guest.add_ram(GUEST_RAM_GPA, GUEST_RAM_SIZE, GUEST_RAM_HPA)
        for off in range(0, GUEST_RAM_SIZE, 0x1000):
            self.iommu.map(self.domain, GUEST_RAM_GPA + off, GUEST_RAM_HPA + off, 0x1000, RW)
        self.gpt: GuestTables | None = None
        #: the guest PASID table attached to the domain (PASID_TABLE entry only)
        self.table: PasidTableConfig | None = None
        #: whether the guest PASID table is attached (a single-context one while it is entered)
        self.table_attached = False
        if self.format is not None:
            self.gpt = self.format.tables(self.guest)
            if self.format.entry is GuestEntry.PASID_TABLE:
                self.table = self.format.pasid_table(self.guest)
                if not self.format.single_context:
                    self._attach_table()
        self.vm = self.iommu.pasid_set("guest", quota=64)
        self.handled: list[Any] = []
        self.iommu.register_fault_handler(self.dev, self.handled.append)

    @property
    def entry(self) -> GuestEntry | None:
        """How a guest context enters (None: no guest can nest)."""
        return None if self.format is None else self.format.entry

    @property
    def single_context(self) -> bool:
        """Whether the guest has one context, which DMA without PASID reaches."""
        return self.format is not None and self.format.single_context

    def _attach_table(self) -> None:
        assert self.table is not None
        self.iommu.uapi_attach_pasid_table(self.domain, self.table.to_bytes())
        self.table_attached = True

    def _detach_table(self) -> None:
        if self.table_attached:
            self.iommu.detach_pasid_table(self.domain)
            self.table_attached = False

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

    def _format(self, entry: GuestEntry) -> GuestFormat:
        assert self.format is not None and self.format.entry is entry, (
            f"the backend's guest contexts enter by {self.entry}, not {entry.value}")
        return self.format

    def bind_bytes(self, hpasid: int, **fields: Any) -> bytes:
        """The ``iommu_gpasid_bind_data`` the guest format gives for the guest's tables and
        ``hpasid``, with ``fields`` replaced (``BIND_GPASID`` entry)."""
        assert self.gpt is not None
        data = self._format(GuestEntry.BIND_GPASID).bind_data(hpasid, self.gpt.root)
        return msgspec.structs.replace(data, **fields).to_bytes() if fields else data.to_bytes()

    def bind(self, hpasid: int, dev: Device | None = None) -> None:
        """Bind the guest's tables to host PASID ``hpasid`` of ``dev`` (default: the ATS one)."""
        self.iommu.uapi_sva_bind_gpasid(self.domain, dev or self.dev, self.bind_bytes(hpasid))

    def unbind(self, hpasid: int, dev: Device | None = None) -> None:
        """Unbind through the user-bytes entry point."""
        self.iommu.uapi_sva_unbind_gpasid(self.domain, dev or self.dev, self.bind_bytes(hpasid))

    def enter(self, pasid: int, dev: Device | None = None) -> None:
        """Make ``pasid`` of ``dev`` translate through the guest's tables, the way the backend's
        guest format says: bind it, or write its guest PASID-table entry and invalidate the
        PASID cache (the table serves every device of the domain)."""
        if self.entry is GuestEntry.BIND_GPASID:
            self.bind(pasid, dev)
            return
        fmt = self._format(GuestEntry.PASID_TABLE)
        assert self.gpt is not None and self.table is not None
        fmt.write_entry(self.guest, self.table, pasid, self.gpt.root)
        if fmt.single_context:  # the guest's STE changes: the VMM attaches the table anew
            self._detach_table()
            self._attach_table()
            return
        self._invalidate_all(CacheType.PASID, pasid)

    def leave(self, pasid: int, dev: Device | None = None) -> None:
        """Undo :meth:`enter`: unbind, or invalidate the PASID's table entry and drop what the
        PASID and IOTLB caches hold for it."""
        if self.entry is GuestEntry.BIND_GPASID:
            self.unbind(pasid, dev)
            return
        fmt = self._format(GuestEntry.PASID_TABLE)
        assert self.table is not None
        fmt.write_entry(self.guest, self.table, pasid, None)
        if fmt.single_context:
            self._detach_table()
            return
        self._invalidate_all(CacheType.PASID, pasid)
        self._invalidate_all(CacheType.IOTLB, pasid)

    def _invalidate_all(self, cache: CacheType, pasid: int) -> None:
        info = self.inv_info(CacheCell(cache, InvGranularity.PASID), pasid)
        for dev in self.domain.devices:
            self.invalidate(info, dev)

    def translate(self, va: int, pasid: int | None = None, access: int = READ,
                  dev: Device | None = None) -> Translation:
        """One DMA of ``dev`` (default: the ATS device), with ``pasid`` (a single-context
        guest's DMA carries none)."""
        if self.single_context:
            pasid = None
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

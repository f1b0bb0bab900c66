"""A VMM on iommufd: the same host and guest as :class:`~.harness.Harness`, built through
iommufd's commands instead of the 2020 calls.

:class:`IommufdRig` makes the IOMMU model of the backend, puts guest RAM in the VMM's address
space (:class:`~iommu_uapi.iommufd.UserMemory`), maps it into an IOAS at IOVA = GPA, allocates a
nesting parent HWPT over it and attaches the two devices of the harness (same requester IDs,
ATS and PRI chosen by the same capabilities). The guest builds its stage-1 tables through the
guest format the backend describes, and its contexts enter the way that format says, with the
data and entries of the hardware ``IOMMU_GET_HW_INFO`` reports (:mod:`.iommufd_kits`):

* per PASID (``GuestEntry.BIND_GPASID``, VT-d): each guest context is a nested HWPT over the
  guest's tables, attached at a PASID, and invalidated through that HWPT;
* through a guest PASID table (``GuestEntry.PASID_TABLE``, SMMUv3): the guest's CD table is in
  guest memory; each device is attached to its own nested HWPT carrying the guest STE that
  points at it (as the 2020 harness attaches the table to the domain), a vIOMMU over the
  parent has a vDEVICE per device (virtual StreamIDs from :data:`FIRST_VSID`), and a context
  enters by the guest writing its CD and issuing CFGI_CD through the vIOMMU.

Whatever the 2020 harness does, the rig can do the iommufd way on an identical host.

The IOMMU runs under profile ``strict`` unless told otherwise: iommufd belongs to kernels that
fixed the 5.10 quirks (a page request reports its address, not its page number).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..abi import CRecord
from ..device import Device
from ..errors import UAPIError
from ..features import Feature
from ..guest import GuestEntry, GuestFormat, GuestTables
from ..iommu import IOMMU
from ..iommufd import Client, HwptAllocFlags, IommuFd, IommuHwptVtdS1Invalidate
from ..memory import GuestMemory, PhysicalMemory
from ..translation import Translation
from ..uapi import PasidTableConfig
from ..uapi.consts import CacheType
from .harness import GUEST_RAM_GPA, GUEST_RAM_HPA, GUEST_RAM_SIZE, READ, RW, usable_format
from .iommufd_kits import ENTRIES_FOR, NESTED_DATA_FOR, TAG_FOR, U64_MAX, VIOMMU_FOR, EntryKit

__all__ = ["ENTRIES_FOR", "FIRST_VSID", "NESTED_DATA_FOR", "U64_MAX", "VIOMMU_FOR",
           "VMM_RAM_VA", "EntryKit", "IommufdRig", "no_iommufd_reason"]

#: Where the VMM maps guest RAM in its own address space.
VMM_RAM_VA = 0x4000_0000_0000
#: The virtual StreamID a CD-table guest gives its first device (the second gets the next)
FIRST_VSID = 0x10
#: How a guest context enters -> the hooks a backend needs beyond the nested HWPT ones
_MODE_HOOKS: dict[GuestEntry, tuple[str, ...]] = {
    GuestEntry.BIND_GPASID: ("iommu_hwpt_invalidate",),
    GuestEntry.PASID_TABLE: ("iommu_viommu_alloc", "iommu_viommu_invalidate"),
}


def no_iommufd_reason(iommu: IOMMU) -> str | None:
    """Why no guest can nest through iommufd on ``iommu``'s backend (None: it can)."""
    for hook in ("iommu_hw_info", "iommu_hwpt_nested_alloc", "iommu_hwpt_nested_attach"):
        if hook not in iommu.ops:
            return f"backend does not implement {hook}"
    fmt = usable_format(iommu)
    if fmt is None:
        return "backend declares no guest format"
    for hook in _MODE_HOOKS[fmt.entry]:
        if hook not in iommu.ops:
            return f"backend's guests enter by {fmt.entry.value} but it lacks {hook}"
    return None


class IommufdRig:
    """One host IOMMU model driven through iommufd, plus one guest (see the module doc)."""

    def __init__(self, backend: str, *, profile: str = "strict", **config: Any) -> None:
        self.memory = PhysicalMemory()
        self.iommu = IOMMU(backend, memory=self.memory, profile=profile, **config)
        self.caps = self.iommu.capabilities
        reason = no_iommufd_reason(self.iommu)
        if reason is not None:
            raise LookupError(reason)
        fmt = usable_format(self.iommu)
        assert fmt is not None
        self.format: GuestFormat = fmt
        self.fd = IommuFd(self.iommu)
        self.client = Client(self.fd)
        ats = any(c.cache == CacheType.DEV_IOTLB for c in self.caps.cache_cells)
        pri = bool(self.caps.features & Feature.PAGE_REQUEST)
        self.dev = self.iommu.add_device(0x0100, ats=ats, pri=pri)
        self.dev2 = self.iommu.add_device(0x0208, pri=pri)
        self.dev_id = self.fd.bind(self.dev)
        self.dev2_id = self.fd.bind(self.dev2)
        self.guest = GuestMemory(self.memory)
        self.guest.add_ram(GUEST_RAM_GPA, GUEST_RAM_SIZE, GUEST_RAM_HPA)
        self.fd.user.mmap_host(VMM_RAM_VA, GUEST_RAM_SIZE, GUEST_RAM_HPA)
        c = self.client
        info, _ = c.hw_info(self.dev_id, 0)
        hw = info.out_data_type
        builder = NESTED_DATA_FOR.get(hw)
        if builder is None or hw not in ENTRIES_FOR:
            raise LookupError(f"no nested HWPT data for hardware type {hw}")
        self._builder = builder
        #: the invalidation entries of this hardware (see :data:`ENTRIES_FOR`)
        self.entries: EntryKit = ENTRIES_FOR[hw]
        self.ioas = c.ioas_alloc()
        self.parent = c.hwpt_alloc(self.dev_id, self.ioas, HwptAllocFlags.NEST_PARENT)
        self.fd.attach(self.dev_id, self.parent)
        self.fd.attach(self.dev2_id, self.parent)
        c.ioas_map(self.ioas, VMM_RAM_VA, GUEST_RAM_SIZE, iova=GUEST_RAM_GPA)
        self.gpt: GuestTables = self.format.tables(self.guest)
        self.vm = self.iommu.pasid_set("guest", quota=64)
        self.handled: list[Any] = []
        #: the guest PASID table (PASID_TABLE entry), the vIOMMU its guest invalidates
        #: through, each device's virtual StreamID and nested HWPT (by dev_id)
        self.table: PasidTableConfig | None = None
        self.viommu: int | None = None
        self.vsids: dict[int, int] = {}
        self.nested_of: dict[int, int] = {}
        self._mode = _MODES[self.format.entry]
        self._mode.setup(self, VIOMMU_FOR.get(hw))

    # -- the guest (as Harness) ----------------------------------------------------------------

    def gmap(self, va: int, gpa: int | None = None, prot: int = RW) -> int:
        """Map guest VA ``va`` to ``gpa`` (a fresh page if None) in the guest's tables."""
        gpa = self.guest.alloc() if gpa is None else gpa
        self.gpt.map(va, gpa, 0x1000, prot)
        return gpa

    def gunmap(self, va: int) -> None:
        """Remove guest VA ``va`` from the guest's tables (no invalidation)."""
        self.gpt.unmap(va, 0x1000)

    def hpa(self, gpa: int) -> int:
        """Where guest page ``gpa`` lives in host memory."""
        return self.guest.gpa_to_hpa(gpa)

    def dev_id_of(self, dev: Device | None) -> int:
        """The ``dev_id`` of ``dev`` (default: the ATS device)."""
        return self.dev2_id if dev is self.dev2 else self.dev_id

    def vsid(self, dev: Device | None) -> int:
        """The virtual StreamID the guest knows ``dev`` by (PASID-table guests)."""
        return self.vsids[self.dev_id_of(dev)]

    def tag(self, pasid: int) -> int:
        """The guest's tag of ``pasid``'s context in the IOMMU's TLB: the ASID of the CD the
        guest wrote for it (PASID-table guests, :data:`~.iommufd_kits.TAG_FOR`), else the
        PASID."""
        return self._mode.tag(self, pasid)

    # -- iommufd -------------------------------------------------------------------------------

    def nested_data(self) -> tuple[int, CRecord]:
        """The nested HWPT data for the guest's tables (and PASID table)."""
        return self._builder(self.format, self.gpt.root, self.table)

    def nested(self, *, fault_id: int = 0) -> int:
        """A nested HWPT over the guest's tables: allocated with the PASID flag when contexts
        enter per PASID, else the guest STE a device is attached to."""
        dtype, data = self.nested_data()
        flags = self._mode.nested_flags | (HwptAllocFlags.FAULT_ID_VALID if fault_id else 0)
        return self.client.hwpt_alloc(self.dev_id, self.parent, int(flags), data, dtype,
                                      fault_id)

    def enter(self, pasid: int, dev: Device | None = None, *, fault_id: int = 0) -> int:
        """Make ``pasid`` of ``dev`` translate through the guest's tables; returns the object
        the guest invalidates the context through (its nested HWPT, or the vIOMMU). With
        ``fault_id``, the context's page requests go to that fault object (through a guest
        PASID table: those of every PASID of the device)."""
        return self._mode.enter(self, pasid, dev, fault_id)

    def leave(self, obj: int, pasid: int, dev: Device | None = None) -> None:
        """Undo :meth:`enter` (``obj`` is what it returned)."""
        self._mode.leave(self, obj, pasid, dev)

    def invalidate(self, obj: int, entries: Sequence[CRecord]) -> tuple[int, UAPIError | None]:
        """``IOMMU_HWPT_INVALIDATE`` of ``obj``; returns (entry_num written back, refusal)."""
        return self.client.invalidate(obj, entries, self.entries.data_type)

    def must_invalidate(self, obj: int, entries: Sequence[CRecord]) -> None:
        """:meth:`invalidate`, every entry handled (else the refusal is raised)."""
        if not entries:
            return
        handled, error = self.invalidate(obj, entries)
        if error is not None:
            raise error
        assert handled == len(entries)

    @staticmethod
    def vtd_entry(addr: int = 0, npages: int = U64_MAX, leaf: bool = False
                  ) -> IommuHwptVtdS1Invalidate:
        """A VT-d invalidation entry (default: the whole PASID)."""
        return IommuHwptVtdS1Invalidate(addr=addr, npages=npages, flags=int(leaf))

    def translate(self, va: int, pasid: int | None = None, access: int = READ,
                  dev: Device | None = None) -> Translation:
        """One DMA of ``dev`` (default: the ATS device)."""
        return self.iommu.translate(dev or self.dev, va, pasid=pasid, access=access)

    def snapshot(self) -> tuple[Any, ...]:
        """What a refused call must not change: objects, attachments, IOTLB and device-TLB
        contents, pending page requests and every backed memory page."""
        io = self.iommu
        pages = tuple(sorted((pfn, self.memory.read(pfn << 12, 0x1000))
                             for pfn in self.memory.backed_page_numbers()))
        atc = dict(self.dev.atc.entries) if self.dev.atc is not None else None
        return (sorted(self.fd.objects), dict(self.fd.attached), dict(io.iotlb.entries), atc,
                [list(io.pending_page_requests(d)) for d in (self.dev, self.dev2)], pages)


class _PerPasid:
    """Guest contexts entering per PASID: a nested HWPT each, attached at the PASID."""

    nested_flags = HwptAllocFlags.PASID

    @staticmethod
    def tag(rig: IommufdRig, pasid: int) -> int:
        del rig
        return pasid

    @staticmethod
    def setup(rig: IommufdRig, viommu_type: int | None) -> None:
        del rig, viommu_type

    @staticmethod
    def enter(rig: IommufdRig, pasid: int, dev: Device | None, fault_id: int) -> int:
        hwpt = rig.nested(fault_id=fault_id)
        rig.fd.attach(rig.dev_id_of(dev), hwpt, pasid)
        return hwpt

    @staticmethod
    def leave(rig: IommufdRig, obj: int, pasid: int, dev: Device | None) -> None:
        rig.fd.detach(rig.dev_id_of(dev), pasid)
        rig.client.destroy(obj)


class _PasidTable:
    """Guest contexts entering through the guest's PASID table (see the module docstring)."""

    nested_flags = HwptAllocFlags(0)

    @staticmethod
    def tag(rig: IommufdRig, pasid: int) -> int:
        assert rig.table is not None
        return TAG_FOR[rig.table.format](rig.guest, rig.table, pasid)

    @staticmethod
    def setup(rig: IommufdRig, viommu_type: int | None) -> None:
        if viommu_type is None:
            raise LookupError("the hardware's guests invalidate through no vIOMMU type known")
        rig.table = rig.format.pasid_table(rig.guest)
        if rig.table.format not in TAG_FOR:
            raise LookupError(f"no reader of the guest PASID-table format {rig.table.format}")
        c = rig.client
        for n, dev_id in enumerate((rig.dev_id, rig.dev2_id)):
            hwpt = rig.nested()
            rig.fd.detach(dev_id)
            rig.fd.attach(dev_id, hwpt)
            rig.nested_of[dev_id] = hwpt
            rig.vsids[dev_id] = FIRST_VSID + n
        rig.viommu = c.viommu_alloc(rig.dev_id, rig.parent, viommu_type)
        for dev_id, vsid in rig.vsids.items():
            c.vdevice_alloc(rig.viommu, dev_id, vsid)

    @staticmethod
    def _table_entry(rig: IommufdRig, pasid: int) -> None:
        """The guest invalidates the changed entry for every device whose STE points at the
        table (as the 2020 harness invalidates it for every device of the domain)."""
        assert rig.viommu is not None
        rig.must_invalidate(rig.viommu, [e for vsid in rig.vsids.values()
                                         for e in rig.entries.table_entry(vsid, pasid)])

    @staticmethod
    def _with_fault(rig: IommufdRig, dev: Device | None, fault_id: int) -> None:
        """Give ``dev`` a nested HWPT (the same guest STE) that reports to ``fault_id``: the
        page requests of every PASID of its CD table go there."""
        dev_id = rig.dev_id_of(dev)
        old = rig.nested_of[dev_id]
        hwpt = rig.nested(fault_id=fault_id)
        rig.fd.detach(dev_id)
        rig.fd.attach(dev_id, hwpt)
        rig.nested_of[dev_id] = hwpt
        rig.client.destroy(old)

    @staticmethod
    def enter(rig: IommufdRig, pasid: int, dev: Device | None, fault_id: int) -> int:
        assert rig.table is not None and rig.viommu is not None
        if fault_id:
            _PasidTable._with_fault(rig, dev, fault_id)
        rig.format.write_entry(rig.guest, rig.table, pasid, rig.gpt.root)
        _PasidTable._table_entry(rig, pasid)
        return rig.viommu

    @staticmethod
    def leave(rig: IommufdRig, obj: int, pasid: int, dev: Device | None) -> None:
        del dev
        assert rig.table is not None
        tag = rig.tag(pasid)
        rig.format.write_entry(rig.guest, rig.table, pasid, None)
        _PasidTable._table_entry(rig, pasid)
        rig.must_invalidate(obj, rig.entries.whole(tag))


_MODES: dict[GuestEntry, type[_PerPasid] | type[_PasidTable]] = {
    GuestEntry.BIND_GPASID: _PerPasid,
    GuestEntry.PASID_TABLE: _PasidTable,
}

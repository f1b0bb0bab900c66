"""A VMM on iommufd: the same host and guest as :class:`~.harness.Harness`, built through
iommufd's commands instead of the 2020 calls.

:class:`IommufdRig` makes the IOMMU model of the backend, puts guest RAM in the VMM's address
space (:class:`~iommu_uapi.iommufd.UserMemory`), maps it into an IOAS at IOVA = GPA, allocates a
nesting parent HWPT over it and attaches the two devices of the harness (same requester IDs,
ATS and PRI chosen by the same capabilities). The guest builds its stage-1 tables through the
guest format the backend describes; a guest context enters as a nested HWPT of the data type
that matches the hardware ``IOMMU_GET_HW_INFO`` reports (:data:`NESTED_DATA_FOR`), attached at
a PASID. Whatever the 2020 harness does, the rig can do the iommufd way on an identical host.

The IOMMU runs under profile ``strict`` unless told otherwise: iommufd belongs to kernels that
fixed the 5.10 quirks (a page request reports its address, not its page number).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ..abi import CRecord
from ..device import Device
from ..errors import UAPIError
from ..features import Feature
from ..guest import GuestEntry, GuestFormat, GuestTables
from ..iommu import IOMMU
from ..iommufd import (
    Client,
    HwInfoType,
    HwptAllocFlags,
    HwptDataType,
    HwptInvalidateDataType,
    IommuFd,
    IommuHwptVtdS1,
    IommuHwptVtdS1Invalidate,
    VtdS1Flags,
)
from ..memory import GuestMemory, PhysicalMemory
from ..translation import Translation
from ..uapi.consts import CacheType, VtdGpasidFlags
from .harness import GUEST_RAM_GPA, GUEST_RAM_HPA, GUEST_RAM_SIZE, READ, RW, usable_format

__all__ = ["ENTRIES_FOR", "NESTED_DATA_FOR", "VMM_RAM_VA", "EntryKit", "IommufdRig",
           "no_iommufd_reason"]

#: Where the VMM maps guest RAM in its own address space.
VMM_RAM_VA = 0x4000_0000_0000
U64_MAX = (1 << 64) - 1


def _vtd_s1(fmt: GuestFormat, root: int) -> tuple[int, CRecord]:
    """``iommu_hwpt_vtd_s1`` for the guest's first level: what the guest-bind data of the same
    format says (address width, SRE/EAFE)."""
    bind = fmt.bind_data(1, root)
    vflags = bind.vendor.vtd.flags
    flags = (VtdS1Flags.SRE if vflags & VtdGpasidFlags.SRE else 0) | (
        VtdS1Flags.EAFE if vflags & VtdGpasidFlags.EAFE else 0)
    return int(HwptDataType.VTD_S1), IommuHwptVtdS1(flags=int(flags), pgtbl_addr=bind.gpgd,
                                                    addr_width=bind.addr_width)


#: hardware information type -> (guest format, guest root) -> the nested HWPT data
NESTED_DATA_FOR: dict[int, Callable[[GuestFormat, int], tuple[int, CRecord]]] = {
    int(HwInfoType.INTEL_VTD): _vtd_s1,
}


class EntryKit(NamedTuple):
    """How a guest speaks one vendor's invalidation: the data type, an entry for ``pages``
    pages at an address, the entry for everything, and an entry the driver refuses."""

    data_type: int
    page: Callable[[int, int], CRecord]
    whole: Callable[[], CRecord]
    bad: Callable[[], CRecord]


#: hardware information type -> the invalidation entries of its nested HWPTs
ENTRIES_FOR: dict[int, EntryKit] = {
    int(HwInfoType.INTEL_VTD): EntryKit(
        int(HwptInvalidateDataType.VTD_S1),
        lambda addr, pages: IommuHwptVtdS1Invalidate(addr=addr, npages=pages),
        lambda: IommuHwptVtdS1Invalidate(addr=0, npages=U64_MAX),
        lambda: IommuHwptVtdS1Invalidate(addr=0x1001, npages=1)),
}


def no_iommufd_reason(iommu: IOMMU) -> str | None:
    """Why no guest can nest through iommufd on ``iommu``'s backend (None: it can)."""
    for hook in ("iommu_hw_info", "iommu_hwpt_nested_alloc", "iommu_hwpt_nested_attach",
                 "iommu_hwpt_invalidate"):
        if hook not in iommu.ops:
            return f"backend does not implement {hook}"
    fmt = usable_format(iommu)
    if fmt is None or fmt.entry is not GuestEntry.BIND_GPASID:
        return "backend declares no guest format that enters per PASID"
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
        builder = NESTED_DATA_FOR.get(info.out_data_type)
        if builder is None or info.out_data_type not in ENTRIES_FOR:
            raise LookupError(f"no nested HWPT data for hardware type {info.out_data_type}")
        self._builder = builder
        #: the invalidation entries of this hardware (see :data:`ENTRIES_FOR`)
        self.entries: EntryKit = ENTRIES_FOR[info.out_data_type]
        self.ioas = c.ioas_alloc()
        self.parent = c.hwpt_alloc(self.dev_id, self.ioas, HwptAllocFlags.NEST_PARENT)
        self.fd.attach(self.dev_id, self.parent)
        self.fd.attach(self.dev2_id, self.parent)
        c.ioas_map(self.ioas, VMM_RAM_VA, GUEST_RAM_SIZE, iova=GUEST_RAM_GPA)
        self.gpt: GuestTables = self.format.tables(self.guest)
        self.vm = self.iommu.pasid_set("guest", quota=64)
        self.handled: list[Any] = []

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

    # -- iommufd -------------------------------------------------------------------------------

    def nested_data(self) -> tuple[int, CRecord]:
        """The nested HWPT data for the guest's tables."""
        return self._builder(self.format, self.gpt.root)

    def nested(self, *, fault_id: int = 0) -> int:
        """A nested HWPT (allocated with the PASID flag) over the guest's tables."""
        dtype, data = self.nested_data()
        flags = HwptAllocFlags.PASID | (HwptAllocFlags.FAULT_ID_VALID if fault_id else 0)
        return self.client.hwpt_alloc(self.dev_id, self.parent, int(flags), data, dtype,
                                      fault_id)

    def enter(self, pasid: int, dev: Device | None = None, *, fault_id: int = 0) -> int:
        """A nested HWPT over the guest's tables attached at ``pasid`` of ``dev``; its id."""
        hwpt = self.nested(fault_id=fault_id)
        self.fd.attach(self.dev_id_of(dev), hwpt, pasid)
        return hwpt

    def leave(self, hwpt: int, pasid: int, dev: Device | None = None) -> None:
        """Detach ``pasid`` of ``dev`` and destroy the nested HWPT."""
        self.fd.detach(self.dev_id_of(dev), pasid)
        self.client.destroy(hwpt)

    def invalidate(self, hwpt: int, entries: Sequence[CRecord]) -> tuple[int, UAPIError | None]:
        """``IOMMU_HWPT_INVALIDATE`` of ``hwpt``; returns (entry_num written back, refusal)."""
        return self.client.invalidate(hwpt, entries, self.entries.data_type)

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



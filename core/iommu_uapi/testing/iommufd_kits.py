"""What a VMM says to iommufd for each kind of hardware, as tables keyed by the hardware type
``IOMMU_GET_HW_INFO`` reports (never by a backend's name): the data of a nested HWPT
(:data:`NESTED_DATA_FOR`), the vIOMMU a guest's commands go through (:data:`VIOMMU_FOR`), and
the invalidation entries a guest's requests become (:data:`ENTRIES_FOR`); and, keyed by the
guest PASID-table format, where the guest's TLB tag of a PASID is (:data:`TAG_FOR`).

* VT-d (``IOMMU_HWPT_DATA_VTD_S1``): one nested HWPT per guest PASID, the guest's first level
  as its data; entries ``iommu_hwpt_vtd_s1_invalidate`` on that HWPT (the kernel flushes the
  device TLB with ATS on; nothing to say about the PASID table, which is the host's).
* SMMUv3 (``IOMMU_HWPT_DATA_ARM_SMMUV3``): one nested HWPT per device carrying the guest STE
  that points at the guest's CD table; the guest's raw commands through the vIOMMU: TLBI_NH_VA
  per page and TLBI_NH_ASID tagged with the ASID of the PASID's CD, ATC_INV for the device
  TLB, CFGI_CD when a CD changes, all naming devices by their virtual StreamIDs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, cast

from ..abi import CRecord
from ..guest import GuestFormat
from ..iommufd import (
    HwInfoType,
    HwptDataType,
    HwptInvalidateDataType,
    IommuHwptVtdS1,
    IommuHwptVtdS1Invalidate,
    ViommuType,
    VtdS1Flags,
)
from ..iommufd.arm_smmuv3 import VcmdOpcode, atc_span, vcmd, vste_from_table
from ..memory import GuestMemory, PhysicalMemory
from ..pasid_tables.smmuv3 import CdTableReader
from ..uapi import PasidTableConfig
from ..uapi.consts import IOMMU_PASID_FORMAT_SMMUV3, VtdGpasidFlags

__all__ = ["ENTRIES_FOR", "NESTED_DATA_FOR", "TAG_FOR", "U64_MAX", "VIOMMU_FOR", "EntryKit",
           "NestedData"]

U64_MAX = (1 << 64) - 1
_PAGE = 4096

#: (guest format, root of the guest's stage-1 tables, the guest PASID table or None) ->
#: (HWPT data_type, the nested HWPT data)
NestedData = Callable[[GuestFormat, int, PasidTableConfig | None], tuple[int, CRecord]]


def _vtd_s1(fmt: GuestFormat, root: int, table: PasidTableConfig | None
            ) -> tuple[int, CRecord]:
    """``iommu_hwpt_vtd_s1`` for the guest's first level: what the guest-bind data of the same
    format says (address width, SRE/EAFE)."""
    del table
    bind = fmt.bind_data(1, root)
    vflags = bind.vendor.vtd.flags
    flags = (VtdS1Flags.SRE if vflags & VtdGpasidFlags.SRE else 0) | (
        VtdS1Flags.EAFE if vflags & VtdGpasidFlags.EAFE else 0)
    return int(HwptDataType.VTD_S1), IommuHwptVtdS1(flags=int(flags), pgtbl_addr=bind.gpgd,
                                                    addr_width=bind.addr_width)


def _arm_smmuv3(fmt: GuestFormat, root: int, table: PasidTableConfig | None
                ) -> tuple[int, CRecord]:
    """``iommu_hwpt_arm_smmuv3``: the guest STE pointing at the guest's CD table (the tables'
    root is in the CDs, not in the STE)."""
    del fmt, root
    assert table is not None, "an SMMUv3 guest nests through its CD table"
    return int(HwptDataType.ARM_SMMUV3), vste_from_table(table)


#: hardware information type -> the nested HWPT data
NESTED_DATA_FOR: dict[int, NestedData] = {
    int(HwInfoType.INTEL_VTD): _vtd_s1,
    int(HwInfoType.ARM_SMMUV3): _arm_smmuv3,
}

#: hardware information type -> the vIOMMU type its guests invalidate through (absent: they
#: invalidate each nested HWPT)
VIOMMU_FOR: dict[int, int] = {
    int(HwInfoType.ARM_SMMUV3): int(ViommuType.ARM_SMMUV3),
}


class EntryKit(NamedTuple):
    """How a guest speaks one vendor's invalidation. ``tag`` is the guest's tag of a context
    in the IOMMU's TLB (the ASID of its CD; on VT-d the HWPT is the context and it is unused),
    ``vsid`` a device's virtual StreamID.

    ``page(tag, addr, pages)`` and ``whole(tag)``: the entries dropping the context's TLB
    entries of those pages / all of them; ``dev_tlb(vsid, pasid, addr, pages)``: the entries
    dropping the device TLB's (none where the kernel does it); ``table_entry(vsid, pasid)``:
    the entries making the IOMMU read a changed PASID-table entry again (none where the table
    is the host's); ``bad()``: an entry the driver refuses."""

    data_type: int
    page: Callable[[int, int, int], list[CRecord]]
    whole: Callable[[int], list[CRecord]]
    dev_tlb: Callable[[int, int, int, int], list[CRecord]]
    table_entry: Callable[[int, int], list[CRecord]]
    bad: Callable[[], CRecord]


def _smmu_atc(vsid: int, pasid: int, addr: int, pages: int) -> list[CRecord]:
    start, order = atc_span(addr, pages * _PAGE)
    return [vcmd(VcmdOpcode.ATC_INV, SID=vsid, SSV=1, SSID=pasid, Addr=start, Size=order)]


#: hardware information type -> the invalidation entries of its guests
ENTRIES_FOR: dict[int, EntryKit] = {
    int(HwInfoType.INTEL_VTD): EntryKit(
        int(HwptInvalidateDataType.VTD_S1),
        lambda tag, addr, pages: [IommuHwptVtdS1Invalidate(addr=addr, npages=pages)],
        lambda tag: [IommuHwptVtdS1Invalidate(addr=0, npages=U64_MAX)],
        lambda vsid, pasid, addr, pages: [],
        lambda vsid, pasid: [],
        lambda: IommuHwptVtdS1Invalidate(addr=0x1001, npages=1)),
    int(HwInfoType.ARM_SMMUV3): EntryKit(
        int(HwptInvalidateDataType.VIOMMU_ARM_SMMUV3),
        lambda tag, addr, pages: [vcmd(VcmdOpcode.TLBI_NH_VA, ASID=tag, Addr=addr + i * _PAGE)
                                  for i in range(pages)],
        lambda tag: [vcmd(VcmdOpcode.TLBI_NH_ASID, ASID=tag)],
        _smmu_atc,
        lambda vsid, pasid: [vcmd(VcmdOpcode.CFGI_CD, SID=vsid, SSID=pasid)],
        lambda: vcmd(VcmdOpcode.CFGI_CD, SID=0xFFFF_FFFF, SSID=0)),  # no such vDEVICE
}


def _cd_asid(guest: GuestMemory, table: PasidTableConfig, pasid: int) -> int:
    """The ASID of the CD the guest wrote for ``pasid`` in its CD table (read by GPA)."""
    reader = CdTableReader(cast(PhysicalMemory, guest), table.base_ptr, table.pasid_bits,
                           table.vendor_data.smmuv3.s1fmt)
    return reader.fetch(pasid).cd.ASID


#: guest PASID-table format -> (guest memory, the table, PASID) -> the tag the guest's TLB
#: invalidations of that PASID name
TAG_FOR: dict[int, Callable[[GuestMemory, PasidTableConfig, int], int]] = {
    IOMMU_PASID_FORMAT_SMMUV3: _cd_asid,
}

"""VT-d's guest side as the suite sees it: first-level x86 tables bound by sva_bind_gpasid with
the Intel bind record (argsz to the end of vendor.vtd)."""

from __future__ import annotations

from iommu_uapi.guest import GuestEntry
from iommu_uapi.testing.harness import Harness, guest_formats
from iommu_uapi.uapi import GpasidBindData
from iommu_uapi.uapi.consts import PasidFormat
from iommu_uapi_vtd.guest import BIND_ARGSZ_MIN, VTD_GUEST

VA = 0x7F12_3450_0000


def test_the_hook_describes_first_level_tables_bound_by_gpasid() -> None:
    h = Harness("vtd")
    assert guest_formats(h.iommu) == [VTD_GUEST] and h.format is VTD_GUEST
    assert (VTD_GUEST.format, VTD_GUEST.entry) == (PasidFormat.INTEL_VTD,
                                                   GuestEntry.BIND_GPASID)
    data = GpasidBindData.from_bytes(h.bind_bytes(5))
    assert (data.argsz, data.format, data.addr_width, data.hpasid) == (BIND_ARGSZ_MIN, 1, 48, 5)
    assert h.gpt is not None and data.gpgd == h.gpt.root


def test_entering_binds_and_translates_through_both_stages() -> None:
    h = Harness("vtd")
    pasid = h.vm.alloc()
    gpa = h.gmap(VA)
    h.enter(pasid, h.dev2)
    assert h.iommu.bound_pasids(h.dev2) == [pasid]
    assert h.translate(VA + 8, pasid, dev=h.dev2).paddr == h.hpa(gpa) + 8
    h.leave(pasid, h.dev2)
    assert h.iommu.bound_pasids(h.dev2) == []


def test_a_unit_without_nesting_has_no_guest_side() -> None:
    h = Harness("vtd", nest=False)
    assert guest_formats(h.iommu) == [] and h.format is None and not h.nesting

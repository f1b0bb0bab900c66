"""The isolation hazards of Linux 5.10 the VT-d model reproduces under ``linux-5.10`` (and only
there: ``strict`` has none), the descriptors each profile sends, and the documentation that
names them (docs/isolation.md)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from iommu_uapi import UAPIError
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.testing.harness import GUEST_VA, RW, Harness
from iommu_uapi.translation import TranslationFault
from iommu_uapi_vtd.hazards import HAZARDS, UNBIND_KEEPS_GLOBALS, UNMAP_KEEPS_NESTED_ATC, has_hazard
from iommu_uapi_vtd.qi import DevTlbInv, IotlbInv, PasidIotlbInv, devtlb_range

VA = GUEST_VA
DOC = Path(__file__).resolve().parents[3] / "docs" / "isolation.md"


def rig(profile: str) -> Harness:
    return Harness("vtd", profile=profile)


def sent(h: Harness, run: object) -> list[object]:
    """The descriptors the unit executed while ``run()`` ran."""
    queue = h.iommu.backend.queue  # type: ignore[attr-defined]
    before = queue.executed
    run()  # type: ignore[operator]
    return [r.descriptor for r in queue.executed_since(before)]


# -- the PCIe rule: a device-TLB invalidation without PASID reaches PASID entries --------------


@pytest.mark.parametrize("profile", ["linux-5.10", "strict"])
def test_host_unmap_reaches_an_ats_pasid_entry_at_the_unmapped_address(profile: str) -> None:
    """A guest that maps a page at its own guest-physical address: the range flush of a host
    unmap names the device's PASID entry, and by PCIe the request without PASID drops it."""
    h = rig(profile)
    pasid = h.vm.alloc()
    gpa = h.guest_page()
    h.gmap(gpa, gpa)
    h.bind(pasid)
    assert h.translate(gpa, pasid).paddr == h.hpa(gpa)
    h.iommu.unmap(h.domain, gpa, 0x1000)
    with pytest.raises(TranslationFault):
        h.translate(gpa, pasid)


# -- hazard: the unmap flush names guest-physical addresses, the ATC holds guest-virtual ones ---


def test_linux_5_10_host_unmap_leaves_the_ats_device_its_nested_translation() -> None:
    h = rig("linux-5.10")
    assert has_hazard("linux-5.10", UNMAP_KEEPS_NESTED_ATC)
    pasid = h.vm.alloc()
    gpa = h.gmap(VA)
    h.bind(pasid)
    h.bind(pasid, h.dev2)
    h.translate(VA, pasid)
    h.translate(VA, pasid, dev=h.dev2)
    descs = sent(h, lambda: h.iommu.unmap(h.domain, gpa, 0x1000))
    assert [type(d) for d in descs] == [IotlbInv, DevTlbInv]
    assert devtlb_range(descs[1].ADDR, descs[1].S) == (gpa, 0x1000)  # type: ignore[attr-defined]
    with pytest.raises(TranslationFault):          # no ATS: the IOTLB lost it
        h.translate(VA, pasid, dev=h.dev2)
    assert h.translate(VA, pasid).paddr == h.hpa(gpa)   # the hazard: the ATC still has it


def test_strict_host_unmap_flushes_the_whole_atc_of_a_device_with_guest_pasids() -> None:
    h = rig("strict")
    pasid = h.vm.alloc()
    gpa = h.gmap(VA)
    h.bind(pasid)
    h.translate(VA, pasid)
    descs = sent(h, lambda: h.iommu.unmap(h.domain, gpa, 0x1000))
    assert [type(d) for d in descs] == [IotlbInv, DevTlbInv, DevTlbInv]
    assert devtlb_range(descs[2].ADDR, descs[2].S) == (0, 1 << 64)  # type: ignore[attr-defined]
    with pytest.raises(TranslationFault):
        h.translate(VA, pasid)


def test_strict_host_unmap_without_guest_pasids_flushes_the_range_only() -> None:
    h = rig("strict")
    gpa = h.guest_page()
    descs = sent(h, lambda: h.iommu.unmap(h.domain, gpa, 0x1000))
    assert [type(d) for d in descs] == [IotlbInv, DevTlbInv]


def test_strict_host_unmap_flushes_the_whole_atc_until_the_last_guest_pasid_is_unbound() -> None:
    h = rig("strict")
    first, second = h.vm.alloc(), h.vm.alloc()
    h.bind(first)
    h.bind(second)
    gpa = h.guest_page()
    for unbound, whole in ((first, True), (second, False)):
        h.unbind(unbound, h.dev)
        descs = sent(h, lambda: h.iommu.unmap(h.domain, gpa, 0x1000))
        types = [IotlbInv, DevTlbInv, DevTlbInv] if whole else [IotlbInv, DevTlbInv]
        assert [type(d) for d in descs] == types, unbound
        h.iommu.map(h.domain, gpa, h.hpa(gpa), 0x1000, RW)


# -- hazard: global entries survive the unbind ---------------------------------------------------


def _global_then_rebind(h: Harness) -> tuple[int, int, list[object]]:
    """Bind a table with a global page, translate, unbind, bind an empty table: the PASID,
    the old page's host address and the descriptors of the unbind."""
    pasid = h.vm.alloc()
    old = h.gmap(VA, prot=RW | Prot.GLOBAL)
    h.bind(pasid, h.dev2)
    assert h.translate(VA, pasid, dev=h.dev2).paddr == h.hpa(old)
    descs = sent(h, lambda: h.unbind(pasid, h.dev2))
    assert h.format is not None
    h.gpt = h.format.tables(h.guest)
    h.bind(pasid, h.dev2)
    return pasid, h.hpa(old), descs


def test_linux_5_10_unbind_keeps_the_global_entries_for_the_next_binding() -> None:
    h = rig("linux-5.10")
    assert has_hazard("linux-5.10", UNBIND_KEEPS_GLOBALS)
    pasid, old, descs = _global_then_rebind(h)
    assert any(isinstance(d, PasidIotlbInv) and d.G == 2 for d in descs)
    assert not any(isinstance(d, IotlbInv) for d in descs)
    tr = h.translate(VA, pasid, dev=h.dev2)          # the hazard: served from the old table
    assert tr.table_reads == 0 and tr.paddr == old


def test_strict_unbind_drops_the_global_entries_domain_selectively() -> None:
    h = rig("strict")
    assert not has_hazard("strict", UNBIND_KEEPS_GLOBALS)
    pasid, _, descs = _global_then_rebind(h)
    assert any(isinstance(d, IotlbInv) and d.G == 2 and h.domain.data.did == d.DID
               for d in descs)
    with pytest.raises(TranslationFault):
        h.translate(VA, pasid, dev=h.dev2)


# -- hazard: one PASID of a domain bound to two guest tables ------------------------------------


def _two_tables(h: Harness) -> tuple[int, int, int]:
    pasid = h.vm.alloc()
    first = h.gmap(VA)
    h.bind(pasid, h.dev)
    assert h.translate(VA, pasid).paddr == h.hpa(first)
    assert h.format is not None
    h.gpt = h.format.tables(h.guest)
    second = h.gmap(VA)
    return pasid, first, second


def test_linux_5_10_binds_a_pasid_to_a_second_table_and_the_iotlb_mixes_them() -> None:
    h = rig("linux-5.10")
    pasid, first, second = _two_tables(h)
    h.bind(pasid, h.dev2)
    # the hazard: dev2 is served dev's translation from the entry tagged (DID, PASID)
    assert h.translate(VA, pasid, dev=h.dev2).paddr == h.hpa(first) != h.hpa(second)


def test_strict_refuses_a_pasid_of_the_domain_bound_to_a_second_table() -> None:
    h = rig("strict")
    pasid, _, _ = _two_tables(h)
    with pytest.raises(UAPIError) as err:
        h.bind(pasid, h.dev2)
    assert (err.value.errno, err.value.rule) == (errno.EBUSY, "bind.shared_pasid")
    assert h.iommu.bound_pasids(h.dev2) == []


def test_a_pasid_of_another_domain_may_name_another_table() -> None:
    h = rig("strict")
    pasid, _, second = _two_tables(h)
    other = h.iommu.domain_alloc(nesting=True)
    dev = h.iommu.add_device(0x0410)
    h.iommu.attach_device(other, dev)
    for off in range(0, 0x10_0000, 0x1000):
        h.iommu.map(other, off, 0x1_0000_0000 + off, 0x1000, RW)
    h.iommu.uapi_sva_bind_gpasid(other, dev, h.bind_bytes(pasid))
    assert h.iommu.translate(dev, VA, pasid=pasid).paddr == h.hpa(second)


# -- the documentation names every hazard ----------------------------------------------------------


def test_every_hazard_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert all(f"`{hid}`" in text for hid in HAZARDS)
    assert "`bind.shared_pasid`" in text

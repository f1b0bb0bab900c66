"""Nested translation end to end: the guest's first-level tables over the host's second level,
read cost, combined permissions, and stale entries that stay until the right invalidation."""

from __future__ import annotations

import pytest
from vtd_rig import GUEST_RAM, GVA, RW, Rig, inv_addr, inv_domain, inv_pasid

from iommu_uapi.pgtable.common import Prot
from iommu_uapi.translation import TranslationFault
from iommu_uapi.uapi.consts import CacheType, FaultPerm
from iommu_uapi_vtd.pasid_entry import PasidEntry
from iommu_uapi_vtd.qi import PasidCacheInv, PasidIotlbInv

R, W = int(FaultPerm.READ), int(FaultPerm.WRITE)


def test_nested_dma_reads_24_descriptors_cold_and_none_on_a_hit() -> None:
    rig = Rig()
    p = rig.bind()
    t = rig.iommu.translate(rig.dev, GVA + 0x123, pasid=p)
    assert t.paddr == GUEST_RAM + rig.buf + 0x123
    # 4 first-level reads, each table pointer and the output translated by a 4-level walk
    assert t.table_reads == 24
    assert t.config_reads > 0
    hit = rig.iommu.translate(rig.dev, GVA + 0x456, pasid=p)
    assert (hit.paddr, hit.table_reads, hit.config_reads) == (GUEST_RAM + rig.buf + 0x456, 0,
                                                              0)
    assert rig.iommu.iotlb.hits == 1
    assert ("fl", rig.domain.data.did, p) in rig.iommu.iotlb.tags()


def test_config_reads_count_only_cache_misses() -> None:
    rig = Rig()
    p = rig.bind()
    first = rig.iommu.translate(rig.dev, GVA, pasid=p)
    assert first.config_reads == 4     # root, context, directory and PASID entries
    rig.iommu.invalidate_contexts()     # the core forgets its context; the caches stay
    rig.iommu.iotlb.flush()
    again = rig.iommu.translate(rig.dev, GVA, pasid=p)
    # the first-level paging-structure cache still holds the level-2 entry: the walk starts at
    # the level-1 table, 1 first-level read + 4 second-level reads for that table's GPA + 4
    # for the output
    assert again.config_reads == 0 and again.table_reads == 9
    rig.b.run([PasidIotlbInv(G=2, DID=rig.domain.data.did, PASID=p)])  # IOTLB and PSC of p
    cold = rig.iommu.translate(rig.dev, GVA, pasid=p)
    assert cold.config_reads == 0 and cold.table_reads == 24


def test_requests_without_pasid_use_rid_pasid_second_level() -> None:
    rig = Rig()
    t = rig.iommu.translate(rig.dev, 0x5008)
    assert (t.paddr, t.table_reads, t.config_reads) == (GUEST_RAM + 0x5008, 4, 4)
    assert ("sl", rig.domain.data.did, 0) in rig.iommu.iotlb.tags()


def test_iotlb_holds_the_combined_permissions() -> None:
    rig = Rig()
    ro_gpa = rig.guest.alloc()
    rig.iommu.unmap(rig.domain, ro_gpa, 0x1000)
    rig.iommu.map(rig.domain, ro_gpa, GUEST_RAM + ro_gpa, 0x1000, Prot.READ)  # SL read-only
    rig.gpt.map(GVA + 0x2000, ro_gpa, 0x1000, RW)                            # FL read-write
    rig.gpt.map(GVA + 0x3000, rig.guest.alloc(), 0x1000, Prot.READ)          # FL read-only
    p = rig.bind()
    t = rig.iommu.translate(rig.dev, GVA + 0x2000, pasid=p)
    assert t.perm & (R | W) == R
    t = rig.iommu.translate(rig.dev, GVA + 0x3000, pasid=p)
    assert t.perm & (R | W) == R
    for iova in (GVA + 0x2000, GVA + 0x3000):
        with pytest.raises(TranslationFault) as info:
            rig.iommu.translate(rig.dev, iova, pasid=p, access=W)
        assert info.value.native.reason == 0x85  # type: ignore[attr-defined]


def _remap(rig: Rig) -> int:
    """The guest points GVA at a new page (no invalidation yet); returns the new GPA."""
    new = rig.guest.alloc()
    rig.gpt.unmap(GVA, 0x1000)
    rig.gpt.map(GVA, new, 0x1000, RW)
    return new


@pytest.mark.parametrize("cm", [False, True], ids=["CM=0", "CM=1"])
def test_changed_guest_pte_stays_stale_until_the_right_invalidation(cm: bool) -> None:
    rig = Rig(caching_mode=cm)
    p = rig.bind()
    q = rig.bind()
    old = rig.iommu.translate(rig.dev, GVA, pasid=p).paddr
    new = GUEST_RAM + _remap(rig)
    # the wrong PASID, the wrong page and the domain granularity (5.10: silently dropped)
    for ubuf in (inv_pasid(CacheType.IOTLB, q), inv_addr(CacheType.IOTLB, p, GVA + 0x1000),
                 inv_domain(CacheType.IOTLB), inv_pasid(CacheType.PASID, p)):
        rig.iommu.uapi_cache_invalidate(rig.domain, rig.dev, ubuf)
        assert rig.iommu.translate(rig.dev, GVA, pasid=p).paddr == old
    rig.iommu.uapi_cache_invalidate(rig.domain, rig.dev, inv_addr(CacheType.IOTLB, p, GVA))
    for _ in range(3):
        assert rig.iommu.translate(rig.dev, GVA, pasid=p).paddr == new


def test_changed_guest_pte_with_ats_needs_the_device_tlb_too() -> None:
    rig = Rig(ats=True)
    p = rig.bind()
    old = rig.iommu.translate(rig.dev, GVA, pasid=p).paddr
    new = GUEST_RAM + _remap(rig)
    rig.iommu.iotlb.flush()              # the IOTLB alone: the ATC still answers
    assert rig.iommu.translate(rig.dev, GVA, pasid=p).paddr == old
    rig.iommu.uapi_cache_invalidate(rig.domain, rig.dev, inv_addr(CacheType.DEV_IOTLB, p, GVA))
    assert rig.iommu.translate(rig.dev, GVA, pasid=p).paddr == new


def test_stale_pasid_entry_stays_until_a_pasid_cache_invalidation() -> None:
    rig = Rig()
    p = rig.bind()
    old = rig.iommu.translate(rig.dev, GVA, pasid=p).paddr
    # software moves the entry to another guest table without invalidating the PASID cache
    other = rig.gpt.__class__(rig.gpt.cfg, rig.guest)
    target = rig.guest.alloc()
    other.map(GVA, target, 0x1000, RW)
    addr = rig.b.tables.pasid_entry_addr(rig.dev.sid, p)
    assert addr is not None
    entry = PasidEntry.from_bytes(rig.mem.read(addr, 64))
    rig.mem.write(addr, entry.__class__(**{**{f: getattr(entry, f) for f in entry.LAYOUT},
                                            "FLPTPTR": other.root}).to_bytes())
    rig.iommu.iotlb.flush()
    assert rig.iommu.translate(rig.dev, GVA, pasid=p).paddr == old
    # the driver's sequence: the PASID cache, then the PASID's IOTLB and paging structures
    rig.b.run([PasidCacheInv(G=1, DID=entry.DID, PASID=p),
               PasidIotlbInv(G=2, DID=entry.DID, PASID=p)])
    assert rig.iommu.translate(rig.dev, GVA, pasid=p).paddr == GUEST_RAM + target


def test_caching_mode_caches_a_not_present_pasid_entry() -> None:
    rig = Rig(caching_mode=True)
    p = rig.vm.alloc()
    with pytest.raises(TranslationFault):
        rig.iommu.translate(rig.dev, GVA, pasid=p)
    assert rig.b.caches.pasid.entries[(rig.dev.sid, p)].entry is None
    reads = rig.b.caches.pasid.misses
    with pytest.raises(TranslationFault):         # answered from the cache
        rig.iommu.translate(rig.dev, GVA, pasid=p)
    assert rig.b.caches.pasid.misses == reads
    from vtd_rig import bind_data

    rig.iommu.uapi_sva_bind_gpasid(rig.domain, rig.dev, bind_data(p, rig.gpt.root).to_bytes())
    assert rig.iommu.translate(rig.dev, GVA, pasid=p).paddr == GUEST_RAM + rig.buf


def test_without_caching_mode_not_present_is_not_cached() -> None:
    rig = Rig()
    p = rig.vm.alloc()
    with pytest.raises(TranslationFault):
        rig.iommu.translate(rig.dev, GVA, pasid=p)
    assert (rig.dev.sid, p) not in rig.b.caches.pasid.entries


def test_host_unmap_drops_nested_entries_of_the_domain() -> None:
    rig = Rig()
    p = rig.bind()
    rig.iommu.translate(rig.dev, GVA, pasid=p)
    rig.iommu.unmap(rig.domain, rig.buf, 0x1000)
    with pytest.raises(TranslationFault) as info:
        rig.iommu.translate(rig.dev, GVA, pasid=p)
    assert info.value.native.reason == 0x86  # type: ignore[attr-defined]

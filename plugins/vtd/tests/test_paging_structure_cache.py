"""The first-level paging-structure cache: table entries a walk used are kept, a later walk
starts below them, and only an invalidation without IH (or a PASID-, domain- or global-
selective one) drops them. A guest that replaces a table and invalidates leaf-only keeps
translating through the table it replaced; the right invalidation ends that."""

from __future__ import annotations

import pytest
from vtd_rig import GUEST_RAM, GVA, Rig, inv_addr, inv_pasid

from iommu_uapi.memory import GuestMemory
from iommu_uapi.pgtable.x86 import ADDR_MASK
from iommu_uapi.uapi.consts import CacheType
from iommu_uapi_vtd.qi import IotlbInv

IOTLB = CacheType.IOTLB


def entry_addr(guest: GuestMemory, root: int, iova: int, level: int) -> int:
    """The GPA of the level-``level`` first-level entry that translates ``iova``."""
    table = root
    for lv in range(4, level, -1):
        table = guest.read64(table + (((iova >> (12 + 9 * (lv - 1))) & 0x1FF) << 3)) & ADDR_MASK
    return table + (((iova >> (12 + 9 * (level - 1))) & 0x1FF) << 3)


def replace_level1_table(rig: Rig, iova: int) -> int:
    """Point the level-2 entry of ``iova`` at a new level-1 table whose entry for ``iova``
    maps a new page; returns that page's GPA (what a correct walk now reaches)."""
    g = rig.guest
    pde, pte = entry_addr(g, rig.gpt.root, iova, 2), entry_addr(g, rig.gpt.root, iova, 1)
    table, page = g.alloc(), g.alloc()
    g.write64(table + (pte & 0xFFF), (g.read64(pte) & ~ADDR_MASK) | page)
    g.write64(pde, (g.read64(pde) & ~ADDR_MASK) | table)
    return page


def test_a_walk_under_a_cached_table_entry_starts_below_it() -> None:
    rig = Rig()
    p = rig.bind()
    assert rig.iommu.translate(rig.dev, GVA, pasid=p).table_reads == 24
    tag = (rig.domain.data.did, p)
    psc = rig.b.caches.fl_psc
    assert {(t, level) for t, level, _ in psc} == {(tag, 2), (tag, 3), (tag, 4)}
    rig.iommu.iotlb.flush()
    hits = psc.hits
    again = rig.iommu.translate(rig.dev, GVA, pasid=p)
    assert again.table_reads == 1 + 4 + 4 and psc.hits == hits + 1
    assert again.paddr == rig.iommu.translate(rig.dev, GVA, pasid=p).paddr


@pytest.mark.parametrize("profile", ["linux-5.10", "strict"])
def test_a_replaced_table_is_used_until_an_invalidation_without_ih(profile: str) -> None:
    rig = Rig(profile=profile)
    p = rig.bind()
    old = rig.iommu.translate(rig.dev, GVA, pasid=p).paddr
    new_page = replace_level1_table(rig, GVA)
    # leaf-only: the IOTLB entry goes, the cached level-2 entry stays and still names the old
    # level-1 table
    rig.iommu.uapi_cache_invalidate(rig.domain, rig.dev, inv_addr(IOTLB, p, GVA, leaf=True))
    stale = rig.iommu.translate(rig.dev, GVA, pasid=p)
    assert (stale.paddr, stale.table_reads) == (old, 9)
    rig.iommu.uapi_cache_invalidate(rig.domain, rig.dev, inv_addr(IOTLB, p, GVA))
    fresh = rig.iommu.translate(rig.dev, GVA, pasid=p)
    assert (fresh.paddr, fresh.table_reads) == (GUEST_RAM + new_page, 24)


def test_pasid_selective_invalidation_drops_the_cached_entries() -> None:
    rig = Rig()
    p = rig.bind()
    rig.iommu.translate(rig.dev, GVA, pasid=p)
    new_page = replace_level1_table(rig, GVA)
    rig.iommu.uapi_cache_invalidate(rig.domain, rig.dev, inv_pasid(IOTLB, p))
    assert len(rig.b.caches.fl_psc) == 0
    fresh = rig.iommu.translate(rig.dev, GVA, pasid=p)
    assert (fresh.paddr, fresh.table_reads) == (GUEST_RAM + new_page, 24)


def test_host_domain_selective_flush_drops_them_too() -> None:
    """A stage-2 change may move any first-level table: the host's domain-selective IOTLB
    flush takes the first-level paging structures of the domain with it."""
    rig = Rig()
    p = rig.bind()
    rig.iommu.translate(rig.dev, GVA, pasid=p)
    assert len(rig.b.caches.fl_psc) == 3
    rig.b.run([IotlbInv(G=2, DID=rig.domain.data.did)])
    assert len(rig.b.caches.fl_psc) == 0


def test_cached_entries_are_per_pasid() -> None:
    rig = Rig()
    p, q = rig.bind(), rig.bind()
    rig.iommu.translate(rig.dev, GVA, pasid=p)
    new_page = replace_level1_table(rig, GVA)
    # q never walked: nothing cached for it, so it sees the new table at once
    assert rig.iommu.translate(rig.dev, GVA, pasid=q).paddr == GUEST_RAM + new_page
    rig.iommu.iotlb.flush()
    assert rig.iommu.translate(rig.dev, GVA, pasid=p).paddr != GUEST_RAM + new_page

"""The tagged translation cache: fills, hits, and every invalidation selector."""

from __future__ import annotations

from iommu_uapi.tlb import TLB, TLBEntry

MB2 = 2 << 20


def filled() -> TLB:
    tlb = TLB()
    tlb.fill((1, 5), 0x1000, TLBEntry(0x1000, 0x1000, 0xA000, 3))
    tlb.fill((1, 5), 0x2000, TLBEntry(0x2000, 0x1000, 0xB000, 1, global_=True))
    tlb.fill((1, 6), 0x1000, TLBEntry(0x1000, 0x1000, 0xC000, 3))
    tlb.fill((2, 5), 0x1000, TLBEntry(0x1000, 0x1000, 0xD000, 3))
    tlb.fill((1, 5), 0x20_0000 + 0x5000, TLBEntry(0x20_0000, MB2, 0x4000_0000, 3))
    return tlb


def test_lookup_counts_hits_and_misses() -> None:
    tlb = filled()
    assert tlb.lookup((1, 5), 0x1FFF) == TLBEntry(0x1000, 0x1000, 0xA000, 3)
    assert tlb.lookup((1, 5), 0x3000) is None
    assert (tlb.hits, tlb.misses) == (1, 1)
    assert tlb.hit_rate == 0.5


def test_invalidate_by_prefix_drops_every_pasid_of_a_domain() -> None:
    tlb = filled()
    assert tlb.invalidate((1,)) == 4
    assert tlb.tags() == [(2, 5)]


def test_invalidate_by_range_drops_large_pages_that_overlap() -> None:
    tlb = filled()
    # The 2 MiB page was filled under the 4 KiB page 0x205000 but covers 0x200000..0x3fffff.
    assert tlb.invalidate((1, 5), 0x3F_F000, 0x1000) == 1
    assert tlb.lookup((1, 5), 0x20_5000) is None
    assert tlb.lookup((1, 5), 0x1000) is not None


def test_non_global_invalidation_spares_global_entries() -> None:
    tlb = filled()
    assert tlb.invalidate((1, 5), include_global=False) == 2
    assert tlb.lookup((1, 5), 0x2000) is not None


def test_one_page_invalidation_of_a_prefix_drops_that_page_under_each_tag() -> None:
    tlb = filled()
    # (1, 5) also holds a 2 MiB page (its large-page index), (1, 6) only 4 KiB pages
    assert tlb.invalidate((1,), 0x1000) == 2
    assert tlb.lookup((1, 5), 0x1000) is None and tlb.lookup((1, 6), 0x1000) is None
    assert tlb.lookup((2, 5), 0x1000) is not None and len(tlb) == 3
    # a global entry survives a non-global one-page invalidation, then goes with a global one
    assert tlb.invalidate((1,), 0x2800, 0x800, include_global=False) == 0
    assert tlb.invalidate((1,), 0x2000, 1) == 1
    assert tlb.lookup((1, 5), 0x2000) is None and len(tlb) == 2
    assert tlb.invalidate((1,), 0x3F_F000) == 1  # the 2 MiB page, found by the index
    assert len(tlb) == 1 and tlb.dropped["page"] == 4


def test_capacity_evicts_oldest_first() -> None:
    tlb = TLB(capacity=2)
    for i in range(3):
        tlb.fill((0,), i << 12, TLBEntry(i << 12, 0x1000, i << 20, 1))
    assert len(tlb) == 2 and tlb.evictions == 1
    assert tlb.lookup((0,), 0) is None and tlb.lookup((0,), 0x2000) is not None


def test_flush_empties_everything() -> None:
    tlb = filled()
    assert tlb.flush() == 5 and len(tlb) == 0 and tlb.tags() == []


def test_a_bucket_is_the_live_view_of_its_tag_for_the_life_of_the_cache() -> None:
    tlb = filled()
    bucket = tlb.bucket((1, 5))
    assert bucket == {1: TLBEntry(0x1000, 0x1000, 0xA000, 3),
                      2: TLBEntry(0x2000, 0x1000, 0xB000, 1, global_=True),
                      0x205: TLBEntry(0x20_0000, MB2, 0x4000_0000, 3)}
    tlb.invalidate((1, 5), 0x1000, 0x1000)
    assert 1 not in bucket and tlb.bucket((1, 5)) is bucket
    tlb.flush()
    assert bucket == {} and tlb.bucket((1, 5)) is bucket
    tlb.fill((1, 5), 0x7000, TLBEntry(0x7000, 0x1000, 0xE000, 3))
    assert bucket[7] == TLBEntry(0x7000, 0x1000, 0xE000, 3)
    assert tlb.entries == {((1, 5), 7): TLBEntry(0x7000, 0x1000, 0xE000, 3)}
    assert tlb.bucket((9,)) == {} and tlb.tags() == [(1, 5)]


def test_capacity_counts_entries_across_tags() -> None:
    tlb = TLB(capacity=2)
    tlb.fill((0,), 0, TLBEntry(0, 0x1000, 0, 1))
    tlb.fill((1,), 0, TLBEntry(0, 0x1000, 0x1000, 1))
    tlb.fill((0,), 0, TLBEntry(0, 0x1000, 0x2000, 1))  # a refill is not a new entry
    assert tlb.evictions == 0 and len(tlb) == 2
    tlb.fill((2,), 0, TLBEntry(0, 0x1000, 0x3000, 1))
    assert tlb.evictions == 1 and tlb.lookup((0,), 0) is None and len(tlb) == 2
    tlb.invalidate((1,))
    tlb.fill((3,), 0, TLBEntry(0, 0x1000, 0x4000, 1))
    assert tlb.evictions == 1 and len(tlb) == 2


def test_whole_tag_and_prefix_invalidation_with_tags_of_mixed_lengths() -> None:
    tlb = TLB()
    tlb.fill(("sl", 1), 0x1000, TLBEntry(0x1000, 0x1000, 0xA000, 3))
    tlb.fill(("sl", 1, 7), 0x1000, TLBEntry(0x1000, 0x1000, 0xB000, 3))
    tlb.fill(("fl", 1, 5), 0x1000, TLBEntry(0x1000, 0x1000, 0xC000, 3))
    tlb.fill(("fl", 1, 5), 0x2000, TLBEntry(0x2000, 0x1000, 0xD000, 3, global_=True))
    assert tlb.invalidate(("fl", 1, 5), 0x2000, 0x1000, include_global=False) == 0
    assert tlb.invalidate(("fl", 1, 5), 0x2000, 0x1000) == 1
    assert tlb.invalidate(("fl", 1, 6)) == 0 and tlb.invalidate(("fl", 1, 5, 0)) == 0
    assert tlb.invalidate(("sl", 1)) == 2  # a shorter tag is a prefix of the longer one
    assert tlb.tags() == [("fl", 1, 5)]
    assert tlb.invalidate(("fl",), where=lambda t: t[2] == 4) == 0
    assert tlb.invalidate(("fl",), where=lambda t: t[2] == 5) == 1 and len(tlb) == 0

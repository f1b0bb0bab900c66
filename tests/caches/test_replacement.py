"""Replacement policies, checked against the textbook: a cyclic walk over K pages through an
N-entry LRU cache hits never when N < K and (T - K) of T times when N >= K; random replacement
with N < K hits sometimes; a strict ring buffer (map, one DMA, unmap) never hits, whatever N."""

from __future__ import annotations

import pytest

from iommu_uapi.caches import TLB, Geometry, TLBEntry, make_slots

TAG = (1, 0)


def cyclic_hits(tlb: TLB, k: int, t: int) -> int:
    """T accesses cycling over K pages, filling on a miss; the hits counted."""
    for i in range(t):
        iova = (i % k) << 12
        if tlb.lookup(TAG, iova) is None:
            tlb.fill(TAG, iova, TLBEntry(iova, 0x1000, iova, 3))
    return tlb.hits


@pytest.mark.parametrize("n", [1, 8, 15])
def test_lru_smaller_than_the_loop_never_hits(n: int) -> None:
    assert cyclic_hits(TLB(n, policy="lru"), 16, 200) == 0


@pytest.mark.parametrize("n", [16, 17, 64])
def test_lru_holding_the_loop_misses_once_per_page(n: int) -> None:
    assert cyclic_hits(TLB(n, policy="lru"), 16, 200) == 200 - 16


def test_fifo_smaller_than_the_loop_never_hits_either() -> None:
    assert cyclic_hits(TLB(15, policy="fifo"), 16, 200) == 0


def test_random_replacement_smaller_than_the_loop_hits_sometimes() -> None:
    hits = cyclic_hits(TLB(12, policy="random", seed=7), 16, 2000)
    assert 0 < hits < 2000 - 16


def test_random_replacement_is_reproducible_from_its_seed() -> None:
    runs = [cyclic_hits(TLB(12, policy="random", seed=s), 16, 500) for s in (3, 3)]
    assert runs[0] == runs[1]


@pytest.mark.parametrize("n", [None, 1, 4, 4096])
def test_a_strict_ring_buffer_never_hits(n: int | None) -> None:
    tlb = TLB(n, policy="lru")
    for i in range(300):
        iova = (i % 64) << 12                       # map: the slot's buffer
        assert tlb.lookup(TAG, iova) is None          # the one DMA
        tlb.fill(TAG, iova, TLBEntry(iova, 0x1000, i << 12, 3))
        tlb.invalidate(TAG, iova, 0x1000)             # unmap: the driver flushes
    assert tlb.hits == 0 and tlb.misses == 300 and len(tlb) == 0


def test_set_associative_lru_evicts_within_the_set() -> None:
    tlb = TLB(4, ways=2, policy="lru")               # 2 sets: even and odd pages
    for vpn in (0, 2, 1):
        tlb.fill(TAG, vpn << 12, TLBEntry(vpn << 12, 0x1000, 0, 3))
    tlb.fill(TAG, 4 << 12, TLBEntry(4 << 12, 0x1000, 0, 3))    # even set full: page 0 goes
    assert sorted(tlb.bucket(TAG)) == [1, 2, 4] and tlb.evictions == 1


def test_only_lru_needs_to_see_hits() -> None:
    for policy, sees in (("lru", True), ("fifo", False), ("random", False)):
        tlb = TLB(8, policy=policy)
        assert tlb.sees_hits is sees
        assert (tlb.hot_bucket(TAG) is None) is sees
    unbounded = TLB()
    assert unbounded.hot_bucket(TAG) is unbounded.bucket(TAG)


@pytest.mark.parametrize("geometry", [Geometry(0), Geometry(6, 4), Geometry(4, 2, "mru")])
def test_impossible_geometries_are_refused(geometry: Geometry) -> None:
    with pytest.raises(ValueError):
        make_slots(geometry)

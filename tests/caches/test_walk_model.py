"""The walk cache against a brute-force model, for 4 KiB, 16 KiB and 64 KiB granules: what a
level-L entry covers follows the granule and stride, lookups find the deepest cached level,
and tag-, prefix- and range-selective invalidations drop exactly the entries they reach."""

from __future__ import annotations

from typing import NamedTuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iommu_uapi.caches import Geometry, WalkCache
from iommu_uapi.caches.tags import Tag

TAGS: list[Tag] = [(1, 5), (1, 6), (2, 5), (3,)]
PREFIXES: list[Tag] = [(), (1,), (2,), (3,), (9,), *TAGS]
GRANULES = {0x1000: 9, 0x4000: 11, 0x1_0000: 13}


class Fill(NamedTuple):
    tag: Tag
    level: int
    iova: int


class Deepest(NamedTuple):
    tag: Tag
    iova: int


class Invalidate(NamedTuple):
    prefix: Tag
    addr: int | None
    size: int


Op = Fill | Deepest | Invalidate


def ops(granule: int) -> st.SearchStrategy[list[Op]]:
    span = granule << (2 * GRANULES[granule] + 2)  # a few level-3 entries' worth
    addr = st.integers(0, span)
    return st.lists(st.one_of(
        st.builds(Fill, st.sampled_from(TAGS), st.integers(1, 4), addr),
        st.builds(Deepest, st.sampled_from(TAGS), addr),
        st.builds(Invalidate, st.sampled_from(PREFIXES), st.one_of(st.none(), addr),
                  st.one_of(st.integers(1, span // 4), st.just(1 << 64)))), max_size=60)


def check(granule: int, steps: list[Op]) -> None:
    stride = GRANULES[granule]
    shift = granule.bit_length() - 1
    wc = WalkCache(granule)
    model: dict[tuple[Tag, int, int], int] = {}
    for n, op in enumerate(steps):
        if isinstance(op, Fill):
            prefix = op.iova >> (shift + stride * (op.level - 1))
            wc.fill(op.tag, op.level, op.iova, n)
            model[(op.tag, op.level, prefix)] = n
        elif isinstance(op, Deepest):
            want = next(((lv, model[(op.tag, lv, op.iova >> (shift + stride * (lv - 1)))])
                         for lv in (1, 2, 3, 4)
                         if (op.tag, lv, op.iova >> (shift + stride * (lv - 1))) in model),
                        None)
            assert wc.deepest(op.tag, op.iova, (1, 2, 3, 4)) == want
        else:
            gone = [k for k in model if k[0][:len(op.prefix)] == op.prefix and (
                op.addr is None or (k[2] << (shift + stride * (k[1] - 1)) < op.addr + op.size
                                    and (k[2] + 1) << (shift + stride * (k[1] - 1)) > op.addr))]
            for k in gone:
                del model[k]
            assert wc.invalidate(op.prefix, op.addr, op.size) == len(gone)
        assert set(wc) == set(model) and len(wc) == len(model)


@given(ops(0x1000))
def test_4k_granule_walk_cache_matches_the_model(steps: list[Op]) -> None:
    check(0x1000, steps)


@given(ops(0x4000))
def test_16k_granule_walk_cache_matches_the_model(steps: list[Op]) -> None:
    check(0x4000, steps)


@given(ops(0x1_0000))
def test_64k_granule_walk_cache_matches_the_model(steps: list[Op]) -> None:
    check(0x1_0000, steps)


@pytest.mark.parametrize(("granule", "level", "span"), [
    (0x1000, 2, 2 << 20), (0x1000, 3, 1 << 30), (0x4000, 2, 32 << 20), (0x4000, 3, 64 << 30),
    (0x1_0000, 2, 512 << 20), (0x1_0000, 3, 4 << 40)])
def test_an_entry_covers_what_its_granule_and_level_say(granule: int, level: int,
                                                        span: int) -> None:
    wc = WalkCache(granule)
    assert wc.span(level) == span
    wc.fill((0,), level, span + 5 * granule, 0xAB)
    assert wc.lookup((0,), level, span) == 0xAB
    assert wc.lookup((0,), level, 2 * span - 1) == 0xAB
    assert wc.lookup((0,), level, 2 * span) is None and wc.lookup((0,), level, span - 1) is None
    assert wc.invalidate((0,), span - granule, granule) == 0
    assert wc.invalidate((0,), 2 * span - granule, granule) == 1


def test_per_level_geometry_evicts_within_a_level_only() -> None:
    wc = WalkCache(geometry={2: Geometry(2, None, "lru")})
    for i in range(3):
        wc.fill((0,), 2, i << 21, i)
        wc.fill((0,), 3, i << 30, i)
    assert len(wc) == 5 and wc.evictions == 1
    assert wc.lookup((0,), 2, 0) is None and wc.lookup((0,), 3, 0) == 0
    wc.lookup((0,), 2, 1 << 21)                 # LRU: the hit makes entry 1 the youngest
    wc.fill((0,), 2, 3 << 21, 3)
    assert wc.lookup((0,), 2, 2 << 21) is None and wc.lookup((0,), 2, 1 << 21) == 1


def test_a_granule_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="granule"):
        WalkCache(0x3000)


@given(ops(0x1000), st.sampled_from(["lru", "fifo", "random"]))
def test_a_finite_walk_cache_holds_a_subset_of_the_unbounded_one(steps: list[Op],
                                                                policy: str) -> None:
    """Whatever the policy, a finite cache holds only what an unbounded one would, and never
    more than its geometry allows per level and per set."""
    finite = WalkCache(geometry=Geometry(4, 2, policy, seed=1))
    unbounded = WalkCache()
    for n, op in enumerate(steps):
        for wc in (finite, unbounded):
            if isinstance(op, Fill):
                wc.fill(op.tag, op.level, op.iova, n)
            elif isinstance(op, Invalidate):
                wc.invalidate(op.prefix, op.addr, op.size)
        assert set(finite) <= set(unbounded)
        for level in (1, 2, 3, 4):
            at_level = [p for _t, lv, p in finite if lv == level]
            assert len(at_level) <= 4
            assert all(sum(1 for q in at_level if q % 2 == s) <= 2 for s in (0, 1))
        if isinstance(op, Fill):
            prefix = op.iova >> (12 + 9 * (op.level - 1))
            assert (op.tag, op.level, prefix) in set(finite)     # the fill is resident


_PATHS = st.lists(st.tuples(st.integers(0, 3), st.integers(1, 1 << 20).map(lambda p: p << 12),
                            st.integers(0, 0xF)), max_size=4,
                  unique_by=lambda e: e[0]).map(sorted)  # a walk's levels, root first


@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, (1 << 48) - 1), _PATHS),
                max_size=6),
       st.sampled_from([None, Geometry(2, None, "lru"), Geometry(4, 2, "fifo", seed=1)]))
def test_fill_path_is_fill_prefixes_of_the_walkers_levels(
        walks: list[tuple[int, int, list[tuple[int, int, int]]]],
        geometry: Geometry | None) -> None:
    """A walk's path filled at once holds, counts and evicts as the same entries filled as
    ``{(4 - level, prefix): table | low}``."""
    by_path, by_prefix = WalkCache(geometry=geometry), WalkCache(geometry=geometry)
    for tag, iova, path in walks:
        by_path.fill_path((tag,), iova, path, 4)
        by_prefix.fill_prefixes((tag,), {(4 - lv, iova >> by_prefix.shifts[4 - lv]): t | low
                                         for lv, t, low in path})
        assert sorted(by_path) == sorted(by_prefix)
        assert (len(by_path), by_path.fills, by_path.evictions) \
            == (len(by_prefix), by_prefix.fills, by_prefix.evictions)
        for t, level, prefix in by_prefix:
            iova_of = prefix << by_prefix.shifts[level]
            assert by_path.lookup(t, level, iova_of) == by_prefix.lookup(t, level, iova_of)

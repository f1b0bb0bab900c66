"""The IOTLB's indices against a brute-force model: after any sequence of fills, lookups and
invalidations (page-selective, tag- and prefix-selective, non-global, by predicate, global), the
cache holds exactly the entries the model holds, and every invalidation reports the count the
model drops. Finite FIFO and LRU caches evict exactly the model's victim."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from hypothesis import given
from hypothesis import strategies as st

from iommu_uapi.caches import TLB, Geometry, TLBEntry
from iommu_uapi.caches.tags import Tag

TAGS: list[Tag] = [("fl", 1, 5), ("fl", 1, 6), ("fl", 2, 5), ("sl", 1), ("sl", 1, 7)]
PREFIXES: list[Tag] = [(), ("fl",), ("fl", 1), ("sl", 1), *TAGS, ("fl", 9)]
SIZES = [0x1000, 0x4000, 0x1_0000, 0x20_0000]
SPAN = 0x80_0000  # 8 MiB of input addresses: large pages overlap often

class Fill(NamedTuple):
    tag: Tag
    size: int
    iova: int
    global_: bool

    def entry(self) -> TLBEntry:
        base = self.iova - self.iova % self.size
        return TLBEntry(base, self.size, 0x1_0000_0000 + base, 3, self.global_)


class Lookup(NamedTuple):
    tag: Tag
    iova: int


class Invalidate(NamedTuple):
    prefix: Tag
    addr: int | None
    size: int | None
    include_global: bool
    use_where: bool


class Page(NamedTuple):
    """``invalidate_page``: the 4 KiB page holding ``iova`` under the tags ``prefix`` starts."""

    prefix: Tag
    iova: int
    include_global: bool


class Flush(NamedTuple):
    pass


Op = Fill | Lookup | Invalidate | Page | Flush

fills = st.builds(Fill, st.sampled_from(TAGS), st.sampled_from(SIZES), st.integers(0, SPAN - 1),
                  st.booleans())
lookups = st.builds(Lookup, st.sampled_from(TAGS), st.integers(0, SPAN - 1))
ranges = st.builds(Invalidate, st.sampled_from(PREFIXES), st.integers(0, SPAN),
                   st.one_of(st.integers(1, 0x40_0000), st.just(1 << 64)), st.booleans(),
                   st.booleans())
# one 4 KiB page, the range an unmap's flush names (the invalidation's one-page path), among
# the first eight pages, where 4 KiB fills of their own are frequent
near = st.builds(Fill, st.sampled_from(TAGS), st.just(0x1000), st.integers(0, 0x7FFF),
                 st.booleans())
one_page = st.builds(Invalidate, st.sampled_from(PREFIXES),
                     st.builds(lambda page, at: page << 12 | at, st.integers(0, 7),
                               st.sampled_from([0, 0x800])),
                     st.sampled_from([None, 1, 0x800]), st.booleans(), st.booleans())
whole = st.builds(Invalidate, st.sampled_from(PREFIXES), st.none(), st.none(), st.booleans(),
                  st.booleans())
pages = st.builds(Page, st.sampled_from(PREFIXES),
                  st.one_of(st.integers(0, SPAN - 1), st.integers(0, 0x7FFF)), st.booleans())
ops = st.lists(st.one_of(fills, fills, near, near, lookups, ranges, one_page, one_page, whole,
                         pages, st.builds(Flush)),
               max_size=60)


def where_of(use: bool) -> Callable[[Tag], bool] | None:
    return (lambda tag: tag[-1] == 5) if use else None


class Model:
    """Entries by (tag, vpn); with a geometry, the resident order of each set."""

    def __init__(self, geometry: Geometry | None = None) -> None:
        self.entries: dict[tuple[Tag, int], TLBEntry] = {}
        self.geometry = geometry
        self.sets: dict[int, OrderedDict[tuple[Tag, int], None]] = {}

    def _set(self, vpn: int) -> OrderedDict[tuple[Tag, int], None]:
        assert self.geometry is not None
        return self.sets.setdefault(vpn % self.geometry.sets, OrderedDict())

    def fill(self, tag: Tag, iova: int, entry: TLBEntry) -> None:
        key = (tag, iova >> 12)
        g = self.geometry
        if g is not None and g.entries is not None:
            s = self._set(iova >> 12)
            if key in s:
                if g.policy == "lru":
                    s.move_to_end(key)
            else:
                if len(s) >= g.entries // g.sets:
                    victim = s.popitem(last=False)[0]
                    del self.entries[victim]
                s[key] = None
        self.entries[key] = entry

    def lookup(self, tag: Tag, iova: int) -> TLBEntry | None:
        key = (tag, iova >> 12)
        found = self.entries.get(key)
        g = self.geometry
        if found is not None and g is not None and g.policy == "lru":
            self._set(iova >> 12).move_to_end(key)
        return found

    def invalidate(self, prefix: Tag, addr: int | None = None, size: int | None = None, *,
                   include_global: bool = True,
                   where: Callable[[Tag], bool] | None = None) -> int:
        if addr is not None and size is None:  # one 4 KiB page from addr
            size = 0x1000
        return self._drop(lambda tag: tag[:len(prefix)] == prefix and (
            where is None or where(tag)), addr, size, include_global)

    def invalidate_page(self, prefix: Tag, iova: int, *, include_global: bool = True) -> int:
        return self._drop(lambda t: t[:len(prefix)] == prefix, iova & -0x1000, 0x1000,
                          include_global)

    def _drop(self, selected: Callable[[Tag], bool], addr: int | None, size: int | None,
              include_global: bool) -> int:
        victims = []
        for (tag, vpn), e in self.entries.items():
            if not selected(tag):
                continue
            if addr is not None and size is not None and not (
                    e.iova < addr + size and e.iova + e.size > addr):
                continue
            if e.global_ and not include_global:
                continue
            victims.append((tag, vpn))
        for key in victims:
            del self.entries[key]
            if self.geometry is not None:
                self._set(key[1]).pop(key, None)
        return len(victims)

    def flush(self) -> int:
        n = len(self.entries)
        self.entries.clear()
        self.sets.clear()
        return n


def apply(cache: TLB | Model, op: Op) -> int | TLBEntry | None:
    """Run ``op`` on the cache or the model; what it returns."""
    if isinstance(op, Fill):
        cache.fill(op.tag, op.iova, op.entry())
        return None
    if isinstance(op, Lookup):
        return cache.lookup(op.tag, op.iova)
    if isinstance(op, Invalidate):
        return cache.invalidate(op.prefix, op.addr, op.size, include_global=op.include_global,
                                where=where_of(op.use_where))
    if isinstance(op, Page):
        return cache.invalidate_page(op.prefix, op.iova, include_global=op.include_global)
    return cache.flush()


def run(tlb: TLB, model: Model, steps: list[Op]) -> None:
    for op in steps:
        pages = tlb.dropped.get("page", 0)
        dropped = apply(tlb, op)
        assert dropped == apply(model, op), op
        if isinstance(op, Page):
            assert tlb.dropped.get("page", 0) == pages + dropped
        assert tlb.entries == model.entries
        assert len(tlb) == len(model.entries)


@given(ops)
def test_unbounded_iotlb_matches_the_model(steps: list[Op]) -> None:
    run(TLB(), Model(), steps)


@given(ops, st.sampled_from([Geometry(8, None, "fifo"), Geometry(8, 2, "fifo"),
                             Geometry(8, None, "lru"), Geometry(12, 4, "lru")]))
def test_finite_iotlb_evicts_the_models_victim(steps: list[Op], geometry: Geometry) -> None:
    tlb = TLB(geometry=geometry)
    run(tlb, Model(geometry), steps)
    assert len(tlb) <= (geometry.entries or 0)


@given(ops, st.integers(0, 2**32))
def test_random_replacement_keeps_every_set_within_its_ways(steps: list[Op],
                                                            seed: int) -> None:
    tlb, model = TLB(geometry=Geometry(8, 2, "random", seed)), Model()
    for op in steps:
        if isinstance(op, Lookup):
            continue  # a lookup would find entries the model (which never evicts) still has
        apply(tlb, op)
        apply(model, op)
        if isinstance(op, Fill):
            assert tlb.bucket(op.tag)[op.iova >> 12] == op.entry()   # the fill is resident
        # what the cache holds is what an unbounded cache would hold, at most 2 per set
        assert set(tlb.entries.items()) <= set(model.entries.items())
        per_set: dict[int, int] = {}
        for _tag, vpn in tlb.entries:
            per_set[vpn % 4] = per_set.get(vpn % 4, 0) + 1
        assert all(n <= 2 for n in per_set.values()) and len(tlb) <= 8

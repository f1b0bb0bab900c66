"""A walk cache (paging-structure cache): the non-leaf table entries a walk used, by level.

Levels count from the leaf: the entry cached at level ``L`` is the level-``L`` table entry that
points to a level-``L - 1`` table, and covers the input addresses sharing the prefix
``iova >> (granule_shift + stride * (L - 1))``. A 4 KiB granule has 9-bit strides (x86, VT-d,
LPAE 4K); LPAE's 16 KiB and 64 KiB granules have 11- and 13-bit strides. The cached value is
whatever the walker needs to resume below the entry (VT-d: the next table's address with the
permissions accumulated above it in the low bits).

Entries sit per tag, per level, by prefix, so a lookup is one dict access per level tried, a
tag-selective invalidation visits the tag's entries alone (tags found through a
:class:`~.tags.TagIndex`), and a range invalidation walks the range's prefixes at each level or
the level's entries, whichever are fewer. A finite cache has its own geometry per level (gem5's
SMMUv3 sizes each walk-cache level separately).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from typing import cast

from .counters import CacheCounters
from .replacement import Geometry, Slots, make_slots
from .tags import Tag, TagIndex

__all__ = ["WalkCache"]

#: Levels a walk cache may hold (LPAE's level -1 with 52-bit inputs is level 6 here).
MAX_LEVEL = 6


class WalkCache(CacheCounters):
    """Non-leaf table entries by (tag, level, address prefix), for one granule.

    ``geometry`` is one :class:`~.replacement.Geometry` for every level, or one per level
    (missing levels unbounded), or None (unbounded).
    """

    granule: int
    stride: int

    def __init__(self, granule: int = 4096, stride: int | None = None,
                 geometry: Geometry | Mapping[int, Geometry] | None = None) -> None:
        super().__init__()
        if granule & (granule - 1) or granule < 4096:
            raise ValueError(f"granule {granule:#x} is not a power of two of at least 4 KiB")
        shift = granule.bit_length() - 1
        self.granule = granule
        self.stride = shift - 3 if stride is None else stride
        #: by level: the shift of the addresses one entry of that level covers
        self.shifts = tuple(shift + self.stride * (level - 1) for level in range(MAX_LEVEL + 1))
        self._tags: dict[Tag, dict[int, dict[int, int]]] = {}
        self._index = TagIndex()
        #: the prefixes of the tags filled (a read-only view for callers): an invalidation of a
        #: prefix not in it drops nothing and may be skipped
        self.prefixes: Container[Tag] = self._index
        self._size = 0
        per_level: Mapping[int, Geometry]
        if geometry is None:
            per_level = {}
        elif isinstance(geometry, Geometry):
            per_level = dict.fromkeys(range(1, MAX_LEVEL + 1), geometry)
        else:
            per_level = geometry
        self._slots: dict[int, Slots] = {
            level: s for level, g in per_level.items() if (s := make_slots(g)) is not None}
        self.sees_hits = any(s.sees_hits for s in self._slots.values())

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[tuple[Tag, int, int]]:
        """Every entry as ``(tag, level, prefix)``."""
        for tag, levels in self._tags.items():
            for level, entries in levels.items():
                for prefix in entries:
                    yield tag, level, prefix

    def span(self, level: int) -> int:
        """The bytes of input address one level-``level`` entry covers."""
        return 1 << self.shifts[level]

    def lookup(self, tag: Tag, level: int, iova: int) -> int | None:
        """The cached entry of ``level`` covering ``iova`` under ``tag``, counting a hit or a
        miss."""
        levels = self._tags.get(tag)
        entries = None if levels is None else levels.get(level)
        prefix = iova >> self.shifts[level]
        found = None if entries is None else entries.get(prefix)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
            if self.sees_hits:
                self._touch(tag, level, prefix)
        return found

    def deepest(self, tag: Tag, iova: int, levels: Iterable[int]) -> tuple[int, int] | None:
        """The cached entry covering ``iova`` under ``tag`` at the first of ``levels`` that has
        one (give them lowest first: the deepest entry skips the most reads), as ``(level,
        value)``; one hit or one miss is counted."""
        cached = self._tags.get(tag)
        if cached:  # an emptied tag keeps an empty dict: nothing to probe
            shifts = self.shifts
            for level in levels:
                entries = cached.get(level)
                if entries is not None:
                    found = entries.get(iova >> shifts[level])
                    if found is not None:
                        self.hits += 1
                        if self.sees_hits:
                            self._touch(tag, level, iova >> shifts[level])
                        return level, found
        self.misses += 1
        return None

    def _touch(self, tag: Tag, level: int, prefix: int) -> None:
        slots = self._slots.get(level)
        if slots is not None:
            slots.touch((tag, level, prefix), prefix)

    def fill(self, tag: Tag, level: int, iova: int, value: int) -> None:
        """Cache the level-``level`` entry used to translate ``iova``."""
        levels = self._tags.get(tag)
        if levels is None:
            levels = self._tags[tag] = {}
            self._index.add(tag)
        entries = levels.get(level)
        if entries is None:
            entries = levels[level] = {}
        prefix = iova >> self.shifts[level]
        if not self._slots:  # unbounded: a store (and a count)
            if prefix not in entries:
                self._size += 1
            entries[prefix] = value
            self.fills += 1
            return
        self._fill_slot(tag, level, prefix, entries, value)

    def fill_prefixes(self, tag: Tag, entries: Mapping[tuple[int, int], int]) -> None:
        """Cache several entries of ``tag`` given as ``{(level, prefix): value}`` (one fill
        each, as :meth:`fill` of an address under ``prefix``)."""
        if not entries:
            return
        levels = self._tags.get(tag)
        if levels is None:
            levels = self._tags[tag] = {}
            self._index.add(tag)
        if self._slots:
            for (level, prefix), value in entries.items():
                at = levels.get(level)
                if at is None:
                    at = levels[level] = {}
                self._fill_slot(tag, level, prefix, at, value)
            return
        added = 0
        for (level, prefix), value in entries.items():
            at = levels.get(level)
            if at is None:
                at = levels[level] = {}
            if prefix not in at:
                added += 1
            at[prefix] = value
        self._size += added
        self.fills += len(entries)

    def fill_path(self, tag: Tag, iova: int, path: Iterable[tuple[int, int, int]],
                  top: int) -> None:
        """Cache the table entries a walk of ``iova`` used, given as the walker's ``path`` of
        ``(walker level, next table, low bits)``: the entry of walker level ``lv`` at level
        ``top - lv`` (LPAE levels count from the root: ``top`` 4), its value the next table's
        address ORed with the low bits; one fill each, as :meth:`fill_prefixes`."""
        shifts = self.shifts
        if self._slots:
            self.fill_prefixes(tag, {(top - lv, iova >> shifts[top - lv]): table | low
                                     for lv, table, low in path})
            return
        levels = self._tags.get(tag)
        if levels is None:
            levels = self._tags[tag] = {}
            self._index.add(tag)
        added = n = 0
        for lv, table, low in path:
            level = top - lv
            at = levels.get(level)
            if at is None:
                at = levels[level] = {}
            prefix = iova >> shifts[level]
            if prefix not in at:
                added += 1
            at[prefix] = table | low
            n += 1
        self._size += added
        self.fills += n

    def _fill_slot(self, tag: Tag, level: int, prefix: int, entries: dict[int, int],
                   value: int) -> None:
        """A fill of a finite cache: admission (and an eviction) or a touch."""
        if prefix not in entries:
            slots = self._slots.get(level)
            if slots is not None:
                victim = slots.admit((tag, level, prefix), prefix)
                if victim is not None:
                    vtag, vlevel, vprefix = cast("tuple[Tag, int, int]", victim)
                    del self._tags[vtag][vlevel][vprefix]
                    self._size -= 1
                    self.evictions += 1
            self._size += 1
        elif self.sees_hits:
            self._touch(tag, level, prefix)
        entries[prefix] = value
        self.fills += 1

    def invalidate(self, prefix: Tag = (), addr: int | None = None, size: int | None = None,
                   *, where: Callable[[Tag], bool] | None = None) -> int:
        """Drop the entries whose tag starts with ``prefix`` (and satisfies ``where``) and whose
        covered range overlaps ``[addr, addr + size)`` (all of them when ``addr`` is None)."""
        tags = self._index.select(prefix, where)
        if not tags:  # no tag under the prefix was ever filled: nothing to scan
            return 0
        dropped = 0
        if addr is None:
            for tag in tags:
                dropped += self._drop_tag(tag)
            kind = "global" if not prefix and where is None else "tag"
        else:
            kind = "page"
            end = addr + (size or 1 << self.shifts[1])
            if end > addr:
                by_tag = self._tags
                for tag in tags:
                    if by_tag.get(tag):  # a tag emptied before costs its lookup alone
                        dropped += self._drop_range(tag, addr, end)
        if dropped:
            counts = self.dropped
            counts[kind] = counts.get(kind, 0) + dropped
        return dropped

    def _drop_tag(self, tag: Tag) -> int:
        levels = self._tags.get(tag)
        if not levels:
            return 0
        n = 0
        for level, entries in levels.items():
            n += len(entries)
            slots = self._slots.get(level)
            if slots is not None:
                for prefix in entries:
                    slots.discard((tag, level, prefix), prefix)
        levels.clear()
        self._size -= n
        return n

    def _drop_range(self, tag: Tag, addr: int, end: int) -> int:
        levels = self._tags.get(tag)
        if not levels:
            return 0
        n = 0
        shifts, all_slots = self.shifts, self._slots
        for level, entries in levels.items():
            if not entries:
                continue
            shift = shifts[level]
            first, last = addr >> shift, (end - 1) >> shift
            if first == last:  # the range sits under one entry of this level
                if first not in entries:
                    continue
                victims = [first]
            elif last - first < len(entries):
                victims = [p for p in range(first, last + 1) if p in entries]
            else:
                victims = [p for p in entries if first <= p <= last]
            slots = all_slots.get(level) if all_slots else None
            for p in victims:
                del entries[p]
                if slots is not None:
                    slots.discard((tag, level, p), p)
            n += len(victims)
        if n:
            self._size -= n
            for level in [lv for lv, entries in levels.items() if not entries]:
                del levels[level]  # an emptied level is not visited again
        return n

    def flush(self) -> int:
        """Drop everything; returns how many entries were dropped."""
        n = self._size
        if not n:
            return 0
        for levels in self._tags.values():
            levels.clear()
        if self._slots:
            for slots in self._slots.values():
                slots.clear()
        self._size = 0
        dropped = self.dropped
        dropped["global"] = dropped.get("global", 0) + n
        return n

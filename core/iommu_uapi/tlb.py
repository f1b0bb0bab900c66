"""A tagged translation cache: the IOTLB (and a device's ATC) as the IOMMU keeps them.

Entries hold a leaf translation (input page base, page size, output page base, permissions, global
bit) under a backend-defined *tag*, a tuple such as ``(did, pasid)`` on VT-d or ``(vmid, asid)``
on SMMUv3. Each tag has a bucket keyed by ``iova >> 12``: a large page is entered under the 4 KiB
page number of the access that filled it, so a hit costs one dict lookup in the bucket the data
path already holds. Invalidation removes every
entry whose *page* overlaps the range, whatever key it sits under, and can select tags by prefix
(``(did,)`` drops every PASID of a domain) and spare global entries (VT-d's non-global PASID-based
invalidation). Hardware may invalidate more than asked, never less: the model invalidates exactly
what is asked, so a missing invalidation is visible as a stale hit.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from typing import NamedTuple

__all__ = ["TLB", "TLBEntry", "Tag"]

Tag = tuple[Hashable, ...]
_SHIFT = 12


class TLBEntry(NamedTuple):
    """One cached leaf: ``[iova, iova + size)`` -> ``[paddr, paddr + size)`` with ``perm``."""

    iova: int
    size: int
    paddr: int
    perm: int
    global_: bool = False


class TLB:
    """A translation cache with hit/miss counters and an optional capacity (FIFO replacement).

    Entries sit in one *bucket* per tag: a dict from the 4 KiB page number (``iova >> 12``) to
    :class:`TLBEntry`. :meth:`bucket` hands the data path a tag's bucket once; it then hits with
    ``bucket.get(iova >> 12)`` and bumps ``hits``/``misses`` itself. A bucket stays the same
    object for the life of the cache (invalidation and :meth:`flush` empty it in place), so a
    bucket held by the data path never goes stale. :attr:`entries` is a flat snapshot keyed by
    ``(tag, iova >> 12)``.
    """

    capacity: int | None
    hits: int
    misses: int
    fills: int
    evictions: int

    def __init__(self, capacity: int | None = None) -> None:
        if capacity is not None and capacity < 1:
            raise ValueError("capacity must be a positive number of entries or None")
        self.capacity = capacity
        self._buckets: dict[Tag, dict[int, TLBEntry]] = {}
        # fill order of every entry, kept only under a capacity (the FIFO to evict from)
        self._order: dict[tuple[Tag, int], None] = {}
        self._longest = 0  # the longest tag ever seen: a prefix this long names one bucket
        self.hits = self.misses = self.fills = self.evictions = 0

    def __len__(self) -> int:
        return sum(map(len, self._buckets.values()))

    def __iter__(self) -> Iterator[tuple[Tag, TLBEntry]]:
        for tag, bucket in self._buckets.items():
            for entry in bucket.values():
                yield tag, entry

    @property
    def entries(self) -> dict[tuple[Tag, int], TLBEntry]:
        """Every entry by ``(tag, iova >> 12)`` (a snapshot: later fills do not show)."""
        return {(tag, vpn): entry for tag, bucket in self._buckets.items()
                for vpn, entry in bucket.items()}

    def bucket(self, tag: Tag) -> dict[int, TLBEntry]:
        """The live page-number -> entry dict of ``tag`` (created empty on first use). Read it;
        change it only through :meth:`fill` and the invalidations."""
        bucket = self._buckets.get(tag)
        if bucket is None:
            bucket = self._buckets[tag] = {}
            self._longest = max(self._longest, len(tag))
        return bucket

    def lookup(self, tag: Tag, iova: int) -> TLBEntry | None:
        """The cached leaf covering ``iova`` under ``tag``, counting a hit or a miss."""
        bucket = self._buckets.get(tag)
        entry = None if bucket is None else bucket.get(iova >> _SHIFT)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def fill(self, tag: Tag, iova: int, entry: TLBEntry) -> None:
        """Cache ``entry`` (the leaf that translated ``iova``) under ``tag``."""
        vpn = iova >> _SHIFT
        bucket = self.bucket(tag)
        if self.capacity is not None:
            order = self._order
            if (tag, vpn) not in order:
                while len(order) >= self.capacity:
                    old_tag, old_vpn = next(iter(order))
                    self._remove(old_tag, old_vpn)
                    self.evictions += 1
                order[(tag, vpn)] = None
        bucket[vpn] = entry
        self.fills += 1

    def _remove(self, tag: Tag, vpn: int) -> None:
        del self._buckets[tag][vpn]
        self._order.pop((tag, vpn), None)

    def tags(self) -> list[Tag]:
        """The tags that currently have entries."""
        return [tag for tag, bucket in self._buckets.items() if bucket]

    def invalidate(
        self,
        prefix: Tag = (),
        addr: int | None = None,
        size: int | None = None,
        *,
        include_global: bool = True,
        where: Callable[[Tag], bool] | None = None,
    ) -> int:
        """Drop the entries whose tag starts with ``prefix`` (and satisfies ``where``) and whose
        page overlaps ``[addr, addr + size)`` (every address when ``addr`` is None); global entries
        survive when ``include_global`` is False. Returns how many entries were dropped."""
        if addr is None:
            addr, end = 0, -1  # every address (``end < addr`` says so to _drop)
        else:
            end = addr + (size if size is not None else 1 << _SHIFT)
        n = len(prefix)
        if n >= self._longest and where is None:  # a whole tag: its own bucket, no scan
            bucket = self._buckets.get(prefix)
            return 0 if not bucket else self._drop(prefix, bucket, addr, end, include_global)
        dropped = 0
        for tag, bucket in self._buckets.items():
            if bucket and tag[:n] == prefix and (where is None or where(tag)):
                dropped += self._drop(tag, bucket, addr, end, include_global)
        return dropped

    def _drop(self, tag: Tag, bucket: dict[int, TLBEntry], addr: int, end: int,
              include_global: bool) -> int:
        """Drop ``bucket``'s entries overlapping ``[addr, end)`` (all of them when ``end <
        addr``), sparing global ones unless ``include_global``."""
        victims = []
        everything = end < addr
        for vpn, (base, size, _, _, global_) in bucket.items():
            if (everything or (base < end and base + size > addr)) \
                    and (include_global or not global_):
                victims.append(vpn)
        for vpn in victims:
            del bucket[vpn]
        if self._order:
            for vpn in victims:
                self._order.pop((tag, vpn), None)
        return len(victims)

    def flush(self) -> int:
        """Drop everything (a global invalidation); returns how many entries were dropped."""
        dropped = len(self)
        for bucket in self._buckets.values():
            bucket.clear()
        self._order.clear()
        return dropped

    def reset_counters(self) -> None:
        """Zero the hit, miss, fill and eviction counters."""
        self.hits = self.misses = self.fills = self.evictions = 0

    @property
    def hit_rate(self) -> float:
        """hits / (hits + misses), or 0.0 before any lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

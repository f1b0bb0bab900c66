"""A tagged translation cache: the IOTLB (and a device's ATC) as the IOMMU keeps them.

Entries hold a leaf translation (input page base, page size, output page base, permissions, global
bit) under a backend-defined *tag*, a tuple such as ``(did, pasid)`` on VT-d or ``(vmid, asid)``
on SMMUv3. Lookups are by ``(tag, iova >> 12)``: a large page is entered under the 4 KiB page
number of the access that filled it, so a hit costs one dict lookup. Invalidation removes every
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

    ``entries`` maps ``(tag, iova >> 12)`` to :class:`TLBEntry`; the data path reads it directly
    (``tlb.entries.get(key)``) and bumps ``hits``/``misses``.
    """

    capacity: int | None
    hits: int
    misses: int
    fills: int
    evictions: int
    entries: dict[tuple[Tag, int], TLBEntry]

    def __init__(self, capacity: int | None = None) -> None:
        if capacity is not None and capacity < 1:
            raise ValueError("capacity must be a positive number of entries or None")
        self.capacity = capacity
        self.entries = {}
        self._by_tag: dict[Tag, set[int]] = {}
        self.hits = self.misses = self.fills = self.evictions = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[tuple[Tag, TLBEntry]]:
        for (tag, _), entry in self.entries.items():
            yield tag, entry

    def lookup(self, tag: Tag, iova: int) -> TLBEntry | None:
        """The cached leaf covering ``iova`` under ``tag``, counting a hit or a miss."""
        entry = self.entries.get((tag, iova >> _SHIFT))
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def fill(self, tag: Tag, iova: int, entry: TLBEntry) -> None:
        """Cache ``entry`` (the leaf that translated ``iova``) under ``tag``."""
        key = (tag, iova >> _SHIFT)
        if self.capacity is not None and key not in self.entries:
            while len(self.entries) >= self.capacity:
                old_tag, old_vpn = next(iter(self.entries))
                self._remove(old_tag, old_vpn)
                self.evictions += 1
        self.entries[key] = entry
        self._by_tag.setdefault(tag, set()).add(iova >> _SHIFT)
        self.fills += 1

    def _remove(self, tag: Tag, vpn: int) -> None:
        del self.entries[(tag, vpn)]
        vpns = self._by_tag[tag]
        vpns.discard(vpn)
        if not vpns:
            del self._by_tag[tag]

    def tags(self) -> list[Tag]:
        """The tags that currently have entries."""
        return list(self._by_tag)

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
        end = None if addr is None else addr + (size if size is not None else 1 << _SHIFT)
        n = len(prefix)
        dropped = 0
        for tag in [t for t in self._by_tag if t[:n] == prefix and (where is None or where(t))]:
            for vpn in list(self._by_tag[tag]):
                entry = self.entries[(tag, vpn)]
                if entry.global_ and not include_global:
                    continue
                if addr is not None and end is not None and (
                    entry.iova >= end or entry.iova + entry.size <= addr
                ):
                    continue
                self._remove(tag, vpn)
                dropped += 1
        return dropped

    def flush(self) -> int:
        """Drop everything (a global invalidation); returns how many entries were dropped."""
        dropped = len(self.entries)
        self.entries.clear()
        self._by_tag.clear()
        return dropped

    def reset_counters(self) -> None:
        """Zero the hit, miss, fill and eviction counters."""
        self.hits = self.misses = self.fills = self.evictions = 0

    @property
    def hit_rate(self) -> float:
        """hits / (hits + misses), or 0.0 before any lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

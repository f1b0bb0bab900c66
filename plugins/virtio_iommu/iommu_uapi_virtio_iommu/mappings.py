"""A domain's mappings as an interval map: disjoint ``[virt_start, virt_end]`` ranges.

Each :class:`Mapping` is the region one MAP created; UNMAP removes whole mappings only. The map
keeps the start addresses sorted, so finding the mapping that covers an address, or every mapping
that meets a range, costs a binary search plus the mappings found (the ones that meet a range
are contiguous in address order because they never overlap).
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Iterator
from typing import NamedTuple

__all__ = ["Mapping", "MappingTable"]


class Mapping(NamedTuple):
    """``[virt_start, virt_end]`` (inclusive) -> ``phys_start`` with MAP ``flags``."""

    virt_start: int
    virt_end: int
    phys_start: int
    flags: int

    @property
    def size(self) -> int:
        """Bytes covered."""
        return self.virt_end - self.virt_start + 1

    def covered_by(self, start: int, end: int) -> bool:
        """True when the whole mapping lies inside ``[start, end]``."""
        return start <= self.virt_start and self.virt_end <= end


class MappingTable:
    """Disjoint mappings, sorted by ``virt_start``. :meth:`insert` takes a mapping that overlaps
    nothing (the caller checks with :meth:`overlapping` first)."""

    __slots__ = ("_by_start", "_starts")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._by_start: dict[int, Mapping] = {}

    def __len__(self) -> int:
        return len(self._starts)

    def __iter__(self) -> Iterator[Mapping]:
        by_start = self._by_start
        return (by_start[s] for s in list(self._starts))

    def __bool__(self) -> bool:
        return bool(self._starts)

    def find(self, addr: int) -> Mapping | None:
        """The mapping covering ``addr``, or None."""
        i = bisect_right(self._starts, addr) - 1
        if i < 0:
            return None
        mapping = self._by_start[self._starts[i]]
        return mapping if addr <= mapping.virt_end else None

    def overlapping(self, start: int, end: int) -> list[Mapping]:
        """Every mapping that meets ``[start, end]`` (inclusive), in address order; empty when
        ``end < start``."""
        if end < start:
            return []
        starts, by_start = self._starts, self._by_start
        i = bisect_right(starts, end) - 1
        found: list[Mapping] = []
        while i >= 0:
            mapping = by_start[starts[i]]
            if mapping.virt_end < start:
                break
            found.append(mapping)
            i -= 1
        found.reverse()
        return found

    def insert(self, mapping: Mapping) -> None:
        """Add ``mapping`` (it must overlap no mapping of the table)."""
        assert not self.overlapping(mapping.virt_start, mapping.virt_end), mapping
        insort(self._starts, mapping.virt_start)
        self._by_start[mapping.virt_start] = mapping

    def remove(self, mapping: Mapping) -> None:
        """Remove ``mapping`` (it must be in the table)."""
        i = bisect_right(self._starts, mapping.virt_start) - 1
        assert i >= 0 and self._starts[i] == mapping.virt_start, mapping
        del self._starts[i]
        del self._by_start[mapping.virt_start]

    def clear(self) -> None:
        """Remove every mapping."""
        self._starts.clear()
        self._by_start.clear()

"""The counters every cache keeps: hits, misses, fills, evictions, and the entries each kind of
invalidation dropped."""

from __future__ import annotations

__all__ = ["CacheCounters"]


class CacheCounters:
    """Hits, misses, fills, evictions and ``dropped[kind]`` (entries removed by invalidations
    of that kind: ``"page"``, ``"tag"``, ``"global"``, ``"key"``, ``"predicate"``)."""

    hits: int
    misses: int
    fills: int
    evictions: int
    dropped: dict[str, int]

    def __init__(self) -> None:
        self.hits = self.misses = self.fills = self.evictions = 0
        self.dropped = {}

    def _count_drop(self, kind: str, n: int) -> int:
        if n:
            self.dropped[kind] = self.dropped.get(kind, 0) + n
        return n

    def reset_counters(self) -> None:
        """Zero every counter."""
        self.hits = self.misses = self.fills = self.evictions = 0
        self.dropped = {}

    @property
    def hit_rate(self) -> float:
        """hits / (hits + misses), or 0.0 before any lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

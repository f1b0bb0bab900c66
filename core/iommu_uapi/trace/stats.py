"""What a replay reports: msgspec Structs, printable as tables and JSON.

Reads per DMA are kept as exact histograms (a walk makes a few dozen reads at most), so the
mean and percentiles cost nothing per DMA and are exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ..caches import CacheCounters

__all__ = ["CacheStats", "ContextStats", "ReadStats", "ReplayStats", "cache_stats",
           "read_stats"]

#: Percentiles reported for table and configuration reads per DMA.
PERCENTILES = (50, 90, 99)


class ReadStats(msgspec.Struct, frozen=True):
    """Reads per translation: ``mean``, percentiles ``p50``/``p90``/``p99``, ``max``, and the
    ``histogram`` {reads: translations}."""

    mean: float
    p50: int
    p90: int
    p99: int
    max: int
    histogram: dict[int, int]


class CacheStats(msgspec.Struct, frozen=True):
    """One cache's counters over the replay (``dropped`` by invalidation kind)."""

    hits: int
    misses: int
    fills: int
    evictions: int
    dropped: dict[str, int]

    @property
    def hit_rate(self) -> float:
        """hits / (hits + misses), 0.0 before any lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class ContextStats(msgspec.Struct, frozen=True):
    """Per (device, PASID): translations that succeeded, those that walked, their table reads,
    and the translations that faulted."""

    translations: int
    walks: int
    table_reads: int
    faults: int = 0


class ReplayStats(msgspec.Struct, frozen=True):
    """The summary of one replay (see :func:`iommu_uapi.trace.replay`)."""

    backend: str
    cache: str
    events: int
    dmas: int
    translations: int
    faults: int
    refused: dict[str, int]
    caches: dict[str, CacheStats]
    table_reads: ReadStats
    config_reads: ReadStats
    invalidations: dict[str, int]
    contexts: dict[str, ContextStats] | None = None

    @property
    def iotlb_hit_rate(self) -> float:
        """The IOTLB's hit rate."""
        iotlb = self.caches.get("iotlb")
        return iotlb.hit_rate if iotlb is not None else 0.0


def read_stats(histogram: Sequence[int]) -> ReadStats:
    """:class:`ReadStats` of a histogram indexed by reads."""
    total = sum(histogram)
    hist = {reads: n for reads, n in enumerate(histogram) if n}
    if not total:
        return ReadStats(0.0, 0, 0, 0, 0, {})
    mean = sum(reads * n for reads, n in hist.items()) / total
    marks: list[int] = []
    for pct in PERCENTILES:
        rank = pct * total / 100
        seen = 0
        for reads, n in hist.items():
            seen += n
            if seen >= rank:
                marks.append(reads)
                break
    return ReadStats(mean, marks[0], marks[1], marks[2], max(hist), hist)


def cache_stats(cache: CacheCounters) -> CacheStats:
    """A snapshot of ``cache``'s counters."""
    return CacheStats(cache.hits, cache.misses, cache.fills, cache.evictions,
                      dict(cache.dropped))

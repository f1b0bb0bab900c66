"""Translation caches every backend builds from.

* :class:`TLB` (:mod:`.iotlb`) - the tagged IOTLB and device ATCs: leaf translations by tag and
  page;
* :class:`WalkCache` (:mod:`.walk`) - paging-structure caches for any granule and stride;
* :class:`ConfigCache` (:mod:`.config`) - configuration entries (context/PASID entries, STEs,
  CDs) by key and label, telling the core which translation contexts to forget;
* :class:`DeviceTlbs` (:mod:`.devtlb`) - the ATCs of ATS devices, invalidated with the PCIe ATS
  range encoding;
* :class:`Geometry` and the policies (:mod:`.replacement`), :data:`PRESETS` (:mod:`.presets`).

Each is unbounded by default; a :class:`Geometry` makes it finite (entries, ways, LRU, FIFO or
seeded random replacement). Every operation costs what it touches, never the size of the cache.
"""

from __future__ import annotations

from .config import ConfigCache
from .counters import CacheCounters
from .devtlb import DeviceTlbs, ats_selection
from .iotlb import TLB, TLBEntry
from .presets import PRESETS, CachePreset, preset
from .replacement import POLICIES, UNBOUNDED, Geometry, Slots, make_slots
from .tags import Tag, TagIndex
from .walk import WalkCache

__all__ = [
    "POLICIES",
    "PRESETS",
    "TLB",
    "UNBOUNDED",
    "CacheCounters",
    "CachePreset",
    "ConfigCache",
    "DeviceTlbs",
    "Geometry",
    "Slots",
    "TLBEntry",
    "Tag",
    "TagIndex",
    "WalkCache",
    "ats_selection",
    "make_slots",
    "preset",
]

"""The VT-d translation caches, tagged as the hardware tags them (VT-d 3.x 6.2, hw-formats 1.9.11).

Each cache keeps exactly what was filled until an invalidation that reaches it removes it: a
missing invalidation shows up as a stale hit, and an invalidation never leaves a matching entry.

* :class:`ContextCache` - context entries by source id; each remembers the DIDs of the PASID
  entries used through it, for domain-selective invalidation.
* :class:`PasidCache` - PASID entries looked up by (SID, PASID), invalidated by the DID and PASID
  the cached entry carries. Hardware tags PASID-cache entries by DID+PASID; the lookup key adds
  the SID because two devices may hold different entries for the same PASID value (each device
  has its own PASID directory), and a (DID, PASID) key could return the other device's entry.
* :class:`PagingStructureCache` - non-leaf paging entries by (tag, level, address prefix): the
  first-level one tagged (DID, PASID), the second-level one tagged (DID,).
* the IOTLB - :class:`iommu_uapi.tlb.TLB` with tags ``("fl", did, pasid)`` for first-level-only
  and nested translations (PGTT 1, 3) and ``("sl", did, pasid)`` for second-level-only and
  pass-through translations (PGTT 2, 4; ``pasid`` = RID_PASID for requests without PASID). The
  kind comes first so that PASID-based invalidation (type 6) selects ``("fl", did, pasid)`` and
  never touches ``"sl"`` entries, while a DID invalidation (type 2) drops the prefixes
  ``("fl", did)`` and ``("sl", did)``.
* :class:`DeviceTlbs` - one :class:`~iommu_uapi.tlb.TLB` per ATS-enabled device (its ATC), tags
  ``(sid, pasid)`` with ``pasid = None`` for translations requested without PASID.

Under caching mode (CAP.CM = 1) the context and PASID caches also keep *not-present* results, so
software that makes an entry present without invalidating sees the stale fault.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import NamedTuple

from iommu_uapi.caches import PRESETS, CachePreset, ConfigCache, Geometry, WalkCache
from iommu_uapi.caches import DeviceTlbs as CoreDeviceTlbs
from iommu_uapi.tlb import TLB

from .context_entry import ContextEntry
from .pasid_entry import PasidEntry, Pgtt

__all__ = [
    "ContextCache",
    "DeviceTlbs",
    "PagingStructureCache",
    "PasidCache",
    "VtdCaches",
    "iotlb_tag",
]

#: The IOTLB tag kind of each translation type.
IOTLB_KIND: dict[int, str] = {
    Pgtt.FIRST_LEVEL: "fl",
    Pgtt.NESTED: "fl",
    Pgtt.SECOND_LEVEL: "sl",
    Pgtt.PASS_THROUGH: "sl",
}

#: Function-mask values of device-selective context invalidation: SID bits ignored.
FUNCTION_MASK_IGNORED = {0: 0b000, 1: 0b100, 2: 0b110, 3: 0b111}


def iotlb_tag(pgtt: int, did: int, pasid: int) -> tuple[str, int, int]:
    """The IOTLB tag of a translation made through a PASID entry of type ``pgtt``."""
    return (IOTLB_KIND[pgtt], did, pasid)


class CachedContext(NamedTuple):
    """A context-cache entry: the entry (None: cached not-present under CM) and the DIDs seen."""

    entry: ContextEntry | None
    dids: frozenset[int]


#: The label of cached not-present entries (CM = 1), which every invalidation drops.
_NOT_PRESENT = ("np",)


class ContextCache(ConfigCache[int, CachedContext]):
    """Context entries by source id, labelled with the DIDs of the PASID entries used through
    them (domain-selective invalidation visits those alone)."""

    def __init__(self, geometry: Geometry | None = None,
                 on_drop: Callable[[list[int]], None] | None = None,
                 on_flush: Callable[[], None] | None = None) -> None:
        super().__init__(geometry, on_drop, on_flush)

    def fill(self, sid: int, entry: ContextEntry | None,  # type: ignore[override]
             labels: Iterable[Hashable] = ()) -> None:
        """Cache ``entry`` (None: a not-present entry, cached only in caching mode)."""
        super().fill(sid, CachedContext(entry, frozenset()),
                     (*labels, _NOT_PRESENT) if entry is None else labels)

    def note_did(self, sid: int, did: int) -> None:
        """Remember that a translation through ``sid``'s context used domain ``did``."""
        cached = self.entries.get(sid)
        if cached is not None and did not in cached.dids:
            self.update(sid, CachedContext(cached.entry, cached.dids | {did}))
            self.label(sid, ("did", did))

    def invalidate_global(self) -> int:
        """Drop every entry."""
        return self.flush()

    def invalidate_domain(self, did: int) -> int:
        """Drop the entries used with domain ``did`` (and cached not-present entries)."""
        return self.drop_label(("did", did), _NOT_PRESENT)

    def invalidate_device(self, sid: int, fm: int) -> int:
        """Drop the entries of ``sid``, ignoring the SID bits function mask ``fm`` names (the
        up to eight source ids it covers)."""
        ignored = FUNCTION_MASK_IGNORED[fm]
        base = sid & ~ignored & 0xFFFF
        return self.drop(*(base | low for low in range(ignored + 1) if low & ~ignored == 0))


class CachedPasid(NamedTuple):
    """A PASID-cache entry: the entry (None: cached not-present under CM), and whether the
    directory entry above it had FPD set."""

    entry: PasidEntry | None
    dir_fpd: bool

    @property
    def did(self) -> int | None:
        """The DID the entry is tagged with (None for a cached not-present entry)."""
        return None if self.entry is None else self.entry.DID


class PasidCache(ConfigCache[tuple[int, int], CachedPasid]):
    """PASID entries looked up by (SID, PASID), invalidated by their DID and PASID (labels
    ``("did", did)`` and ``("pasid", did, pasid)``; not-present entries ``("np",)`` and
    ``("np", pasid)``)."""

    def __init__(self, geometry: Geometry | None = None,
                 on_drop: Callable[[list[tuple[int, int]]], None] | None = None,
                 on_flush: Callable[[], None] | None = None) -> None:
        super().__init__(geometry, on_drop, on_flush)

    def lookup(self, sid: int, pasid: int) -> CachedPasid | None:  # type: ignore[override]
        """The cached PASID entry of (sid, pasid), counting a hit or a miss."""
        return super().lookup((sid, pasid))

    def fill(self, sid: int, pasid: int, entry: PasidEntry | None,  # type: ignore[override]
             dir_fpd: bool) -> None:
        """Cache the PASID entry of (sid, pasid)."""
        labels = (_NOT_PRESENT, ("np", pasid)) if entry is None else (
            ("did", entry.DID), ("pasid", entry.DID, pasid))
        super().fill((sid, pasid), CachedPasid(entry, dir_fpd), labels)

    def invalidate_global(self) -> int:
        """Drop every entry."""
        return self.flush()

    def invalidate_domain(self, did: int) -> int:
        """Drop the entries tagged ``did`` (and cached not-present entries, which carry none)."""
        return self.drop_label(("did", did), _NOT_PRESENT)

    def invalidate_pasid(self, did: int, pasid: int) -> int:
        """Drop the entries of ``pasid`` tagged ``did`` (and cached not-present ones)."""
        return self.drop_label(("pasid", did, pasid), ("np", pasid))


class PagingStructureCache(WalkCache):
    """Non-leaf paging entries by (tag, level, address prefix): 4 KiB granule, 9-bit strides.

    An entry cached at ``level`` (2..5) covers the input addresses that share its prefix
    ``iova >> (12 + 9 * (level - 1))``; ``value`` is what the walk needs from it (the next
    table's address and the permissions accumulated so far).
    """

    def __init__(self, geometry: Geometry | Mapping[int, Geometry] | None = None) -> None:
        super().__init__(4096, 9, geometry)


class DeviceTlbs(CoreDeviceTlbs):
    """The address-translation caches of the ATS-enabled devices, by source id; each ATC tags
    its entries ``(sid, pasid)``."""


class VtdCaches:
    """Every cache of one IOMMU (plus the device ATCs behind it); ``preset`` gives their
    geometries (the configuration one for the context and PASID caches, the stage-1 and stage-2
    walk caches for the first- and second-level paging-structure caches), unbounded by
    default."""

    context: ContextCache
    pasid: PasidCache
    fl_psc: PagingStructureCache
    sl_psc: PagingStructureCache
    iotlb: TLB
    devtlb: DeviceTlbs

    def __init__(self, iotlb_capacity: int | None = None, *,
                 preset: CachePreset | None = None) -> None:
        p = PRESETS["unbounded"] if preset is None else preset
        self.context = ContextCache(p.config)
        self.pasid = PasidCache(p.config)
        self.fl_psc = PagingStructureCache(p.walk_s1)
        self.sl_psc = PagingStructureCache(p.walk_s2)
        self.iotlb = TLB(iotlb_capacity) if iotlb_capacity is not None else TLB(
            geometry=p.iotlb)
        self.devtlb = DeviceTlbs(p.devtlb)

    def counters(self) -> dict[str, tuple[int, int]]:
        """(hits, misses) of every cache, by name."""
        return {
            "context": (self.context.hits, self.context.misses),
            "pasid": (self.pasid.hits, self.pasid.misses),
            "fl_psc": (self.fl_psc.hits, self.fl_psc.misses),
            "sl_psc": (self.sl_psc.hits, self.sl_psc.misses),
            "iotlb": (self.iotlb.hits, self.iotlb.misses),
            "devtlb": (self.devtlb.hits, self.devtlb.misses),
        }

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

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import NamedTuple

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

_LEVEL_BITS = 9
_PAGE_SHIFT = 12


def iotlb_tag(pgtt: int, did: int, pasid: int) -> tuple[str, int, int]:
    """The IOTLB tag of a translation made through a PASID entry of type ``pgtt``."""
    return (IOTLB_KIND[pgtt], did, pasid)


class _Counted:
    hits: int
    misses: int

    def __init__(self) -> None:
        self.hits = self.misses = 0

    def reset_counters(self) -> None:
        """Zero the hit and miss counters."""
        self.hits = self.misses = 0


class CachedContext(NamedTuple):
    """A context-cache entry: the entry (None: cached not-present under CM) and the DIDs seen."""

    entry: ContextEntry | None
    dids: frozenset[int]


class ContextCache(_Counted):
    """Context entries by source id."""

    entries: dict[int, CachedContext]

    def __init__(self) -> None:
        super().__init__()
        self.entries = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, sid: int) -> bool:
        return sid in self.entries

    def lookup(self, sid: int) -> CachedContext | None:
        """The cached context of ``sid``, counting a hit or a miss."""
        found = self.entries.get(sid)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def fill(self, sid: int, entry: ContextEntry | None) -> None:
        """Cache ``entry`` (None: a not-present entry, cached only in caching mode)."""
        self.entries[sid] = CachedContext(entry, frozenset())

    def note_did(self, sid: int, did: int) -> None:
        """Remember that a translation through ``sid``'s context used domain ``did``."""
        cached = self.entries.get(sid)
        if cached is not None and did not in cached.dids:
            self.entries[sid] = CachedContext(cached.entry, cached.dids | {did})

    def _drop(self, match: Callable[[int, CachedContext], bool]) -> int:
        gone = [sid for sid, c in self.entries.items() if match(sid, c)]
        for sid in gone:
            del self.entries[sid]
        return len(gone)

    def invalidate_global(self) -> int:
        """Drop every entry."""
        return self._drop(lambda sid, c: True)

    def invalidate_domain(self, did: int) -> int:
        """Drop the entries used with domain ``did`` (and cached not-present entries)."""
        return self._drop(lambda sid, c: c.entry is None or did in c.dids)

    def invalidate_device(self, sid: int, fm: int) -> int:
        """Drop the entries of ``sid``, ignoring the SID bits function mask ``fm`` names."""
        keep = ~FUNCTION_MASK_IGNORED[fm] & 0xFFFF
        return self._drop(lambda s, c: s & keep == sid & keep)


class CachedPasid(NamedTuple):
    """A PASID-cache entry: the entry (None: cached not-present under CM), and whether the
    directory entry above it had FPD set."""

    entry: PasidEntry | None
    dir_fpd: bool

    @property
    def did(self) -> int | None:
        """The DID the entry is tagged with (None for a cached not-present entry)."""
        return None if self.entry is None else self.entry.DID


class PasidCache(_Counted):
    """PASID entries looked up by (SID, PASID), invalidated by their DID and PASID."""

    entries: dict[tuple[int, int], CachedPasid]

    def __init__(self) -> None:
        super().__init__()
        self.entries = {}

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, sid: int, pasid: int) -> CachedPasid | None:
        """The cached PASID entry of (sid, pasid), counting a hit or a miss."""
        found = self.entries.get((sid, pasid))
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def fill(self, sid: int, pasid: int, entry: PasidEntry | None, dir_fpd: bool) -> None:
        """Cache the PASID entry of (sid, pasid)."""
        self.entries[(sid, pasid)] = CachedPasid(entry, dir_fpd)

    def _drop(self, match: Callable[[tuple[int, int], CachedPasid], bool]) -> int:
        gone = [key for key, c in self.entries.items() if match(key, c)]
        for key in gone:
            del self.entries[key]
        return len(gone)

    def invalidate_global(self) -> int:
        """Drop every entry."""
        return self._drop(lambda key, c: True)

    def invalidate_domain(self, did: int) -> int:
        """Drop the entries tagged ``did`` (and cached not-present entries, which carry none)."""
        return self._drop(lambda key, c: c.did is None or c.did == did)

    def invalidate_pasid(self, did: int, pasid: int) -> int:
        """Drop the entries of ``pasid`` tagged ``did`` (and cached not-present ones)."""
        return self._drop(lambda key, c: key[1] == pasid and c.did in (None, did))


class PagingStructureCache(_Counted):
    """Non-leaf paging entries by (tag, level, address prefix).

    An entry cached at ``level`` (2..5) covers the input addresses that share its prefix
    ``iova >> (12 + 9 * (level - 1))``; ``value`` is what the walk needs from it (the next
    table's address and the permissions accumulated so far).
    """

    entries: dict[tuple[tuple[Hashable, ...], int, int], int]

    def __init__(self) -> None:
        super().__init__()
        self.entries = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[tuple[tuple[Hashable, ...], int, int]]:
        return iter(self.entries)

    @staticmethod
    def _shift(level: int) -> int:
        return _PAGE_SHIFT + _LEVEL_BITS * (level - 1)

    def lookup(self, tag: tuple[Hashable, ...], level: int, iova: int) -> int | None:
        """The cached entry of ``level`` covering ``iova`` under ``tag``."""
        found = self.entries.get((tag, level, iova >> self._shift(level)))
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def deepest(self, tag: tuple[Hashable, ...], iova: int,
                levels: Iterable[int]) -> tuple[int, int] | None:
        """The cached entry covering ``iova`` under ``tag`` at the first of ``levels`` that has
        one (give them lowest first: the deepest entry skips the most reads), as ``(level,
        value)``; one hit or one miss is counted."""
        entries = self.entries
        for level in levels:
            found = entries.get((tag, level, iova >> self._shift(level)))
            if found is not None:
                self.hits += 1
                return level, found
        self.misses += 1
        return None

    def fill(self, tag: tuple[Hashable, ...], level: int, iova: int, value: int) -> None:
        """Cache the level-``level`` entry used to translate ``iova``."""
        self.entries[(tag, level, iova >> self._shift(level))] = value

    def invalidate(self, prefix: tuple[Hashable, ...] = (), addr: int | None = None,
                   size: int | None = None) -> int:
        """Drop the entries whose tag starts with ``prefix`` and whose covered range overlaps
        ``[addr, addr + size)`` (all of them when ``addr`` is None)."""
        n = len(prefix)
        gone = []
        for key in self.entries:
            tag, level, pfx = key
            if tag[:n] != prefix:
                continue
            if addr is not None:
                shift = self._shift(level)
                start = pfx << shift
                if start >= addr + (size or 1 << _PAGE_SHIFT) or start + (1 << shift) <= addr:
                    continue
            gone.append(key)
        for key in gone:
            del self.entries[key]
        return len(gone)


class DeviceTlbs:
    """The address-translation caches of the ATS-enabled devices, by source id."""

    tlbs: dict[int, TLB]

    def __init__(self) -> None:
        self.tlbs = {}

    def enable(self, sid: int, capacity: int | None = None) -> TLB:
        """Give device ``sid`` an ATC (ATS enabled); returns it."""
        return self.tlbs.setdefault(sid, TLB(capacity))

    def get(self, sid: int) -> TLB | None:
        """The ATC of ``sid``, or None when the device has no ATS."""
        return self.tlbs.get(sid)

    def invalidate(self, sid: int, prefix: tuple[Hashable, ...], addr: int, size: int) -> int:
        """Drop ``sid``'s ATC entries under ``prefix`` overlapping ``[addr, addr + size)``."""
        tlb = self.tlbs.get(sid)
        return 0 if tlb is None else tlb.invalidate(prefix, addr, size)

    @property
    def hits(self) -> int:
        """Hits over every device's ATC."""
        return sum(t.hits for t in self.tlbs.values())

    @property
    def misses(self) -> int:
        """Misses over every device's ATC."""
        return sum(t.misses for t in self.tlbs.values())


class VtdCaches:
    """Every cache of one IOMMU (plus the device ATCs behind it)."""

    context: ContextCache
    pasid: PasidCache
    fl_psc: PagingStructureCache
    sl_psc: PagingStructureCache
    iotlb: TLB
    devtlb: DeviceTlbs

    def __init__(self, iotlb_capacity: int | None = None) -> None:
        self.context = ContextCache()
        self.pasid = PasidCache()
        self.fl_psc = PagingStructureCache()
        self.sl_psc = PagingStructureCache()
        self.iotlb = TLB(iotlb_capacity)
        self.devtlb = DeviceTlbs()

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

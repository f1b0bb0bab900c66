"""The SMMU's walk caches: the table descriptors its walks used, per stage and granule.

Stage-1 entries are tagged ``(VMID, ASID)`` and held under the VA in the form the TLB keeps it
(:meth:`~.config.Stage1.tlb_key`, so the TTB1 half never aliases TTB0); the value is the next
table's address (an IPA when nested) with the hierarchical controls of the descriptors above it
(PXNTable, UXNTable, APTable) in bits 3:0. Stage-2 entries are tagged ``(VMID,)`` and held under
the IPA; the value is the next table's PA. A walk starts below the deepest entry covering its
input (one lookup per stage and walk) and its ``reads`` count only the descriptors read. The
table descriptors a translation read are cached when it completes (a faulting one caches
nothing): the stage-2 walks of one nested translation do not hit in each other's entries, so a
cold nested miss on 4 KiB tables, 4 levels each stage, reads 24 descriptors. Walk-cache level
``L`` holds LPAE level ``4 - L`` table descriptors (level 2 -> 2, level 0 -> 4, level -1 -> 5).

What drops them (hw-formats 2.6.2): TLBI_NH_VA / NH_VAA / EL2_VA / EL2_VAA with Leaf = 0 the
stage-1 entries covering the address (Leaf = 1 keeps them, as the architecture permits, so a
table changed under a leaf-only invalidation stays in use); TLBI_NH_ASID, NH_ALL, EL2_ASID,
EL2_ALL the stage-1 entries of the tag; TLBI_S2_IPA with Leaf = 0 the stage-2 entries over the
IPA; TLBI_S12_VMALL both stages of the VMID; TLBI_NSNH_ALL every non-hyp entry. CFGI_* do not
touch them. A walk that updates Access flags (CD.HA, STE.S2HA) goes the full way uncached.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from iommu_uapi.caches import Tag, WalkCache
from iommu_uapi.memory import ZERO_QUADS
from iommu_uapi.pgtable.common import Stage2Translate, WalkResult
from iommu_uapi.pgtable.lpae import LPAEWalker
from iommu_uapi.pgtable.lpae.walker import UNBOUND
from iommu_uapi.uapi.consts import FaultPerm

from .iotlb import EL2

__all__ = ["CachedStage2", "SmmuWalkCaches", "table_levels"]

_PAGE_BASE = -4096
_READ = int(FaultPerm.READ)
#: the low bits of a stage-1 value holding the inherited controls (tables are 4 KiB aligned)
_CONTROLS = 0xF
#: A stage-2 walker's compiled walk into a translation's pending fills (``into_walk``)
_Into = Callable[[int, int, dict[tuple[int, int], int]], tuple[WalkResult, int] | None]


def table_levels(walker: LPAEWalker) -> tuple[int, ...]:
    """The walk-cache levels of ``walker``'s table descriptors, lowest (deepest) first."""
    return _TABLE_LEVELS[walker.walk_levels[0]]


#: by the LPAE level a walk starts at (-1..3), the walk-cache levels of its table descriptors
#: (LPAE levels start..2), lowest first
_TABLE_LEVELS = {start: tuple(4 - lv for lv in range(2, start - 1, -1)) for start in range(-1, 4)}


def _non_hyp(tag: Tag) -> bool:
    return tag[0] != EL2


class CachedStage2:
    """``s2(ipa, access)`` over the stage-2 tables at ``root`` through ``cache`` under
    ``(VMID,)``: a drop-in for the plain stage-2 translate function."""

    __slots__ = ("_deep", "_get", "_into", "_keys", "_leaf", "_leaf_level", "_leaf_plan",
                 "_levels", "_nested", "_pending", "_seen", "_seen_shift", "_start", "cache",
                 "owner", "root", "tag", "walker")

    def __init__(self, owner: SmmuWalkCaches, walker: LPAEWalker, root: int,
                 cache: WalkCache, vmid: int) -> None:
        self.owner = owner
        self.walker = walker
        self.root = root
        self.cache = cache
        self.tag: Tag = (vmid,)
        self._levels = table_levels(walker)
        self._start = walker.walk_levels[0]
        #: the shift of the inputs sharing one last-level table (None: a one-level walk)
        self._deep = cache.shifts[self._levels[0]] if self._levels else None
        self._leaf_level = walker.walk_levels[-1]
        self._leaf = walker.walk_leaf
        # what the seen path reads a last-level descriptor with inline (as walk_leaf does)
        self._leaf_plan, self._get = walker.leaf_reader()
        # the prefix the walks of one translation share a last-level table under (None: they
        # do not use the seen path: a one-level walk, or a cache whose policy sees each hit)
        self._seen_shift = None if cache.sees_hits else self._deep
        self._seen = owner.seen  # cleared after each translation, never replaced
        self._pending = owner._pending  # likewise
        #: per LPAE level of a table descriptor, its walk-cache level and prefix shift
        self._keys = {4 - lv: (lv, cache.shifts[lv]) for lv in self._levels}
        #: per start level and access, the walker's compiled walk storing into the pending
        #: fills under these keys (``walk_into``), bound on first use (UNBOUND until then)
        self._into: Mapping[int, Mapping[int, _Into]] = UNBOUND
        self._nested: Stage2Translate | None = None  # bind_nested's, on first use

    def __call__(self, ipa: int, access: int) -> WalkResult:
        """Translate ``ipa``: from the deepest cached table descriptor covering it, else from
        S2TTB; the table descriptors read are cached when the translation completes (at once
        for a stage-2-only one)."""
        if self.owner.pending is None:
            return self._walk(ipa, access, None)
        return self.nested(ipa, access)

    def nested(self, ipa: int, access: int) -> WalkResult:
        """What :meth:`__call__` does while a nested translation is under way (the stage-2
        translate function :meth:`SmmuWalkCaches.walk_stage1` hands the stage-1 walker)."""
        shift = self._seen_shift
        seen = None if shift is None else self._seen.get(ipa >> shift)
        if seen is None:
            return self._walk(ipa, access, self._pending)
        # An earlier stage-2 walk of this translation went through the same last-level table:
        # the descriptors above it are the ones it read (the tables do not change within one
        # translation, nor do the walk caches: their fills wait for its end), so this walk
        # looks up, starts and reads as that one did, and only the leaf is read here again.
        table, above, hit = seen
        if hit:
            self.cache.hits += 1
        else:
            self.cache.misses += 1
        return self._seen_leaf(table, ipa, access, above)

    def _seen_leaf(self, table: int, ipa: int, access: int, above: int) -> WalkResult:
        """The seen path's walk of the last level (``walk_leaf``), its common case inline
        (its input and table checks hold already: the earlier walk took an input with the same
        prefix, and the table from a descriptor)."""
        step = self._leaf_plan.get(access)
        if step is not None:
            shift, imask, lmask, lwant, oa_mask, offset, size, xn_shift, rwx, perm_of, _ = step
            ptr = table + (((ipa >> shift) & imask) << 3)
            desc = self._get(ptr & _PAGE_BASE, ZERO_QUADS)[(ptr >> 3) & 0x1FF]
            if desc & lmask == lwant:
                perm = perm_of[((desc >> 6) & 3) | ((desc >> xn_shift) & 0xC)]
                if perm & rwx == rwx:
                    return WalkResult((desc & oa_mask) | (ipa & offset), size, perm, 3,
                                      above + 1, 0, False)
        return self._leaf(table, ipa, access, above)

    def bind_nested(self) -> Stage2Translate:
        """:meth:`nested` as a closure over what it reads, the last-level step of a read (the
        access of every stage-1 descriptor fetch) unpacked into it: what
        :meth:`SmmuWalkCaches.walk_stage1` hands the stage-1 walker. Built on first use, kept."""
        shift = self._seen_shift
        read = self._leaf_plan.get(_READ)
        if shift is None or read is None:
            fast: Stage2Translate = self.nested
            self._nested = fast
            return fast
        seen_get, walk, pending, cache = self._seen.get, self._walk, self._pending, self.cache
        get, seen_leaf = self._get, self._seen_leaf
        r_shift, r_imask, r_lmask, r_lwant, r_oa, r_offset, r_size, r_xn, _, r_perm, _ = read
        paged = r_imask == 0x1FF

        def nested(ipa: int, access: int) -> WalkResult:
            seen = seen_get(ipa >> shift)
            if seen is None:
                return walk(ipa, access, pending)
            table, above, hit = seen
            if hit:
                cache.hits += 1
            else:
                cache.misses += 1
            if access == _READ:  # seen_leaf's common case for a read, its step unpacked
                if paged:  # a 4 KiB table (from a descriptor: aligned) is one page
                    desc = get(table, ZERO_QUADS)[(ipa >> r_shift) & 0x1FF]
                else:
                    ptr = table + (((ipa >> r_shift) & r_imask) << 3)
                    desc = get(ptr & _PAGE_BASE, ZERO_QUADS)[(ptr >> 3) & 0x1FF]
                if desc & r_lmask == r_lwant:
                    perm = r_perm[((desc >> 6) & 3) | ((desc >> r_xn) & 0xC)]
                    if perm & _READ:
                        return WalkResult((desc & r_oa) | (ipa & r_offset), r_size, perm, 3,
                                          above + 1, 0, False)
            return seen_leaf(table, ipa, access, above)

        self._nested = nested
        return nested

    def _walk(self, ipa: int, access: int,
              pending: dict[tuple[int, int], int] | None) -> WalkResult:
        cache, tag = self.cache, self.tag
        hit = cache.deepest(tag, ipa, self._levels)
        if hit is None:
            table, level = self.root, self._start
        else:
            table, level = hit[1], 5 - hit[0]
        last, deep = self._leaf_level, self._deep
        if pending is not None:
            into = self._into[level].get(access)
            if into is None:
                into = self._bind_into(level, access)
            fast = into(table, ipa, pending)
            if fast is not None:  # the common case: the table descriptors already pending
                res, leaf_table = fast
                if deep is not None and res.level == last and (level < last or hit is not None):
                    self._seen[ipa >> deep] = (leaf_table, last - level, hit is not None)
                return res
        path: list[tuple[int, int, int]] = []
        res = self.walker.walk_partial(table, level, ipa, access, None, path=path)
        if pending is None:
            if path:
                cache.fill_path(tag, ipa, path, 4)
            return res
        if path:  # one entry per (level, prefix): the walks of a translation share tables
            keys = self._keys
            for lv, next_table, _ in path:
                wl, shift = keys[lv]
                pending[(wl, ipa >> shift)] = next_table
            if deep is not None and path[-1][0] == last - 1:
                self._seen[ipa >> deep] = (path[-1][1], last - level, hit is not None)
        elif deep is not None and level == last and hit is not None:
            self._seen[ipa >> deep] = (table, 0, True)
        return res

    def _bind_into(self, level: int, access: int) -> _Into:
        """The walker's compiled ``walk_into`` of ``access`` from ``level`` under this cache's
        keys, kept for the next walk (an access outside 0..15 is not kept)."""
        into = self.walker.into_walk(level, access, self._keys)
        if 0 <= access < 16:
            if self._into is UNBOUND:
                self._into = {lv: {} for lv in self.walker.walk_levels}
            self._into[level][access] = into  # type: ignore[index]
        return into

    def fill_pending(self, pending: dict[tuple[int, int], int]) -> None:
        """Cache the table descriptors the stage-2 walks of a nested translation read."""
        self.cache.fill_prefixes(self.tag, pending)


class SmmuWalkCaches:
    """The stage-1 and stage-2 walk caches of one SMMU, one :class:`WalkCache` per granule
    and stage, and the TLBI semantics on them."""

    def __init__(self) -> None:
        #: stage-1 walk caches by granule, tagged (VMID, ASID)
        self.s1: dict[int, WalkCache] = {}
        #: stage-2 walk caches by granule, tagged (VMID,)
        self.s2: dict[int, WalkCache] = {}
        self._all: list[WalkCache] = []  # the caches of both, as flush visits them
        #: the stage-2 table descriptors read by the nested translation under way, by
        #: (walk-cache level, prefix) (None: no nested translation under way)
        self.pending: dict[tuple[int, int], int] | None = None
        self._pending: dict[tuple[int, int], int] = {}  # the one pending is, reused
        #: by the inputs' prefix under one last-level stage-2 table, the first stage-2
        #: walk of the nested translation under way through it: (the table, the descriptors
        #: read above it, whether its lookup hit)
        self.seen: dict[int, tuple[int, int, bool]] = {}

    def _cache(self, caches: dict[int, WalkCache], granule: int) -> WalkCache:
        cache = caches.get(granule)
        if cache is None:
            cache = caches[granule] = WalkCache(granule)
            self._all.append(cache)
        return cache

    def stage2(self, walker: LPAEWalker, root: int, vmid: int) -> Stage2Translate:
        """The cached stage-2 translate function of the tables at ``root`` for ``vmid``."""
        return CachedStage2(self, walker, root, self._cache(self.s2, walker.cfg.granule), vmid)

    def walk_stage1(self, walker: LPAEWalker, root: int, tag: Tag, key: int, va: int,
                    access: int, s2: Stage2Translate | None) -> WalkResult:
        """Walk ``va`` (the walker's input; ``key`` the VA the cache holds it under) from the
        deepest cached stage-1 table descriptor of ``tag`` covering ``key``, else from
        ``root``; the descriptors read at both stages are cached once it completes."""
        granule = walker.cfg.granule
        cache = self.s1.get(granule)
        if cache is None:
            cache = self._cache(self.s1, granule)
        start = walker.walk_levels[0]
        hit = cache.deepest(tag, key, _TABLE_LEVELS[start])
        if hit is None:
            table, level, inherited = root, start, 0
        else:
            value = hit[1]
            table, level, inherited = value & ~_CONTROLS, 5 - hit[0], value & _CONTROLS
        path: list[tuple[int, int, int]] = []
        if s2 is None:
            res = walker.walk_partial(table, level, va, access, None, inherited=inherited,
                                      path=path)
            if path:
                cache.fill_path(tag, key, path, 4)
            return res
        pending = self.pending = self._pending
        nested = ((s2._nested or s2.bind_nested())
                  if s2.__class__ is CachedStage2 else s2)
        try:
            res = walker.walk_partial(table, level, va, access, nested, inherited=inherited,
                                      path=path)
        except BaseException:
            pending.clear()  # a faulting translation caches nothing
            raise
        finally:
            self.pending = None
            self.seen.clear()
        if path:
            cache.fill_path(tag, key, path, 4)
        if pending:  # only a CachedStage2 records into it
            s2c: CachedStage2 = s2  # type: ignore[assignment]
            s2c.cache.fill_prefixes(s2c.tag, pending)
            pending.clear()
        return res

    # -- invalidation (TLBI_*) ----------------------------------------------------------------

    def stage1(self, prefix: Tag, addr: int | None = None, size: int | None = None) -> int:
        """Drop the stage-1 entries whose tag starts with ``prefix`` (covering
        ``[addr, addr + size)`` when ``addr`` is given)."""
        n = 0
        for c in self.s1.values():
            if len(c):
                n += c.invalidate(prefix, addr, size)
        return n

    def stage2_range(self, vmid: int, addr: int | None = None, size: int | None = None) -> int:
        """Drop the stage-2 entries of ``vmid`` (covering the IPA range when given)."""
        n = 0
        for c in self.s2.values():
            if len(c):
                n += c.invalidate((vmid,), addr, size)
        return n

    def vmall(self, vmid: int) -> int:
        """TLBI_S12_VMALL: both stages of ``vmid``."""
        return self.stage1((vmid,)) + self.stage2_range(vmid)

    def nsnh_all(self) -> int:
        """TLBI_NSNH_ALL: every non-hyp entry of both stages."""
        return (sum(c.invalidate((), where=_non_hyp) for c in self.s1.values())
                + sum(c.invalidate(()) for c in self.s2.values()))

    def flush(self) -> int:
        """Drop every entry of both stages."""
        n = 0
        for c in self._all:
            n += c.flush()  # an empty cache returns at once
        return n

    def __len__(self) -> int:
        return sum(len(c) for c in (*self.s1.values(), *self.s2.values()))

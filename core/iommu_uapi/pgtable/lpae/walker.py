"""The VMSAv8-64 walker, stage 1 and stage 2, as SMMUv3 walks the tables.

Faults are generic (:class:`~..common.FaultKind`): an input outside the configured range is
INPUT_RANGE; an invalid descriptor NOT_PRESENT; a block where none is allowed (or a level-3
descriptor with bit 1 clear) RESERVED; a table or output address beyond the OAS ADDR_SIZE;
AF=0 without hardware update ACCESS; a permission failure PERMISSION; memory outside the
address space WALK_EABT. An SMMU model turns them into its event records.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any

from ...errors import MemoryAccessError, UAPIError
from ...memory import ZERO_QUADS
from ...uapi.consts import FaultPerm
from ..common import (
    ACCESS_INTS,
    RWX,
    FaultKind,
    PageGet,
    Stage2Translate,
    TableMemory,
    WalkFault,
    WalkResult,
    bad_access,
    bind_stage2,
    inline_pages,
    page_getter,
    plans_from,
    restage,
)
from .bits import OA52_HI, OA52_HI_SHIFT, S1Desc, S2Desc, TableDesc, s1_key, s2_key, table_key
from .compiled import INTO, NESTED, PLAIN, compile_walk
from .config import LPAEConfig, fast_plans, geometry
from .fast import LeafStep, leaf_steps, nested_tail, walk_leaf

__all__ = ["UNBOUND", "LPAEWalker", "stage2", "walk"]

_READ, _WRITE, _PRIV = int(FaultPerm.READ), int(FaultPerm.WRITE), int(FaultPerm.PRIV)
_NG = S1Desc.NG  # read by the fast path as a module global (one lookup)


#: Per LPAE level, no bound walk: what a walker (and a walk cache's stage 2) looks its compiled
#: walks up in until it binds the first (never written).
UNBOUND: Mapping[int, Mapping[int, Any]] = MappingProxyType(
    {lv: MappingProxyType({}) for lv in range(-1, 4)})


def _no_plan(*args: object) -> None:
    """The compiled walk of an access without a fast plan: the full walk decides."""
    return None


class LPAEWalker:
    """Walks VMSAv8-64 tables in one table memory under one :class:`LPAEConfig`.

    The common case of each access and start level runs as a compiled straight-line walk
    (:mod:`.compiled`) bound to the memory's page view when it is first walked; building a
    walker binds nothing.
    """

    def __init__(self, mem: TableMemory, cfg: LPAEConfig) -> None:
        self.mem = mem
        self.cfg = cfg
        geo = geometry(cfg)
        self._read = mem.read64
        self._levels = geo.levels
        self._ias = geo.ias
        self._oas = cfg.oas
        self._perm = geo.perm
        self._stage = cfg.stage
        self._s1 = cfg.stage == 1
        self._oa52 = cfg.oas == 52
        self._start = geo.levels[0].level
        self._addr_mask = geo.addr_mask
        self._limit = 1 << geo.ias
        root_bytes = geo.root_entries * 8
        self._root_align = max(root_bytes, 64)
        self._granule = cfg.granule
        # hierarchical controls that take the walk off the fast path (none with HPD/stage 2)
        self._controls = (TableDesc.CONTROLS >> TableDesc.CONTROLS_SHIFT
                          if self._s1 and not cfg.hpd else 0)
        self.walk_levels = tuple(lv.level for lv in geo.levels)
        self.granted = 0
        pages = inline_pages(mem)
        self._fast = {} if pages is None else fast_plans(cfg)
        # the fast plans of walks that start at each level (walk_partial), cut once here
        self._fast_from = plans_from(self._fast, self.walk_levels)
        self._get = page_getter(pages)
        # the last level's step of every plan (walk_leaf), and how a table there is aligned
        self._leaf_plan = leaf_steps(self._fast, cfg.stage)
        self._leaf_misalign = (self._root_align if self._start == 3 else cfg.granule) - 1
        # the compiled walks bound to the page view, per start level and access, as first used
        # (UNBOUND, shared and never written, until then: building a walker binds nothing)
        self._plain_c: Mapping[int, Mapping[int, Callable[..., Any]]] = UNBOUND
        self._nested_c: Mapping[int, Mapping[int, Callable[..., Any]]] = UNBOUND

    walk_leaf = walk_leaf

    def _bind(self, kind: int, level: int, access: int) -> Callable[..., Any] | None:
        """The compiled ``kind`` (PLAIN or NESTED) walk of ``access`` from ``level`` (one the
        walker walks) bound to the page view, kept for the next walk; None where there is no
        plan (no page view, an access outside 0..15)."""
        steps = self._fast_from[level].get(access)
        if steps is None:
            return None
        access = ACCESS_INTS[access]  # a plain int (an Access flag hashes alike)
        factory = compile_walk(steps, kind, stage=self._stage,
                               start=self._start, level=level, access=access,
                               addr_mask=self._addr_mask)
        slow = (partial(nested_tail, self, access, level - self._start) if kind == NESTED
                else None)
        fast = factory(self._get, ZERO_QUADS, slow)
        bound: dict[int, dict[int, Callable[..., Any]]]
        if kind == NESTED:
            if self._nested_c is UNBOUND:
                self._nested_c = {lv: {} for lv in self.walk_levels}
            bound = self._nested_c  # type: ignore[assignment]
        else:
            if self._plain_c is UNBOUND:
                self._plain_c = {lv: {} for lv in self.walk_levels}
            bound = self._plain_c  # type: ignore[assignment]
        bound[level][access] = fast
        return fast

    def into_walk(self, level: int, access: int, keys: Mapping[int, tuple[int, int]]
                  ) -> Callable[[int, int, dict[tuple[int, int], int]],
                                tuple[WalkResult, int] | None]:
        """The compiled :func:`~.fast.walk_into` of a stage-2 walker for ``access`` from
        ``level``, its table descriptors stored under ``keys`` (per LPAE level, the walk-cache
        level and prefix shift), bound to the page view: ``into(table, ipa, out)``. A caller
        that walks many times binds it once per level and access (a walk cache: its keys do
        not change); one that returns None always where there is no plan (stage 1, no page
        view, an access without a plan or a level the walker does not walk)."""
        steps = self._fast_from.get(level, {}).get(access)
        if steps is None or self._s1:
            return _no_plan
        lasts = tuple(lv for lv in self.walk_levels if lv >= level)[:-1]
        factory = compile_walk(steps, INTO, stage=2, start=self._start, level=level,
                               access=ACCESS_INTS[access], addr_mask=self._addr_mask,
                               keys=tuple(keys[lv] for lv in lasts), limit=self._limit,
                               misalign=(self._root_align if level == self._start
                                         else self._granule) - 1)
        return factory(self._get, ZERO_QUADS, None)

    def leaf_reader(self) -> tuple[dict[int, LeafStep], PageGet]:
        """What :meth:`walk_leaf`'s common case reads with, for a caller that inlines it (a
        walk cache resuming at the last level, whose input and table passed walk_leaf's checks
        already): the last-level step per access (:data:`~.fast.LeafStep`; none without an
        inline page view) and the page getter."""
        return self._leaf_plan, self._get

    def walk(self, root: int, iova: int, access: int, s2: Stage2Translate | None = None,
             update_ad: bool = False) -> WalkResult:
        """Translate ``iova`` (VA or IPA) for ``access`` through the tables at ``root``.

        Checks, in order: input range (INPUT_RANGE); per level an invalid descriptor
        (NOT_PRESENT) or a block where none is allowed (RESERVED), a table address beyond the
        OAS (ADDR_SIZE); at the leaf the output address size (ADDR_SIZE), AF=0 (ACCESS, unless
        HA and ``update_ad``: then AF is set), permission (PERMISSION, ``denied`` the access
        bits refused; a write to a DBM page is made dirty instead when HD and ``update_ad``).
        With ``s2`` (stage 1 only) every descriptor IPA and the output are translated through
        stage 2.
        """
        steps = self._fast.get(access)
        if steps is not None and not update_ad and 0 <= iova < self._limit:
            start = self._start
            if s2 is not None:
                if self._s1:
                    return (self._nested_c[start].get(access)  # type: ignore[no-any-return,misc]
                            or self._bind(NESTED, start, access))(root, iova, s2, None, 0)
                return self._walk(root, iova, access, s2, update_ad)  # refused there
            # The common case, compiled and read inline from the page view; None (a fault,
            # AF=0, a table control, a permission the leaf refuses) leaves for the full walk.
            r = (self._plain_c[start].get(access)  # type: ignore[misc]
                 or self._bind(PLAIN, start, access))(root, iova, None, 0)
            if r is not None:
                return r  # type: ignore[no-any-return]
        return self._walk(root, iova, access, s2, update_ad)

    def walk_partial(self, table: int, level: int, iova: int, access: int,
                     s2: Stage2Translate | None = None, *, inherited: int = 0,
                     path: list[tuple[int, int, int]] | None = None) -> WalkResult:
        """Walk ``iova`` from ``table``, the table of level ``level`` (the root when ``level``
        is the start level), as a walk-cache hit lets the SMMU do. ``inherited`` is what the
        skipped stage-1 table descriptors contribute: their hierarchical controls PXNTable,
        UXNTable, APTable[1:0] in bits 3:0 (0, the default, when nothing is skipped; always 0
        at stage 2). With ``path``, each table descriptor used is appended as ``(level, next
        table, inherited below it)``; the walk under it continues at ``level + 1``. ``reads``
        counts from ``level`` on; no HTTU updates. Faults as :meth:`walk`."""
        align = self._root_align if level == self._start else self._granule
        if not self._start <= level <= 3 or table & (align - 1):
            raise UAPIError(errno.EINVAL, f"LPAE stage {self._stage}: cannot start a walk at "
                            f"level {level} from {table:#x}", rule="pgtable.start")
        if not inherited & self._controls and 0 <= iova < self._limit:
            if s2 is None:
                mark = 0 if path is None else len(path)
                fast = self._plain_c[level].get(access) or self._bind(PLAIN, level, access)
                if fast is not None:
                    r = fast(table, iova, path, inherited)
                    if r is not None:
                        return r  # type: ignore[no-any-return]
                    if path is not None:
                        del path[mark:]  # the full walk below records the path again
            elif self._s1:
                fast = self._nested_c[level].get(access) or self._bind(NESTED, level, access)
                if fast is not None:
                    return fast(table, iova, s2, path, inherited)  # type: ignore[no-any-return]
        skipped = level - self._start
        if not skipped:  # from the root: the full walk's counts as they are
            return self._walk(table, iova, access, s2, False, level, inherited, path)
        try:
            r = self._walk(table, iova, access, s2, False, level, inherited, path)
        except WalkFault as f:
            f.reads -= skipped
            raise
        return WalkResult(r.oa, r.page_size, r.perm, r.level, r.reads - skipped, r.s2_reads,
                          r.global_)

    def _walk(self, root: int, iova: int, access: int, s2: Stage2Translate | None,
              update_ad: bool, start: int | None = None, inherited: int = 0,
              path: list[tuple[int, int, int]] | None = None,
              resume: tuple[int, int] | None = None) -> WalkResult:
        """The full walk: every check in the architecture's order, nested walks, HTTU (and
        the continuation of :meth:`walk_partial` and of the nested fast path, which gives in
        ``resume`` the PA of the first descriptor and the stage-2 reads made so far)."""
        if s2 is not None and not self._s1:
            raise UAPIError(errno.EINVAL, "LPAE stage 2: stage-2 tables are not translated by "
                            "another stage", rule="lpae.nested")
        if not 0 <= access < 16:
            raise bad_access(access)
        access = ACCESS_INTS[access]
        if not 0 <= iova < 1 << self._ias:
            raise WalkFault(FaultKind.INPUT_RANGE, stage=self._stage, level=self._start,
                            addr=iova, access=access,
                            message=f"input {iova:#x} beyond the {self._ias}-bit input range")
        read = self._read
        oas = self._oas
        oa52 = self._oa52
        addr_mask = self._addr_mask
        table = root
        # OR of the stage-1 table descriptors' hierarchical bits
        tb = (inherited & 0xF) << TableDesc.CONTROLS_SHIFT
        s2_reads = 0
        s2_class = "ROOT" if start is None or start == self._start else "TT"
        levels = self._levels if start is None else self._levels[start - self._start:]
        for level, shift, imask, table_bit, leaf_need, oa_mask, size in levels:
            ptr = table + (((iova >> shift) & imask) << 3)
            if s2 is None:
                hptr = ptr
            elif resume is not None:  # translated by the fast path
                (hptr, s2_reads), resume = resume, None
                s2_class = "TT"
            else:
                try:
                    r2 = s2(ptr, _READ)
                except WalkFault as f:
                    raise restage(f, s2_class=s2_class, addr=ptr, access=access, level=f.level,
                                  reads=level - self._start,
                                  s2_reads=s2_reads) from None
                hptr = r2.oa
                s2_reads += r2.reads
                s2_class = "TT"
            try:
                desc = read(hptr)
            except MemoryAccessError:
                raise self._fault(FaultKind.WALK_EABT, level, iova,
                                  access, s2_reads, hptr, "table outside memory") from None
            if not desc & 1:
                raise self._fault(FaultKind.NOT_PRESENT, level, iova, access, s2_reads, hptr,
                                  f"descriptor {desc:#x} invalid")
            oa = desc & addr_mask
            if oa52:
                oa |= (desc & OA52_HI) << OA52_HI_SHIFT
            if desc & table_bit:
                if oa >> oas:
                    raise self._addr_size(level, iova, access, s2_reads, hptr, oa)
                tb |= desc
                table = oa
                if path is not None:
                    path.append((level, oa, (tb >> TableDesc.CONTROLS_SHIFT) & 0xF
                                 if self._s1 else 0))
                continue
            if desc & leaf_need != leaf_need:
                raise self._fault(FaultKind.RESERVED, level, iova, access, s2_reads, hptr,
                                  f"descriptor {desc:#x} is no valid leaf at level {level}")
            oa &= oa_mask
            if oa >> oas:
                raise self._addr_size(level, iova, access, s2_reads, hptr, oa)
            perm = self._leaf_perm(desc, tb, access)
            if not desc & S1Desc.AF or access & ~perm & RWX:
                desc, perm, s2_reads = self._leaf_update(desc, perm, tb, level, iova, access,
                                                         update_ad, ptr, hptr, s2, s2_reads)
            oa |= iova & (size - 1)
            global_ = self._s1 and not desc & _NG
            reads = level - self._start + 1
            if s2 is None:
                return WalkResult(oa, size, perm, level, reads, 0, global_)
            try:
                r2 = s2(oa, access & RWX)
            except WalkFault as f:
                raise restage(f, s2_class="IN", addr=oa, access=access, level=f.level,
                              reads=reads, s2_reads=s2_reads) from None
            return WalkResult(r2.oa, min(size, r2.page_size),
                                           perm & (r2.perm | _PRIV), level, reads,
                                           s2_reads + r2.reads, global_)
        raise AssertionError("unreachable: level 3 holds no tables")  # pragma: no cover

    def _leaf_update(self, desc: int, perm: int, tb: int, level: int, iova: int, access: int,
                     update_ad: bool, ptr: int, hptr: int, s2: Stage2Translate | None,
                     s2_reads: int) -> tuple[int, int, int]:
        """The slow path of a leaf: AF=0 (F_ACCESS, or set by HA) and permission (F_PERMISSION,
        or a DBM page made writable by HD); writes the updated descriptor back."""
        cfg = self.cfg
        new = desc
        if not desc & S1Desc.AF:
            if not (cfg.ha and update_ad):
                raise self._fault(FaultKind.ACCESS, level, iova, access,
                                  s2_reads, hptr, f"descriptor {desc:#x} has AF=0")
            new |= S1Desc.AF
        if access & _WRITE and not perm & _WRITE and cfg.hd and update_ad and desc & S1Desc.DBM:
            dirty = new & ~S1Desc.AP_RO if self._s1 else new | S2Desc.S2AP_W
            dperm = self._leaf_perm(dirty, tb, access)
            if dperm & _WRITE:
                new, perm = dirty, dperm
        if access & ~perm & RWX:
            raise self._fault(FaultKind.PERMISSION, level, iova, access, s2_reads, hptr,
                              f"descriptor {desc:#x} denies access {access:#x}",
                              access & ~perm & RWX)
        if new != desc:
            if s2 is not None:
                try:
                    r2 = s2(ptr, _WRITE)
                except WalkFault as f:
                    raise restage(f, s2_class="AD", addr=ptr, access=access, level=f.level,
                                  reads=level - self._start + 1,
                                  s2_reads=s2_reads) from None
                s2_reads += r2.reads
                hptr = r2.oa
            self.mem.write64(hptr, new)
        return new, perm, s2_reads

    def _leaf_perm(self, desc: int, tb: int, access: int) -> int:
        """The permissions a leaf gives ``access``: its own bits, the stage-1 table controls
        accumulated in ``tb`` and, at stage 1, whether the request is privileged (key bit 8)."""
        if self._s1:
            return self._perm[s1_key(desc) | table_key(tb >> TableDesc.CONTROLS_SHIFT)
                              | ((access & _PRIV) << 5)]
        return self._perm[s2_key(desc)]

    def _fault(self, kind: FaultKind, level: int, iova: int, access: int, s2_reads: int,
               ptr: int, message: str, denied: int = 0) -> WalkFault:
        return WalkFault(kind, stage=self._stage, level=level, addr=iova, access=access,
                         denied=denied, fetch_addr=ptr, reads=level - self._start + 1,
                         s2_reads=s2_reads, message=message)

    def _addr_size(self, level: int, iova: int, access: int, s2_reads: int, ptr: int,
                   oa: int) -> WalkFault:
        return self._fault(FaultKind.ADDR_SIZE, level, iova, access, s2_reads, ptr,
                           f"address {oa:#x} beyond the {self._oas}-bit OAS")


def walk(mem: TableMemory, root: int, iova: int, access: int, *, cfg: LPAEConfig,
         s2: Stage2Translate | None = None, update_ad: bool = False) -> WalkResult:
    """Walk VMSAv8-64 tables once (see :meth:`LPAEWalker.walk`; build an :class:`LPAEWalker`
    to walk many times)."""
    return LPAEWalker(mem, cfg).walk(root, iova, access, s2, update_ad)


def stage2(mem: TableMemory, root: int, cfg: LPAEConfig, *,
           update_ad: bool = False) -> Stage2Translate:
    """A stage-2 translate function ``s2(ipa, access)`` over the stage-2 tables at ``root``."""
    if cfg.stage != 2:
        raise UAPIError(errno.EINVAL, f"lpae.stage2: configuration is stage {cfg.stage}",
                        rule="lpae.stage")
    return bind_stage2(LPAEWalker(mem, cfg), root, update_ad)

"""The VT-d second-level walker: the host-owned GPA -> HPA tables of scalable mode.

An entry is present when R or W is set; a request needs R (read), W (write) and, with SLEE, X
(execute) at every level. Faults are generic (:class:`~..common.FaultKind`, ``stage=2``): the
format has no present bit, so an entry with R=W=0 denies the access like a missing R or W does
(``PERMISSION``, ``denied`` naming the bits refused), as the hardware records it.
"""

from __future__ import annotations

import errno
from functools import lru_cache, partial

from ...errors import MemoryAccessError, UAPIError
from ...memory import ZERO_QUADS
from ...uapi.consts import FaultPerm
from ..common import (
    ACCESS_INTS,
    FaultKind,
    Stage2Translate,
    TableMemory,
    WalkFault,
    WalkResult,
    bad_access,
    bind_stage2,
    continued,
    inline_pages,
    page_getter,
    plans_from,
)
from ..compiled import (
    FieldsFast,
    FieldsFastFactory,
    ResultFast,
    ResultFastFactory,
    compile_fields_walk,
    compile_result_walk,
)
from .bits import ADDR_MASK, GRANTED, SLConfig, SLEntry, fast_plans, geometry, table_grant

__all__ = ["SLWalker", "stage2", "walk"]

_WRITE = int(FaultPerm.WRITE)
#: Missing R/W/X bits of an entry -> the Access bits refused (READ, WRITE, EXEC).
_DENIED = tuple((int(FaultPerm.READ) if m & SLEntry.R else 0)
                | (_WRITE if m & SLEntry.W else 0)
                | (int(FaultPerm.EXEC) if m & SLEntry.X else 0) for m in range(8))
_RWX_SL = SLEntry.R | SLEntry.W | SLEntry.X


@lru_cache(maxsize=64)
def _factories(cfg: SLConfig) -> tuple[dict[int, FieldsFastFactory],
                                       dict[int, ResultFastFactory]]:
    """Per access, the factories of the straight-line walks of :func:`fast_plans` to the
    entry's fields and to a :class:`WalkResult` (the leaf's permission key: its R/W/X)."""
    plans = fast_plans(cfg)
    bits = cfg.input_bits
    return ({access: compile_fields_walk(plan, addr_mask=ADDR_MASK, key=_RWX_SL, input_bits=bits)
             for access, plan in plans.items()},
            {access: compile_result_walk(plan, addr_mask=ADDR_MASK, key=_RWX_SL, input_bits=bits)
             for access, plan in plans.items()})


#: Access values a walker keeps a bound compiled walk for.
_ACCESSES = frozenset(range(16))


def _no_plan(root: int, iova: int) -> None:
    """The compiled walk of an access without a fast plan: the full walk decides."""
    return None


class SLWalker:
    """Walks second-level tables in one table memory under one :class:`SLConfig`.

    The common case of each access runs as a compiled straight-line walk
    (:mod:`~iommu_uapi.pgtable.compiled`) bound to the memory's page view when the access is
    first walked (:meth:`fields_walk`); building a walker binds nothing.
    """

    def __init__(self, mem: TableMemory, cfg: SLConfig) -> None:
        self.mem = mem
        self.cfg = cfg
        geo = geometry(cfg)
        self._read = mem.read64
        self._levels = geo.levels
        self._input_bits = geo.input_bits
        self._need = geo.need
        self._perm = geo.perm
        self._slade = cfg.slade
        self._top = cfg.levels
        self._limit = 1 << geo.input_bits
        self._grant = table_grant(cfg)
        self.walk_levels = tuple(range(cfg.levels, 0, -1))
        self.granted = GRANTED
        pages = inline_pages(mem)
        self._fast = {} if pages is None else fast_plans(cfg)
        # the fast plans of walks that start at each level (walk_partial), cut once here
        self._fast_from = plans_from(self._fast, self.walk_levels)
        self._get = page_getter(pages)
        self._factories = _factories(cfg) if pages is not None else ({}, {})
        # the compiled walks bound to the page view, per access, as they are first asked for
        self._fields_fast: dict[int, FieldsFast] = {}
        self._walk_fast: dict[int, ResultFast] = {}

    def fields_walk(self, access: int) -> FieldsFast:
        """The compiled common case of ``access`` over this walker's memory:
        ``fields_walk(access)(root, iova)`` is what :meth:`walk_fields` returns, or None where
        only the full walk can decide (always None for an access without a fast plan, or when
        the memory offers no inline page view). Bound on first use and kept."""
        fast = self._fields_fast.get(access)
        if fast is None:
            factory = self._factories[0].get(access)
            fast = _no_plan if factory is None else factory(self._get, ZERO_QUADS)
            if access in _ACCESSES:
                self._fields_fast[access] = fast
        return fast

    def _result_walk(self, access: int) -> ResultFast:
        """:meth:`fields_walk` for :meth:`walk`'s results."""
        factory = self._factories[1].get(access)
        fast = _no_plan if factory is None else factory(self._get, ZERO_QUADS)
        if access in _ACCESSES:
            self._walk_fast[access] = fast
        return fast

    def walk(self, root: int, iova: int, access: int, s2: Stage2Translate | None = None,
             update_ad: bool = False) -> WalkResult:
        """Translate ``iova`` for ``access`` through the tables at ``root`` (an HPA).

        Faults (``stage=2``): input beyond AW -> INPUT_RANGE; R=W=0, or R/W (X with SLEE)
        missing at some level -> PERMISSION, ``denied`` the bits refused (R=W=0 refuses READ
        and, for a write, WRITE); reserved bits -> RESERVED; memory outside the address space
        -> WALK_EABT. With SLADE and ``update_ad`` the walk sets A in every entry used and D in
        the leaf for a write.
        """
        if s2 is None and (not update_ad or not self._slade):
            # The common case, compiled from the fast plan and read inline from the page view;
            # None (a fault, a reserved bit, a restricting table entry) leaves for the full walk.
            result = (self._walk_fast.get(access) or self._result_walk(access))(root, iova)
            if result is not None:
                return result
        return self._walk(root, iova, access, s2, update_ad)

    def walk_fields(self, root: int, iova: int, access: int
                    ) -> tuple[tuple[int, int, int, int, bool], int]:
        """:meth:`walk` (not nested, no A/D update) returning the leaf as an IOTLB entry's
        fields ``(iova & -size, size, output page, perm, global)`` and the descriptor reads: an
        IOTLB miss's walk, without a :class:`WalkResult` in between. Faults as :meth:`walk`."""
        # walk's fast path, compiled (see :meth:`fields_walk`)
        entry = (self._fields_fast.get(access) or self.fields_walk(access))(root, iova)
        if entry is not None:
            return entry
        return self.full_fields(root, iova, access)

    def full_fields(self, root: int, iova: int, access: int
                    ) -> tuple[tuple[int, int, int, int, bool], int]:
        """:meth:`walk_fields` by the full walk alone (every check in the hardware's order):
        what a caller that already ran :meth:`fields_walk`'s walk and got None runs next."""
        r = self._walk(root, iova, access, None, False)
        size = r.page_size
        return (iova & -size, size, r.oa & -size, r.perm, r.global_), r.reads

    def walk_partial(self, table: int, level: int, iova: int, access: int,
                     s2: Stage2Translate | None = None, *, inherited: int = GRANTED,
                     path: list[tuple[int, int, int]] | None = None) -> WalkResult:
        """Walk ``iova`` from ``table``, the table of level ``level`` (the root when ``level``
        is the top), as a walk-cache hit lets the hardware do. ``inherited`` is the AND of the
        skipped entries' R/W/X (7, the default, when nothing is skipped). With ``path``, each
        table entry used is appended as ``(level, next table, AND of R/W/X so far)``. ``reads``
        counts from ``level`` down; no A/D updates. Faults as :meth:`walk`."""
        if not 1 <= level <= self._top or table & 0xFFF:
            raise UAPIError(errno.EINVAL, f"second level: cannot start a walk at level {level} "
                            f"from {table:#x}", rule="pgtable.start")
        skipped = self._top - level
        grant = self._grant
        steps = self._fast_from[level].get(access) if inherited & grant == grant else None
        if steps is not None and s2 is None and 0 <= iova < self._limit:
            mark = 0 if path is None else len(path)
            get = self._get
            at, start, acc = table, level, inherited & _RWX_SL
            for shift, leaf_test, tmask, want, leaf in steps:
                desc = get(at, ZERO_QUADS)[(iova >> shift) & 0x1FF]
                if desc & leaf_test:
                    lmask, lwant, oa_mask, offset, size, lv, reads, perm = leaf
                    if desc & lmask != lwant:
                        break
                    return WalkResult((desc & oa_mask) | (iova & offset), size,
                                      perm[desc & acc], lv, reads - skipped, 0, False)
                if desc & tmask != want:
                    break
                at = desc & ADDR_MASK
                acc &= desc
                if path is not None:
                    path.append((start, at, acc))
                    start -= 1
            if path is not None:
                del path[mark:]  # the full walk below records the path again
        return continued(partial(self._walk, table, iova, access, s2, False, level, inherited,
                                 path), skipped)

    def _walk(self, root: int, iova: int, access: int, s2: Stage2Translate | None,
              update_ad: bool, start: int | None = None, inherited: int = GRANTED,
              path: list[tuple[int, int, int]] | None = None) -> WalkResult:
        """The full walk: every check in the hardware's order, A/D updates (and the
        continuation of :meth:`walk_partial`)."""
        if s2 is not None:
            raise UAPIError(errno.EINVAL, "second level: second-level tables are not translated "
                            "by another stage", rule="vtd_sl.nested")
        if not 0 <= access < 16:
            raise bad_access(access)
        access = ACCESS_INTS[access]
        if not 0 <= iova < self._limit:
            raise WalkFault(FaultKind.INPUT_RANGE, stage=2, level=self._levels[0].level,
                            addr=iova, access=access,
                            message=f"input {iova:#x} beyond the {self._input_bits}-bit AW")
        read = self._read
        need = self._need[access]
        table = root
        acc = inherited & _RWX_SL
        levels = self._levels if start is None else self._levels[self._top - start:]
        slade = update_ad and self._slade
        for level, shift, leaf_test, rsvd_table, rsvd_leaf, oa_mask, size in levels:
            ptr = table + (((iova >> shift) & 0x1FF) << 3)
            try:
                desc = read(ptr)
            except MemoryAccessError:
                raise self._fault(FaultKind.WALK_EABT, 0, level, iova, access, ptr,
                                  "table outside memory") from None
            if not desc & (SLEntry.R | SLEntry.W):
                raise self._fault(FaultKind.PERMISSION, _DENIED[(need | SLEntry.R) & 7], level,
                                  iova, access, ptr, f"entry {desc:#x} not present")
            if desc & need != need:
                raise self._fault(FaultKind.PERMISSION, _DENIED[need & ~desc & 7], level, iova,
                                  access, ptr, f"entry {desc:#x} denies access {access:#x}")
            acc &= desc
            if desc & leaf_test:
                if desc & rsvd_leaf:
                    raise self._reserved(level, iova, access, ptr, desc, rsvd_leaf)
                if slade:
                    self._set_ad(ptr, desc, SLEntry.A | (SLEntry.D if access & _WRITE else 0))
                return WalkResult((desc & oa_mask) | (iova & (size - 1)), size,
                                  self._perm[acc], level, self._top - level + 1, 0, False)
            if desc & rsvd_table:
                raise self._reserved(level, iova, access, ptr, desc, rsvd_table)
            if slade:
                self._set_ad(ptr, desc, SLEntry.A)
            table = desc & ADDR_MASK
            if path is not None:
                path.append((level, table, acc))
        raise AssertionError("unreachable: level 1 always holds leaves")  # pragma: no cover

    def _set_ad(self, ptr: int, desc: int, bits: int) -> None:
        if desc & bits != bits:
            self.mem.write64(ptr, desc | bits)

    def _fault(self, kind: FaultKind, denied: int, level: int, iova: int, access: int,
               ptr: int, message: str) -> WalkFault:
        return WalkFault(kind, stage=2, level=level, addr=iova, access=access, denied=denied,
                         fetch_addr=ptr, reads=self._top - level + 1, message=message)

    def _reserved(self, level: int, iova: int, access: int, ptr: int, desc: int,
                  mask: int) -> WalkFault:
        return self._fault(FaultKind.RESERVED, 0, level, iova, access, ptr,
                           f"reserved bits {desc & mask:#x} set in {desc:#x}")


def walk(mem: TableMemory, root: int, iova: int, access: int, *, cfg: SLConfig,
         s2: Stage2Translate | None = None, update_ad: bool = False) -> WalkResult:
    """Walk second-level tables once (see :meth:`SLWalker.walk`; build an :class:`SLWalker` to
    walk many times)."""
    return SLWalker(mem, cfg).walk(root, iova, access, s2, update_ad)


def stage2(mem: TableMemory, root: int, cfg: SLConfig, *,
           update_ad: bool = False) -> Stage2Translate:
    """A stage-2 translate function ``s2(gpa, access)`` over the second-level tables at
    ``root``, for nested first-level walks."""
    return bind_stage2(SLWalker(mem, cfg), root, update_ad)

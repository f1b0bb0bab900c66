"""The first-level (IA-32e) walker: the checks of reference 1.6 in the hardware's order.

A request needs P at every level, U/S=1 at every level unless it is privileged (supervisor),
R/W=1 at every level for a write (for a supervisor only with WPE), and XD=0 at every level for
an execute. Input addresses must be canonical. Reserved bits: address bits at and above the
host address width, PS in PML5E/PML4E (and in a PDPTE without FL1GP), and the low address bits
of a large leaf below its size (bit 12 is PAT there). XD (bit 63) is never reserved (UNCERTAIN
in the reference; Linux and QEMU behave this way).

Faults are generic (:class:`~..common.FaultKind`, ``stage=1``): a backend turns them into its
own records. In a nested walk (``s2`` given) the root, every table and the output are GPAs
translated through stage 2; a stage-2 fault is re-raised with ``stage=2`` and the ``s2_class``
of what was being translated.
"""

from __future__ import annotations

import errno
from functools import partial

from ...errors import MemoryAccessError, UAPIError
from ...memory import ZERO_QUADS
from ...uapi.consts import FaultPerm
from ..common import (
    ACCESS_INTS,
    RWX,
    FastPlan,
    FaultKind,
    Stage2Translate,
    TableMemory,
    WalkFault,
    WalkResult,
    bad_access,
    continued,
    inline_pages,
    page_getter,
    plans_from,
    restage,
)
from .bits import ADDR_MASK, GRANTED, FLEntry, X86Config, fast_plans, geometry

__all__ = ["X86Walker", "walk"]

_RWX_OF = tuple(a & RWX for a in range(16))
_G = FLEntry.G  # read by the fast paths as a module global (one lookup)
_READ, _WRITE, _EXEC, _PRIV = (int(FaultPerm.READ), int(FaultPerm.WRITE), int(FaultPerm.EXEC),
                               int(FaultPerm.PRIV))


class X86Walker:
    """Walks first-level (IA-32e) tables in one table memory under one :class:`X86Config`."""

    def __init__(self, mem: TableMemory, cfg: X86Config) -> None:
        self.mem = mem
        self.cfg = cfg
        geo = geometry(cfg)
        self._read = mem.read64
        self._levels = geo.levels
        self._va_top = geo.va_top
        self._canon_ones = geo.canon_ones
        self._need = geo.need
        self._perm = geo.perm
        self._a_bits = FLEntry.A | (FLEntry.EA if cfg.eafe else 0)
        self._top = cfg.levels
        self.walk_levels = tuple(range(cfg.levels, 0, -1))
        self.granted = GRANTED
        pages = inline_pages(mem)
        self._fast = {} if pages is None else fast_plans(cfg)
        # the fast plans of walks that start at each level (walk_partial), cut once here
        self._fast_from = plans_from(self._fast, self.walk_levels)
        self._get = page_getter(pages)

    def walk(self, root: int, iova: int, access: int, s2: Stage2Translate | None = None,
             update_ad: bool = False) -> WalkResult:
        """Translate ``iova`` for ``access`` through the first-level tables at ``root``.

        Per level, in this order: P=0 -> NOT_PRESENT; U/S=0 for a user request -> PERMISSION
        (``denied`` PRIV); R/W=0 for a write -> PERMISSION (``denied`` WRITE, with PRIV when
        U/S is missing too); XD=1 for an execute -> PERMISSION (``denied`` EXEC); reserved
        bits -> RESERVED. Before walking, a non-canonical input -> INPUT_RANGE; memory outside
        the address space while reading an entry -> WALK_EABT. With ``update_ad`` the walk sets
        A (and EA with EAFE) in every entry used and D in the leaf for a write; with ``s2`` the
        root, tables and output are GPAs translated through stage 2.
        """
        steps = self._fast.get(access)
        if steps is not None and not update_ad:
            top = iova >> self._va_top
            if top == 0 or top == self._canon_ones:
                if s2 is not None:
                    result = self._nested_fast(steps, root, iova, access, s2)
                    if result is not None:
                        return result
                    return self._walk(root, iova, access, s2, update_ad)
                # The common case, read inline from the page view; anything else (a fault, a
                # reserved bit, a table entry that restricts, XD for an execute, an unaligned
                # root) leaves the loop for the full walk below.
                get = self._get
                table = root
                for shift, leaf_test, tmask, want, leaf in steps:
                    desc = get(table, ZERO_QUADS)[(iova >> shift) & 0x1FF]
                    if desc & leaf_test:
                        lmask, lwant, oa_mask, offset, size, level, reads, perm = leaf
                        if desc & lmask != lwant:
                            break
                        # the permission key of fast_plans: (R/W | U/S) | XD (bit 63 to bit 0)
                        return WalkResult(
                            (desc & oa_mask) | (iova & offset), size,
                            perm[(desc & 6) | (desc >> 63)], level, reads, 0, desc & _G != 0)
                    if desc & tmask != want:
                        break
                    table = desc & ADDR_MASK
        return self._walk(root, iova, access, s2, update_ad)

    def _nested_fast(self, steps: FastPlan, root: int, iova: int, access: int,
                     s2: Stage2Translate, path: list[tuple[int, int, int]] | None = None,
                     start: int = 0) -> WalkResult | None:
        """The common case of a nested walk: each table's GPA through stage 2 once, its entry
        read inline; None (the full walk decides) on anything unusual, a stage-2 fault
        included. With ``path``, the table entries used are appended from level ``start``
        down (see :meth:`walk_partial`)."""
        get = self._get
        table = root
        s2_reads = 0
        try:
            for shift, leaf_test, tmask, want, leaf in steps:
                hpa = s2(table, _READ)
                s2_reads += hpa.reads
                desc = get(hpa.oa, ZERO_QUADS)[(iova >> shift) & 0x1FF]
                if desc & leaf_test:
                    lmask, lwant, oa_mask, offset, size, level, reads, perm = leaf
                    if desc & lmask != lwant:
                        return None
                    out = s2((desc & oa_mask) | (iova & offset), _RWX_OF[access])
                    return WalkResult(
                        out.oa, size if size < out.page_size else out.page_size,
                        perm[(desc & 6) | (desc >> 63)] & (out.perm | _PRIV), level, reads,
                        s2_reads + out.reads, desc & _G != 0)
                if desc & tmask != want:
                    return None
                table = desc & ADDR_MASK
                if path is not None:
                    path.append((start, table, GRANTED))
                    start -= 1
        except WalkFault:
            return None
        return None  # pragma: no cover - level 1 always holds leaves

    def _plain_fast(self, steps: FastPlan, table: int, iova: int,
                    path: list[tuple[int, int, int]] | None, start: int) -> WalkResult | None:
        """The common case of a walk that is not nested, collecting ``path`` (see
        :meth:`_nested_fast`)."""
        get = self._get
        for shift, leaf_test, tmask, want, leaf in steps:
            desc = get(table, ZERO_QUADS)[(iova >> shift) & 0x1FF]
            if desc & leaf_test:
                lmask, lwant, oa_mask, offset, size, level, reads, perm = leaf
                if desc & lmask != lwant:
                    return None
                return WalkResult((desc & oa_mask) | (iova & offset), size,
                                  perm[(desc & 6) | (desc >> 63)], level, reads, 0,
                                  desc & _G != 0)
            if desc & tmask != want:
                return None
            table = desc & ADDR_MASK
            if path is not None:
                path.append((start, table, GRANTED))
                start -= 1
        return None  # pragma: no cover - level 1 always holds leaves

    def walk_partial(self, table: int, level: int, iova: int, access: int,
                     s2: Stage2Translate | None = None, *, inherited: int = 6,
                     path: list[tuple[int, int, int]] | None = None) -> WalkResult:
        """Walk ``iova`` from ``table``, the table of level ``level`` (the root when ``level``
        is the top): what a paging-structure-cache hit lets the hardware do. ``inherited`` is
        what the skipped upper entries contribute, ``(R/W & U/S) << 1 | XD`` as a cached entry
        keeps it (6, the default, when nothing is skipped or the entries above grant
        everything). With ``path``, each table entry used is appended as ``(level, next table,
        inherited below it)``, ready to be cached. ``reads`` counts from ``level`` down; no
        A/D updates. Faults as :meth:`walk`."""
        if not 1 <= level <= self._top or table & 0xFFF:
            raise UAPIError(errno.EINVAL, f"first level: cannot start a walk at level {level} "
                            f"from {table:#x}", rule="pgtable.start")
        skipped = self._top - level
        steps = self._fast_from[level].get(access) if inherited == GRANTED else None
        top = iova >> self._va_top
        if steps is not None and (top == 0 or top == self._canon_ones):
            mark = 0 if path is None else len(path)
            r = (self._plain_fast(steps, table, iova, path, level) if s2 is None else
                 self._nested_fast(steps, table, iova, access, s2, path, level))
            if r is not None:
                return WalkResult(r.oa, r.page_size, r.perm, r.level, r.reads - skipped,
                                  r.s2_reads, r.global_)
            if path is not None:
                del path[mark:]  # the full walk below records the path again
        return continued(partial(self._walk, table, iova, access, s2, False, level, inherited,
                                 path), skipped)

    def _walk(self, root: int, iova: int, access: int, s2: Stage2Translate | None,
              update_ad: bool, start: int | None = None, inherited: int = 6,
              path: list[tuple[int, int, int]] | None = None) -> WalkResult:
        """The full walk: every check in the hardware's order, nested walks, A/D updates (and
        the continuation of :meth:`walk_partial`)."""
        if not 0 <= access < 16:
            raise bad_access(access)
        access = ACCESS_INTS[access]
        top = iova >> self._va_top
        if (top and top != self._canon_ones) or iova < 0:
            raise WalkFault(FaultKind.INPUT_RANGE, stage=1, level=self._levels[0][0],
                            addr=iova, access=access,
                            message=f"input {iova:#x} is not canonical")
        read = self._read
        chk = self._need[access]  # P, plus U/S and R/W as the request needs
        table = root
        acc = 0xFFF if start is None else 0xFF9 | (inherited & 6)  # AND of R/W, U/S so far
        xd = inherited & 1  # XD seen at some level
        s2_reads = 0
        s2_class = "ROOT" if start is None or start == self._top else "TT"
        levels = self._levels if start is None else self._levels[self._top - start:]
        for level, shift, leaf_test, rsvd_table, rsvd_leaf, oa_mask, size in levels:
            ptr = table + (((iova >> shift) & 0x1FF) << 3)
            if s2 is None:
                hptr = ptr
            else:
                try:
                    r2 = s2(ptr, _READ)
                except WalkFault as f:
                    raise restage(f, s2_class=s2_class, addr=ptr, access=access, level=f.level,
                                  reads=self._top - level, s2_reads=s2_reads) from None
                hptr = r2.oa
                s2_reads += r2.reads
                s2_class = "TT"
            try:
                desc = read(hptr)
            except MemoryAccessError:
                raise self._fault(FaultKind.WALK_EABT, 0, level, iova,
                                  access, s2_reads, hptr, "table outside memory") from None
            if desc & chk != chk:
                raise self._denied(desc, chk, level, iova, access, s2_reads, hptr)
            acc &= desc
            if desc & leaf_test:
                if desc & rsvd_leaf:  # reserved bits or XD
                    xd |= self._xd_or_reserved(desc, rsvd_leaf, level, iova, access, s2_reads,
                                               hptr)
                if update_ad:
                    bits = self._a_bits | (FLEntry.D if access & _WRITE else 0)
                    if desc & bits != bits:
                        s2_reads = self._set_ad(ptr, hptr, desc | bits, s2, level, iova, access,
                                                s2_reads)
                oa = (desc & oa_mask) | (iova & (size - 1))
                perm = self._perm[(access & _PRIV) | (acc & 6) | xd]
                if s2 is None:
                    return WalkResult(oa, size, perm, level, self._top - level + 1, 0,
                                      bool(desc & FLEntry.G))
                return self._final(oa, size, perm, level, iova, access, s2_reads,
                                   bool(desc & FLEntry.G), s2)
            if desc & rsvd_table:  # reserved bits or XD
                xd |= self._xd_or_reserved(desc, rsvd_table, level, iova, access, s2_reads, hptr)
            if update_ad and not desc & FLEntry.A:
                s2_reads = self._set_ad(ptr, hptr, desc | self._a_bits, s2, level, iova, access,
                                        s2_reads)
            table = desc & ADDR_MASK
            if path is not None:
                path.append((level, table, (acc & 6) | xd))
        raise AssertionError("unreachable: level 1 always holds leaves")  # pragma: no cover

    def _denied(self, desc: int, chk: int, level: int, iova: int, access: int, s2_reads: int,
                ptr: int) -> WalkFault:
        missing = chk & ~desc
        if missing & FLEntry.P:
            return self._fault(FaultKind.NOT_PRESENT, 0, level, iova, access, s2_reads, ptr,
                               f"entry {desc:#x} not present")
        denied = (_PRIV if missing & FLEntry.US else 0) | (_WRITE if missing & FLEntry.RW else 0)
        return self._fault(FaultKind.PERMISSION, denied, level, iova, access, s2_reads, ptr,
                           f"entry {desc:#x} denies access {access:#x}")

    def _xd_or_reserved(self, desc: int, mask: int, level: int, iova: int, access: int,
                        s2_reads: int, ptr: int) -> int:
        """The slow path of an entry with XD or a reserved bit set: 1 when only XD is set and
        the request does not execute; else the fault (XD is checked before reserved bits)."""
        if desc & FLEntry.XD and access & _EXEC:
            raise self._fault(FaultKind.PERMISSION, _EXEC, level, iova,
                              access, s2_reads, ptr, f"entry {desc:#x} has XD")
        rsvd = desc & mask & ~FLEntry.XD
        if rsvd:
            raise self._fault(FaultKind.RESERVED, 0, level, iova, access,
                              s2_reads, ptr, f"reserved bits {rsvd:#x} set in {desc:#x}")
        return 1

    def _final(self, oa: int, size: int, perm: int, level: int, iova: int, access: int,
               s2_reads: int, global_: bool, s2: Stage2Translate) -> WalkResult:
        reads = self._top - level + 1
        try:
            r2 = s2(oa, access & RWX)
        except WalkFault as f:
            raise restage(f, s2_class="IN", addr=oa, access=access, level=f.level,
                          reads=reads,
                          s2_reads=s2_reads) from None
        return WalkResult(r2.oa, min(size, r2.page_size), perm & (r2.perm | _PRIV), level,
                          reads, s2_reads + r2.reads, global_)

    def _set_ad(self, ptr: int, hptr: int, value: int, s2: Stage2Translate | None, level: int,
                iova: int, access: int, s2_reads: int) -> int:
        """Write an A/D update back; nested, the entry's page must be writable at stage 2."""
        if s2 is not None:
            try:
                r2 = s2(ptr, _WRITE)
            except WalkFault as f:
                raise restage(f, s2_class="AD", addr=ptr, access=access, level=f.level,
                              reads=self._top - level + 1, s2_reads=s2_reads) from None
            s2_reads += r2.reads
            hptr = r2.oa
        self.mem.write64(hptr, value)
        return s2_reads

    def _fault(self, kind: FaultKind, denied: int, level: int, iova: int, access: int,
               s2_reads: int, ptr: int, message: str) -> WalkFault:
        return WalkFault(kind, stage=1, level=level, addr=iova, access=access, denied=denied,
                         fetch_addr=ptr, reads=self._top - level + 1, s2_reads=s2_reads,
                         message=message)


def walk(mem: TableMemory, root: int, iova: int, access: int, *, cfg: X86Config,
         s2: Stage2Translate | None = None, update_ad: bool = False) -> WalkResult:
    """Walk first-level tables once (see :meth:`X86Walker.walk`; build an :class:`X86Walker`
    to walk many times)."""
    return X86Walker(mem, cfg).walk(root, iova, access, s2, update_ad)

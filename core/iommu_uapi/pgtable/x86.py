"""x86 IA-32e paging as VT-d first-level translation: 4-level (48-bit) and 5-level (57-bit).

512-entry tables; PS makes a 2 MiB (PDE) or, with CAP.FL1GP, a 1 GiB (PDPTE) leaf. A request
needs P at every level, U/S=1 at every level unless it is privileged (supervisor), R/W=1 at every
level for a write (for a supervisor only with WPE), and XD=0 at every level for an execute.
Input addresses must be canonical. Reserved bits: address bits at and above the host address
width, PS in PML5E/PML4E (and in a PDPTE without FL1GP), and the low address bits of a large
leaf below its size (bit 12 is PAT there). XD (bit 63) is never reserved (UNCERTAIN in the
reference; Linux and QEMU behave this way).

Native fault codes are VT-d scalable-mode reasons (:class:`~.vtd_sl.VtdFault`). In a nested walk
(``s2`` given) the root, every table and the output are GPAs translated through stage 2; a
stage-2 fault is reported with ``stage=2`` and the first-level nested codes 0x73-0x7C / 0x85 /
0x86 (table :data:`NESTED_CODES`).
"""

from __future__ import annotations

import errno
from enum import IntFlag
from functools import lru_cache
from typing import NamedTuple

import msgspec

from ..errors import MemoryAccessError, UAPIError
from ..memory import ZERO_QUADS
from ..uapi.consts import FaultPerm, FaultReason
from .builder import Level, PageTableBuilder
from .common import (
    ACCESS_INTS,
    NO_LEAF,
    RWX,
    FastPlan,
    FastStep,
    Prot,
    Stage2Translate,
    TableMemory,
    WalkFault,
    WalkResult,
    bad_access,
    inline_pages,
    page_getter,
    restage,
)
from .vtd_sl import VtdFault

_RWX_OF = tuple(a & RWX for a in range(16))
#: What entries that grant everything pass down: R/W and U/S set, no XD (``inherited`` of
#: :meth:`X86Walker.walk_partial`).
_GRANTED = 6

__all__ = [
    "NESTED_CODES",
    "FLEntry",
    "X86Config",
    "X86PageTable",
    "X86Walker",
    "walk",
]


class FLEntry(IntFlag):
    """IA-32e paging-entry bits (PS is PAT in a 4 KiB PTE; PAT_LARGE is PAT in a large leaf)."""

    P = 1 << 0
    RW = 1 << 1
    US = 1 << 2
    PWT = 1 << 3
    PCD = 1 << 4
    A = 1 << 5
    D = 1 << 6
    PS = 1 << 7
    G = 1 << 8
    EA = 1 << 10
    PAT_LARGE = 1 << 12
    XD = 1 << 63


#: Address field of an entry (bits 51:12).
ADDR_MASK = ((1 << 52) - 1) & ~0xFFF

_P, _RW, _US, _PWT, _PCD, _A, _D, _PS, _G, _EA = 1, 2, 4, 8, 0x10, 0x20, 0x40, 0x80, 0x100, 0x400
_PAT_LARGE, _XD = 0x1000, 1 << 63
_READ, _WRITE, _EXEC, _PRIV = (int(FaultPerm.READ), int(FaultPerm.WRITE), int(FaultPerm.EXEC),
                               int(FaultPerm.PRIV))

#: Stage-2 fault during a nested first-level walk -> the VT-d code recorded, keyed by what was
#: being translated (ROOT: the first-level root table, TT: another first-level table, AD: the
#: write of an A/D update into a first-level entry, IN: the first-level output) and by the kind
#: of stage-2 failure. IN/DENY is 0x85 for a write and 0x86 otherwise (see ``_nested_code``).
NESTED_CODES: dict[tuple[str, str], int] = {
    ("ROOT", "DENY"): VtdFault.NESTED_ROOT_READ,
    ("ROOT", "OOR"): VtdFault.NESTED_ROOT_INVALID,
    ("ROOT", "EABT"): VtdFault.NESTED_ROOT_INVALID,
    ("ROOT", "RSVD"): VtdFault.SL_RESERVED,
    ("TT", "DENY"): VtdFault.NESTED_TABLE_READ,
    ("TT", "OOR"): VtdFault.NESTED_BEYOND_MGAW,
    ("TT", "EABT"): VtdFault.SL_ACCESS_ERROR,
    ("TT", "RSVD"): VtdFault.SL_RESERVED,
    ("AD", "DENY"): VtdFault.NESTED_AD_WRITE,
    ("AD", "OOR"): VtdFault.NESTED_BEYOND_MGAW,
    ("AD", "EABT"): VtdFault.SL_ACCESS_ERROR,
    ("AD", "RSVD"): VtdFault.SL_RESERVED,
    ("IN", "DENY"): VtdFault.NO_READ,
    ("IN", "OOR"): VtdFault.BEYOND_AW,
    ("IN", "EABT"): VtdFault.SL_ACCESS_ERROR,
    ("IN", "RSVD"): VtdFault.SL_RESERVED,
}

_KIND = {
    FaultReason.WALK_EABT: "EABT",
    FaultReason.OOR_ADDRESS: "OOR",
    FaultReason.PTE_FETCH: "DENY",
    FaultReason.PERMISSION: "DENY",
    FaultReason.ACCESS: "DENY",
}


def _nested_code(s2_class: str, fault: WalkFault, access: int) -> int:
    kind = "RSVD" if fault.code == VtdFault.SL_RESERVED else _KIND.get(fault.reason, "DENY")
    if s2_class == "IN" and kind == "DENY":
        if fault.code == VtdFault.SL_PERMISSION:
            return VtdFault.SL_PERMISSION
        return VtdFault.NO_WRITE if access & _WRITE else VtdFault.NO_READ
    return NESTED_CODES[s2_class, kind]


class X86Config(msgspec.Struct, frozen=True):
    """What a first-level walk runs under.

    ``levels``: 4 (FLPM=0, 48-bit) or 5 (FLPM=1, 57-bit); ``haw``: host address width (entry
    address bits at and above it are reserved); ``fl1gp``: CAP.FL1GP (1 GiB leaves);
    ``wpe``: PASID-entry WPE (supervisor writes honour R/W); ``eafe``: PASID-entry EAFE (EA is
    set along with A).
    """

    levels: int = 4
    haw: int = 48
    fl1gp: bool = True
    wpe: bool = True
    eafe: bool = False

    def __post_init__(self) -> None:
        if self.levels not in (4, 5):
            raise UAPIError(errno.EINVAL, f"first level: {self.levels} levels (FLPM) must be 4 "
                            "or 5", rule="x86.levels")
        if not 32 <= self.haw <= 52:
            raise UAPIError(errno.EINVAL, f"first level: host address width {self.haw} not in "
                            "32..52", rule="x86.haw")

    @property
    def va_bits(self) -> int:
        """Input address width: 48 (4-level) or 57 (5-level)."""
        return 48 if self.levels == 4 else 57


class _FLLevel(NamedTuple):
    level: int
    shift: int
    leaf_test: int  # desc & leaf_test != 0 -> the entry is a leaf (P is set at level 1)
    rsvd_table: int
    rsvd_leaf: int
    oa_mask: int
    size: int


class _FLGeometry(NamedTuple):
    levels: tuple[_FLLevel, ...]
    va_top: int  # iova >> va_top must be 0 or all ones (canonical)
    canon_ones: int
    need: tuple[int, ...]  # access & 15 -> entry bits every level must have
    perm: tuple[int, ...]  # (priv << 3) | (AND of RW, US) | XD-seen -> Access bits


@lru_cache(maxsize=64)
def _geometry(cfg: X86Config) -> _FLGeometry:
    # XD joins every reserved mask: one test per level catches both; the slow path tells
    # them apart (XD alone is never reserved).
    above_haw = (ADDR_MASK & ~((1 << cfg.haw) - 1)) | _XD
    levels = []
    for level in range(cfg.levels, 0, -1):
        shift = 12 + 9 * (level - 1)
        size = 1 << shift
        large = level == 2 or (level == 3 and cfg.fl1gp)
        if level == 1:
            levels.append(_FLLevel(1, shift, _P, 0, above_haw, ADDR_MASK, size))
        elif large:
            low = (size - 1) & ~0x1FFF  # bits (shift-1):13; bit 12 is PAT
            levels.append(_FLLevel(level, shift, _PS, above_haw, above_haw | low,
                                   ADDR_MASK & -size, size))
        else:
            levels.append(_FLLevel(level, shift, 0, above_haw | _PS, 0, 0, size))
    need = tuple(
        _P | (_US if not a & _PRIV else 0)
        | (_RW if a & _WRITE and (cfg.wpe or not a & _PRIV) else 0)
        for a in range(16)
    )
    perm = []
    for key in range(16):
        priv, rw, us, xd = key & 8, key & _RW, key & _US, key & 1
        p = _READ
        if rw or (priv and not cfg.wpe):
            p |= _WRITE
        if not xd:
            p |= _EXEC
        if not us:
            p |= _PRIV
        perm.append(p)
    va_top = cfg.va_bits - 1
    return _FLGeometry(tuple(levels), va_top, (1 << (64 - va_top)) - 1, need, tuple(perm))


@lru_cache(maxsize=64)
def _fast_plans(cfg: X86Config) -> dict[int, FastPlan]:
    """Per access, the walk of the common case (see :data:`~.common.FastPlan`).

    Table entries pass when they grant everything (P, R/W, U/S, no XD) and have no reserved bit,
    so the leaf alone decides the permissions; a leaf passes when it has the bits the access
    needs and no reserved bit (XD counts as reserved only for an execute, which the full walk
    then refuses). The permission key is ``(desc & 6) | XD``.
    """
    geo = _geometry(cfg)
    grant = _P | _RW | _US
    plans: dict[int, FastPlan] = {}
    for access in range(16):
        chk = geo.need[access]
        xd = _XD if access & _EXEC else 0
        perm = tuple(geo.perm[(access & _PRIV) | key] for key in range(8))
        steps: list[FastStep] = []
        for lv in geo.levels:
            leaf = NO_LEAF
            if lv.leaf_test:
                lmask = chk | (lv.rsvd_leaf & ~_XD) | xd
                leaf = (lmask, chk, lv.oa_mask, lv.size - 1, lv.size, lv.level,
                        cfg.levels - lv.level + 1, perm)
            steps.append((lv.shift, lv.leaf_test, grant | lv.rsvd_table | _XD, grant, leaf))
        plans[access] = tuple(steps)
    return plans


class X86Walker:
    """Walks first-level (IA-32e) tables in one table memory under one :class:`X86Config`."""

    def __init__(self, mem: TableMemory, cfg: X86Config) -> None:
        self.mem = mem
        self.cfg = cfg
        geo = _geometry(cfg)
        self._read = mem.read64
        self._levels = geo.levels
        self._va_top = geo.va_top
        self._canon_ones = geo.canon_ones
        self._need = geo.need
        self._perm = geo.perm
        self._a_bits = _A | (_EA if cfg.eafe else 0)
        self._top = cfg.levels
        pages = inline_pages(mem)
        self._fast = {} if pages is None else _fast_plans(cfg)
        # the fast plans of walks that start at each level (walk_partial), cut once here
        self._fast_from = {level: {a: steps[cfg.levels - level:]
                                   for a, steps in self._fast.items()}
                           for level in range(1, cfg.levels + 1)}
        self._get = page_getter(pages)

    def walk(self, root: int, iova: int, access: int, s2: Stage2Translate | None = None,
             update_ad: bool = False) -> WalkResult:
        """Translate ``iova`` for ``access`` through the first-level tables at ``root``.

        Per level, in this order: P=0 -> PTE_FETCH 0x71; U/S=0 for a user request ->
        PERMISSION 0x81; R/W=0 for a write -> PERMISSION 0x85; XD=1 for an execute ->
        PERMISSION 0x82; reserved bits -> PTE_FETCH 0x72 (a reserved-bit entry is an invalid
        entry). Before walking, a non-canonical input -> OOR_ADDRESS 0x80; memory outside the
        address space while reading an entry -> WALK_EABT 0x70. With ``update_ad`` the walk sets
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
                    path.append((start, table, _GRANTED))
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
                path.append((start, table, _GRANTED))
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
        steps = self._fast_from[level].get(access) if inherited == _GRANTED else None
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
        try:
            r = self._walk(table, iova, access, s2, False, level, inherited, path)
        except WalkFault as f:
            f.reads -= skipped
            raise
        return WalkResult(r.oa, r.page_size, r.perm, r.level, r.reads - skipped, r.s2_reads,
                          r.global_)

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
            raise WalkFault(FaultReason.OOR_ADDRESS, stage=1, level=self._levels[0][0],
                            code=VtdFault.NON_CANONICAL, addr=iova, access=access,
                            message=f"input {iova:#x} is not canonical")
        read = self._read
        chk = self._need[access]  # P, plus U/S and R/W as the request needs
        table = root
        acc = 0xFFF if start is None else 0xFF9 | (inherited & 6)  # AND of R/W, U/S so far
        xd = inherited & 1  # XD seen at some level
        s2_reads = 0
        s2_class = "ROOT" if start is None else "TT"
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
                                  code=_nested_code(s2_class, f, _READ),
                                  reads=self._top - level, s2_reads=s2_reads) from None
                hptr = r2.oa
                s2_reads += r2.reads
                s2_class = "TT"
            try:
                desc = read(hptr)
            except MemoryAccessError:
                raise self._fault(FaultReason.WALK_EABT, VtdFault.FL_ACCESS_ERROR, level, iova,
                                  access, s2_reads, hptr, "table outside memory") from None
            if desc & chk != chk:
                raise self._denied(desc, chk, level, iova, access, s2_reads, hptr)
            acc &= desc
            if desc & leaf_test:
                if desc & rsvd_leaf:  # reserved bits or XD
                    xd |= self._xd_or_reserved(desc, rsvd_leaf, level, iova, access, s2_reads,
                                               hptr)
                if update_ad:
                    bits = self._a_bits | (_D if access & _WRITE else 0)
                    if desc & bits != bits:
                        s2_reads = self._set_ad(ptr, hptr, desc | bits, s2, level, iova, access,
                                                s2_reads)
                oa = (desc & oa_mask) | (iova & (size - 1))
                perm = self._perm[(access & _PRIV) | (acc & 6) | xd]
                if s2 is None:
                    return WalkResult(oa, size, perm, level, self._top - level + 1, 0,
                                      bool(desc & _G))
                return self._final(oa, size, perm, level, iova, access, s2_reads,
                                   bool(desc & _G), s2)
            if desc & rsvd_table:  # reserved bits or XD
                xd |= self._xd_or_reserved(desc, rsvd_table, level, iova, access, s2_reads, hptr)
            if update_ad and not desc & _A:
                s2_reads = self._set_ad(ptr, hptr, desc | self._a_bits, s2, level, iova, access,
                                        s2_reads)
            table = desc & ADDR_MASK
            if path is not None:
                path.append((level, table, (acc & 6) | xd))
        raise AssertionError("unreachable: level 1 always holds leaves")  # pragma: no cover

    def _denied(self, desc: int, chk: int, level: int, iova: int, access: int, s2_reads: int,
                ptr: int) -> WalkFault:
        missing = chk & ~desc
        if missing & _P:
            return self._fault(FaultReason.PTE_FETCH, VtdFault.FL_NOT_PRESENT, level, iova,
                               access, s2_reads, ptr, f"entry {desc:#x} not present")
        code = VtdFault.USER if missing & _US else VtdFault.NO_WRITE
        return self._fault(FaultReason.PERMISSION, code, level, iova, access, s2_reads, ptr,
                           f"entry {desc:#x} denies access {access:#x}")

    def _xd_or_reserved(self, desc: int, mask: int, level: int, iova: int, access: int,
                        s2_reads: int, ptr: int) -> int:
        """The slow path of an entry with XD or a reserved bit set: 1 when only XD is set and
        the request does not execute; else the fault (XD is checked before reserved bits)."""
        if desc & _XD and access & _EXEC:
            raise self._fault(FaultReason.PERMISSION, VtdFault.EXECUTE_DISABLE, level, iova,
                              access, s2_reads, ptr, f"entry {desc:#x} has XD")
        rsvd = desc & mask & ~_XD
        if rsvd:
            raise self._fault(FaultReason.PTE_FETCH, VtdFault.FL_RESERVED, level, iova, access,
                              s2_reads, ptr, f"reserved bits {rsvd:#x} set in {desc:#x}")
        return 1

    def _final(self, oa: int, size: int, perm: int, level: int, iova: int, access: int,
               s2_reads: int, global_: bool, s2: Stage2Translate) -> WalkResult:
        reads = self._top - level + 1
        try:
            r2 = s2(oa, access & RWX)
        except WalkFault as f:
            raise restage(f, s2_class="IN", addr=oa, access=access, level=f.level,
                          code=_nested_code("IN", f, access), reads=reads,
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
                              code=_nested_code("AD", f, _WRITE), reads=self._top - level + 1,
                              s2_reads=s2_reads) from None
            s2_reads += r2.reads
            hptr = r2.oa
        self.mem.write64(hptr, value)
        return s2_reads

    def _fault(self, reason: FaultReason, code: int, level: int, iova: int, access: int,
               s2_reads: int, ptr: int, message: str) -> WalkFault:
        return WalkFault(reason, stage=1, level=level, code=code, addr=iova, access=access,
                         fetch_addr=ptr, reads=self._top - level + 1, s2_reads=s2_reads,
                         message=message)


def walk(mem: TableMemory, root: int, iova: int, access: int, *, cfg: X86Config,
         s2: Stage2Translate | None = None, update_ad: bool = False) -> WalkResult:
    """Walk first-level tables once (see :meth:`X86Walker.walk`; build an :class:`X86Walker`
    to walk many times)."""
    return X86Walker(mem, cfg).walk(root, iova, access, s2, update_ad)


class X86PageTable(PageTableBuilder):
    """First-level tables built io-pgtable style (``map``/``unmap``/``iova_to_phys``).

    Input addresses are canonical (the upper half is accepted and indexed like the hardware
    does). Table entries get P|R/W|U/S; leaves get P, R/W for ``Prot.WRITE``, U/S unless
    ``Prot.PRIV``, XD for ``Prot.NOEXEC``, G for ``Prot.GLOBAL``, PCD|PWT for ``Prot.MMIO``, PS
    for 2 MiB/1 GiB leaves. A and D are left for the walker to set.
    """

    cfg: X86Config

    def __init__(self, cfg: X86Config, mem: TableMemory) -> None:
        self.cfg = cfg
        geo = _geometry(cfg)
        levels = tuple(
            Level(lv.level, lv.shift, 0x1FF, lv.size, lv.leaf_test != 0,
                  _PS if lv.level > 1 else 0, 0 if lv.level > 1 else 1)
            for lv in geo.levels
        )
        self._va_top = geo.va_top
        self._canon_ones = geo.canon_ones
        super().__init__(mem, levels, root_size=4096, table_size=4096, oa_bits=cfg.haw,
                         name="first level")

    def _input(self, iova: int, op: str) -> int:
        top = iova >> self._va_top
        if iova < 0 or (top and top != self._canon_ones):
            raise UAPIError(errno.ERANGE, f"first level {op}: iova {iova:#x} is not canonical "
                            f"for {self.cfg.va_bits}-bit paging", rule="pgtable.ia_range")
        return iova

    def _make_walker(self, mem: TableMemory) -> X86Walker:
        return X86Walker(mem, self.cfg)

    def _table_desc(self, addr: int) -> int:
        return addr | _P | _RW | _US

    def _table_addr(self, desc: int) -> int:
        return desc & ADDR_MASK

    def _leaf_desc(self, oa: int, index: int, prot: int) -> int:
        desc = oa | _P
        if prot & Prot.WRITE:
            desc |= _RW
        if not prot & Prot.PRIV:
            desc |= _US
        if prot & Prot.NOEXEC:
            desc |= _XD
        if prot & Prot.GLOBAL:
            desc |= _G
        if prot & Prot.MMIO:
            desc |= _PCD | _PWT
        if self.levels[index].level > 1:
            desc |= _PS
        return desc

    def _leaf_oa(self, desc: int, index: int) -> int:
        return desc & ADDR_MASK & -self.levels[index].size

    def _split_first(self, desc: int, index: int) -> int:
        if self.levels[index + 1].level > 1:
            return desc  # 1 GiB -> 2 MiB: same layout, PAT stays in bit 12
        pat = _PS if desc & _PAT_LARGE else 0  # 2 MiB -> 4 KiB: PAT moves to bit 7
        return (desc & ~(_PS | _PAT_LARGE)) | pat


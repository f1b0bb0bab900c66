"""AArch64 VMSAv8-64 translation tables (LPAE), stage 1 and stage 2, as SMMUv3 walks them.

Granules of 4, 16 and 64 KiB (``g`` = 12/14/16 offset bits, ``g - 3`` index bits per level). The
starting level comes from T0SZ (stage 1: as many levels as the input size needs) or from
S2T0SZ and SL0 (stage 2, where up to 16 start-level tables may be concatenated); an inconsistent
SL0/T0SZ is refused when the configuration is made. Output addresses are 48 bits, or 52 bits
with the 64 KiB granule (OA[51:48] in descriptor bits 15:12).

Walks report SMMUv3 event numbers as native codes (:class:`SmmuEvent`): invalid descriptors,
blocks where none are allowed and inputs outside the configured range are F_TRANSLATION; table or
output addresses beyond the OAS are F_ADDR_SIZE; AF=0 without hardware update is F_ACCESS;
permission failures are F_PERMISSION; memory outside the address space is F_WALK_EABT.
"""

from __future__ import annotations

import errno
from enum import IntEnum, IntFlag
from functools import lru_cache
from typing import NamedTuple

import msgspec

from ..errors import MemoryAccessError, UAPIError
from ..memory import ZERO_QUADS
from ..uapi.consts import FaultPerm, FaultReason
from .builder import Level, PageTableBuilder
from .common import (
    ACCESS_INTS,
    RWX,
    Prot,
    Stage2Translate,
    TableMemory,
    WalkFault,
    WalkResult,
    bad_access,
    bind_stage2,
    inline_pages,
    page_getter,
    restage,
)

__all__ = [
    "LPAEConfig",
    "LPAEPageTable",
    "LPAEWalker",
    "S1Desc",
    "S2Desc",
    "SmmuEvent",
    "TableDesc",
    "s2_sl0",
    "stage2",
    "walk",
]


class SmmuEvent(IntEnum):
    """SMMUv3 event numbers a translation-table walk can raise."""

    F_WALK_EABT = 0x0B
    F_TRANSLATION = 0x10
    F_ADDR_SIZE = 0x11
    F_ACCESS = 0x12
    F_PERMISSION = 0x13


class TableDesc(IntFlag):
    """Table descriptor bits (the hierarchical controls are stage 1 only)."""

    VALID = 1 << 0
    TABLE = 1 << 1
    PXN_TABLE = 1 << 59
    UXN_TABLE = 1 << 60
    AP_TABLE_NO_EL0 = 1 << 61
    AP_TABLE_RO = 1 << 62
    NS_TABLE = 1 << 63


class S1Desc(IntFlag):
    """Stage-1 block/page descriptor bits (bit 1 set = page at level 3)."""

    VALID = 1 << 0
    PAGE = 1 << 1
    ATTR_INDX = 0b111 << 2
    NS = 1 << 5
    AP_EL0 = 1 << 6  # AP[1]: unprivileged access
    AP_RO = 1 << 7  # AP[2]: read-only
    SH = 0b11 << 8
    AF = 1 << 10
    NG = 1 << 11
    DBM = 1 << 51
    CONTIG = 1 << 52
    PXN = 1 << 53
    UXN = 1 << 54


class S2Desc(IntFlag):
    """Stage-2 block/page descriptor bits."""

    VALID = 1 << 0
    PAGE = 1 << 1
    MEM_ATTR = 0b1111 << 2
    S2AP_R = 1 << 6
    S2AP_W = 1 << 7
    SH = 0b11 << 8
    AF = 1 << 10
    DBM = 1 << 51
    CONTIG = 1 << 52
    XN = 1 << 54


_AF, _NG, _AP_EL0, _AP_RO, _DBM = 0x400, 0x800, 0x40, 0x80, 1 << 51
_PXN, _UXN = 1 << 53, 1 << 54
_S2AP_R, _S2AP_W, _S2XN = 0x40, 0x80, 1 << 54
_READ, _WRITE, _EXEC, _PRIV = (int(FaultPerm.READ), int(FaultPerm.WRITE), int(FaultPerm.EXEC),
                               int(FaultPerm.PRIV))
_GRANULE_BITS = {4096: 12, 16384: 14, 65536: 16}
_PAGE_BASE = -4096
_RWX_OF = tuple(a & 7 for a in range(16))
_OAS = (32, 36, 40, 42, 44, 48, 52)
#: S2SL0 -> starting level, per granule (None: reserved or needs 52-bit DS, not modelled).
_SL0_LEVEL: dict[int, tuple[int | None, ...]] = {
    4096: (2, 1, 0, 3),  # SL0 = 3 (level 3) only with small translation tables (STT)
    16384: (3, 2, 1, None),
    65536: (3, 2, 1, None),
}


class LPAEConfig(msgspec.Struct, frozen=True):
    """A translation regime: the CD (stage 1) or STE (stage 2) fields the walk depends on.

    ``stage`` 1 or 2; ``granule`` 4096/16384/65536 (TG0/S2TG); ``t0sz`` T0SZ or S2T0SZ (input
    size = 64 - t0sz); ``sl0`` S2SL0 (stage 2 only); ``oas`` IPS/S2PS in bits (32..52; 52 only
    with the 64 KiB granule); ``ha``/``hd`` hardware access flag / dirty state (HTTU); ``hpd``
    (stage 1) disables the hierarchical APTable/XNTable controls; ``stt`` allows small
    translation tables (T0SZ up to 48).
    """

    stage: int = 1
    granule: int = 4096
    t0sz: int = 16
    sl0: int | None = None
    oas: int = 48
    ha: bool = False
    hd: bool = False
    hpd: bool = False
    stt: bool = False

    def __post_init__(self) -> None:
        _geometry(self)

    @property
    def ias(self) -> int:
        """Input address size in bits (64 - T0SZ)."""
        return 64 - self.t0sz


class _LLevel(NamedTuple):
    level: int
    shift: int
    index_mask: int
    table_bit: int  # 2 above level 3: bits 1:0 = 11 is a table; 0 at level 3
    leaf_need: int  # desc & leaf_need == leaf_need for a valid leaf; -1: no leaf here
    oa_mask: int  # -size: a leaf's output bits below its size are not address bits
    size: int


class _LGeometry(NamedTuple):
    levels: tuple[_LLevel, ...]
    ias: int
    root_entries: int
    perm: tuple[int, ...]
    addr_mask: int  # a descriptor's address field (granule-aligned; OA[51:48] apart)


def _refuse(cfg: LPAEConfig, why: str, rule: str) -> UAPIError:
    return UAPIError(errno.EINVAL, f"LPAE stage {cfg.stage} ({cfg.granule // 1024} KiB granule, "
                     f"T0SZ {cfg.t0sz}, SL0 {cfg.sl0}, OAS {cfg.oas}): {why}", rule=rule)


def _s1_perm(key: int) -> int:
    """Stage-1 permissions for a request, from AP[2:1], PXN/UXN, the table controls and PnU."""
    el0, ro, pxn, uxn = key & 1, key & 2, key & 4, key & 8
    pxnt, uxnt, apt_no_el0, apt_ro, priv = key & 16, key & 32, key & 64, key & 128, key & 256
    el0_ok = el0 and not apt_no_el0
    write = not ro and not apt_ro
    if priv:
        # a location writable at EL0 is never executable at EL1 (AP = 01)
        exe = not pxn and not pxnt and not (el0 and not ro)
        return (_READ | (_WRITE if write else 0) | (_EXEC if exe else 0)
                | (0 if el0_ok else _PRIV))
    if not el0_ok:
        return 0
    return _READ | (_WRITE if write else 0) | (_EXEC if not uxn and not uxnt else 0)


def _s2_perm(key: int) -> int:
    return ((_READ if key & 1 else 0) | (_WRITE if key & 2 else 0)
            | (_EXEC if not key & 4 else 0))


@lru_cache(maxsize=64)
def _geometry(cfg: LPAEConfig) -> _LGeometry:
    g = _GRANULE_BITS.get(cfg.granule)
    if g is None:
        raise _refuse(cfg, "granule must be 4096, 16384 or 65536", "lpae.granule")
    if cfg.stage not in (1, 2):
        raise _refuse(cfg, "stage must be 1 or 2", "lpae.stage")
    if cfg.oas not in _OAS or (cfg.oas == 52 and cfg.granule != 65536):
        raise _refuse(cfg, "OAS must be one of 32/36/40/42/44/48, or 52 with the 64 KiB "
                      "granule", "lpae.oas")
    s = g - 3
    ia = 64 - cfg.t0sz
    min_tsz = 12 if cfg.granule == 65536 else 16
    max_tsz = (47 if cfg.granule == 65536 else 48) if cfg.stt else 39
    if not min_tsz <= cfg.t0sz <= max_tsz:
        raise _refuse(cfg, f"T0SZ must be in {min_tsz}..{max_tsz}", "lpae.t0sz")
    if cfg.stage == 1:
        if cfg.sl0 is not None:
            raise _refuse(cfg, "SL0 applies to stage 2 only", "lpae.sl0")
        start = 4 - (ia - g + s - 1) // s
    else:
        if cfg.sl0 is None or not 0 <= cfg.sl0 <= 3:
            raise _refuse(cfg, "stage 2 needs SL0 in 0..3", "lpae.sl0")
        level = _SL0_LEVEL[cfg.granule][cfg.sl0]
        if level is None or (level == 3 and cfg.granule == 4096 and not cfg.stt):
            raise _refuse(cfg, "SL0 is reserved for this granule", "lpae.sl0")
        # the start level must resolve at least one bit and at most 4 bits of concatenation
        if not g + s * (3 - level) < ia <= g + s * (4 - level) + 4:
            raise _refuse(cfg, f"SL0 {cfg.sl0} starts at level {level}, which cannot resolve a "
                          f"{ia}-bit input (needs {g + s * (3 - level) + 1}.."
                          f"{g + s * (4 - level) + 4} bits, at most 16 concatenated tables)",
                          "lpae.sl0_t0sz")
        start = level
    if cfg.hd and not cfg.ha:
        raise _refuse(cfg, "hardware dirty state (HD) needs hardware access flag (HA)",
                      "lpae.httu")
    oa_field = (((1 << 48) - 1) if cfg.oas == 52 else ((1 << 50) - 1))
    levels = []
    root_entries = 1 << (ia - (g + s * (3 - start)))
    for level in range(start, 4):
        shift = g + s * (3 - level)
        size = 1 << shift
        if level == 3:
            leaf_need = 3
        elif level == 2 or (level == 1 and cfg.granule == 4096) or \
                (level == 1 and cfg.granule == 65536 and cfg.oas == 52):
            leaf_need = 1
        else:
            leaf_need = -1
        imask = root_entries - 1 if level == start else (1 << s) - 1
        levels.append(_LLevel(level, shift, imask, 2 if level < 3 else 0, leaf_need,
                              -size, size))
    if cfg.stage == 1:
        perm = tuple(_s1_perm(k & (0x10F if cfg.hpd else 0x1FF)) for k in range(512))
    else:
        perm = tuple(_s2_perm(k) for k in range(8))
    return _LGeometry(tuple(levels), ia, root_entries, perm, oa_field & -cfg.granule)


def s2_sl0(granule: int, ias: int) -> int:
    """The S2SL0 Linux's io-pgtable picks for an ``ias``-bit IPA: the fewest levels a stage-1
    walk would need, then, when that starts at level 0 with at most 16 entries, level 1 with
    that many concatenated tables."""
    g = _GRANULE_BITS.get(granule)
    if g is None:
        raise UAPIError(errno.EINVAL, f"s2_sl0: granule {granule} must be 4096, 16384 or "
                        "65536", rule="lpae.granule")
    s = g - 3
    start = 4 - (ias - g + s - 1) // s
    if start == 0 and (1 << (ias - (g + s * 3))) <= 16:
        start += 1
    table = _SL0_LEVEL[granule]
    if start not in table:
        raise UAPIError(errno.EINVAL, f"s2_sl0: no SL0 starts a {ias}-bit IPA at level {start} "
                        f"with a {granule} granule", rule="lpae.sl0_t0sz")
    return table.index(start)


#: One level of the LPAE fast path: ``(shift, index_mask, table_mask, leaf_mask, leaf_want,
#: leaf)``: a table entry has ``desc & table_mask == 3``; a leaf has ``desc & leaf_mask ==
#: leaf_want`` and ``leaf`` = ``(oa_mask, offset_mask, size, level, reads, perm)``.
_LLeaf = tuple[int, int, int, int, int, tuple[int, ...]]
_LStep = tuple[int, int, int, int, int, _LLeaf]
_NO_LEAF: _LLeaf = (0, 0, 0, 0, 0, ())


@lru_cache(maxsize=64)
def _fast_plans(cfg: LPAEConfig) -> dict[int, tuple[_LStep, ...]]:
    """Per access, the walk of the common case (cf. :data:`~.common.FastPlan`): valid table
    descriptors without hierarchical controls and within the OAS, then a block or page with AF
    set within the OAS whose permissions allow the access. The permission key of a leaf is
    ``AP[2:1] | (PXN, UXN) << 2`` (stage 1) or ``S2AP | XN << 2`` (stage 2). No plan with the
    52-bit output layout."""
    if cfg.oas == 52:
        return {}
    geo = _geometry(cfg)
    above = geo.addr_mask & ~((1 << cfg.oas) - 1)
    controls = 0 if cfg.stage == 2 or cfg.hpd else 0xF << 59
    plans: dict[int, tuple[_LStep, ...]] = {}
    for access in range(16):
        if cfg.stage == 1:
            perm = tuple(geo.perm[k | ((access & _PRIV) << 5)] for k in range(16))
        else:
            perm = tuple(geo.perm[k & 7] for k in range(16))
        steps: list[_LStep] = []
        for lv in geo.levels:
            tmask = (3 | controls | above) if lv.table_bit else 0
            if lv.leaf_need == -1:
                lmask, lwant, leaf = 0, 1, _NO_LEAF  # no leaf at this level: never matches
            else:
                lmask, lwant = 3 | _AF | above, lv.leaf_need | _AF
                leaf = (geo.addr_mask & lv.oa_mask, lv.size - 1, lv.size, lv.level,
                        lv.level - geo.levels[0].level + 1, perm)
            steps.append((lv.shift, lv.index_mask, tmask, lmask, lwant, leaf))
        plans[access] = tuple(steps)
    return plans


class LPAEWalker:
    """Walks VMSAv8-64 tables in one table memory under one :class:`LPAEConfig`."""

    def __init__(self, mem: TableMemory, cfg: LPAEConfig) -> None:
        self.mem = mem
        self.cfg = cfg
        geo = _geometry(cfg)
        self._read = mem.read64
        self._levels = geo.levels
        self._ias = geo.ias
        self._oas = cfg.oas
        self._perm = geo.perm
        self._stage = cfg.stage
        self._s1 = cfg.stage == 1
        self._hpd = cfg.hpd
        self._oa52 = cfg.oas == 52
        self._start = geo.levels[0].level
        self._addr_mask = geo.addr_mask
        self._xn_shift = 51 if self._s1 else 52  # (PXN, UXN) or (XN, -) to key bits 3:2
        self._limit = 1 << geo.ias
        root_bytes = geo.root_entries * 8
        self._paged = cfg.granule == 4096 and root_bytes <= 4096
        self._root_misalign = root_bytes - 1
        pages = inline_pages(mem)
        self._fast = {} if pages is None else _fast_plans(cfg)
        self._get = page_getter(pages)

    def walk(self, root: int, iova: int, access: int, s2: Stage2Translate | None = None,
             update_ad: bool = False) -> WalkResult:
        """Translate ``iova`` (VA or IPA) for ``access`` through the tables at ``root``.

        Checks, in order: input range (F_TRANSLATION, OOR_ADDRESS); per level an invalid
        descriptor or a block where none is allowed (F_TRANSLATION, PTE_FETCH), a table address
        beyond the OAS (F_ADDR_SIZE, OOR_ADDRESS); at the leaf the output address size
        (F_ADDR_SIZE), AF=0 (F_ACCESS, unless HA and ``update_ad``: then AF is set), permission
        (F_PERMISSION; a write to a DBM page is made dirty instead when HD and ``update_ad``).
        With ``s2`` (stage 1 only) every descriptor IPA and the output are translated through
        stage 2.
        """
        steps = self._fast.get(access)
        if steps is not None and s2 is None and not update_ad and 0 <= iova < self._limit:
            # The common case, read inline from the page view; anything else (a fault, AF=0, a
            # table control, a permission the leaf refuses) leaves it for the full walk below.
            get = self._get
            addr_mask = self._addr_mask
            # 4 KiB granule with a root of at most one page, aligned to its size: every table is
            # indexed within one page (off: the root's first entry within its page)
            paged = self._paged and not root & self._root_misalign
            table, off = (root & _PAGE_BASE, (root & 0xFFF) >> 3) if paged else (root, 0)
            for shift, imask, tmask, lmask, lwant, leaf in steps:
                if paged:
                    desc = get(table, ZERO_QUADS)[off + ((iova >> shift) & imask)]
                else:
                    ptr = table + (((iova >> shift) & imask) << 3)
                    desc = get(ptr & _PAGE_BASE, ZERO_QUADS)[(ptr >> 3) & 0x1FF]
                if desc & tmask == 3:
                    table = desc & addr_mask
                    off = 0
                    continue
                if desc & lmask != lwant:
                    break
                oa_mask, offset, size, level, reads, perm_of = leaf
                perm = perm_of[((desc >> 6) & 3) | ((desc >> self._xn_shift) & 0xC)]
                if perm & _RWX_OF[access] != _RWX_OF[access]:
                    break
                return WalkResult((desc & oa_mask) | (iova & offset), size, perm, level, reads,
                                  0, self._s1 and not desc & _NG)
        return self._walk(root, iova, access, s2, update_ad)

    def _walk(self, root: int, iova: int, access: int, s2: Stage2Translate | None,
              update_ad: bool) -> WalkResult:
        """The full walk: every check in the architecture's order, nested walks, HTTU."""
        if s2 is not None and not self._s1:
            raise UAPIError(errno.EINVAL, "LPAE stage 2: stage-2 tables are not translated by "
                            "another stage", rule="lpae.nested")
        if not 0 <= access < 16:
            raise bad_access(access)
        access = ACCESS_INTS[access]
        if not 0 <= iova < 1 << self._ias:
            raise WalkFault(FaultReason.OOR_ADDRESS, stage=self._stage, level=self._start,
                            code=SmmuEvent.F_TRANSLATION, addr=iova, access=access,
                            message=f"input {iova:#x} beyond the {self._ias}-bit input range")
        read = self._read
        oas = self._oas
        oa52 = self._oa52
        addr_mask = self._addr_mask
        table = root
        tb = 0  # OR of the stage-1 table descriptors' hierarchical bits
        s2_reads = 0
        s2_class = "ROOT"
        for level, shift, imask, table_bit, leaf_need, oa_mask, size in self._levels:
            ptr = table + (((iova >> shift) & imask) << 3)
            if s2 is None:
                hptr = ptr
            else:
                try:
                    r2 = s2(ptr, _READ)
                except WalkFault as f:
                    raise restage(f, s2_class=s2_class, addr=ptr, access=access, level=f.level,
                                  code=f.code, reads=level - self._start,
                                  s2_reads=s2_reads) from None
                hptr = r2.oa
                s2_reads += r2.reads
                s2_class = "TT"
            try:
                desc = read(hptr)
            except MemoryAccessError:
                raise self._fault(FaultReason.WALK_EABT, SmmuEvent.F_WALK_EABT, level, iova,
                                  access, s2_reads, hptr, "table outside memory") from None
            if not desc & 1:
                raise self._fault(FaultReason.PTE_FETCH, SmmuEvent.F_TRANSLATION, level, iova,
                                  access, s2_reads, hptr, f"descriptor {desc:#x} invalid")
            oa = desc & addr_mask
            if oa52:
                oa |= (desc & 0xF000) << 36
            if desc & table_bit:
                if oa >> oas:
                    raise self._addr_size(level, iova, access, s2_reads, hptr, oa)
                tb |= desc
                table = oa
                continue
            if desc & leaf_need != leaf_need:
                raise self._fault(FaultReason.PTE_FETCH, SmmuEvent.F_TRANSLATION, level, iova,
                                  access, s2_reads, hptr,
                                  f"descriptor {desc:#x} is no valid leaf at level {level}")
            oa &= oa_mask
            if oa >> oas:
                raise self._addr_size(level, iova, access, s2_reads, hptr, oa)
            if self._s1:
                perm = self._perm[((desc >> 6) & 3) | ((desc >> 51) & 0xC)
                                  | ((tb >> 55) & 0xF0) | ((access & _PRIV) << 5)]
            else:
                perm = self._perm[((desc >> 6) & 3) | ((desc >> 52) & 4)]
            if not desc & _AF or access & ~perm & RWX:
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
                              code=f.code, reads=reads, s2_reads=s2_reads) from None
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
        if not desc & _AF:
            if not (cfg.ha and update_ad):
                raise self._fault(FaultReason.ACCESS, SmmuEvent.F_ACCESS, level, iova, access,
                                  s2_reads, hptr, f"descriptor {desc:#x} has AF=0")
            new |= _AF
        if access & _WRITE and not perm & _WRITE and cfg.hd and update_ad and desc & _DBM:
            dirty = new & ~_AP_RO if self._s1 else new | _S2AP_W
            if self._s1:
                dperm = self._perm[((dirty >> 6) & 3) | ((dirty >> 51) & 0xC)
                                   | ((tb >> 55) & 0xF0) | ((access & _PRIV) << 5)]
            else:
                dperm = self._perm[((dirty >> 6) & 3) | ((dirty >> 52) & 4)]
            if dperm & _WRITE:
                new, perm = dirty, dperm
        if access & ~perm & RWX:
            raise self._fault(FaultReason.PERMISSION, SmmuEvent.F_PERMISSION, level, iova, access,
                              s2_reads, hptr, f"descriptor {desc:#x} denies access {access:#x}")
        if new != desc:
            if s2 is not None:
                try:
                    r2 = s2(ptr, _WRITE)
                except WalkFault as f:
                    raise restage(f, s2_class="AD", addr=ptr, access=access, level=f.level,
                                  code=f.code, reads=level - self._start + 1,
                                  s2_reads=s2_reads) from None
                s2_reads += r2.reads
                hptr = r2.oa
            self.mem.write64(hptr, new)
        return new, perm, s2_reads

    def _fault(self, reason: FaultReason, code: int, level: int, iova: int, access: int,
               s2_reads: int, ptr: int, message: str) -> WalkFault:
        return WalkFault(reason, stage=self._stage, level=level, code=code, addr=iova,
                         access=access, fetch_addr=ptr, reads=level - self._start + 1,
                         s2_reads=s2_reads, message=message)

    def _addr_size(self, level: int, iova: int, access: int, s2_reads: int, ptr: int,
                   oa: int) -> WalkFault:
        return self._fault(FaultReason.OOR_ADDRESS, SmmuEvent.F_ADDR_SIZE, level, iova, access,
                           s2_reads, ptr, f"address {oa:#x} beyond the {self._oas}-bit OAS")


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


def _encode_oa(addr: int, oa52: bool) -> int:
    return (addr & 0xFFFF_FFFF_F000) | ((addr >> 36) & 0xF000) if oa52 else addr


class LPAEPageTable(PageTableBuilder):
    """VMSAv8-64 tables built io-pgtable style (``map``/``unmap``/``iova_to_phys``).

    Leaves get AF; stage 1: AP[2] for read-only, AP[1] unless ``Prot.PRIV``, nG unless
    ``Prot.GLOBAL``, UXN|PXN for ``Prot.NOEXEC``, AttrIndx 1 (cacheable) / 2 (device) / 0;
    stage 2: S2AP from READ/WRITE, XN for ``Prot.NOEXEC``, MemAttr WB / Device / NC. A stage-2
    root of several concatenated tables is one allocation aligned to its size.
    """

    cfg: LPAEConfig

    def __init__(self, cfg: LPAEConfig, mem: TableMemory) -> None:
        self.cfg = cfg
        geo = _geometry(cfg)
        levels = tuple(
            Level(lv.level, lv.shift, lv.index_mask, lv.size, lv.leaf_need != -1,
                  3 if lv.level < 3 else 0, 3 if lv.level < 3 else 1)
            for lv in geo.levels
        )
        self._oa_mask = geo.addr_mask
        self._oa52 = cfg.oas == 52
        self._ias = geo.ias
        super().__init__(mem, levels, root_size=max(geo.root_entries * 8, 4096),
                         table_size=cfg.granule, oa_bits=cfg.oas, name=f"LPAE stage {cfg.stage}")

    def _input(self, iova: int, op: str) -> int:
        if not 0 <= iova < 1 << self._ias:
            raise UAPIError(errno.ERANGE, f"LPAE stage {self.cfg.stage} {op}: iova {iova:#x} "
                            f"beyond the {self._ias}-bit input range", rule="pgtable.ia_range")
        return iova

    def _make_walker(self, mem: TableMemory) -> LPAEWalker:
        return LPAEWalker(mem, self.cfg)

    def _table_desc(self, addr: int) -> int:
        return _encode_oa(addr, self._oa52) | 3

    def _table_addr(self, desc: int) -> int:
        oa = desc & self._oa_mask
        return oa | ((desc & 0xF000) << 36) if self._oa52 else oa

    def _leaf_desc(self, oa: int, index: int, prot: int) -> int:
        desc = _encode_oa(oa, self._oa52) | _AF | (3 if self.levels[index].level == 3 else 1)
        if self.cfg.stage == 1:
            if not prot & Prot.PRIV:
                desc |= _AP_EL0
            if not prot & Prot.WRITE:
                desc |= _AP_RO
            if not prot & Prot.GLOBAL:
                desc |= _NG
            if prot & Prot.NOEXEC:
                desc |= _PXN | _UXN
            attr = 2 if prot & Prot.MMIO else 1 if prot & Prot.CACHE else 0
            desc |= attr << 2
        else:
            desc |= (_S2AP_R if prot & Prot.READ else 0) | (_S2AP_W if prot & Prot.WRITE else 0)
            if prot & Prot.NOEXEC:
                desc |= _S2XN
            attr = 0x1 if prot & Prot.MMIO else 0xF if prot & Prot.CACHE else 0x5
            desc |= attr << 2
        if not prot & Prot.MMIO:
            desc |= (3 if prot & Prot.CACHE else 2) << 8  # inner / outer shareable
        return desc

    def _leaf_oa(self, desc: int, index: int) -> int:
        return self._table_addr(desc) & -self.levels[index].size

    def _split_first(self, desc: int, index: int) -> int:
        return desc | 2 if self.levels[index + 1].level == 3 else desc

    def stage2(self, *, update_ad: bool = False) -> Stage2Translate:
        """A stage-2 translate function over these (stage-2) tables."""
        return stage2(self.mem, self.root, self.cfg, update_ad=update_ad)

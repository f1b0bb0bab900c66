"""AArch64 translation regimes: the CD/STE fields a walk depends on, and what they make of the
levels (start level, concatenated stage-2 roots, where blocks are allowed, the permission
tables and the walker's common case), computed once per :class:`LPAEConfig`."""

from __future__ import annotations

import errno
from functools import lru_cache
from typing import NamedTuple

import msgspec

from ...errors import UAPIError
from ...uapi.consts import FaultPerm
from .bits import S1Desc, TableDesc

__all__ = ["LLevel", "LPAEConfig", "LStep", "fast_plans", "geometry", "s2_sl0"]

_READ, _WRITE, _EXEC, _PRIV = (int(FaultPerm.READ), int(FaultPerm.WRITE), int(FaultPerm.EXEC),
                               int(FaultPerm.PRIV))
_GRANULE_BITS = {4096: 12, 16384: 14, 65536: 16}
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
        geometry(self)

    @property
    def ias(self) -> int:
        """Input address size in bits (64 - T0SZ)."""
        return 64 - self.t0sz


class LLevel(NamedTuple):
    """One level as a walk tests it."""

    level: int
    shift: int
    index_mask: int
    table_bit: int  # 2 above level 3: bits 1:0 = 11 is a table; 0 at level 3
    leaf_need: int  # desc & leaf_need == leaf_need for a valid leaf; -1: no leaf here
    oa_mask: int  # -size: a leaf's output bits below its size are not address bits
    size: int


class LGeometry(NamedTuple):
    """Everything a walk under one configuration needs, computed once."""

    levels: tuple[LLevel, ...]
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
def geometry(cfg: LPAEConfig) -> LGeometry:
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
        levels.append(LLevel(level, shift, imask, 2 if level < 3 else 0, leaf_need,
                              -size, size))
    if cfg.stage == 1:
        perm = tuple(_s1_perm(k & (0x10F if cfg.hpd else 0x1FF)) for k in range(512))
    else:
        perm = tuple(_s2_perm(k) for k in range(8))
    return LGeometry(tuple(levels), ia, root_entries, perm, oa_field & -cfg.granule)


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
LLeaf = tuple[int, int, int, int, int, tuple[int, ...]]
LStep = tuple[int, int, int, int, int, LLeaf]
NO_LEAF: LLeaf = (0, 0, 0, 0, 0, ())


@lru_cache(maxsize=64)
def fast_plans(cfg: LPAEConfig) -> dict[int, tuple[LStep, ...]]:
    """Per access, the walk of the common case (cf. :data:`~..common.FastPlan`): valid table
    descriptors without hierarchical controls and within the OAS, then a block or page with AF
    set within the OAS whose permissions allow the access. The permission key of a leaf is
    ``AP[2:1] | (PXN, UXN) << 2`` (stage 1) or ``S2AP | XN << 2`` (stage 2). No plan with the
    52-bit output layout."""
    if cfg.oas == 52:
        return {}
    geo = geometry(cfg)
    above = geo.addr_mask & ~((1 << cfg.oas) - 1)
    controls = 0 if cfg.stage == 2 or cfg.hpd else TableDesc.CONTROLS
    plans: dict[int, tuple[LStep, ...]] = {}
    for access in range(16):
        if cfg.stage == 1:
            perm = tuple(geo.perm[k | ((access & _PRIV) << 5)] for k in range(16))
        else:
            perm = tuple(geo.perm[k & 7] for k in range(16))
        steps: list[LStep] = []
        for lv in geo.levels:
            tmask = (3 | controls | above) if lv.table_bit else 0
            if lv.leaf_need == -1:
                lmask, lwant, leaf = 0, 1, NO_LEAF  # no leaf at this level: never matches
            else:
                lmask, lwant = 3 | S1Desc.AF | above, lv.leaf_need | S1Desc.AF
                leaf = (geo.addr_mask & lv.oa_mask, lv.size - 1, lv.size, lv.level,
                        lv.level - geo.levels[0].level + 1, perm)
            steps.append((lv.shift, lv.index_mask, tmask, lmask, lwant, leaf))
        plans[access] = tuple(steps)
    return plans

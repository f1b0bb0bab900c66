"""IA-32e paging-entry bits and what a configuration makes of them (reference 1.6).

Each bit is named once, in :class:`FLEntry`; the per-level masks a walk tests (which bits make a
leaf, which are reserved under a host address width and CAP.FL1GP) are computed from them once
per :class:`X86Config` by :func:`geometry`, and the walker's common case by :func:`fast_plans`.
"""

from __future__ import annotations

import errno
from functools import lru_cache
from typing import Final, NamedTuple

import msgspec

from ...errors import UAPIError
from ...uapi.consts import FaultPerm
from ..common import NO_LEAF, FastPlan, FastStep

__all__ = ["ADDR_MASK", "GRANTED", "FLEntry", "X86Config", "fast_plans", "geometry"]


class FLEntry:
    """IA-32e paging-entry bits, as plain ints (PS is PAT in a 4 KiB PTE; PAT_LARGE is PAT in a
    large leaf; EA is set with A when the PASID entry has EAFE)."""

    P: Final = 1 << 0
    RW: Final = 1 << 1
    US: Final = 1 << 2
    PWT: Final = 1 << 3
    PCD: Final = 1 << 4
    A: Final = 1 << 5
    D: Final = 1 << 6
    PS: Final = 1 << 7
    G: Final = 1 << 8
    EA: Final = 1 << 10
    PAT_LARGE: Final = 1 << 12
    XD: Final = 1 << 63


#: Address field of an entry (bits 51:12).
ADDR_MASK: Final = ((1 << 52) - 1) & ~0xFFF

#: What entries that grant everything pass down: ``(R/W & U/S) << 1 | XD`` with R/W and U/S
#: set and no XD (the ``inherited`` of a walk that skips nothing).
GRANTED: Final = FLEntry.RW | FLEntry.US

_READ, _WRITE, _EXEC, _PRIV = (int(FaultPerm.READ), int(FaultPerm.WRITE), int(FaultPerm.EXEC),
                               int(FaultPerm.PRIV))


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


class FLLevel(NamedTuple):
    """One level as a walk tests it."""

    level: int
    shift: int
    leaf_test: int  # desc & leaf_test != 0 -> the entry is a leaf (P is set at level 1)
    rsvd_table: int
    rsvd_leaf: int
    oa_mask: int
    size: int


class FLGeometry(NamedTuple):
    """Everything a walk under one configuration needs, computed once."""

    levels: tuple[FLLevel, ...]
    va_top: int  # iova >> va_top must be 0 or all ones (canonical)
    canon_ones: int
    need: tuple[int, ...]  # access & 15 -> entry bits every level must have
    perm: tuple[int, ...]  # (priv << 3) | (AND of RW, US) | XD-seen -> Access bits


@lru_cache(maxsize=64)
def geometry(cfg: X86Config) -> FLGeometry:
    """The levels, canonical-address test and permission tables of ``cfg``."""
    P, RW, US, PS, XD = FLEntry.P, FLEntry.RW, FLEntry.US, FLEntry.PS, FLEntry.XD
    # XD joins every reserved mask: one test per level catches both; the slow path tells
    # them apart (XD alone is never reserved).
    above_haw = (ADDR_MASK & ~((1 << cfg.haw) - 1)) | XD
    levels = []
    for level in range(cfg.levels, 0, -1):
        shift = 12 + 9 * (level - 1)
        size = 1 << shift
        large = level == 2 or (level == 3 and cfg.fl1gp)
        if level == 1:
            levels.append(FLLevel(1, shift, P, 0, above_haw, ADDR_MASK, size))
        elif large:
            low = (size - 1) & ~0x1FFF  # bits (shift-1):13; bit 12 is PAT
            levels.append(FLLevel(level, shift, PS, above_haw, above_haw | low,
                                  ADDR_MASK & -size, size))
        else:
            levels.append(FLLevel(level, shift, 0, above_haw | PS, 0, 0, size))
    need = tuple(
        P | (US if not a & _PRIV else 0)
        | (RW if a & _WRITE and (cfg.wpe or not a & _PRIV) else 0)
        for a in range(16)
    )
    perm = []
    for key in range(16):
        priv, rw, us, xd = key & 8, key & RW, key & US, key & 1
        p = _READ
        if rw or (priv and not cfg.wpe):
            p |= _WRITE
        if not xd:
            p |= _EXEC
        if not us:
            p |= _PRIV
        perm.append(p)
    va_top = cfg.va_bits - 1
    return FLGeometry(tuple(levels), va_top, (1 << (64 - va_top)) - 1, need, tuple(perm))


@lru_cache(maxsize=64)
def fast_plans(cfg: X86Config) -> dict[int, FastPlan]:
    """Per access, the walk of the common case (see :data:`~..common.FastPlan`).

    Table entries pass when they grant everything (P, R/W, U/S, no XD) and have no reserved bit,
    so the leaf alone decides the permissions; a leaf passes when it has the bits the access
    needs and no reserved bit (XD counts as reserved only for an execute, which the full walk
    then refuses). The permission key is ``(desc & (R/W | U/S)) | XD``.
    """
    geo = geometry(cfg)
    grant = FLEntry.P | FLEntry.RW | FLEntry.US
    plans: dict[int, FastPlan] = {}
    for access in range(16):
        chk = geo.need[access]
        xd = FLEntry.XD if access & _EXEC else 0
        perm = tuple(geo.perm[(access & _PRIV) | key] for key in range(8))
        steps: list[FastStep] = []
        for lv in geo.levels:
            leaf = NO_LEAF
            if lv.leaf_test:
                lmask = chk | (lv.rsvd_leaf & ~FLEntry.XD) | xd
                leaf = (lmask, chk, lv.oa_mask, lv.size - 1, lv.size, lv.level,
                        cfg.levels - lv.level + 1, perm)
            steps.append((lv.shift, lv.leaf_test, grant | lv.rsvd_table | FLEntry.XD, grant,
                          leaf))
        plans[access] = tuple(steps)
    return plans

"""VT-d second-level paging-entry bits and what a configuration makes of them.

Each bit is named once, in :class:`SLEntry`. Which bits are reserved depends on the
capabilities in force (host address width, SLLPS, ECAP.SC for SNP, ECAP.DT for TM):
:class:`SLConfig` carries them and :func:`geometry` computes the masks once per configuration.
"""

from __future__ import annotations

import errno
from functools import lru_cache
from typing import Final, NamedTuple

import msgspec

from ...errors import UAPIError
from ...uapi.consts import FaultPerm
from ..common import NO_LEAF, FastPlan, FastStep

__all__ = ["ADDR_MASK", "GRANTED", "SLConfig", "SLEntry", "fast_plans", "geometry"]


class SLEntry:
    """Second-level paging-entry bits, as plain ints (all levels; EMT/IPAT/D/SNP/TM mean
    something in leaves)."""

    R: Final = 1 << 0
    W: Final = 1 << 1
    X: Final = 1 << 2
    EMT: Final = 0b111 << 3
    IPAT: Final = 1 << 6
    PS: Final = 1 << 7
    A: Final = 1 << 8
    D: Final = 1 << 9
    SNP: Final = 1 << 11
    TM: Final = 1 << 62


#: Address field of an entry (bits 51:12); the bits at and above the host address width are
#: reserved.
ADDR_MASK: Final = ((1 << 52) - 1) & ~0xFFF

#: What skipped entries that grant everything pass down (the AND of their R, W, X).
GRANTED: Final = SLEntry.R | SLEntry.W | SLEntry.X

#: CAP.SLLPS bits: 2 MiB and 1 GiB leaves.
SLLPS_2M: Final = 1 << 0
SLLPS_1G: Final = 1 << 1

_READ, _WRITE, _EXEC = int(FaultPerm.READ), int(FaultPerm.WRITE), int(FaultPerm.EXEC)


class SLConfig(msgspec.Struct, frozen=True):
    """The capabilities a second-level walk runs under.

    ``aw``: PASID-entry AW (1 = 39-bit/3-level, 2 = 48-bit/4-level, 3 = 57-bit/5-level);
    ``haw``: host address width (bits of HPA; the entry's address bits at and above it are
    reserved); ``sllps``: CAP.SLLPS (bit 0 = 2 MiB, bit 1 = 1 GiB pages); ``sc``: ECAP.SC (SNP
    allowed in leaves); ``dt``: ECAP.DT (TM allowed in leaves); ``slee``: PASID-entry SLEE
    (execute requests check X); ``slade``: PASID-entry SLADE (hardware sets A/D).
    """

    aw: int = 2
    haw: int = 48
    sllps: int = SLLPS_2M | SLLPS_1G
    sc: bool = False
    dt: bool = False
    slee: bool = False
    slade: bool = False

    def __post_init__(self) -> None:
        if self.aw not in (1, 2, 3):
            raise UAPIError(errno.EINVAL, f"second level: AW {self.aw} is not 1, 2 or 3 "
                            "(39/48/57-bit)", rule="vtd_sl.aw")
        if not 32 <= self.haw <= 52:
            raise UAPIError(errno.EINVAL, f"second level: host address width {self.haw} not in "
                            "32..52", rule="vtd_sl.haw")
        if self.sllps & ~(SLLPS_2M | SLLPS_1G):
            raise UAPIError(errno.EINVAL, f"second level: SLLPS {self.sllps:#x} has bits beyond "
                            "2 MiB/1 GiB", rule="vtd_sl.sllps")

    @property
    def levels(self) -> int:
        """Number of table levels (AW + 2)."""
        return self.aw + 2

    @property
    def input_bits(self) -> int:
        """Input (GPA/IOVA) width: 30 + 9 * AW."""
        return 30 + 9 * self.aw


class SLLevel(NamedTuple):
    """One level as a walk tests it."""

    level: int
    shift: int
    leaf_test: int  # desc & leaf_test != 0 -> the entry is a leaf
    rsvd_table: int
    rsvd_leaf: int
    oa_mask: int
    size: int


class SLGeometry(NamedTuple):
    """Everything a walk under one configuration needs, computed once."""

    levels: tuple[SLLevel, ...]
    input_bits: int
    need: tuple[int, ...]  # access & 15 -> entry bits every level must have
    perm: tuple[int, ...]  # AND of R/W/X over the walk -> Access bits


@lru_cache(maxsize=64)
def geometry(cfg: SLConfig) -> SLGeometry:
    """The levels and permission tables of ``cfg``."""
    R, W, X, PS, SNP, TM = SLEntry.R, SLEntry.W, SLEntry.X, SLEntry.PS, SLEntry.SNP, SLEntry.TM
    above_haw = ADDR_MASK & ~((1 << cfg.haw) - 1)
    # Non-leaf: SNP and TM are leaf-only (reserved here), as are the bits above HAW.
    rsvd_table = above_haw | SNP | TM
    rsvd_leaf = above_haw | (0 if cfg.sc else SNP) | (0 if cfg.dt else TM)
    large = {2: bool(cfg.sllps & SLLPS_2M), 3: bool(cfg.sllps & SLLPS_1G)}
    levels = []
    for level in range(cfg.levels, 0, -1):
        shift = 12 + 9 * (level - 1)
        size = 1 << shift
        if level == 1:
            levels.append(SLLevel(1, shift, R | W, 0, rsvd_leaf, ADDR_MASK, size))
        elif large.get(level, False):
            # a large leaf's address bits below its size are reserved
            levels.append(SLLevel(level, shift, PS, rsvd_table,
                                  rsvd_leaf | ((size - 1) & ~0xFFF), ADDR_MASK & -size, size))
        else:
            # PS is reserved where no leaf is allowed (levels 4/5, or without SLLPS)
            levels.append(SLLevel(level, shift, 0, rsvd_table | PS, 0, 0, size))
    need = tuple(
        (R if a & _READ else 0) | (W if a & _WRITE else 0)
        | (X if a & _EXEC and cfg.slee else 0)
        for a in range(16)
    )
    perm = tuple(
        (_READ if b & R else 0) | (_WRITE if b & W else 0)
        | (_EXEC if b & X or not cfg.slee else 0)
        for b in range(8)
    )
    return SLGeometry(tuple(levels), cfg.input_bits, need, perm)


def table_grant(cfg: SLConfig) -> int:
    """The bits a table entry of the common case grants: R, W, and X with SLEE."""
    return SLEntry.R | SLEntry.W | (SLEntry.X if cfg.slee else 0)


@lru_cache(maxsize=64)
def fast_plans(cfg: SLConfig) -> dict[int, FastPlan]:
    """Per access, the walk of the common case (see :data:`~..common.FastPlan`).

    Table entries pass when they grant R, W (and X with SLEE) and have no reserved bit, so the
    leaf alone decides the permissions (key: the leaf's R/W/X); a leaf passes when it has the
    bits the access needs and no reserved bit. An access that needs neither R nor W has no fast
    plan: only the full walk can tell a non-present entry from a granted one.
    """
    geo = geometry(cfg)
    grant = table_grant(cfg)
    plans: dict[int, FastPlan] = {}
    for access in range(16):
        need = geo.need[access]
        if not need & (SLEntry.R | SLEntry.W):
            continue
        steps: list[FastStep] = []
        for lv in geo.levels:
            leaf = NO_LEAF
            if lv.leaf_test:
                leaf = (need | lv.rsvd_leaf, need, lv.oa_mask, lv.size - 1, lv.size, lv.level,
                        cfg.levels - lv.level + 1, geo.perm)
            steps.append((lv.shift, lv.leaf_test, grant | lv.rsvd_table, grant, leaf))
        plans[access] = tuple(steps)
    return plans

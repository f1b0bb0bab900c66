"""Intel VT-d second-level paging: the host-owned GPA -> HPA tables of scalable mode.

3, 4 or 5 levels of 512-entry tables, chosen by the PASID entry's AW (1, 2, 3: 39-, 48-, 57-bit
input). An entry is present when R or W is set; a request needs R (read), W (write) and, with
SLEE, X (execute) at every level. PS makes a 2 MiB (level 2) or 1 GiB (level 3) leaf where
CAP.SLLPS allows it. Which bits are reserved depends on the capabilities in force (host address
width, SLLPS, ECAP.SC for SNP, ECAP.DT for TM): :class:`SLConfig` carries them and the masks are
computed once per configuration.

Native fault codes are the scalable-mode fault reasons of :class:`VtdFault`; walks of these
tables report ``stage=2``.
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
    NO_LEAF,
    FastPlan,
    FastStep,
    Prot,
    Stage2Translate,
    TableMemory,
    WalkFault,
    WalkResult,
    bad_access,
    bind_stage2,
    inline_pages,
    page_getter,
)

__all__ = [
    "SLConfig",
    "SLEntry",
    "SLPageTable",
    "SLWalker",
    "VtdFault",
    "stage2",
    "walk",
]


class SLEntry(IntFlag):
    """Second-level paging entry bits (all levels; EMT/IPAT/D/SNP/TM mean something in leaves)."""

    R = 1 << 0
    W = 1 << 1
    X = 1 << 2
    EMT = 0b111 << 3
    IPAT = 1 << 6
    PS = 1 << 7
    A = 1 << 8
    D = 1 << 9
    SNP = 1 << 11
    TM = 1 << 62


#: Address field of an entry (bits 51:12); the bits at and above the host address width are
#: reserved.
ADDR_MASK = ((1 << 52) - 1) & ~0xFFF


class VtdFault(IntEnum):
    """VT-d scalable-mode fault reasons met while walking first- and second-level tables."""

    FL_ACCESS_ERROR = 0x70
    FL_NOT_PRESENT = 0x71
    FL_RESERVED = 0x72
    NESTED_ROOT_INVALID = 0x73
    NESTED_BEYOND_MGAW = 0x74
    NESTED_ROOT_READ = 0x75
    NESTED_TABLE_READ = 0x76
    NESTED_AD_WRITE = 0x77
    SL_ACCESS_ERROR = 0x78
    SL_PERMISSION = 0x79
    SL_RESERVED = 0x7A
    SL_PTPTR_INVALID = 0x7B
    SL_AD_NO_SNOOP = 0x7C
    NON_CANONICAL = 0x80
    USER = 0x81
    EXECUTE_DISABLE = 0x82
    BEYOND_AW = 0x83
    SL_ENTRY_BEYOND_MAX = 0x84
    NO_WRITE = 0x85
    NO_READ = 0x86


_R, _W, _X, _PS, _A, _D = 1, 2, 4, 0x80, 0x100, 0x200
_SNP, _TM = 0x800, 1 << 62
_READ, _WRITE, _EXEC = int(FaultPerm.READ), int(FaultPerm.WRITE), int(FaultPerm.EXEC)
_SLLPS_2M, _SLLPS_1G = 1, 2


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
    sllps: int = _SLLPS_2M | _SLLPS_1G
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
        if self.sllps & ~3:
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


class _SLLevel(NamedTuple):
    level: int
    shift: int
    leaf_test: int  # desc & leaf_test != 0 -> the entry is a leaf
    rsvd_table: int
    rsvd_leaf: int
    oa_mask: int
    size: int


class _SLGeometry(NamedTuple):
    levels: tuple[_SLLevel, ...]
    input_bits: int
    need: tuple[int, ...]  # access & 15 -> entry bits every level must have
    perm: tuple[int, ...]  # AND of R/W/X over the walk -> Access bits


@lru_cache(maxsize=64)
def _geometry(cfg: SLConfig) -> _SLGeometry:
    above_haw = ADDR_MASK & ~((1 << cfg.haw) - 1)
    # Non-leaf: SNP and TM are leaf-only (reserved here), as are the bits above HAW.
    rsvd_table = above_haw | _SNP | _TM
    rsvd_leaf = above_haw | (0 if cfg.sc else _SNP) | (0 if cfg.dt else _TM)
    large = {2: bool(cfg.sllps & _SLLPS_2M), 3: bool(cfg.sllps & _SLLPS_1G)}
    levels = []
    for level in range(cfg.levels, 0, -1):
        shift = 12 + 9 * (level - 1)
        size = 1 << shift
        if level == 1:
            levels.append(_SLLevel(1, shift, _R | _W, 0, rsvd_leaf, ADDR_MASK, size))
        elif large.get(level, False):
            # a large leaf's address bits below its size are reserved
            levels.append(_SLLevel(level, shift, _PS, rsvd_table,
                                   rsvd_leaf | ((size - 1) & ~0xFFF), ADDR_MASK & -size, size))
        else:
            # PS is reserved where no leaf is allowed (levels 4/5, or without SLLPS)
            levels.append(_SLLevel(level, shift, 0, rsvd_table | _PS, 0, 0, size))
    need = tuple(
        (_R if a & _READ else 0) | (_W if a & _WRITE else 0)
        | (_X if a & _EXEC and cfg.slee else 0)
        for a in range(16)
    )
    perm = tuple(
        (_READ if b & _R else 0) | (_WRITE if b & _W else 0)
        | (_EXEC if b & _X or not cfg.slee else 0)
        for b in range(8)
    )
    return _SLGeometry(tuple(levels), cfg.input_bits, need, perm)


@lru_cache(maxsize=64)
def _fast_plans(cfg: SLConfig) -> dict[int, FastPlan]:
    """Per access, the walk of the common case (see :data:`~.common.FastPlan`).

    Table entries pass when they grant R, W (and X with SLEE) and have no reserved bit, so the
    leaf alone decides the permissions (key: the leaf's R/W/X); a leaf passes when it has the
    bits the access needs and no reserved bit. An access that needs neither R nor W has no fast
    plan: only the full walk can tell a non-present entry from a granted one.
    """
    geo = _geometry(cfg)
    grant = _R | _W | (_X if cfg.slee else 0)
    plans: dict[int, FastPlan] = {}
    for access in range(16):
        need = geo.need[access]
        if not need & (_R | _W):
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


def _deny_code(need: int, desc: int) -> int:
    missing = need & ~desc
    if missing & _W:
        return VtdFault.NO_WRITE
    if missing & _R:
        return VtdFault.NO_READ
    return VtdFault.SL_PERMISSION  # X missing with SLEE: no dedicated code (UNCERTAIN: 0x79)


class SLWalker:
    """Walks second-level tables in one table memory under one :class:`SLConfig`."""

    def __init__(self, mem: TableMemory, cfg: SLConfig) -> None:
        self.mem = mem
        self.cfg = cfg
        geo = _geometry(cfg)
        self._read = mem.read64
        self._levels = geo.levels
        self._input_bits = geo.input_bits
        self._need = geo.need
        self._perm = geo.perm
        self._slade = cfg.slade
        self._top = cfg.levels
        self._limit = 1 << geo.input_bits
        pages = inline_pages(mem)
        self._fast = {} if pages is None else _fast_plans(cfg)
        self._get = page_getter(pages)

    def walk(self, root: int, iova: int, access: int, s2: Stage2Translate | None = None,
             update_ad: bool = False) -> WalkResult:
        """Translate ``iova`` for ``access`` through the tables at ``root`` (an HPA).

        Faults (``stage=2``): input beyond AW -> OOR_ADDRESS 0x83; R=W=0 -> PERMISSION with the
        access's 0x85 (write) / 0x86 (read) (the format has no present bit: a non-present entry
        is a permission failure for the access, and the hardware records it as one); R/W
        missing at some level -> PERMISSION 0x85/0x86, X missing with SLEE -> 0x79;
        reserved bits -> PTE_FETCH 0x7A (a reserved-bit entry is an invalid entry); memory
        outside the address space -> WALK_EABT 0x78. With SLADE and ``update_ad`` the walk sets
        A in every entry used and D in the leaf for a write.
        """
        steps = self._fast.get(access)
        if steps is not None and s2 is None and (not update_ad or not self._slade) \
                and 0 <= iova < self._limit:
            # The common case, read inline from the page view; anything else leaves the loop
            # for the full walk below (see X86Walker.walk).
            get = self._get
            table = root
            for shift, leaf_test, tmask, want, leaf in steps:
                desc = get(table, ZERO_QUADS)[(iova >> shift) & 0x1FF]
                if desc & leaf_test:
                    lmask, lwant, oa_mask, offset, size, level, reads, perm = leaf
                    if desc & lmask != lwant:
                        break
                    return WalkResult((desc & oa_mask) | (iova & offset), size,
                                                   perm[desc & 7], level, reads, 0, False)
                if desc & tmask != want:
                    break
                table = desc & ADDR_MASK
        return self._walk(root, iova, access, s2, update_ad)

    def _walk(self, root: int, iova: int, access: int, s2: Stage2Translate | None,
              update_ad: bool) -> WalkResult:
        """The full walk: every check in the hardware's order, A/D updates."""
        if s2 is not None:
            raise UAPIError(errno.EINVAL, "second level: second-level tables are not translated "
                            "by another stage", rule="vtd_sl.nested")
        if not 0 <= access < 16:
            raise bad_access(access)
        access = ACCESS_INTS[access]
        if not 0 <= iova < 1 << self._input_bits:
            raise WalkFault(FaultReason.OOR_ADDRESS, stage=2, level=self._levels[0].level,
                            code=VtdFault.BEYOND_AW, addr=iova, access=access,
                            message=f"input {iova:#x} beyond the {self._input_bits}-bit AW")
        read = self._read
        need = self._need[access]
        table = root
        acc = 7
        for level, shift, leaf_test, rsvd_table, rsvd_leaf, oa_mask, size in self._levels:
            ptr = table + (((iova >> shift) & 0x1FF) << 3)
            try:
                desc = read(ptr)
            except MemoryAccessError:
                raise self._fault(FaultReason.WALK_EABT, VtdFault.SL_ACCESS_ERROR, level, iova,
                                  access, ptr, "table outside memory") from None
            if not desc & 3:
                raise self._fault(FaultReason.PERMISSION, _deny_code(need | _R, desc), level,
                                  iova, access, ptr, f"entry {desc:#x} not present")
            if desc & need != need:
                raise self._fault(FaultReason.PERMISSION, _deny_code(need, desc), level, iova,
                                  access, ptr, f"entry {desc:#x} denies access {access:#x}")
            acc &= desc
            if desc & leaf_test:
                if desc & rsvd_leaf:
                    raise self._reserved(level, iova, access, ptr, desc, rsvd_leaf)
                if update_ad and self._slade:
                    self._set_ad(ptr, desc, _A | (_D if access & _WRITE else 0))
                return WalkResult((desc & oa_mask) | (iova & (size - 1)), size,
                                               self._perm[acc], level, self._top - level + 1,
                                               0, False)
            if desc & rsvd_table:
                raise self._reserved(level, iova, access, ptr, desc, rsvd_table)
            if update_ad and self._slade:
                self._set_ad(ptr, desc, _A)
            table = desc & ADDR_MASK
        raise AssertionError("unreachable: level 1 always holds leaves")  # pragma: no cover

    def _set_ad(self, ptr: int, desc: int, bits: int) -> None:
        if desc & bits != bits:
            self.mem.write64(ptr, desc | bits)

    def _fault(self, reason: FaultReason, code: int, level: int, iova: int, access: int,
               ptr: int, message: str) -> WalkFault:
        return WalkFault(reason, stage=2, level=level, code=code, addr=iova, access=access,
                         fetch_addr=ptr, reads=self._top - level + 1, message=message)

    def _reserved(self, level: int, iova: int, access: int, ptr: int, desc: int,
                  mask: int) -> WalkFault:
        return self._fault(FaultReason.PTE_FETCH, VtdFault.SL_RESERVED, level, iova, access,
                           ptr, f"reserved bits {desc & mask:#x} set in {desc:#x}")


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


class SLPageTable(PageTableBuilder):
    """Second-level tables built io-pgtable style (``map``/``unmap``/``iova_to_phys``).

    Table entries get R|W (and X with SLEE); leaves get R/W from ``Prot``, X with SLEE unless
    ``Prot.NOEXEC``, SNP for ``Prot.CACHE`` when ECAP.SC is set, PS for 2 MiB/1 GiB leaves.
    """

    cfg: SLConfig

    def __init__(self, cfg: SLConfig, mem: TableMemory) -> None:
        self.cfg = cfg
        geo = _geometry(cfg)
        levels = tuple(
            Level(lv.level, lv.shift, 0x1FF, lv.size, lv.leaf_test != 0,
                  _PS if lv.level > 1 else 0, 0 if lv.level > 1 else 1)
            for lv in geo.levels
        )
        self._table_bits = _R | _W | (_X if cfg.slee else 0)
        super().__init__(mem, levels, root_size=4096, table_size=4096, oa_bits=cfg.haw,
                         name="second level")

    def _input(self, iova: int, op: str) -> int:
        if not 0 <= iova < 1 << self.cfg.input_bits:
            raise UAPIError(errno.ERANGE, f"second level {op}: iova {iova:#x} beyond the "
                            f"{self.cfg.input_bits}-bit AW", rule="pgtable.ia_range")
        return iova

    def _make_walker(self, mem: TableMemory) -> SLWalker:
        return SLWalker(mem, self.cfg)

    def _table_desc(self, addr: int) -> int:
        return addr | self._table_bits

    def _table_addr(self, desc: int) -> int:
        return desc & ADDR_MASK

    def _leaf_desc(self, oa: int, index: int, prot: int) -> int:
        desc = oa | (_R if prot & Prot.READ else 0) | (_W if prot & Prot.WRITE else 0)
        if self.cfg.slee and not prot & Prot.NOEXEC:
            desc |= _X
        if self.cfg.sc and prot & Prot.CACHE:
            desc |= _SNP
        if self.levels[index].level > 1:
            desc |= _PS
        return desc

    def _leaf_oa(self, desc: int, index: int) -> int:
        return desc & ADDR_MASK & -self.levels[index].size

    def _split_first(self, desc: int, index: int) -> int:
        return desc & ~_PS if self.levels[index + 1].level == 1 else desc

    def stage2(self, *, update_ad: bool = False) -> Stage2Translate:
        """A stage-2 translate function over these tables (for nested first-level walks)."""
        return bind_stage2(self.walker, self.root, update_ad)

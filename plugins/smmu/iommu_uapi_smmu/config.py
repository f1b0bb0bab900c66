"""A stream's decoded configuration: its STE and CDs turned into walkers, the way the SMMU uses
them.

:class:`StreamConfig` holds what an STE selects — abort, bypass, stage 1, stage 2 or nested —
with the stage-2 walker bound to S2TTB, the VMID that tags the stream's TLB entries, and the CD
table (read through stage 2 when nested). :class:`Stage1` holds one CD's translation regime:
the two VA halves (TTB0 for VA[55] = 0, TTB1 for VA[55] = 1), their walkers, top-byte-ignore
and EPD, the ASID and the fault behaviour (R, S, A). Building either checks legality first:
:func:`~.ste.check_ste` and :func:`~.cd.check_cd` give the C_BAD_STE / C_BAD_CD reason.
"""

from __future__ import annotations

from typing import NamedTuple

from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable.common import (
    FaultKind,
    Stage2Translate,
    TableMemory,
    WalkFault,
    bind_stage2,
)
from iommu_uapi.pgtable.lpae import LPAEConfig, LPAEWalker, S1Desc
from iommu_uapi.uapi.consts import FaultPerm

from .cd import Cd, check_cd, s1_config
from .cdtable import CdTable
from .events import ConfigFault, EventType
from .idr import SmmuCaps
from .iotlb import EL2
from .ste import Ste, SteConfig, Strw, check_ste, s2_config
from .walkcache import SmmuWalkCaches

__all__ = ["AccessFlagView", "Half", "Stage1", "StreamConfig", "canonical_va"]

_AF = int(S1Desc.AF)  # bit 10 in stage-1 and stage-2 leaves alike
_PRIV, _EXEC, _WRITE = int(FaultPerm.PRIV), int(FaultPerm.EXEC), int(FaultPerm.WRITE)


class AccessFlagView:
    """Table memory as a walk with access-flag faults disabled (CD.AFFD, STE.S2AFFD) sees it:
    every descriptor reads with AF set, so AF = 0 is treated as AF = 1 without being written
    back. Bit 10 is ignored in table descriptors and an invalid descriptor stays invalid."""

    def __init__(self, mem: TableMemory) -> None:
        self._mem = mem
        self.write64 = mem.write64
        self.alloc = mem.alloc
        self.free = mem.free

    def read64(self, addr: int) -> int:
        """The descriptor at ``addr`` with AF set."""
        return self._mem.read64(addr) | _AF


def _tables(mem: PhysicalMemory, affd: bool) -> TableMemory:
    return AccessFlagView(mem) if affd else mem


_LOW56 = (1 << 56) - 1
_TOP8 = 0xFF << 56


def canonical_va(va: int) -> int:
    """``va`` with bits 63:56 replaced by copies of bit 55."""
    return (va & _LOW56) | (_TOP8 if va >> 55 & 1 else 0)


class Half(NamedTuple):
    """One VA half of a CD: its walker (None when EPDx = 1), table base, input size and TBI."""

    walker: LPAEWalker | None
    root: int
    ias: int
    tbi: bool


class Stage1:
    """The stage-1 regime of one CD (legal under the capability set it was built with)."""

    __slots__ = ("_select", "abort", "asid", "cd", "ha", "halves", "post_checks", "record",
                 "stall", "tbi")

    def __init__(self, cd: Cd, caps: SmmuCaps, mem: PhysicalMemory, *, s1stalld: bool) -> None:
        why = check_cd(cd, caps, s1stalld=s1stalld)
        if why is not None:
            raise ConfigFault(EventType.C_BAD_CD, f"ILLEGAL CD: {why}")
        self.cd = cd
        self.asid = cd.ASID if caps.asid16 else cd.ASID & 0xFF
        halves = []
        for n in (0, 1):
            tsz, _, epd, ttb = cd.half(n)
            tbi = cd.TBI0 if n == 0 else cd.TBI1
            if epd:
                halves.append(Half(None, 0, 64 - tsz, tbi))
            else:
                walker = LPAEWalker(_tables(mem, cd.AFFD), s1_config(cd, n, caps))
                halves.append(Half(walker, ttb, 64 - tsz, tbi))
        self.halves = (halves[0], halves[1])
        #: per half, what :meth:`select` tests: (the half, the VA bits below the top byte or
        #: all, the input size, what the bits above it must hold, the input mask); a half
        #: EPD disables or whose TTB lies beyond the output size never passes
        self._select = tuple(self._selector(n, h) for n, h in enumerate(self.halves))
        self.record = cd.R
        self.stall = cd.S
        # TERM_MODEL = 1: a terminated transaction always aborts (CD.A is not honoured)
        self.abort = cd.A or caps.term_model
        #: whether :meth:`denies` can refuse anything (CD.WXN or CD.PAN set)
        self.post_checks = bool(cd.WXN or cd.PAN)
        #: CD.HA: the walks update Access flags (and go uncached)
        self.ha = bool(cd.HA)
        #: whether either half ignores the top byte (TBI0, TBI1)
        self.tbi = bool(cd.TBI0 or cd.TBI1)

    @staticmethod
    def _selector(n: int, half: Half) -> tuple[Half, int, int, int, int]:
        top = 56 if half.tbi else 64
        usable = half.walker is not None and not half.root >> half.walker.cfg.oas
        want = (((1 << (top - half.ias)) - 1) if n else 0) if usable else -1
        return half, (1 << top) - 1, half.ias, want, (1 << half.ias) - 1

    def tlb_key(self, va: int) -> int:
        """The address a TLB holds ``va`` under: with TBI for its half the top byte is ignored,
        so ``va`` is taken as bits 55:0 sign-extended from bit 55 (the form TLBI addresses are
        matched in)."""
        if not self.tbi:
            return va
        n = (va >> 55) & 1
        if not self.halves[n].tbi:
            return va
        return canonical_va(va)

    def denies(self, access: int, perm: int) -> str | None:
        """What the CD's WXN and PAN refuse of a translation the tables allow: WXN an
        instruction fetch from a writable page, PAN a privileged data access to a page
        unprivileged accesses may use (``perm`` without PRIV)."""
        cd = self.cd
        if cd.WXN and access & _EXEC and perm & _WRITE:
            return "WXN: instruction fetch from a writable page"
        if cd.PAN and access & _PRIV and not access & _EXEC and not perm & _PRIV:
            return "PAN: privileged data access to an unprivileged page"
        return None

    def select(self, va: int, access: int) -> tuple[Half, int]:
        """The VA half ``va`` falls in and the walker's input (``va`` below the region size);
        a VA outside both regions, or in a half with EPD = 1, is F_TRANSLATION without a walk, a
        TTBx beyond the effective IPS is F_ADDR_SIZE."""
        n = (va >> 55) & 1
        half, top_mask, ias, want, in_mask = self._select[n]
        if (va & top_mask) >> ias == want:
            return half, va & in_mask
        return self._outside(n, va, access)

    def _outside(self, n: int, va: int, access: int) -> tuple[Half, int]:
        """:meth:`select`'s checks in their order, for a VA that is not the common case."""
        half = self.halves[n]
        top = 56 if half.tbi else 64
        above = (va & ((1 << top) - 1)) >> half.ias
        if above != (((1 << (top - half.ias)) - 1) if n else 0):
            raise WalkFault(FaultKind.INPUT_RANGE, stage=1, level=0, addr=va, access=access,
                            message=f"VA {va:#x} outside the TTB{n} region "
                                    f"({half.ias}-bit, TBI{n}={int(half.tbi)})")
        if half.walker is None:
            raise WalkFault(FaultKind.INPUT_RANGE, stage=1, level=0, addr=va, access=access,
                            message=f"VA {va:#x} in the TTB{n} half, which EPD{n} disables")
        oas = half.walker.cfg.oas
        if half.root >> oas:
            raise WalkFault(FaultKind.ADDR_SIZE, stage=1, level=0, addr=va, access=access,
                            message=f"TTB{n} {half.root:#x} beyond the {oas}-bit output size")
        return half, va & ((1 << half.ias) - 1)


class StreamConfig:
    """What the STE of one StreamID selects, decoded and checked.

    ``config`` the STE's Config (reserved encodings as ABORT); ``vmid`` the VMID tagging the
    stream's TLB entries (0 when stage 2 is not implemented, :data:`~.iotlb.EL2` for an EL2
    stream); ``s2`` the stage-2 translate
    function (stage 2 or nested); ``cd_table`` the CD table (stage 1 or nested; its IPAs are
    translated by ``s2`` when nested); ``record_s2``/``stall_s2``: STE.S2R/S2S. ``s2_walk`` is
    ``s2`` through the SMMU's stage-2 walk cache (``walks``; ``s2`` itself without one or with
    S2HA), what translation walks use.
    """

    __slots__ = ("caps", "cd_table", "config", "mem", "record_s2", "s2", "s2_cfg", "s2_walk",
                 "sid", "ste", "vmid")

    def __init__(self, sid: int, ste: Ste, caps: SmmuCaps, mem: PhysicalMemory,
                 walks: SmmuWalkCaches | None = None) -> None:
        why = check_ste(ste, caps)
        if why is not None:
            raise ConfigFault(EventType.C_BAD_STE, f"StreamID {sid:#x}: ILLEGAL STE: {why}")
        self.sid = sid
        self.ste = ste
        self.caps = caps
        self.mem = mem
        self.config = ste.config
        translating = self.config in (SteConfig.S1_TRANS, SteConfig.S2_TRANS, SteConfig.NESTED)
        if ste.STRW == Strw.EL2:
            self.vmid = EL2  # the EL2 regime: its own TLB entries, no VMID
        else:
            self.vmid = ste.S2VMID if caps.s2p and translating else 0
        self.s2_cfg: LPAEConfig | None = None
        self.s2: Stage2Translate | None = None
        self.s2_walk: Stage2Translate | None = None
        if ste.stage2:
            self.s2_cfg = s2_config(ste, caps)
            walker = LPAEWalker(_tables(mem, ste.S2AFFD), self.s2_cfg)
            self.s2 = self.s2_walk = bind_stage2(walker, ste.S2TTB, ste.S2HA)
            if walks is not None and not ste.S2HA:
                self.s2_walk = walks.stage2(walker, ste.S2TTB, self.vmid)
        self.record_s2 = ste.S2R
        self.cd_table = CdTable(mem, ste, self.s2) if ste.stage1 else None

    @property
    def stall_s2(self) -> bool:
        """Stage-2 faults stall (STE.S2S)."""
        return self.ste.S2S

    def stage1(self, ssid: int) -> tuple[Stage1, int, int]:
        """The stage-1 regime of CD ``ssid`` with the configuration and stage-2 reads its fetch
        took; raises :class:`ConfigFault` (C_BAD_SUBSTREAMID, F_CD_FETCH, a stage-2 fault on
        the CD's IPA, C_BAD_CD)."""
        assert self.cd_table is not None
        cd, reads, s2_reads = self.cd_table.fetch(ssid)
        return Stage1(cd, self.caps, self.mem, s1stalld=self.ste.S1STALLD), reads, s2_reads

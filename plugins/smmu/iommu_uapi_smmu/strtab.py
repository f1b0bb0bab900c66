"""The stream table in memory: linear or two-level, read the way the SMMU reads it.

Linear: 2^LOG2SIZE STEs at STRTAB_BASE, the STE of StreamID ``sid`` at base + 64·sid. Two-level:
an L1 table of 8-byte descriptors indexed by ``sid >> SPLIT``, each pointing at an L2 array of
2^(Span-1) STEs indexed by ``sid & (2^SPLIT - 1)``. A StreamID the table does not cover is
C_BAD_STREAMID; a read outside memory is F_STE_FETCH (FetchAddr = the failed read).
"""

from __future__ import annotations

import errno

from iommu_uapi.errors import MemoryAccessError, UAPIError
from iommu_uapi.hw.bits import Field
from iommu_uapi.memory import PhysicalMemory

from .events import ConfigFault, EventType
from .idr import SmmuCaps, StLevel
from .record import SmmuRecord
from .registers import StrtabBaseCfg, StrtabFmt
from .ste import STE_SIZE, Ste

__all__ = ["L1STD_SIZE", "SPLITS", "L1Std", "StreamTable"]

L1STD_SIZE = 8
#: STRTAB_BASE_CFG.SPLIT values: L2 tables of 4 KiB, 16 KiB and 64 KiB.
SPLITS = frozenset({6, 8, 10})


class L1Std(SmmuRecord, frozen=True, gc=False):
    """Level-1 stream table descriptor: Span (0 invalid; 1..11: the L2 array holds
    2^(Span-1) STEs; 12..31 reserved, as 0) and the L2 array's address (bits 55:6)."""

    LAYOUT = {"Span": Field(0, 5), "L2Ptr": Field(6, 50, 6)}
    Span: int = 0
    L2Ptr: int = 0

    @property
    def l2_entries(self) -> int:
        """STEs in the L2 array (0 when the descriptor is invalid or its Span reserved)."""
        return 1 << (self.Span - 1) if 1 <= self.Span <= 11 else 0


class StreamTable:
    """The stream table STRTAB_BASE and STRTAB_BASE_CFG describe, over ``mem``.

    The covered StreamIDs are capped at IDR1.SIDSIZE bits. ``FMT`` two-level needs
    IDR0.ST_LEVEL and a SPLIT of 6, 8 or 10 (``UAPIError(EINVAL)`` otherwise: the model refuses
    a configuration whose behaviour the architecture leaves unpredictable).
    """

    def __init__(self, mem: PhysicalMemory, base: int, cfg: StrtabBaseCfg,
                 caps: SmmuCaps) -> None:
        self.mem = mem
        self.base = base
        self.log2size = min(cfg.LOG2SIZE, caps.sidsize)
        self.two_level = cfg.FMT == StrtabFmt.TWO_LEVEL
        if cfg.FMT not in (StrtabFmt.LINEAR, StrtabFmt.TWO_LEVEL):
            raise UAPIError(errno.EINVAL, f"STRTAB_BASE_CFG.FMT {cfg.FMT} is reserved",
                            rule="smmu.strtab.fmt")
        if self.two_level and caps.st_level != StLevel.TWO_LEVEL:
            raise UAPIError(errno.EINVAL, "two-level stream table without IDR0.ST_LEVEL",
                            rule="smmu.strtab.fmt")
        if self.two_level and cfg.SPLIT not in SPLITS:
            raise UAPIError(errno.EINVAL, f"STRTAB_BASE_CFG.SPLIT {cfg.SPLIT} is not 6, 8 or "
                            "10", rule="smmu.strtab.split")
        self.split = cfg.SPLIT

    def ste_address(self, sid: int) -> tuple[int, int]:
        """``(address of the STE of sid, configuration reads made)``; raises
        :class:`ConfigFault` C_BAD_STREAMID or F_STE_FETCH."""
        if not 0 <= sid < 1 << self.log2size:
            raise ConfigFault(EventType.C_BAD_STREAMID,
                              f"StreamID {sid:#x} beyond the {self.log2size}-bit stream table")
        if not self.two_level:
            return self.base + sid * STE_SIZE, 0
        l1_addr = self.base + (sid >> self.split) * L1STD_SIZE
        try:
            desc = L1Std.from_int(self.mem.read64(l1_addr))
        except MemoryAccessError:
            raise ConfigFault(EventType.F_STE_FETCH, f"L1 stream descriptor at {l1_addr:#x} "
                              "unreadable", fetch_addr=l1_addr) from None
        index = sid & ((1 << self.split) - 1)
        if index >= desc.l2_entries:
            raise ConfigFault(EventType.C_BAD_STREAMID,
                              f"StreamID {sid:#x}: L1 descriptor Span {desc.Span} does not "
                              f"cover L2 index {index}")
        return desc.L2Ptr + index * STE_SIZE, 1

    def fetch(self, sid: int) -> tuple[Ste, int]:
        """``(STE of sid, configuration reads made)`` (the L1 descriptor and the STE each count
        one); raises :class:`ConfigFault` C_BAD_STREAMID or F_STE_FETCH."""
        addr, reads = self.ste_address(sid)
        try:
            raw = self.mem.read(addr, STE_SIZE)
        except MemoryAccessError:
            raise ConfigFault(EventType.F_STE_FETCH, f"STE at {addr:#x} unreadable",
                              fetch_addr=addr) from None
        return Ste.from_bytes(raw), reads + 1

"""The Context Descriptor table of a stream: linear or two-level, read the way the SMMU reads it.

STE.S1ContextPtr points at 2^S1CDMax CDs (linear) or at an L1 table of 8-byte descriptors whose
L2 tables hold 64 CDs (4 KiB leaves) or 1024 CDs (64 KiB leaves). In nested mode (STE.Config =
111) S1ContextPtr and every L2Ptr are IPAs: each fetch is first translated by stage 2, and its
descriptor reads are counted. A SubstreamID the table does not cover, or an invalid L1
descriptor, is C_BAD_SUBSTREAMID; a read outside memory is F_CD_FETCH; a stage-2 fault on the way
is that fault (the model records it with S2 = 1, CLASS = CD).
"""

from __future__ import annotations

from typing import NamedTuple

from iommu_uapi.errors import MemoryAccessError
from iommu_uapi.hw.bits import Field, bit
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable.common import Stage2Translate, WalkFault
from iommu_uapi.uapi.consts import FaultPerm

from .cd import CD_SIZE, Cd
from .events import ConfigFault, EventType, walk_event_type
from .record import SmmuRecord
from .ste import S1Fmt, Ste

__all__ = ["L1CD_SIZE", "L2_SHIFT", "CdFetch", "CdTable", "L1Cd"]

L1CD_SIZE = 8
#: S1Fmt -> log2 of the CDs in one L2 table (two-level formats only).
L2_SHIFT = {S1Fmt.TWO_LEVEL_4K: 6, S1Fmt.TWO_LEVEL_64K: 10}
_READ = int(FaultPerm.READ)


class L1Cd(SmmuRecord, frozen=True, gc=False):
    """Level-1 CD descriptor: V and the L2 table's address (bits 55:12)."""

    LAYOUT = {"V": bit(0), "L2Ptr": Field(12, 44, 12)}
    V: bool = False
    L2Ptr: int = 0


class CdFetch(NamedTuple):
    """One CD fetch: the CD and the reads it took."""

    cd: Cd
    config_reads: int
    s2_reads: int


class CdTable:
    """The CD table of ``ste`` in ``mem``; ``s2`` translates its IPAs (nested mode)."""

    def __init__(self, mem: PhysicalMemory, ste: Ste, s2: Stage2Translate | None = None) -> None:
        self.mem = mem
        self.base = ste.S1ContextPtr
        self.cdmax = ste.S1CDMax
        self.fmt = ste.s1fmt
        self.s2 = s2

    def _pa(self, ipa: int) -> tuple[int, int]:
        if self.s2 is None:
            return ipa, 0
        try:
            r = self.s2(ipa, _READ)
        except WalkFault as fault:
            raise ConfigFault(walk_event_type(fault), f"stage 2 cannot translate CD-table IPA "
                              f"{ipa:#x}: {fault}", walk=fault, ipa=ipa) from None
        return r.oa, r.reads

    def cd_address(self, ssid: int) -> tuple[int, int, int]:
        """``(PA of the CD of ssid, configuration reads, stage-2 reads)``; raises
        :class:`ConfigFault` C_BAD_SUBSTREAMID, F_CD_FETCH or a stage-2 fault type."""
        if not 0 <= ssid < 1 << self.cdmax:
            raise ConfigFault(EventType.C_BAD_SUBSTREAMID,
                              f"SubstreamID {ssid:#x} beyond S1CDMax {self.cdmax}")
        if self.fmt == S1Fmt.LINEAR:
            pa, s2_reads = self._pa(self.base + ssid * CD_SIZE)
            return pa, 0, s2_reads
        shift = L2_SHIFT[self.fmt]
        l1_pa, s2_reads = self._pa(self.base + (ssid >> shift) * L1CD_SIZE)
        try:
            desc = L1Cd.from_int(self.mem.read64(l1_pa))
        except MemoryAccessError:
            raise ConfigFault(EventType.F_CD_FETCH, f"L1 CD descriptor at {l1_pa:#x} "
                              "unreadable", fetch_addr=l1_pa) from None
        if not desc.V:
            raise ConfigFault(EventType.C_BAD_SUBSTREAMID,
                              f"SubstreamID {ssid:#x}: L1 CD descriptor invalid")
        pa, more = self._pa(desc.L2Ptr + (ssid & ((1 << shift) - 1)) * CD_SIZE)
        return pa, 1, s2_reads + more

    def fetch(self, ssid: int) -> CdFetch:
        """The CD of ``ssid`` with the reads it took (L1 descriptor and CD count one each in
        ``config_reads``; stage-2 descriptor reads in ``s2_reads``)."""
        pa, reads, s2_reads = self.cd_address(ssid)
        try:
            raw = self.mem.read(pa, CD_SIZE)
        except MemoryAccessError:
            raise ConfigFault(EventType.F_CD_FETCH, f"CD at {pa:#x} unreadable",
                              fetch_addr=pa) from None
        return CdFetch(Cd.from_bytes(raw), reads + 1, s2_reads)

"""The Context Descriptor table of a stream: linear or two-level, read the way the SMMU reads it.

STE.S1ContextPtr points at 2^S1CDMax CDs (linear) or at an L1 table of 8-byte descriptors whose
L2 tables hold 64 CDs (4 KiB leaves) or 1024 CDs (64 KiB leaves). In nested mode (STE.Config =
111) S1ContextPtr and every L2Ptr are IPAs: each fetch is first translated by stage 2, and its
descriptor reads are counted. A SubstreamID the table does not cover, or an invalid L1
descriptor, is C_BAD_SUBSTREAMID; a read outside memory is F_CD_FETCH; a stage-2 fault on the way
is that fault (the model records it with S2 = 1, CLASS = CD).

The reader and the layout are the core's (:mod:`iommu_uapi.pasid_tables.smmuv3`); this module
binds them to an STE and turns a stopped fetch into the SMMU's :class:`ConfigFault`.
"""

from __future__ import annotations

from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pasid_tables.smmuv3 import (
    L1CD_SIZE,
    L2_SHIFT,
    CdFetch,
    CdFetchError,
    CdFetchErrorKind,
    CdTableReader,
    L1Cd,
)
from iommu_uapi.pgtable.common import Stage2Translate

from .events import ConfigFault, EventType, walk_event_type
from .ste import Ste

__all__ = ["L1CD_SIZE", "L2_SHIFT", "CdFetch", "CdTable", "L1Cd", "config_fault"]

#: A stopped fetch -> the event the SMMU records (a stage-2 fault keeps its own type).
_EVENT = {CdFetchErrorKind.BAD_SUBSTREAMID: EventType.C_BAD_SUBSTREAMID,
          CdFetchErrorKind.FETCH: EventType.F_CD_FETCH}


def config_fault(err: CdFetchError) -> ConfigFault:
    """The SMMU's record of a stopped CD fetch."""
    type_ = walk_event_type(err.walk) if err.walk is not None else _EVENT[err.kind]
    return ConfigFault(type_, str(err), fetch_addr=err.fetch_addr, walk=err.walk, ipa=err.ipa)


class CdTable(CdTableReader):
    """The CD table of ``ste`` in ``mem``; ``s2`` translates its IPAs (nested mode). Fetches
    raise :class:`ConfigFault`."""

    def __init__(self, mem: PhysicalMemory, ste: Ste, s2: Stage2Translate | None = None) -> None:
        super().__init__(mem, ste.S1ContextPtr, ste.S1CDMax, ste.s1fmt, s2)

    def cd_address(self, ssid: int) -> tuple[int, int, int]:
        """``(PA of the CD of ssid, configuration reads, stage-2 reads)``; raises
        :class:`ConfigFault` C_BAD_SUBSTREAMID, F_CD_FETCH or a stage-2 fault type."""
        try:
            return super().cd_address(ssid)
        except CdFetchError as err:
            raise config_fault(err) from None

    def fetch(self, ssid: int) -> CdFetch:
        """The CD of ``ssid`` with the reads it took (L1 descriptor and CD count one each in
        ``config_reads``; stage-2 descriptor reads in ``s2_reads``)."""
        try:
            return super().fetch(ssid)
        except CdFetchError as err:
            raise config_fault(err) from None

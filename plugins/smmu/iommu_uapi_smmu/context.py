"""The SMMU's translation context for the core's data path: one (StreamID, SubstreamID).

Built from the STE and CD the SMMU reads through its configuration caches (the reads counted in
``config_reads``), the context walks stage 1 over stage 2 (or stage 2 alone) straight in the
model's walkers; the core fills its IOTLB — the SMMU's TLB, tagged ``(VMID, ASID)`` or
``(VMID, S2_ONLY)`` — with the leaf it returns. A fault is recorded by the model as its event
(event queue) and reported as the generic fault.
"""

from __future__ import annotations

from iommu_uapi.caches import TLB
from iommu_uapi.caches.iotlb import Fields
from iommu_uapi.pgtable.common import RWX, FaultKind, WalkFault
from iommu_uapi.translation import TranslationFault

from .config import Stage1, StreamConfig
from .events import ConfigFault, EventType, SmmuFault
from .generic import generic_fault
from .iotlb import S2_ONLY
from .reports import Txn
from .smmu import Smmu
from .ste import Eats, SteConfig

__all__ = ["SmmuContext", "build_context", "translation_fault"]

def translation_fault(fault: SmmuFault, txn: Txn) -> TranslationFault:
    """The core's fault for a transaction the SMMU terminated."""
    return TranslationFault(generic_fault(fault.event, txn.ssid, txn.addr, txn.access),
                            fault.event, str(fault))


class SmmuContext:
    """Requests of one (StreamID, SubstreamID) (see the module docstring)."""

    __slots__ = ("_s1_walk", "asid", "atc", "config_reads", "s1", "smmu", "ssid", "stream",
                 "tag")

    def __init__(self, smmu: Smmu, stream: StreamConfig, s1: Stage1 | None, ssid: int | None,
                 config_reads: int, atc: TLB | None) -> None:
        self.smmu = smmu
        self.stream = stream
        self.s1 = s1
        self.ssid = ssid
        self.asid = S2_ONLY if s1 is None else s1.asid
        self.tag = (stream.vmid, self.asid)
        self.config_reads = config_reads
        self.atc = atc
        self._s1_walk = smmu.walks.walk_stage1  # the walk-cached stage-1 walk, looked up once

    def walk(self, iova: int, access: int, /) -> tuple[Fields, int]:
        """Walk the tables for a miss: the leaf (a ``TLBEntry``'s fields) and the descriptor
        reads of both stages."""
        s1, stream = self.s1, self.stream
        try:
            if s1 is not None:
                if s1.ha:  # Access flags updated: the uncached walk
                    res = self.smmu.walk_stage1(s1, stream, iova, iova, access)
                else:
                    half, va = s1.select(iova, access)
                    assert half.walker is not None
                    res = self._s1_walk(half.walker, half.root, self.tag,
                                        s1.tlb_key(iova) if s1.tbi else iova, va, access,
                                        stream.s2_walk)
                if s1.post_checks:
                    why = s1.denies(access, res.perm)
                    if why is not None:
                        raise WalkFault(FaultKind.PERMISSION, stage=1, level=3, addr=iova,
                                        access=access, denied=access & RWX, message=why)
            else:
                assert stream.s2_walk is not None
                res = stream.s2_walk(iova, access)
        except WalkFault as wf:
            txn = Txn(stream.sid, self.ssid, iova, access)
            raise translation_fault(self.smmu._walk_fault(txn, wf, s1, stream), txn) from None
        size = res.page_size
        # the fields as a plain tuple (TLBEntry's order): the IOTLB stores it without a copy
        return ((iova & -size, size, res.oa & -size, res.perm, res.global_),
                res.reads + res.s2_reads)


def build_context(smmu: Smmu, sid: int, ssid: int | None, iova: int, access: int,
                  atc: TLB | None) -> SmmuContext:
    """Read the configuration of (``sid``, ``ssid``) as the SMMU does for a transaction at
    ``iova``; raises :class:`TranslationFault` with the event of a configuration fault."""
    txn = Txn(sid, ssid, iova, access)
    try:
        return _build(smmu, txn, atc)
    except SmmuFault as fault:
        raise translation_fault(fault, txn) from None


def _build(smmu: Smmu, txn: Txn, atc: TLB | None) -> SmmuContext:
    try:
        stream, reads = smmu.stream_config(txn.sid)
    except ConfigFault as cf:
        raise smmu._config_fault(txn, cf) from None
    ste = stream.ste
    if stream.config in (SteConfig.ABORT, SteConfig.BYPASS):
        raise SmmuFault(None, f"StreamID {txn.sid:#x}: STE Config {stream.config.name}")
    if txn.ssid is not None and not (ste.stage1 and ste.S1CDMax and smmu.caps.ssidsize):
        raise smmu._config_fault(txn, ConfigFault(
            EventType.C_BAD_SUBSTREAMID, f"SubstreamID {txn.ssid:#x} but the STE has no "
            "substreams"))
    s1: Stage1 | None = None
    if ste.stage1:
        index = smmu._cd_index(txn, stream, False)
        if index is not None:
            try:
                s1, cd_reads = smmu.stage1_config(stream, index)
            except ConfigFault as cf:
                raise smmu._config_fault(txn, cf, stream) from None
            reads += cd_reads
    if s1 is None and stream.s2 is None:
        raise SmmuFault(None, "stage 1 bypassed on a stream without stage 2")
    return SmmuContext(smmu, stream, s1, txn.ssid, reads,
                       atc if ste.EATS != Eats.ABORT else None)

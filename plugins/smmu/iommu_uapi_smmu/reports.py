"""From a stopped lookup or walk to the event record the SMMU writes.

A transaction (:class:`Txn`) that faults leaves either a :class:`~.events.ConfigFault` (stream
or CD table lookup, legality) or a :class:`~iommu_uapi.pgtable.common.WalkFault` (stage-1 or
stage-2 walk). :func:`config_event` and :func:`walk_event` build the 32-byte record with the
transaction's StreamID, SubstreamID, attributes (PnU, InD, RnW) and address, and for stage-2
faults S2 = 1, the CLASS of what stage 2 was translating (CD, a stage-1 table TT, or the input
IN) and the IPA.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from iommu_uapi.pgtable.common import WalkFault
from iommu_uapi.uapi.consts import FaultPerm

from .events import (
    AccessEvent,
    ConfigFault,
    Event,
    EventClass,
    EventType,
    FetchEvent,
    WalkAbortEvent,
    walk_event_type,
)

__all__ = ["S2_CLASS", "Txn", "config_event", "walk_event"]

_PRIV, _EXEC, _WRITE = int(FaultPerm.PRIV), int(FaultPerm.EXEC), int(FaultPerm.WRITE)
_IPA_MASK = ((1 << 52) - 1) & ~0xFFF
_FETCH_MASK = ((1 << 52) - 1) & ~7

#: The walker's name for what stage 2 was translating -> the event's CLASS.
S2_CLASS = {"ROOT": EventClass.TT, "TT": EventClass.TT, "AD": EventClass.TT,
            "IN": EventClass.IN, None: EventClass.IN}


class Txn(NamedTuple):
    """An incoming transaction: StreamID, SubstreamID (None: no PASID), input address and the
    access (``FaultPerm`` READ/WRITE/EXEC/PRIV bits, after STE.PRIVCFG/INSTCFG)."""

    sid: int
    ssid: int | None
    addr: int
    access: int


def _common(txn: Txn) -> dict[str, Any]:
    return {"StreamID": txn.sid, "SSV": txn.ssid is not None, "SubstreamID": txn.ssid or 0}


def _attrs(txn: Txn) -> dict[str, Any]:
    return {"PnU": bool(txn.access & _PRIV), "InD": bool(txn.access & _EXEC),
            "RnW": not txn.access & _WRITE, "InputAddr": txn.addr}


def walk_event(txn: Txn, fault: WalkFault, *, cd_fetch: bool = False) -> Event:
    """The record of a walk fault met by ``txn``; ``cd_fetch``: stage 2 was translating a CD
    or L1 CD descriptor address (CLASS = CD, IPA = that address)."""
    stage2 = fault.stage == 2
    cls = EventClass.CD if cd_fetch else S2_CLASS.get(fault.s2_class, EventClass.IN)
    stage_fields: dict[str, Any] = {"S2": stage2, "CLASS": cls if stage2 else 0,
                                           "TTRnW": stage2 and cls == EventClass.TT
                                           and fault.s2_class != "AD"}
    event_type = walk_event_type(fault)
    if event_type == EventType.F_WALK_EABT:
        return WalkAbortEvent(Type=EventType.F_WALK_EABT, **_common(txn), **_attrs(txn),
                              **stage_fields, FetchAddr=(fault.fetch_addr or 0) & _FETCH_MASK)
    return AccessEvent(Type=event_type, **_common(txn), **_attrs(txn), **stage_fields,
                       IPA=fault.addr & _IPA_MASK if stage2 else 0)


def config_event(txn: Txn, fault: ConfigFault) -> Event:
    """The record of a stream/CD table lookup that stopped for ``txn``."""
    if fault.walk is not None:
        walk = fault.walk
        restaged = WalkFault(walk.kind, stage=2, level=walk.level,
                             addr=fault.ipa if fault.ipa is not None else walk.addr,
                             access=walk.access, denied=walk.denied, fetch_addr=walk.fetch_addr,
                             message=walk.message)
        return walk_event(txn, restaged, cd_fetch=True)
    if fault.type in (EventType.F_STE_FETCH, EventType.F_CD_FETCH):
        return FetchEvent(Type=fault.type, **_common(txn),
                          FetchAddr=(fault.fetch_addr or 0) & _FETCH_MASK)
    return Event(Type=fault.type, **_common(txn))

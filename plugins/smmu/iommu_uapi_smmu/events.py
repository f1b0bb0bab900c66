"""Event-queue records (32 bytes): every event type, encoded and decoded bit-exactly.

Every record starts with the same word (Type, SSV, SubstreamID, StreamID). What follows depends
on the type, in three families: access faults (the transaction's attributes, InputAddr and, for a
stage-2 fault, the IPA), fetch aborts (the FetchAddr of the failed configuration read) and the
stage-1 walk abort (both). :data:`EVENT_RECORD` maps each :class:`EventType` to its record class;
:func:`decode_event` reads any record back. :class:`SmmuFault` is how the model reports a
terminated transaction together with the event it records.
"""

from __future__ import annotations

import errno
from enum import IntEnum

from iommu_uapi.errors import UAPIError
from iommu_uapi.hw.bits import Field, bit
from iommu_uapi.pgtable.common import FaultKind, WalkFault

from .record import SmmuRecord

__all__ = [
    "EVENT_RECORD",
    "EVENT_SIZE",
    "WALK_EVENT",
    "AccessEvent",
    "ConfigFault",
    "Event",
    "EventClass",
    "EventType",
    "FetchEvent",
    "SmmuFault",
    "TransactionEvent",
    "WalkAbortEvent",
    "decode_event",
    "walk_event_type",
]

EVENT_SIZE = 32


class EventType(IntEnum):
    """Event numbers (bits 7:0 of the record)."""

    F_UUT = 0x01
    C_BAD_STREAMID = 0x02
    F_STE_FETCH = 0x03
    C_BAD_STE = 0x04
    F_BAD_ATS_TREQ = 0x05
    F_STREAM_DISABLED = 0x06
    F_TRANSL_FORBIDDEN = 0x07
    C_BAD_SUBSTREAMID = 0x08
    F_CD_FETCH = 0x09
    C_BAD_CD = 0x0A
    F_WALK_EABT = 0x0B
    F_TRANSLATION = 0x10
    F_ADDR_SIZE = 0x11
    F_ACCESS = 0x12
    F_PERMISSION = 0x13
    F_TLB_CONFLICT = 0x20
    F_CFG_CONFLICT = 0x21
    E_PAGE_REQUEST = 0x24
    F_VMS_FETCH = 0x25


#: The event a page-table walk fault records, by its generic kind: an input outside the
#: region, an invalid descriptor and a block where none is allowed are all F_TRANSLATION.
WALK_EVENT: dict[FaultKind, EventType] = {
    FaultKind.INPUT_RANGE: EventType.F_TRANSLATION,
    FaultKind.NOT_PRESENT: EventType.F_TRANSLATION,
    FaultKind.RESERVED: EventType.F_TRANSLATION,
    FaultKind.ADDR_SIZE: EventType.F_ADDR_SIZE,
    FaultKind.ACCESS: EventType.F_ACCESS,
    FaultKind.PERMISSION: EventType.F_PERMISSION,
    FaultKind.WALK_EABT: EventType.F_WALK_EABT,
}


def walk_event_type(fault: WalkFault) -> EventType:
    """The event number a walk fault records (a stage-2 fault met during a stage-1 walk keeps
    the stage-2 walk's kind)."""
    return WALK_EVENT[fault.kind]


#: The four translation-class faults, the only ones CD.R/S and STE.S2R/S2S govern.
TRANSLATION_FAULTS = frozenset({EventType.F_TRANSLATION, EventType.F_ADDR_SIZE,
                                EventType.F_ACCESS, EventType.F_PERMISSION})


class EventClass(IntEnum):
    """CLASS of a stage-2 fault: what stage 2 was translating."""

    CD = 0
    TT = 1
    IN = 2


class Event(SmmuRecord, frozen=True, gc=False):
    """The word every event starts with; alone it is the record of the configuration errors
    (C_BAD_STREAMID, C_BAD_STE, C_BAD_SUBSTREAMID, C_BAD_CD), F_STREAM_DISABLED and
    F_CFG_CONFLICT."""

    BITS = 256
    LAYOUT = {"Type": Field(0, 8), "SSV": bit(11), "SubstreamID": Field(12, 20),
              "StreamID": Field(32, 32)}
    Type: int = 0
    SSV: bool = False
    SubstreamID: int = 0
    StreamID: int = 0

    @property
    def event_type(self) -> EventType | int:
        """The type as :class:`EventType` (an IMPLEMENTATION DEFINED number stays an int)."""
        try:
            return EventType(self.Type)
        except ValueError:
            return self.Type


_ACCESS = {"STAG": Field(64, 16), "Stall": bit(95), "PnU": bit(97), "InD": bit(98),
           "RnW": bit(99), "S2": bit(103), "CLASS": Field(104, 2), "TTRnW": bit(108),
           "InputAddr": Field(128, 64)}
_FETCH_ADDR = Field(195, 49, 3)  # FetchAddr[51:3] at bits 243:195


class TransactionEvent(Event, frozen=True, gc=False):
    """The fields of an event about one transaction: its stall tag, attributes (PnU, InD,
    RnW), the stage and CLASS of the fault, and its input address."""

    LAYOUT = {**Event.LAYOUT, **_ACCESS}
    STAG: int = 0
    Stall: bool = False
    PnU: bool = False
    InD: bool = False
    RnW: bool = False
    S2: bool = False
    CLASS: int = 0
    TTRnW: bool = False
    InputAddr: int = 0


class AccessEvent(TransactionEvent, frozen=True, gc=False):
    """A fault on a transaction: F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION (and
    F_UUT, F_BAD_ATS_TREQ, F_TRANSL_FORBIDDEN, F_TLB_CONFLICT, E_PAGE_REQUEST). ``IPA`` (bits
    51:12 at 243:204) is valid when S2 = 1."""

    LAYOUT = {**TransactionEvent.LAYOUT, "IPA": Field(204, 40, 12)}
    IPA: int = 0


class FetchEvent(Event, frozen=True, gc=False):
    """An external abort reading configuration: F_STE_FETCH, F_CD_FETCH, F_VMS_FETCH, with the
    PA of the failed read (FetchAddr bits 51:3)."""

    LAYOUT = {**Event.LAYOUT, "FetchAddr": _FETCH_ADDR}
    FetchAddr: int = 0


class WalkAbortEvent(TransactionEvent, frozen=True, gc=False):
    """F_WALK_EABT: an external abort during a stage-1 walk, with the transaction's attributes,
    its InputAddr and the PA of the descriptor read that failed."""

    LAYOUT = {**TransactionEvent.LAYOUT, "FetchAddr": _FETCH_ADDR}
    FetchAddr: int = 0


#: The record layout of every event type.
EVENT_RECORD: dict[EventType, type[Event]] = {
    EventType.F_UUT: AccessEvent,
    EventType.C_BAD_STREAMID: Event,
    EventType.F_STE_FETCH: FetchEvent,
    EventType.C_BAD_STE: Event,
    EventType.F_BAD_ATS_TREQ: AccessEvent,
    EventType.F_STREAM_DISABLED: Event,
    EventType.F_TRANSL_FORBIDDEN: AccessEvent,
    EventType.C_BAD_SUBSTREAMID: Event,
    EventType.F_CD_FETCH: FetchEvent,
    EventType.C_BAD_CD: Event,
    EventType.F_WALK_EABT: WalkAbortEvent,
    EventType.F_TRANSLATION: AccessEvent,
    EventType.F_ADDR_SIZE: AccessEvent,
    EventType.F_ACCESS: AccessEvent,
    EventType.F_PERMISSION: AccessEvent,
    EventType.F_TLB_CONFLICT: AccessEvent,
    EventType.F_CFG_CONFLICT: Event,
    EventType.E_PAGE_REQUEST: AccessEvent,
    EventType.F_VMS_FETCH: FetchEvent,
}


def decode_event(buf: bytes | bytearray | memoryview) -> Event:
    """The record of the 32-byte event ``buf``, in its type's layout (an IMPLEMENTATION
    DEFINED type 0xE0-0xEF decodes as the common word); ``UAPIError(EINVAL)`` for a reserved
    type."""
    if len(buf) != EVENT_SIZE:
        raise UAPIError(errno.EINVAL, f"event record: need {EVENT_SIZE} bytes, got {len(buf)}",
                        rule="smmu.event.size")
    code = buf[0]
    try:
        cls = EVENT_RECORD[EventType(code)]
    except ValueError:
        if not 0xE0 <= code <= 0xEF:
            raise UAPIError(errno.EINVAL, f"event record: type {code:#04x} is reserved",
                            rule="smmu.event.type") from None
        cls = Event
    return cls.from_bytes(buf)


class SmmuFault(Exception):
    """The SMMU terminated a transaction; ``event`` is what it records in the event queue
    (None when the fault is silent: CD.R = 0 / STE.S2R = 0, or an ATS request answered with
    Completer Abort). ``abort`` is False when a stage-1 fault with CD.A = 0 completes the
    transaction as RAZ/WI instead."""

    def __init__(self, event: Event | None, message: str, *, abort: bool = True) -> None:
        super().__init__(message)
        self.event = event
        self.abort = abort


class ConfigFault(Exception):
    """A stream-table or CD-table lookup stopped: the event type it calls for, the PA of a
    failed read (``fetch_addr``, for the *_FETCH aborts) and, in nested mode, the stage-2 walk
    fault met translating a table's IPA (``walk``, with ``ipa`` the address being translated).
    The SMMU model turns it into an :class:`Event` carrying the transaction's attributes."""

    def __init__(self, type_: EventType, message: str, *, fetch_addr: int | None = None,
                 walk: WalkFault | None = None, ipa: int | None = None) -> None:
        super().__init__(message)
        self.type = type_
        self.fetch_addr = fetch_addr
        self.walk = walk
        self.ipa = ipa

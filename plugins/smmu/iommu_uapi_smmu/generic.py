"""SMMU events as the generic ``iommu_fault`` the host driver reports (the nested series'
``arm_smmu_handle_evt``): each event type's :class:`~iommu_uapi.uapi.consts.FaultReason`, and
which fields of ``iommu_fault_unrecoverable`` the record makes valid."""

from __future__ import annotations

from iommu_uapi.uapi import Fault, FaultPageRequest, FaultUnrecoverable
from iommu_uapi.uapi.consts import (
    FaultReason,
    FaultType,
    PageRequestFlags,
    UnrecoverableFlags,
)

from .events import Event, EventType

__all__ = ["EVENT_REASON", "generic_fault"]

#: Event type -> the generic reason (anything else is UNKNOWN).
EVENT_REASON: dict[int, FaultReason] = {
    EventType.C_BAD_STREAMID: FaultReason.UNKNOWN,
    EventType.F_STE_FETCH: FaultReason.UNKNOWN,
    EventType.C_BAD_STE: FaultReason.UNKNOWN,
    EventType.F_STREAM_DISABLED: FaultReason.PASID_INVALID,
    EventType.C_BAD_SUBSTREAMID: FaultReason.PASID_INVALID,
    EventType.F_CD_FETCH: FaultReason.PASID_FETCH,
    EventType.C_BAD_CD: FaultReason.BAD_PASID_ENTRY,
    EventType.F_WALK_EABT: FaultReason.WALK_EABT,
    EventType.F_TRANSLATION: FaultReason.PTE_FETCH,
    EventType.F_ADDR_SIZE: FaultReason.OOR_ADDRESS,
    EventType.F_ACCESS: FaultReason.ACCESS,
    EventType.F_PERMISSION: FaultReason.PERMISSION,
}


def generic_fault(event: Event | None, pasid: int | None, addr: int, access: int) -> Fault:
    """The fault reported for ``event`` of a transaction with ``pasid`` at ``addr`` for
    ``access``: a page request (group index = STAG) for a stalled transaction, else the
    unrecoverable fault (None: a silent termination, reported with reason UNKNOWN)."""
    if event is not None and getattr(event, "Stall", False):
        prflags = PageRequestFlags.LAST_PAGE
        if pasid is not None:
            prflags |= PageRequestFlags.PASID_VALID | PageRequestFlags.RESPONSE_NEEDS_PASID
        return Fault(type=FaultType.PAGE_REQ, prm=FaultPageRequest(
            flags=prflags, pasid=pasid or 0, grpid=event.STAG,  # type: ignore[attr-defined]
            perm=access, addr=addr & ~0xFFF))
    reason = FaultReason.UNKNOWN if event is None else EVENT_REASON.get(
        event.Type, FaultReason.UNKNOWN)
    flags = UnrecoverableFlags(0)
    if pasid is not None:
        flags |= UnrecoverableFlags.PASID_VALID
    fetch = getattr(event, "FetchAddr", None)
    if event is not None and hasattr(event, "InputAddr"):
        flags |= UnrecoverableFlags.ADDR_VALID
    if fetch is not None:
        flags |= UnrecoverableFlags.FETCH_ADDR_VALID
    return Fault(type=FaultType.DMA_UNRECOV, event=FaultUnrecoverable(
        reason=reason, flags=flags, pasid=pasid or 0, perm=access,
        addr=addr if flags & UnrecoverableFlags.ADDR_VALID else 0, fetch_addr=fetch or 0))

"""Fault records the kernel reports to user space: ``struct iommu_fault`` and its members.

These carry no argsz: the kernel fills them (reference kernel-uapi.md a.3). ``Fault`` holds an
anonymous union sized by ``padding2`` (56 bytes) so that new fault kinds can be added later.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from ..abi import U32, U64, CRecord, Pad56, U64x2, anon_union, cstruct

__all__ = ["Fault", "FaultPageRequest", "FaultUnrecoverable"]


@cstruct(cname="iommu_fault_unrecoverable")
class FaultUnrecoverable(CRecord, frozen=True, gc=False):
    """An unrecoverable DMA fault: reason (``FaultReason``), flags (``UnrecoverableFlags``),
    PASID, permission (``FaultPerm``), faulting address and the address whose fetch aborted."""

    reason: U32 = 0
    flags: U32 = 0
    pasid: U32 = 0
    perm: U32 = 0
    addr: U64 = 0
    fetch_addr: U64 = 0


@cstruct(cname="iommu_fault_page_request")
class FaultPageRequest(CRecord, frozen=True, gc=False):
    """A page request (PRI/stall): flags (``PageRequestFlags``), PASID, page request group index,
    permission, address and two words of device-private data."""

    flags: U32 = 0
    pasid: U32 = 0
    grpid: U32 = 0
    perm: U32 = 0
    addr: U64 = 0
    private_data: U64x2 = (0, 0)


_U = anon_union("u")


@cstruct(cname="iommu_fault")
class Fault(CRecord, frozen=True, gc=False):
    """A fault report: ``type`` (``FaultType``) selects ``event`` or ``prm`` in the 56-byte
    anonymous union."""

    type: U32 = 0
    padding: U32 = 0
    event: Annotated[FaultUnrecoverable, _U] = msgspec.field(default_factory=FaultUnrecoverable)
    prm: Annotated[FaultPageRequest, _U] = msgspec.field(default_factory=FaultPageRequest)
    padding2: Annotated[Pad56, _U] = bytes(56)

"""Fault reporting to a registered consumer, pending page requests, response matching.

This is the IOMMU core's per-device fault parameter of Linux 5.10: one consumer (handler) per
device; a page request with ``LAST_PAGE`` stays *pending* until a page response matches it
(reference §c.6): first pending fault with the response's grpid; when the request carries
``RESPONSE_NEEDS_PASID`` the response must have ``PASID_VALID`` and the same PASID (otherwise the
search goes on); when it does not, a response's PASID is cleared. Unbinding a PASID drains its
pending requests, so a response after unbind finds nothing (EINVAL) and a PASID reused later
never sees old faults.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

import msgspec

from .errors import UAPIError
from .uapi.consts import FaultType, PageRequestFlags, PageResponseFlags

if TYPE_CHECKING:
    from .uapi import Fault, PageResponse

__all__ = ["FaultHandler", "FaultParam"]

#: A fault consumer: called with each generic fault record reported for the device.
FaultHandler = Callable[["Fault"], None]


class FaultParam:
    """A device's fault consumer and its pending page requests."""

    __slots__ = ("handler", "pending", "reported")

    def __init__(self) -> None:
        self.handler: FaultHandler | None = None
        self.pending: list[Fault] = []
        self.reported = 0

    def register(self, handler: FaultHandler) -> None:
        """Install the consumer; ``EBUSY`` if one is installed (one consumer per device)."""
        if self.handler is not None:
            raise UAPIError(errno.EBUSY, "fault handler: the device already has a consumer",
                            rule="fault.handler_busy")
        self.handler = handler

    def unregister(self) -> None:
        """Remove the consumer: ``EINVAL`` without one, ``EBUSY`` while page requests are
        pending (they must be answered first, as the kernel demands)."""
        if self.handler is None:
            raise UAPIError(errno.EINVAL, "fault handler: none registered",
                            rule="fault.no_handler")
        if self.pending:
            raise UAPIError(errno.EBUSY, f"fault handler: {len(self.pending)} page request(s) "
                            "still pending", rule="fault.pending_on_unregister")
        self.handler = None

    def report(self, fault: Fault) -> bool:
        """Deliver ``fault`` to the consumer; a last-page page request becomes pending.

        Returns False when no consumer is registered (the fault is then not delivered and a page
        request is not kept: the host driver answers it itself).
        """
        if self.handler is None:
            return False
        if fault.type == FaultType.PAGE_REQ and fault.prm.flags & PageRequestFlags.LAST_PAGE:
            self.pending.append(fault)
        self.reported += 1
        self.handler(fault)
        return True

    def match(self, msg: PageResponse) -> tuple[Fault, PageResponse]:
        """Find the pending request ``msg`` answers (§c.6 steps 4-5); returns it and the
        response as the driver sees it (PASID cleared when the request did not need it)."""
        if not self.pending:
            raise UAPIError(errno.EINVAL, "page_response: no page request is pending",
                            rule="page_response.none_pending")
        for fault in self.pending:
            prm = fault.prm
            if prm.grpid != msg.grpid:
                continue
            if prm.flags & PageRequestFlags.RESPONSE_NEEDS_PASID:
                if not msg.flags & PageResponseFlags.PASID_VALID or msg.pasid != prm.pasid:
                    continue
            elif msg.flags & PageResponseFlags.PASID_VALID:
                msg = msgspec.structs.replace(
                    msg, flags=msg.flags & ~PageResponseFlags.PASID_VALID, pasid=0)
            return fault, msg
        raise UAPIError(errno.EINVAL, f"page_response: no pending request matches grpid "
                        f"{msg.grpid:#x} pasid {msg.pasid:#x} (flags {msg.flags:#x})",
                        rule="page_response.no_match")

    def complete(self, fault: Fault) -> None:
        """Remove an answered request from the pending list."""
        self.pending.remove(fault)

    def drain(self, pasid: int | None = None) -> list[Fault]:
        """Drop the pending requests of ``pasid`` (all when None); returns what was dropped."""
        keep: list[Fault] = []
        dropped: list[Fault] = []
        for fault in self.pending:
            prm = fault.prm
            has_pasid = bool(prm.flags & PageRequestFlags.PASID_VALID)
            if pasid is None or (has_pasid and prm.pasid == pasid):
                dropped.append(fault)
            else:
                keep.append(fault)
        self.pending = keep
        return dropped

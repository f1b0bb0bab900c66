"""Fault reports on the event queue (virtio spec 5.13.6, fault reporting).

The driver posts device-writable buffers on the event queue (virtqueue 1); the device fills one
buffer per fault with a 24-byte record:

====  ==============  ==========================================================
 off  field           notes
====  ==============  ==========================================================
   0  u8 reason       0 R_UNKNOWN, 1 R_DOMAIN, 2 R_MAPPING
   1  u8 reserved[3]  zero (a driver ignores a report whose reserved bytes are not)
   4  le32 flags      bit 0 F_READ, 1 F_WRITE, 2 F_EXEC (Linux only), 8 F_ADDRESS
   8  le32 endpoint
  12  le32 reserved1  zero
  16  le64 address    valid with F_ADDRESS
====  ==============  ==========================================================

With no buffer posted the device drops the event (QEMU drops it with an error message; the spec
lets the device wait or drop). A record is never split across buffers: the spec's device returns
a too small buffer unwritten and tries the next one; QEMU's device raises virtio_error.
"""

from __future__ import annotations

import struct
from collections import deque
from enum import IntEnum, IntFlag
from typing import Final, NamedTuple

from .rules import refusal

__all__ = ["FAULT_RECORD", "EventQueue", "FaultFlags", "FaultReason", "FaultRecord", "Used"]


class FaultReason(IntEnum):
    """``VIRTIO_IOMMU_FAULT_R_*``."""

    UNKNOWN = 0  #: internal error, or no better reason
    DOMAIN = 1  #: the endpoint is not attached to a domain
    MAPPING = 2  #: the address is not mapped, or the access does not match the mapping


class FaultFlags(IntFlag):
    """``VIRTIO_IOMMU_FAULT_F_*``."""

    READ = 1 << 0
    WRITE = 1 << 1
    EXEC = 1 << 2  #: in Linux's header only, not in the spec
    ADDRESS = 1 << 8  #: ``address`` is valid
    PASID = 1 << 9  #: the nesting drafts': ``pasid`` (reserved1 in the spec) is valid


FAULT_RECORD: Final = struct.Struct("<B3sIIIQ")


class FaultRecord(NamedTuple):
    """One fault report as the device writes it."""

    reason: int  #: a :class:`FaultReason`
    flags: int  #: :class:`FaultFlags`
    endpoint: int
    address: int = 0
    pasid: int = 0  #: with the drafts' F_PASID, in the spec's reserved1

    def to_bytes(self) -> bytes:
        """The 24 bytes of ``struct virtio_iommu_fault``, reserved fields zero."""
        pasid = self.pasid if self.flags & FaultFlags.PASID else 0
        return FAULT_RECORD.pack(self.reason, bytes(3), self.flags, self.endpoint, pasid,
                                 self.address)

    @classmethod
    def from_bytes(cls, buf: bytes) -> FaultRecord:
        """Decode 24 bytes (reserved fields ignored, reserved1 read as the PASID with
        F_PASID; unknown reasons and flags kept as ints)."""
        reason, _, flags, endpoint, pasid, address = FAULT_RECORD.unpack(
            buf[:FAULT_RECORD.size])
        return cls(reason, flags, endpoint, address, pasid if flags & FaultFlags.PASID else 0)


class Used(NamedTuple):
    """A buffer the device gave back: the bytes it wrote (empty: used length 0) and the size the
    driver had posted."""

    written: bytes
    size: int


class EventQueue:
    """The event virtqueue: at most ``size`` posted buffers, the used ones in completion order.

    ``dropped`` counts events lost for want of a buffer; ``skipped`` counts buffers returned
    unwritten because they were too small for a record.
    """

    __slots__ = ("_posted", "dropped", "size", "skipped", "used")

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._posted: deque[int] = deque()
        self.used: deque[Used] = deque()
        self.dropped = 0
        self.skipped = 0

    @property
    def available(self) -> int:
        """Buffers posted and not yet used."""
        return len(self._posted)

    def post(self, buffer_size: int = FAULT_RECORD.size, count: int = 1) -> None:
        """The driver makes ``count`` buffers of ``buffer_size`` writable bytes available;
        ENOSPC when the queue cannot hold them (nothing is posted then)."""
        if not 0 <= buffer_size < 1 << 32 or count < 0:
            raise refusal("virtio.event.buffer_size", size=buffer_size)
        if len(self._posted) + count > self.size:
            raise refusal("virtio.event.queue_full", size=self.size)
        self._posted.extend([buffer_size] * count)

    def take(self) -> list[Used]:
        """The driver collects every used buffer, oldest first."""
        out = list(self.used)
        self.used.clear()
        return out

    def push(self, record: bytes, *, break_on_small: bool) -> str | None:
        """Write ``record`` into the next buffer that holds it whole.

        Returns None when written, else the rule that stopped it: ``virtio.event.no_buffer``
        (dropped), or ``virtio.event.small_buffer`` when ``break_on_small`` (QEMU: the small
        buffer is returned unwritten and the device needs a reset; the event is lost).
        """
        posted = self._posted
        while posted:
            size = posted.popleft()
            if size >= len(record):
                self.used.append(Used(record, size))
                return None
            self.used.append(Used(b"", size))
            self.skipped += 1
            if break_on_small:
                self.dropped += 1
                return "virtio.event.small_buffer"
        self.dropped += 1
        return "virtio.event.no_buffer"

    def clear(self) -> None:
        """Forget posted and used buffers (device reset)."""
        self._posted.clear()
        self.used.clear()

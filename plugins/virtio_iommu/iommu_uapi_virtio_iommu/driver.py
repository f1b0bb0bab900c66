"""The driver side of the request queue: what Linux's virtio-iommu driver does with a reply.

:class:`RequestQueue` puts one request's device-readable bytes on the queue with a 4-byte
device-writable tail (PROBE's properties area is not needed here) and reads the status the
device wrote. S_OK returns; any other status, or a request returned with used length 0, becomes
:class:`~iommu_uapi.errors.UAPIError` with the errno Linux's ``viommu_get_req_errno`` gives the
status (reference §3.4) and the id of the device rule that refused it, so a failure of every
request reaches the caller (virtio-iommu's failure reporting is the request status).
"""

from __future__ import annotations

from iommu_uapi.errors import UAPIError

from .config import U64_MAX
from .device import Reply, VirtioIommuDevice
from .layouts import (
    TAIL_SIZE,
    RequestType,
    Status,
    encode_attach,
    encode_detach,
    encode_map,
    encode_unmap,
    status_errno,
)
from .rules import refusal
from .tables import SharedTable, encode_attach_table

__all__ = ["RequestQueue", "check_range", "reply_error"]


def check_range(iova: int, size: int) -> None:
    """A range the request's le64 fields can hold (``size`` > 0: the driver sends no empty
    range; virt_end = iova + size - 1 fits in 64 bits)."""
    if size <= 0 or iova + size - 1 > U64_MAX:
        raise refusal("virtio.backend.range", start=iova, size=size)


def reply_error(request: str, reply: Reply) -> UAPIError:
    """The :class:`UAPIError` a failed ``reply`` becomes: errno of its status (EIO when nothing
    was written), the refusing rule, the device's message."""
    status = "used length 0" if reply.status is None else Status(reply.status).name
    return UAPIError(status_errno(reply.status),
                     f"{request}: {reply.message or 'refused'} (S_{status})"
                     if reply.status is not None else f"{request}: {reply.message} ({status})",
                     rule=reply.rule)


class RequestQueue:
    """The request virtqueue of ``device`` as the driver sees it: each method sends one request
    as bytes and raises what a status other than S_OK means."""

    def __init__(self, device: VirtioIommuDevice) -> None:
        self.device = device
        #: requests sent, by type (what a trace of the queue would count)
        self.sent: dict[RequestType, int] = dict.fromkeys(RequestType, 0)

    def send(self, rtype: RequestType, readable: bytes, writable_len: int = TAIL_SIZE) -> Reply:
        """Send ``readable``; return the reply when its status is S_OK, else raise."""
        self.sent[rtype] = self.sent.get(rtype, 0) + 1
        reply = self.device.handle(readable, writable_len)
        if reply.status != Status.OK:
            raise reply_error(rtype.name, reply)
        return reply

    def attach(self, domain: int, endpoint: int, flags: int = 0) -> None:
        """ATTACH ``endpoint`` to ``domain``."""
        self.send(RequestType.ATTACH, encode_attach(domain, endpoint, flags))

    def detach(self, domain: int, endpoint: int) -> None:
        """DETACH ``endpoint`` from ``domain``."""
        self.send(RequestType.DETACH, encode_detach(domain, endpoint))

    def map(self, domain: int, iova: int, paddr: int, size: int, flags: int) -> None:
        """MAP ``[iova, iova + size)`` to ``paddr`` with ``flags`` (MapFlags)."""
        check_range(iova, size)
        self.send(RequestType.MAP, encode_map(domain, iova, iova + size - 1, paddr, flags))

    def attach_table(self, domain: int, endpoint: int, table: SharedTable, fmt: int) -> None:
        """ATTACH_TABLE: ``domain`` of ``endpoint`` shares the guest table ``table``."""
        self.send(RequestType.ATTACH_TABLE, encode_attach_table(domain, endpoint, table,
                                                                fmt=fmt))

    def invalidate(self, readable: bytes) -> None:
        """INVALIDATE (its bytes built by :func:`.tables.encode_invalidate`)."""
        self.send(RequestType.INVALIDATE, readable)

    def page_resp(self, readable: bytes) -> None:
        """PAGE_RESP (its bytes built by :func:`.pri.encode_page_resp`)."""
        self.send(RequestType.PAGE_RESP, readable)

    def unmap(self, domain: int, iova: int, size: int) -> None:
        """UNMAP every mapping inside ``[iova, iova + size)``."""
        check_range(iova, size)
        self.send(RequestType.UNMAP, encode_unmap(domain, iova, iova + size - 1))

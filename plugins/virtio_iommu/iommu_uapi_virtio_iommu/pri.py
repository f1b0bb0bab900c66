"""Page requests and the Jan 2021 RFC's PAGE_RESP (``rfc2021`` profile).

An endpoint with PRI asks for a page of a table-sharing domain's PASID: the device keeps the
request pending by (endpoint, PASID, group index) and reports it on the event queue (a fault
record with R_MAPPING, the access flags, F_ADDRESS and the drafts' F_PASID; the reference gives
no page-request record of its own, so the group index stays on the device's side). The driver
answers with PAGE_RESP (type 8): head, le32 domain, le32 endpoint, le32 flags (bit 0
PASID_VALID), le32 pasid, le32 grpid, le16 resp_code (0 success, 1 invalid, 2 failure),
u8 pasid_valid, u8 reserved[9] (36 bytes); the response reaches the endpoint
(:attr:`PageRequests.responses`) and the request is no longer pending.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final, NamedTuple

from iommu_uapi.uapi.consts import FaultPerm

from .events import FaultFlags, FaultReason, FaultRecord
from .features import Feature
from .handlers import Outcome, refuse
from .layouts import RequestType, Status
from .profiles import Quirk

if TYPE_CHECKING:
    from .device import VirtioIommuDevice

__all__ = ["PAGE_RESP", "PAGE_RESP_READABLE", "PageRequests", "PageResponse",
           "encode_page_resp", "page_resp"]

PAGE_RESP: Final = int(RequestType.PAGE_RESP)
PAGE_RESP_READABLE: Final = struct.Struct("<B3sIIIIIHB9s")
_PASID_VALID: Final = 1
_CODES: Final = frozenset({0, 1, 2})
_R, _W = int(FaultPerm.READ), int(FaultPerm.WRITE)

Key = tuple[int, "int | None", int]


class PageResponse(NamedTuple):
    """A response that reached an endpoint: its PASID (None: without), group and code."""

    endpoint: int
    pasid: int | None
    grpid: int
    code: int


class PageRequests:
    """The page requests pending on the device and the responses given."""

    def __init__(self) -> None:
        self.pending: dict[Key, int] = {}  #: (endpoint, PASID, grpid) -> address
        self.responses: list[PageResponse] = []

    def request(self, dev: VirtioIommuDevice, endpoint: int, pasid: int | None, addr: int,
                access: int, grpid: int, last: bool) -> None:
        """Record a page request (pending when ``last``) and report it on the event queue."""
        if last:
            self.pending[(endpoint, pasid, grpid)] = addr
        flags = FaultFlags.ADDRESS | (FaultFlags.READ if access & _R else 0) | \
            (FaultFlags.WRITE if access & _W else 0) | (FaultFlags.PASID if pasid is not None
                                                        else 0)
        record = FaultRecord(FaultReason.MAPPING, flags, endpoint, addr, pasid or 0)
        stop = dev.events.push(record.to_bytes(),
                               break_on_small=bool(dev.profile.quirk(
                               Quirk.ERRORS_BREAK_DEVICE)))
        if stop == "virtio.event.small_buffer":
            dev.broken = stop

    def drop_endpoint(self, endpoint: int) -> None:
        """Forget the requests of an endpoint that left its domain."""
        for key in [k for k in self.pending if k[0] == endpoint]:
            del self.pending[key]


def encode_page_resp(domain: int, endpoint: int, pasid: int | None, grpid: int, code: int, *,
                     reserved: bytes = bytes(9)) -> bytes:
    """The device-readable part of PAGE_RESP."""
    valid = pasid is not None
    return PAGE_RESP_READABLE.pack(PAGE_RESP, bytes(3), domain, endpoint,
                                   _PASID_VALID if valid else 0, pasid or 0, grpid, code,
                                   int(valid), reserved)


def page_resp(dev: VirtioIommuDevice, fields: tuple[int | bytes, ...]) -> Outcome:
    """PAGE_RESP: answer the pending page request of (endpoint, PASID, grpid)."""
    _, _, domain_id, endpoint, flags, pasid, grpid, code, valid, reserved = fields
    assert isinstance(domain_id, int) and isinstance(endpoint, int) and isinstance(flags, int)
    assert isinstance(pasid, int) and isinstance(grpid, int) and isinstance(code, int)
    if Feature.ATTACH_TABLE not in dev.negotiated:
        return refuse("virtio.page_resp.not_negotiated")
    if flags & ~_PASID_VALID or valid != flags or code not in _CODES \
            or reserved != bytes(9):
        return refuse("virtio.page_resp.fields", flags=flags, valid=valid, code=code)
    if endpoint not in dev.endpoints:
        return refuse("virtio.page_resp.endpoint", endpoint=endpoint)
    domain = dev.attached.get(endpoint)
    if domain is None or domain.id != domain_id:
        return refuse("virtio.page_resp.not_attached", endpoint=endpoint, domain=domain_id)
    key = (endpoint, pasid if flags else None, grpid)
    if dev.page_requests.pending.pop(key, None) is None:
        return refuse("virtio.page_resp.no_request", endpoint=endpoint, grpid=grpid)
    dev.page_requests.responses.append(PageResponse(endpoint, key[1], grpid, code))
    return Outcome(Status.OK)

"""Request framing, request layouts and statuses of virtio-iommu (virtio spec 5.13.6).

A request is a device-readable part that starts with the 4-byte head (``u8 type, u8
reserved[3]``) followed by a device-writable part that ends with the 4-byte tail (``u8 status,
u8 reserved[3]``). Every field is little-endian. The device-readable part of each type is
declared once here as a :class:`struct.Struct` (head included); the ``encode_*`` functions build
the bytes a driver puts on the request queue.
"""

from __future__ import annotations

import errno as _errno
import struct
from enum import IntEnum, IntFlag
from typing import Final

__all__ = [
    "HEAD",
    "READABLE",
    "TAIL",
    "TAIL_SIZE",
    "AttachFlags",
    "MapFlags",
    "RequestType",
    "Status",
    "encode_attach",
    "encode_detach",
    "encode_map",
    "encode_probe",
    "encode_tail",
    "encode_unmap",
    "status_errno",
]


class RequestType(IntEnum):
    """``VIRTIO_IOMMU_T_*``: the head's ``type``."""

    ATTACH = 1
    DETACH = 2
    MAP = 3
    UNMAP = 4
    PROBE = 5
    ATTACH_TABLE = 6  #: the nesting draft's (``rfc2021`` profile only; :mod:`.tables`)
    INVALIDATE = 7  #: the nesting draft's (``rfc2021`` profile only)
    PAGE_RESP = 8  #: the Jan 2021 RFC's (``rfc2021`` profile only; :mod:`.pri`)


class Status(IntEnum):
    """``VIRTIO_IOMMU_S_*``: the tail's ``status``."""

    OK = 0
    IOERR = 1  #: virtio communication error
    UNSUPP = 2  #: unsupported request
    DEVERR = 3  #: internal device error
    INVAL = 4  #: invalid parameters
    RANGE = 5  #: out-of-range parameters
    NOENT = 6  #: entry not found
    FAULT = 7  #: bad address
    NOMEM = 8  #: insufficient resources


#: The errno Linux's driver turns each status into (``viommu_get_req_errno``); IOERR, DEVERR and
#: any other value give EIO.
_STATUS_ERRNO: Final[dict[int, int]] = {
    Status.OK: 0,
    Status.UNSUPP: _errno.ENOSYS,
    Status.INVAL: _errno.EINVAL,
    Status.RANGE: _errno.ERANGE,
    Status.NOENT: _errno.ENOENT,
    Status.FAULT: _errno.EFAULT,
    Status.NOMEM: _errno.ENOMEM,
}


def status_errno(status: int | None) -> int:
    """The errno the Linux driver reports for ``status``; a request the device returned with
    used length 0 (``None``) fails with EIO."""
    if status is None:
        return _errno.EIO
    return _STATUS_ERRNO.get(status, _errno.EIO)


class AttachFlags(IntFlag):
    """``VIRTIO_IOMMU_ATTACH_F_*``."""

    BYPASS = 1 << 0  #: the domain is a bypass domain (needs BYPASS_CONFIG)


class MapFlags(IntFlag):
    """``VIRTIO_IOMMU_MAP_F_*``."""

    READ = 1 << 0
    WRITE = 1 << 1
    MMIO = 1 << 2  #: the mapping targets MMIO (needs F_MMIO)


HEAD: Final = struct.Struct("<B3s")
TAIL: Final = struct.Struct("<B3s")
TAIL_SIZE: Final = TAIL.size

#: The device-readable part of each request type, head included:
#: ATTACH: head, le32 domain, le32 endpoint, le32 flags, u8 reserved[4] (20 bytes);
#: DETACH: head, le32 domain, le32 endpoint, u8 reserved[8] (20 bytes);
#: MAP: head, le32 domain, le64 virt_start, le64 virt_end, le64 phys_start, le32 flags (36);
#: UNMAP: head, le32 domain, le64 virt_start, le64 virt_end, u8 reserved[4] (28);
#: PROBE: head, le32 endpoint, u8 reserved[64] (72).
READABLE: Final[dict[int, struct.Struct]] = {
    RequestType.ATTACH: struct.Struct("<B3sIII4s"),
    RequestType.DETACH: struct.Struct("<B3sII8s"),
    RequestType.MAP: struct.Struct("<B3sIQQQI"),
    RequestType.UNMAP: struct.Struct("<B3sIQQ4s"),
    RequestType.PROBE: struct.Struct("<B3sI64s"),
}

_Z3, _Z4, _Z8, _Z64 = bytes(3), bytes(4), bytes(8), bytes(64)


def encode_attach(domain: int, endpoint: int, flags: int = 0, *, reserved: bytes = _Z4,
                  head_reserved: bytes = _Z3) -> bytes:
    """The device-readable part of ATTACH(domain, endpoint, flags)."""
    return READABLE[RequestType.ATTACH].pack(RequestType.ATTACH, head_reserved, domain,
                                             endpoint, flags, reserved)


def encode_detach(domain: int, endpoint: int, *, reserved: bytes = _Z8,
                  head_reserved: bytes = _Z3) -> bytes:
    """The device-readable part of DETACH(domain, endpoint)."""
    return READABLE[RequestType.DETACH].pack(RequestType.DETACH, head_reserved, domain,
                                             endpoint, reserved)


def encode_map(domain: int, virt_start: int, virt_end: int, phys_start: int, flags: int,
               *, head_reserved: bytes = _Z3) -> bytes:
    """The device-readable part of MAP: ``[virt_start, virt_end]`` (inclusive) to
    ``phys_start`` with ``flags`` (:class:`MapFlags`)."""
    return READABLE[RequestType.MAP].pack(RequestType.MAP, head_reserved, domain, virt_start,
                                          virt_end, phys_start, flags)


def encode_unmap(domain: int, virt_start: int, virt_end: int, *, reserved: bytes = _Z4,
                 head_reserved: bytes = _Z3) -> bytes:
    """The device-readable part of UNMAP of ``[virt_start, virt_end]`` (inclusive)."""
    return READABLE[RequestType.UNMAP].pack(RequestType.UNMAP, head_reserved, domain,
                                            virt_start, virt_end, reserved)


def encode_probe(endpoint: int, *, reserved: bytes = _Z64, head_reserved: bytes = _Z3) -> bytes:
    """The device-readable part of PROBE(endpoint)."""
    return READABLE[RequestType.PROBE].pack(RequestType.PROBE, head_reserved, endpoint,
                                            reserved)


def encode_tail(status: int) -> bytes:
    """A tail with ``status`` and zeroed reserved bytes (what the device SHOULD write)."""
    return TAIL.pack(status, _Z3)

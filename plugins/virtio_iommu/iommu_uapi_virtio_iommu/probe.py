"""PROBE properties (virtio spec 5.13.6, PROBE request): reserved memory regions and page sizes.

A property is a 4-byte header — ``le16`` type in bits 11:0 (bits 15:12 reserved, zero) and
``le16`` length of the value, header excluded — followed by the value; the next property starts
``length + 4`` bytes after this one; type 0 ends the list and the unused space is zero-filled.

* RESV_MEM (type 1, length 20): ``u8 subtype`` (0 RESERVED, 1 MSI), ``u8 reserved[3]``,
  ``le64 start``, ``le64 end`` (inclusive).
* PAGE_SIZE_MASK (type 2, length 12; a draft property QEMU never emits): ``u8 reserved[4]``,
  ``le64 mask``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from enum import IntEnum
from itertools import pairwise
from typing import Final, NamedTuple

from .rules import refusal

__all__ = [
    "PROPERTY_HEADER",
    "Property",
    "PropertyType",
    "ReservedRegion",
    "ResvSubtype",
    "decode_properties",
    "encode_properties",
    "resv_mem_region",
    "validate_regions",
]


class PropertyType(IntEnum):
    """``VIRTIO_IOMMU_PROBE_T_*`` (type 2 is a draft)."""

    NONE = 0  #: ends the list
    RESV_MEM = 1
    PAGE_SIZE_MASK = 2


class ResvSubtype(IntEnum):
    """``VIRTIO_IOMMU_RESV_MEM_T_*``: a driver treats an unknown subtype as RESERVED."""

    RESERVED = 0  #: accesses are not translated and fault
    MSI = 1  #: an MSI doorbell: accesses pass untranslated


class ReservedRegion(NamedTuple):
    """A reserved region ``[start, end]`` (inclusive) of an endpoint's input address space."""

    start: int
    end: int
    subtype: ResvSubtype = ResvSubtype.RESERVED

    def overlaps(self, start: int, end: int) -> bool:
        """True when ``[start, end]`` meets the region."""
        return start <= self.end and self.start <= end


class Property(NamedTuple):
    """One decoded property: its type (bits 11:0), reserved header bits and value bytes."""

    type: int
    reserved: int
    value: bytes


PROPERTY_HEADER: Final = struct.Struct("<HH")
_TYPE_MASK: Final = 0xFFF
_RESV_MEM: Final = struct.Struct("<B3sQQ")
_PAGE_SIZE_MASK: Final = struct.Struct("<4sQ")


def _property(ptype: PropertyType, value: bytes) -> bytes:
    return PROPERTY_HEADER.pack(ptype, len(value)) + value


def encode_properties(regions: Iterable[ReservedRegion], page_size_mask: int | None = None
                      ) -> bytes:
    """The packed property list: one RESV_MEM per region, then PAGE_SIZE_MASK when given.

    The terminator and zero fill are the caller's (:meth:`bytes.ljust` to ``probe_size``); a
    list longer than ``probe_size`` does not fit.
    """
    out = [_property(PropertyType.RESV_MEM, _RESV_MEM.pack(r.subtype, bytes(3), r.start, r.end))
           for r in regions]
    if page_size_mask is not None:
        out.append(_property(PropertyType.PAGE_SIZE_MASK,
                             _PAGE_SIZE_MASK.pack(bytes(4), page_size_mask)))
    return b"".join(out)


def decode_properties(buf: bytes) -> list[Property]:
    """The properties of a PROBE reply, read as a driver reads them: up to a type-0 header, the
    end of the buffer, or a property whose value runs past it."""
    props: list[Property] = []
    off = 0
    while off + PROPERTY_HEADER.size <= len(buf):
        word, length = PROPERTY_HEADER.unpack_from(buf, off)
        ptype = word & _TYPE_MASK
        if ptype == PropertyType.NONE:
            break
        start = off + PROPERTY_HEADER.size
        if start + length > len(buf):
            break
        props.append(Property(ptype, word >> 12, buf[start:start + length]))
        off = start + length
    return props


def resv_mem_region(value: bytes) -> ReservedRegion:
    """The region a RESV_MEM property value describes (an unknown subtype reads as
    RESERVED, as the driver must treat it)."""
    subtype, _, start, end = _RESV_MEM.unpack(value[:_RESV_MEM.size])
    kind = ResvSubtype.MSI if subtype == ResvSubtype.MSI else ResvSubtype.RESERVED
    return ReservedRegion(start, end, kind)


def validate_regions(endpoint: int, regions: tuple[ReservedRegion, ...], *, strict: bool
                     ) -> None:
    """Refuse (EINVAL) a region that is not a u64 range; with ``strict`` (the spec's device)
    also overlapping regions and more than one MSI region for ``endpoint``."""
    for region in regions:
        if not 0 <= region.start <= region.end < 1 << 64:
            raise refusal("virtio.device.config", detail=f"reserved region {region}")
    if not strict:
        return
    ordered = sorted(regions)
    for first, second in pairwise(ordered):
        if second.start <= first.end:
            raise refusal("virtio.device.resv_overlap", first=first, second=second)
    msi = sum(r.subtype == ResvSubtype.MSI for r in regions)
    if msi > 1:
        raise refusal("virtio.device.resv_msi", endpoint=endpoint, count=msi)

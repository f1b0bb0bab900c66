"""Table sharing (reference §3.8): the Jan 2021 RFC's ATTACH_TABLE and INVALIDATE requests
(and its PAGE_RESP, in :mod:`.pri`).

The RFC ("binding PASID tables", Vivek Gautam and Jean-Philippe Brucker, January 2021) is the
draft closest to Linux's 2020 nesting UAPI: its ATTACH_TABLE carries what
``iommu_pasid_table_config`` carries for an Arm SMMUv3 guest (the CD table's guest address,
S1Fmt, S1DSS, S1CDMax), its INVALIDATE what ``iommu_cache_invalidate_info`` carries. Only the
``rfc2021`` profile knows them (its ATTACH_TABLE feature is bit 6, BYPASS_CONFIG's bit in the
spec); no normative text exists, so the statuses are those reference §3.8 suggests.

A domain that shares a guest table translates requests with a PASID through the guest's CD
table and stage-1 tables (in guest memory, read through the domain's mappings, which are the
stage 2 from then on: MAP and UNMAP are refused, S_INVAL); requests without PASID follow the
table's S1DSS. The IOTLB holds the domain's nested translations under ``(domain, PASID)``;
INVALIDATE drops them, and its T_PASID drops the cached CDs (the façade's contexts) through
:attr:`~.device.VirtioIommuDevice.config_listeners`.
"""

from __future__ import annotations

import struct
from enum import IntEnum, IntFlag
from typing import TYPE_CHECKING, Final, NamedTuple

from .config import U64_MAX
from .features import Feature
from .handlers import Outcome, refuse
from .layouts import RequestType, Status
from .pri import PAGE_RESP, PAGE_RESP_READABLE, page_resp

if TYPE_CHECKING:
    from .device import VirtioIommuDevice

__all__ = [
    "ATTACH_TABLE",
    "INVALIDATE",
    "PSTF_ARM_SMMU_V3",
    "TABLE_HANDLERS",
    "TABLE_READABLE",
    "InvFlags",
    "InvGran",
    "InvType",
    "S1Dss",
    "SharedTable",
    "encode_attach_table",
    "encode_invalidate",
]

#: Request types of the draft.
ATTACH_TABLE: Final = int(RequestType.ATTACH_TABLE)
INVALIDATE: Final = int(RequestType.INVALIDATE)
#: ATTACH_TABLE's ``format`` for an Arm SMMUv3 PASID (CD) table.
PSTF_ARM_SMMU_V3: Final = 2
_MAX_CDMAX: Final = 20
_GRANULES: Final = frozenset({12, 14, 16})

#: ATTACH_TABLE: head, le32 domain, le32 endpoint, le16 format, u8 s1fmt, u8 s1dss,
#: le64 s1contextptr, le32 s1cdmax, u8 reserved[48] (76 bytes; the tail follows).
#: INVALIDATE: head, le16 inv_gran, le16 inv_type, le16 flags, u8 reserved1[2], le32 domain,
#: le32 pasid, u8 reserved2[4], le64 archid, le64 virt_start, le64 nr_pages, u8 granule,
#: u8 reserved3[11] (60 bytes).
TABLE_READABLE: dict[int, struct.Struct] = {
    ATTACH_TABLE: struct.Struct("<B3sIIHBBQI48s"),
    INVALIDATE: struct.Struct("<B3sHHH2sII4sQQQB11s"),
}


class S1Dss(IntEnum):
    """What requests without PASID do on a table-sharing domain (STE.S1DSS)."""

    TERMINATE = 0
    BYPASS = 1  #: stage 2 only
    SSID0 = 2  #: as PASID 0


class InvGran(IntFlag):
    """INVALIDATE's ``inv_gran``: exactly one bit."""

    DOMAIN = 1 << 0
    PASID = 1 << 1
    VA = 1 << 2


class InvType(IntFlag):
    """INVALIDATE's ``inv_type``: the caches."""

    IOTLB = 1 << 0
    DEV_IOTLB = 1 << 1
    PASID = 1 << 2  #: cached CDs


class InvFlags(IntFlag):
    """INVALIDATE's ``flags``."""

    PASID = 1 << 0
    ARCHID = 1 << 1
    LEAF = 1 << 2


class SharedTable(NamedTuple):
    """A guest CD table a domain shares: ATTACH_TABLE's fields."""

    s1fmt: int
    s1dss: int  #: an :class:`S1Dss`
    s1contextptr: int
    s1cdmax: int


def encode_attach_table(domain: int, endpoint: int, table: SharedTable, *,
                        fmt: int = PSTF_ARM_SMMU_V3, reserved: bytes = bytes(48)) -> bytes:
    """The device-readable part of ATTACH_TABLE."""
    return TABLE_READABLE[ATTACH_TABLE].pack(ATTACH_TABLE, bytes(3), domain, endpoint, fmt,
                                             table.s1fmt, table.s1dss, table.s1contextptr,
                                             table.s1cdmax, reserved)


def encode_invalidate(domain: int, gran: int, types: int, *, flags: int = 0, pasid: int = 0,
                      archid: int = 0, virt_start: int = 0, nr_pages: int = 0,
                      granule: int = 0) -> bytes:
    """The device-readable part of INVALIDATE."""
    return TABLE_READABLE[INVALIDATE].pack(INVALIDATE, bytes(3), gran, types, flags, bytes(2),
                                           domain, pasid, bytes(4), archid, virt_start,
                                           nr_pages, granule, bytes(11))


_OK = Outcome(Status.OK)


def attach_table(dev: VirtioIommuDevice, fields: tuple[int | bytes, ...]) -> Outcome:
    """ATTACH_TABLE: ``domain`` (which ``endpoint`` is attached to) shares the guest CD table."""
    _, _, domain_id, endpoint, fmt, s1fmt, s1dss, ptr, cdmax, reserved = fields
    assert isinstance(domain_id, int) and isinstance(endpoint, int) and isinstance(fmt, int)
    assert isinstance(s1fmt, int) and isinstance(s1dss, int) and isinstance(ptr, int)
    assert isinstance(cdmax, int)
    if Feature.ATTACH_TABLE not in dev.negotiated:
        return refuse("virtio.attach_table.not_negotiated")
    if fmt != PSTF_ARM_SMMU_V3:
        return refuse("virtio.attach_table.format", format=fmt)
    bad = ("s1fmt" if s1fmt > 2 else "s1dss" if s1dss > 2 else "s1cdmax" if cdmax > _MAX_CDMAX
           else "s1contextptr" if ptr % 64 else "reserved" if reserved != bytes(48) else None)
    if bad is not None:
        return refuse("virtio.attach_table.fields", detail=f"bad {bad}")
    if endpoint not in dev.endpoints:
        return refuse("virtio.attach_table.endpoint", endpoint=endpoint)
    domain = dev.attached.get(endpoint)
    if domain is None or domain.id != domain_id or domain.bypass:
        return refuse("virtio.attach_table.not_attached", endpoint=endpoint, domain=domain_id)
    table = SharedTable(s1fmt, S1Dss(s1dss), ptr, cdmax)
    if domain.table is not None and domain.table != table:
        return refuse("virtio.attach_table.other_table", domain=domain_id)
    if domain.table is None:
        domain.table = table
        dev.tlb.invalidate(domain.tag)          # stage-2-only entries of the domain
        dev.config_dropped(domain, None)
    return _OK


def invalidate(dev: VirtioIommuDevice, fields: tuple[int | bytes, ...]) -> Outcome:
    """INVALIDATE: drop what the device caches of a table-sharing domain's translations."""
    _, _, gran, types, flags, r1, domain_id, pasid, r2, archid, start, pages, granule, r3 = fields
    assert isinstance(gran, int) and isinstance(types, int) and isinstance(flags, int)
    assert isinstance(domain_id, int) and isinstance(pasid, int) and isinstance(start, int)
    assert isinstance(pages, int) and isinstance(granule, int)
    if Feature.ATTACH_TABLE not in dev.negotiated:
        return refuse("virtio.invalidate.not_negotiated")
    domain = dev.domains.get(domain_id)
    if domain is None:
        return refuse("virtio.invalidate.domain", domain=domain_id)
    if domain.table is None:
        return refuse("virtio.invalidate.not_table", domain=domain_id)
    bad = _bad_invalidate(gran, types, flags, start, pages, granule,
                          bytes(r1) + bytes(r2) + bytes(r3))
    if bad is not None:
        return refuse("virtio.invalidate.fields", detail=bad)
    if gran != InvGran.DOMAIN and not flags & InvFlags.PASID:
        if flags & InvFlags.ARCHID:
            return refuse("virtio.invalidate.archid", archid=archid)
        return refuse("virtio.invalidate.fields", detail="G_PASID or G_VA without F_PASID")
    prefix = domain.tag if gran == InvGran.DOMAIN else (domain.id, pasid)
    if types & InvType.IOTLB:
        if gran == InvGran.VA:
            dev.tlb.invalidate(prefix, start, pages << granule)
        else:
            dev.tlb.invalidate(prefix)
    if types & InvType.PASID:
        dev.config_dropped(domain, None if gran == InvGran.DOMAIN else pasid)
    # InvType.DEV_IOTLB: no endpoint of this model has an ATC, so nothing more is cached
    return _OK


def _bad_invalidate(gran: int, types: int, flags: int, start: int, pages: int, granule: int,
                    reserved: bytes) -> str | None:
    """What makes INVALIDATE's fields inconsistent, or None."""
    if gran not in (InvGran.DOMAIN, InvGran.PASID, InvGran.VA):
        return f"inv_gran {gran:#x} is not one granularity"
    if not types or types & ~int(InvType.IOTLB | InvType.DEV_IOTLB | InvType.PASID):
        return f"inv_type {types:#x}"
    if flags & ~int(InvFlags.PASID | InvFlags.ARCHID | InvFlags.LEAF):
        return f"flags {flags:#x}"
    if reserved != bytes(len(reserved)):
        return "reserved bytes not zero"
    if gran == InvGran.VA and (granule not in _GRANULES or not pages
                               or start + (pages << granule) - 1 > U64_MAX):
        return f"range {start:#x} + {pages} pages of 2^{granule}"
    return None


TABLE_HANDLERS = {ATTACH_TABLE: attach_table, INVALIDATE: invalidate}
TABLE_HANDLERS[PAGE_RESP] = page_resp
TABLE_READABLE[PAGE_RESP] = PAGE_RESP_READABLE

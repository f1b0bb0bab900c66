"""Invalidation-queue descriptors (VT-d 3.x 6.5.2): encode, decode and validate.

Each descriptor type is a :class:`Descriptor` record whose ``LAYOUT`` names its fields at their
absolute bit positions in the 256-bit descriptor (QW1 starts at bit 64). The type code is split
over QW0[3:0] and QW0[11:9]. :func:`decode_descriptor` validates what software wrote to the queue
against the capability set and raises :class:`DescriptorError` carrying the IQERCD.IQEI code the
hardware would report.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import ClassVar

from iommu_uapi.hw.ats import ats_range, ats_size_encoding

from .bits import Field, Record, bit, qwords_to_int
from .registers import VtdConfig

__all__ = [
    "DESCRIPTOR_TYPES",
    "ContextCacheGranularity",
    "ContextCacheInv",
    "Descriptor",
    "DescriptorError",
    "DevTlbInv",
    "IecInv",
    "InvWait",
    "IotlbGranularity",
    "IotlbInv",
    "Iqei",
    "PageGroupResponse",
    "PasidCacheGranularity",
    "PasidCacheInv",
    "PasidDevTlbInv",
    "PasidIotlbGranularity",
    "PasidIotlbInv",
    "ResponseCode",
    "decode_descriptor",
    "devtlb_range",
    "devtlb_size_encoding",
    "page_range",
]

TYPE_LO = Field(0, 4)    # QW0[3:0]: type bits 3:0
TYPE_HI = Field(9, 3)    # QW0[11:9]: type bits 6:4
PAGE_SHIFT = 12
_QW = (1 << 64) - 1


class Iqei(IntEnum):
    """IQERCD.IQEI: why the queue stopped."""

    NONE = 0
    TAIL_BEYOND_QUEUE = 1
    FETCH_ERROR = 2
    INVALID_TYPE = 3
    RESERVED_FIELD = 4      # also a reserved encoding of a field (granularity) and AM > MAMV
    INVALID_WIDTH = 5
    TAIL_MISALIGNED = 6
    INVALID_FOR_TTM = 7


class DescriptorError(Exception):
    """A descriptor the hardware refuses: ``iqei`` is what IQERCD reports."""

    iqei: Iqei

    def __init__(self, iqei: Iqei, message: str) -> None:
        super().__init__(message)
        self.iqei = iqei


def _type_bits(code: int) -> int:
    return TYPE_LO.put(code & 0xF) | TYPE_HI.put(code >> 4)


class Descriptor(Record, frozen=True, gc=False):
    """A 256-bit invalidation-queue descriptor.

    ``CAPABILITY_FIELDS`` (field -> :class:`~.registers.VtdConfig` attribute) names the fields
    that are reserved unless the unit reports the capability; ``reserved_mask(cfg)`` is the
    mask under the capability set ``cfg``.
    """

    BITS = 256
    TYPE: ClassVar[int] = 0
    #: Granularity values the type defines (None: the type has no granularity field).
    GRANULARITIES: ClassVar[frozenset[int] | None] = None
    #: Whether the type has a 128-bit form (the non-PASID types do).
    HAS_128: ClassVar[bool] = True


class ContextCacheGranularity(IntEnum):
    """Context-cache invalidate G (type 1)."""

    GLOBAL = 1      # every cached context entry
    DOMAIN = 2      # the entries cached with DID
    DEVICE = 3      # the entries of SID (under the function mask FM) cached with DID


class ContextCacheInv(Descriptor, frozen=True, gc=False):
    """Type 1: context-cache invalidate, granularity :class:`ContextCacheGranularity`."""

    TYPE = 1
    FIXED = _type_bits(1)
    GRANULARITIES = frozenset(ContextCacheGranularity)
    LAYOUT = {"G": Field(4, 2), "DID": Field(16, 16), "SID": Field(32, 16), "FM": Field(48, 2)}
    G: int = ContextCacheGranularity.GLOBAL
    DID: int = 0
    SID: int = 0
    FM: int = 0


class IotlbGranularity(IntEnum):
    """IOTLB invalidate G (type 2)."""

    GLOBAL = 1      # every IOTLB and paging-structure cache entry
    DOMAIN = 2      # the entries tagged DID
    PAGE = 3        # the 2^AM pages at ADDR of DID (needs CAP.PSI)


class IotlbInv(Descriptor, frozen=True, gc=False):
    """Type 2: IOTLB invalidate, granularity :class:`IotlbGranularity`."""

    TYPE = 2
    FIXED = _type_bits(2)
    GRANULARITIES = frozenset(IotlbGranularity)
    CAPABILITY_FIELDS = {"DW": "dwd", "DR": "drd"}
    LAYOUT = {
        "G": Field(4, 2), "DW": bit(6), "DR": bit(7), "DID": Field(16, 16),
        "AM": Field(64, 6),            # 2^AM pages
        "IH": bit(70),                 # only leaves changed: paging-structure caches may stay
        "ADDR": Field(76, 52, 12),
    }
    G: int = IotlbGranularity.GLOBAL
    DW: bool = False
    DR: bool = False
    DID: int = 0
    AM: int = 0
    IH: bool = False
    ADDR: int = 0


class DevTlbInv(Descriptor, frozen=True, gc=False):
    """Type 3: device-TLB invalidate (requests without PASID). S=1: range encoded in ADDR."""

    TYPE = 3
    FIXED = _type_bits(3)
    LAYOUT = {
        "PFSID_LO": Field(12, 4), "MIP": Field(16, 5), "SID": Field(32, 16),
        "PFSID_HI": Field(52, 12), "S": bit(64), "ADDR": Field(76, 52, 12),
    }
    PFSID_LO: int = 0
    MIP: int = 0
    SID: int = 0
    PFSID_HI: int = 0
    S: bool = False
    ADDR: int = 0


class IecInv(Descriptor, frozen=True, gc=False):
    """Type 4: interrupt-entry-cache invalidate (interrupt remapping; no DMA effect)."""

    TYPE = 4
    FIXED = _type_bits(4)
    LAYOUT = {"G": bit(4), "IM": Field(27, 5), "IIDX": Field(32, 16)}
    G: bool = False
    IM: int = 0
    IIDX: int = 0


class InvWait(Descriptor, frozen=True, gc=False):
    """Type 5: invalidation wait. SW writes STDATA to STADDR; IF sets ICS.IWC."""

    TYPE = 5
    FIXED = _type_bits(5)
    CAPABILITY_FIELDS = {"PD": "pds"}
    LAYOUT = {
        "IF": bit(4), "SW": bit(5), "FN": bit(6), "PD": bit(7),
        "STDATA": Field(32, 32),
        "STADDR": Field(66, 62, 2),     # dword-aligned status address
    }
    IF: bool = False
    SW: bool = False
    FN: bool = False
    PD: bool = False
    STDATA: int = 0
    STADDR: int = 0


class PasidIotlbGranularity(IntEnum):
    """PASID-based IOTLB invalidate G (type 6); 0 and 1 are reserved."""

    NON_GLOBAL = 2  # every non-global entry of (DID, PASID) (Linux QI_GRAN_NONG_PASID)
    PAGE = 3        # the 2^AM pages at ADDR of (DID, PASID), global ones too (QI_GRAN_PSI_PASID)


class PasidIotlbInv(Descriptor, frozen=True, gc=False):
    """Type 6: PASID-based IOTLB invalidate (first-level and nested translations), granularity
    :class:`PasidIotlbGranularity`."""

    TYPE = 6
    FIXED = _type_bits(6)
    GRANULARITIES = frozenset(PasidIotlbGranularity)
    HAS_128 = False
    LAYOUT = {
        "G": Field(4, 2), "DID": Field(16, 16), "PASID": Field(32, 20),
        "AM": Field(64, 6), "IH": bit(70), "ADDR": Field(76, 52, 12),
    }
    G: int = PasidIotlbGranularity.NON_GLOBAL
    DID: int = 0
    PASID: int = 0
    AM: int = 0
    IH: bool = False
    ADDR: int = 0


class PasidCacheGranularity(IntEnum):
    """PASID-cache invalidate G (type 7); 2 is reserved."""

    DOMAIN = 0      # every PASID entry cached with DID
    PASID = 1       # the entries of (DID, PASID)
    GLOBAL = 3      # every cached PASID entry


class PasidCacheInv(Descriptor, frozen=True, gc=False):
    """Type 7: PASID-cache invalidate, granularity :class:`PasidCacheGranularity`."""

    TYPE = 7
    FIXED = _type_bits(7)
    GRANULARITIES = frozenset(PasidCacheGranularity)
    HAS_128 = False
    LAYOUT = {"G": Field(4, 2), "DID": Field(16, 16), "PASID": Field(32, 20)}
    G: int = PasidCacheGranularity.DOMAIN
    DID: int = 0
    PASID: int = 0


class PasidDevTlbInv(Descriptor, frozen=True, gc=False):
    """Type 8: PASID-based device-TLB invalidate. S=1: range encoded in ADDR; G: global
    (the device drops the range for every PASID)."""

    TYPE = 8
    FIXED = _type_bits(8)
    HAS_128 = False
    LAYOUT = {
        "MIP": Field(4, 5), "PFSID_LO": Field(12, 4), "SID": Field(16, 16),
        "PASID": Field(32, 20), "PFSID_HI": Field(52, 12),
        "G": bit(64), "S": bit(75), "ADDR": Field(76, 52, 12),
    }
    MIP: int = 0
    PFSID_LO: int = 0
    SID: int = 0
    PASID: int = 0
    PFSID_HI: int = 0
    G: bool = False
    S: bool = False
    ADDR: int = 0


class ResponseCode(IntEnum):
    """Page group response codes (type 9 RC)."""

    SUCCESS = 0
    INVALID_REQUEST = 1
    FAILURE = 0xF


class PageGroupResponse(Descriptor, frozen=True, gc=False):
    """Type 9: page group response, carried back to the device (QW2/QW3: private data)."""

    TYPE = 9
    FIXED = _type_bits(9)
    HAS_128 = False
    LAYOUT = {
        "PP": bit(4), "PDP": bit(5), "RC": Field(12, 4), "RID": Field(16, 16),
        "PASID": Field(32, 20), "LPIG": bit(66), "PRGI": Field(67, 9),
        "PRIV0": Field(128, 64), "PRIV1": Field(192, 64),
    }
    PP: bool = False
    PDP: bool = False
    RC: int = 0
    RID: int = 0
    PASID: int = 0
    LPIG: bool = False
    PRGI: int = 0
    PRIV0: int = 0
    PRIV1: int = 0


DESCRIPTOR_TYPES: dict[int, type[Descriptor]] = {
    cls.TYPE: cls
    for cls in (ContextCacheInv, IotlbInv, DevTlbInv, IecInv, InvWait, PasidIotlbInv,
                PasidCacheInv, PasidDevTlbInv, PageGroupResponse)
}

#: Types the capability set must report for the hardware to accept them.
_TYPE_FEATURE: dict[int, str] = {
    DevTlbInv.TYPE: "dt", PasidDevTlbInv.TYPE: "dt", PageGroupResponse.TYPE: "prs",
    PasidIotlbInv.TYPE: "pasid", PasidCacheInv.TYPE: "pasid",
}
#: Types that exist only in scalable mode (TTM = 01).
_SCALABLE_ONLY = frozenset({PasidIotlbInv.TYPE, PasidCacheInv.TYPE, PasidDevTlbInv.TYPE,
                            PageGroupResponse.TYPE})


def decode_descriptor(qwords: Sequence[int], cfg: VtdConfig, *, wide: bool = True,
                      scalable: bool = True) -> Descriptor:
    """Validate and decode a descriptor as the queue reads it.

    ``qwords`` are the 4 (``wide``: 256-bit queue) or 2 (128-bit queue) quadwords at IQH.
    Raises :class:`DescriptorError`: unknown or unsupported type (IQEI 3), a type with no 128-bit
    form in a 128-bit queue (5), a scalable-only type under legacy TTM (7), a reserved bit, a
    reserved granularity, page-selective IOTLB without CAP.PSI or AM > CAP.MAMV (4).
    """
    if len(qwords) != (4 if wide else 2) or any(
            not isinstance(q, int) or not 0 <= q <= _QW for q in qwords):
        raise DescriptorError(Iqei.INVALID_WIDTH, f"descriptor: need {4 if wide else 2} "
                              "64-bit quadwords")
    raw = qwords_to_int(qwords)
    code = TYPE_LO.get(raw) | TYPE_HI.get(raw) << 4
    cls = DESCRIPTOR_TYPES.get(code)
    feature = _TYPE_FEATURE.get(code)
    if cls is None or (feature is not None and not getattr(cfg, feature)):
        raise DescriptorError(Iqei.INVALID_TYPE, f"descriptor type {code:#x} is not supported")
    if not wide and not cls.HAS_128:
        raise DescriptorError(Iqei.INVALID_WIDTH,
                              f"descriptor type {code:#x} needs the 256-bit queue")
    if not scalable and code in _SCALABLE_ONLY:
        raise DescriptorError(Iqei.INVALID_FOR_TTM,
                              f"descriptor type {code:#x} is only valid in scalable mode")
    reserved = raw & cls.reserved_mask(cfg)
    if reserved:
        raise DescriptorError(Iqei.RESERVED_FIELD, f"{cls.__name__}: reserved bits "
                              f"{reserved:#x} set")
    desc = cls.from_int(raw)
    g = desc.describe().get("G")
    if cls.GRANULARITIES is not None and g not in cls.GRANULARITIES:
        raise DescriptorError(Iqei.RESERVED_FIELD, f"{cls.__name__}: granularity {g} reserved")
    if isinstance(desc, IotlbInv) and desc.G == IotlbGranularity.PAGE and not cfg.psi:
        raise DescriptorError(Iqei.RESERVED_FIELD, "IotlbInv: page-selective without CAP.PSI")
    am = desc.describe().get("AM")
    if am is not None and am > cfg.mamv:
        raise DescriptorError(Iqei.RESERVED_FIELD, f"{cls.__name__}: AM {am} > MAMV "
                              f"{cfg.mamv}")
    return desc


# -- address ranges ------------------------------------------------------------------------------


def page_range(addr: int, am: int) -> tuple[int, int]:
    """The naturally aligned range of 2^AM pages containing ``addr``: (base, size)."""
    size = 1 << (PAGE_SHIFT + am)
    return addr & ~(size - 1), size


#: The device-TLB descriptors' ADDR/S range encoding is PCIe ATS's (:mod:`iommu_uapi.hw.ats`).
devtlb_range = ats_range
devtlb_size_encoding = ats_size_encoding

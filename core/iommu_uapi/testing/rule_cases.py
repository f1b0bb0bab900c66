"""One concrete case per tabulated rule: the user bytes it refuses and a passing neighbour.

For every rule id of :data:`iommu_uapi.rules.RULES`, :data:`RULE_CASES` holds a
:class:`RuleCase`: the failing bytes, the neighbour that differs from them only in the one value
the rule looks at, the size disciplines under which the failing bytes break the rule, the
record-level decoder they go through (``CacheInvalidateInfo.from_user`` ...), and the façade
entry points of :class:`~iommu_uapi.iommu.IOMMU` that take the same bytes
(``uapi_cache_invalidate`` ...), or the ioctls of a :class:`~iommu_uapi.vfio.VfioContainer`
(``vfio.nesting_op`` ...) for the VFIO wrappers. A rule no entry point can reach (the plain
codec, profile lookup) is *record-only*, with the reason.

The project's own tests run every case at the record level; the conformance suite's
``RuleTests`` send the same bytes through a backend's entry points.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import msgspec

from .. import profiles
from ..abi import SizeDiscipline
from ..uapi import (
    CacheInvalidateInfo,
    GpasidBindData,
    GpasidBindDataVtd,
    GpasidBindVendor,
    InvAddrInfo,
    InvGranu,
    InvPasidInfo,
    NestingInfo,
    PageResponse,
    PasidSmmuv3,
    PasidTableConfig,
    PasidTableVendor,
    VfioIommuType1CacheInvalidate,
    VfioIommuType1NestingOp,
    VfioIommuType1SetPasidTable,
    nesting_info_probe,
)

__all__ = [
    "BIND_HPASID",
    "BOTH",
    "DECODERS",
    "RESPONSE_GRPID",
    "RULE_CASES",
    "Decoder",
    "RuleCase",
    "bind_bytes",
    "cache_invalidate_bytes",
    "nesting_info_bytes",
    "page_response_bytes",
    "pasid_table_bytes",
    "vfio_header",
    "with_tail",
]

ARGSZ = SizeDiscipline.ARGSZ
IOMMUFD = SizeDiscipline.IOMMUFD
#: Both size disciplines: the 2020 kernel's argsz copy and iommufd's copy_struct_from_user.
BOTH = (ARGSZ, IOMMUFD)
#: The host PASID the bind cases name, and the page request group the responses answer.
BIND_HPASID = 2
RESPONSE_GRPID = 1

# -- the records as a user would write them -----------------------------------------------------


def cache_invalidate_bytes(argsz: int = 56, version: int = 1, cache: int = 1,
                           granularity: int = 2, padding: bytes = bytes(6), addr_flags: int = 0,
                           pasid_flags: int = 1) -> bytes:
    """``iommu_cache_invalidate_info``: IOTLB x ADDR by default (PASID 4 when granularity is
    PASID)."""
    granu = (InvGranu(pasid_info=InvPasidInfo(flags=pasid_flags, pasid=4))
             if granularity == 1 else InvGranu(addr_info=InvAddrInfo(flags=addr_flags)))
    return CacheInvalidateInfo(argsz, version, cache, granularity, padding, granu).to_bytes()


def bind_bytes(argsz: int = 72, version: int = 1, fmt: int = 1, flags: int = 0,
               padding: bytes = bytes(8), vtd_flags: int = 0) -> bytes:
    """``iommu_gpasid_bind_data`` with VT-d vendor data, binding GPA 0x1000 to host PASID
    :data:`BIND_HPASID`."""
    return GpasidBindData(
        argsz=argsz, version=version, format=fmt, addr_width=48, flags=flags, gpgd=0x1000,
        hpasid=BIND_HPASID, padding=padding,
        vendor=GpasidBindVendor(vtd=GpasidBindDataVtd(vtd_flags)),
    ).to_bytes()


def page_response_bytes(argsz: int = 24, version: int = 1, flags: int = 0,
                        code: int = 0) -> bytes:
    """``iommu_page_response`` answering group :data:`RESPONSE_GRPID` without a PASID."""
    return PageResponse(argsz, version, flags, 0, RESPONSE_GRPID, code).to_bytes()


def pasid_table_bytes(argsz: int = 32, version: int = 1, fmt: int = 1, config: int = 1,
                      padding: bytes = bytes(2), vpad: bytes = bytes(2)) -> bytes:
    """``iommu_pasid_table_config`` for an SMMUv3 CD table at GPA 0x8000."""
    return PasidTableConfig(
        argsz=argsz, version=version, base_ptr=0x8000, format=fmt, config=config,
        padding=padding, vendor_data=PasidTableVendor(PasidSmmuv3(1, 0, 0, vpad)),
    ).to_bytes()


def nesting_info_bytes(argsz: int = 64) -> bytes:
    """``iommu_nesting_info`` as user space reads it back."""
    return NestingInfo(argsz=argsz, format=1, features=3).to_bytes()


def vfio_header(argsz: int = 8, flags: int = 0) -> bytes:
    """The ``{argsz; flags}`` header of a VFIO ioctl wrapper."""
    return struct.pack("<II", argsz, flags)


def with_tail(raw: bytes, extra: bytes) -> bytes:
    """``raw`` as a newer, larger struct: ``extra`` appended and argsz grown to match."""
    return struct.pack("<I", len(raw) + len(extra)) + raw[4:] + extra


# -- record-level decoders: (bytes, profile, discipline) -> anything ----------------------------

Decoder = Callable[[bytes, str, SizeDiscipline], object]

#: The record-level entry points a case names. The codec ones read a JSON object of fields; the
#: profile ones read a suffix of the profile name (``profile.unknown``) or ``b"replace"``
#: (``profile.exists``).
DECODERS: dict[str, Decoder] = {
    "CacheInvalidateInfo.from_user": CacheInvalidateInfo.from_user,
    "GpasidBindData.from_user": GpasidBindData.from_user,
    "PageResponse.from_user": PageResponse.from_user,
    "PasidTableConfig.from_user": PasidTableConfig.from_user,
    "NestingInfo.from_user": NestingInfo.from_user,
    "VfioIommuType1NestingOp.from_user": VfioIommuType1NestingOp.from_user,
    "VfioIommuType1SetPasidTable.from_user": VfioIommuType1SetPasidTable.from_user,
    "VfioIommuType1CacheInvalidate.from_user": VfioIommuType1CacheInvalidate.from_user,
    "nesting_info_probe": lambda b, p, d: nesting_info_probe(bytearray(b)),
    "CacheInvalidateInfo.from_bytes": lambda b, p, d: CacheInvalidateInfo.from_bytes(b),
    "CacheInvalidateInfo.from_json": lambda b, p, d: CacheInvalidateInfo.from_json(b),
    "CacheInvalidateInfo.to_bytes": lambda b, p, d: CacheInvalidateInfo(
        **msgspec.json.decode(b)).to_bytes(),
    "profiles.get": lambda b, p, d: profiles.get(p + b.decode()),
    "profiles.register": lambda b, p, d: profiles.register(profiles.get(p),
                                                           replace=b == b"replace"),
}


class RuleCase(msgspec.Struct, frozen=True, gc=False):
    """The concrete inputs of one rule.

    ``bad`` breaks rule ``rule`` (under each of ``disciplines``, in each profile the rule
    belongs to); ``good`` is its neighbour, which that rule lets through. ``decoder`` names the
    record-level entry point in :data:`DECODERS`; ``via`` the façade entry points that take the
    same bytes; ``record_only`` says why ``via`` is empty.
    """

    rule: str
    bad: bytes
    good: bytes
    decoder: str
    disciplines: tuple[SizeDiscipline, ...] = BOTH
    via: tuple[str, ...] = ()
    record_only: str = ""


_CI, _BD, _PR, _PT, _NI = (cache_invalidate_bytes, bind_bytes, page_response_bytes,
                           pasid_table_bytes, nesting_info_bytes)
_VH = vfio_header

_CODEC = "the plain codec (from_bytes / to_bytes / JSON) is a library call, not a UAPI entry"
_PROFILE = "profile lookup and registration are library calls, not UAPI entries"
_READBACK = ("applies when user space decodes the nesting info the façade wrote; the façade "
             "answers a short argsz as a size probe")

_INV = ("CacheInvalidateInfo.from_user", ("uapi_cache_invalidate",))
_BIND = ("GpasidBindData.from_user", ("uapi_sva_bind_gpasid", "uapi_sva_unbind_gpasid"))
_RESP = ("PageResponse.from_user", ("uapi_page_response",))
_TABLE = ("PasidTableConfig.from_user", ("uapi_attach_pasid_table",))


def _case(rule: str, bad: bytes, good: bytes, where: tuple[str, tuple[str, ...]],
          disciplines: tuple[SizeDiscipline, ...] = BOTH) -> RuleCase:
    return RuleCase(rule, bad, good, where[0], disciplines, where[1])


def _record(rule: str, bad: bytes, good: bytes, decoder: str, reason: str,
            disciplines: tuple[SizeDiscipline, ...] = BOTH) -> RuleCase:
    return RuleCase(rule, bad, good, decoder, disciplines, (), reason)


#: A VFIO wrapper's rules: its record-level decoder and the container ioctl that takes it.
_VFIO_WRAPPERS = {
    "nesting_op": ("VfioIommuType1NestingOp.from_user", "vfio.nesting_op"),
    "set_pasid_table": ("VfioIommuType1SetPasidTable.from_user", "vfio.set_pasid_table"),
    "vfio_cache_invalidate": ("VfioIommuType1CacheInvalidate.from_user", "vfio.cache_invalidate"),
}


def _vfio(rule: str, bad: bytes, good: bytes) -> RuleCase:
    decoder, ioctl = _VFIO_WRAPPERS[rule.split(".")[0]]
    return _case(rule, bad, good, (decoder, (ioctl,)))


_CASES: tuple[RuleCase, ...] = (
    # ---- the plain codec and profiles --------------------------------------------------------
    _record("abi.short_buffer", bytes(55), bytes(56), "CacheInvalidateInfo.from_bytes", _CODEC,
            (ARGSZ,)),
    _record("abi.long_buffer", bytes(57), bytes(56), "CacheInvalidateInfo.from_bytes", _CODEC,
            (ARGSZ,)),
    _record("abi.field_range", b'{"cache": 256}', b'{"cache": 255}',
            "CacheInvalidateInfo.to_bytes", _CODEC, (ARGSZ,)),
    _record("abi.decode", b'{"granularity": 256}', b'{"granularity": 255}',
            "CacheInvalidateInfo.from_json", _CODEC, (ARGSZ,)),
    _record("profile.unknown", b"-typo", b"", "profiles.get", _PROFILE, (ARGSZ,)),
    _record("profile.exists", b"", b"replace", "profiles.register", _PROFILE, (ARGSZ,)),
    # ---- cache invalidation ------------------------------------------------------------------
    _case("cache_invalidate.copy_minsz", _CI()[:15], _CI(), _INV),
    _case("cache_invalidate.argsz_minsz", _CI(15, granularity=0), _CI(16, granularity=0), _INV),
    _case("cache_invalidate.copy_rest", _CI()[:55], _CI(), _INV),
    _case("cache_invalidate.tail_nonzero", with_tail(_CI(), b"\0\1"), with_tail(_CI(), b"\0\0"),
          _INV, (IOMMUFD,)),
    _case("cache_invalidate.argsz_granularity", _CI(55), _CI(56), _INV),
    _case("cache_invalidate.version", _CI(version=2), _CI(), _INV),
    _case("cache_invalidate.cache_bits", _CI(cache=8 | 1, granularity=1),
          _CI(cache=7, granularity=1), _INV),
    _case("cache_invalidate.cache_nonzero", _CI(cache=0), _CI(cache=1), _INV),
    _case("cache_invalidate.granularity_range", _CI(granularity=3), _CI(granularity=2), _INV),
    _case("cache_invalidate.cache_granularity", _CI(cache=4, granularity=2),
          _CI(cache=3, granularity=2), _INV),
    _case("cache_invalidate.addr_flags", _CI(addr_flags=8), _CI(addr_flags=7), _INV),
    _case("cache_invalidate.pasid_flags", _CI(granularity=1, pasid_flags=5),
          _CI(granularity=1, pasid_flags=3), _INV),
    _case("cache_invalidate.pasid_needs_id", _CI(granularity=1, pasid_flags=0),
          _CI(granularity=1, pasid_flags=2), _INV),
    _case("cache_invalidate.padding", _CI(padding=b"\0\0\0\0\0\1"), _CI(), _INV),
    # ---- guest PASID bind (unbind runs the same checks on the same bytes) --------------------
    _case("bind.copy_minsz", _BD()[:55], _BD(), _BIND),
    _case("bind.argsz_minsz", _BD(55, fmt=1), _BD(72), _BIND),
    _case("bind.copy_rest", _BD()[:71], _BD(), _BIND),
    _case("bind.tail_nonzero", with_tail(_BD(), b"\1"), with_tail(_BD(), b"\0"), _BIND,
          (IOMMUFD,)),
    _case("bind.argsz_vendor", _BD(56)[:56], _BD(72), _BIND),
    _case("bind.version", _BD(version=0), _BD(), _BIND),
    _case("bind.format_range", _BD(fmt=2), _BD(fmt=1), _BIND),
    _case("bind.format_nonzero", _BD(fmt=0), _BD(fmt=1), _BIND),
    _case("bind.flags", _BD(flags=1 << 32), _BD(flags=1), _BIND),
    _case("bind.padding", _BD(padding=b"\1" + bytes(7)), _BD(), _BIND),
    _case("bind.vtd_flags", _BD(vtd_flags=0x40), _BD(vtd_flags=0x3F), _BIND),
    # ---- page response -----------------------------------------------------------------------
    _case("page_response.copy_minsz", _PR()[:23], _PR(), _RESP),
    _case("page_response.argsz_minsz", _PR(argsz=23), _PR(24), _RESP),
    # minsz is the whole struct: only iommufd's copy reads past it
    _case("page_response.copy_rest", _PR(argsz=32), _PR(argsz=32) + bytes(8), _RESP,
          (IOMMUFD,)),
    _case("page_response.tail_nonzero", with_tail(_PR(), b"\1"), with_tail(_PR(), b"\0"),
          _RESP, (IOMMUFD,)),
    _case("page_response.version", _PR(version=2), _PR(), _RESP),
    _case("page_response.flags", _PR(flags=2), _PR(flags=1), _RESP),
    _case("page_response.code_range", _PR(code=3), _PR(code=2), _RESP),
    # ---- PASID table ---------------------------------------------------------------------------
    _case("attach_pasid_table.copy_minsz", _PT()[:23], _PT(), _TABLE),
    _case("attach_pasid_table.argsz_minsz", _PT(23, fmt=0)[:24], _PT(24, fmt=0)[:24], _TABLE),
    _case("attach_pasid_table.copy_rest", _PT()[:31], _PT(), _TABLE),
    _case("attach_pasid_table.tail_nonzero", with_tail(_PT(), b"\1"), with_tail(_PT(), b"\0"),
          _TABLE, (IOMMUFD,)),
    _case("attach_pasid_table.version", _PT(version=2), _PT(), _TABLE),
    _case("attach_pasid_table.argsz_format", _PT(31), _PT(32), _TABLE),
    _case("attach_pasid_table.config_range", _PT(config=4), _PT(config=3), _TABLE),
    _case("attach_pasid_table.padding", _PT(vpad=b"\0\1"), _PT(), _TABLE),
    # ---- nesting info --------------------------------------------------------------------------
    _record("nesting_info.copy_minsz", _NI()[:31], _NI(), "NestingInfo.from_user", _READBACK),
    _record("nesting_info.argsz_minsz", _NI(31), _NI(32), "NestingInfo.from_user", _READBACK),
    RuleCase("nesting_info.copy_rest", _NI()[:63], _NI(), "NestingInfo.from_user",
             via=("nesting_info",)),
    _record("nesting_info.tail_nonzero", with_tail(_NI(), b"\1"), with_tail(_NI(), b"\0"),
            "NestingInfo.from_user", _READBACK, (IOMMUFD,)),
    RuleCase("nesting_info.copy_argsz", bytes(3), bytes(4), "nesting_info_probe",
             via=("nesting_info",)),
    # ---- VFIO wrappers -------------------------------------------------------------------------
    _vfio("nesting_op.copy_minsz", _VH()[:7], _VH()),
    _vfio("nesting_op.argsz_minsz", _VH(7), _VH(8)),
    _vfio("nesting_op.flags", _VH(8, 0x10002), _VH(8, 2)),
    _vfio("nesting_op.op", _VH(8, 3), _VH(8, 1)),
    _vfio("set_pasid_table.copy_minsz", _VH(8, 1)[:4], _VH(8, 1)),
    _vfio("set_pasid_table.argsz_minsz", _VH(0, 1), _VH(8, 1)),
    _vfio("set_pasid_table.flags", _VH(8, 3), _VH(8, 2)),
    _vfio("vfio_cache_invalidate.copy_minsz", b"", _VH()),
    _vfio("vfio_cache_invalidate.argsz_minsz", _VH(4), _VH(8)),
    _vfio("vfio_cache_invalidate.flags", _VH(8, 1), _VH(8, 0)),
)

#: rule id -> its case, in the rule table's order of appearance in this module.
RULE_CASES: dict[str, RuleCase] = {c.rule: c for c in _CASES}

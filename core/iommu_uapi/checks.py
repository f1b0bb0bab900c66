"""The IOMMU core's content checks, one function per operation, per profile.

These are the checks ``drivers/iommu/iommu.c`` (v5.10) made between copying a request from user
memory and calling the IOMMU driver (reference kernel-uapi.md c.1-c.7), in the kernel's order,
plus the ``strict`` profile's additions. Every refusal comes from the rule table
(:mod:`iommu_uapi.rules`), so errno and message are those of a rule id. ``Record.from_user()``
and the typed in-kernel entry points share this code: the ``*_argsz`` head checks run inside the
size discipline (before the second copy, as the kernel orders them) or, for a typed call, when
``argsz`` is passed to ``check_*``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .profiles import Profile, ProfileLike, get
from .rules import fail
from .uapi.consts import (
    IOMMU_PASID_FORMAT_LAST,
    IOMMU_PASID_FORMAT_SMMUV3,
    IOMMU_SVA_VTD_GPASID_LAST,
    CacheType,
    InvGranularity,
    PageResponseCode,
    PasidFormat,
)

if TYPE_CHECKING:
    from .uapi.bind import GpasidBindData
    from .uapi.cache_invalidate import CacheInvalidateInfo
    from .uapi.page_response import PageResponse
    from .uapi.pasid_table import PasidTableConfig

__all__ = [
    "ADDR_FLAGS_MASK",
    "CACHE_TYPE_MASK",
    "GRANU_FORBIDDEN_CACHES",
    "GRANU_MIN_ARGSZ",
    "PASID_FLAGS_MASK",
    "attach_pasid_table_head",
    "bind_argsz",
    "cache_invalidate_argsz",
    "cache_invalidate_content",
    "check_attach_pasid_table",
    "check_bind",
    "check_cache_invalidate",
    "check_page_response",
    "check_unbind",
    "page_response_content",
    "profile_of",
]

profile_of = get

#: Valid ``cache`` bits: (1 << IOMMU_CACHE_INV_TYPE_NR) - 1.
CACHE_TYPE_MASK = 0x7
#: Valid ``granu.addr_info.flags``: PASID | ARCHID | LEAF.
ADDR_FLAGS_MASK = 0x7
#: Valid ``granu.pasid_info.flags``: PASID | ARCHID.
PASID_FLAGS_MASK = 0x3
#: Valid ``iommu_gpasid_bind_data.flags``: IOMMU_SVA_GPASID_VAL.
BIND_FLAGS_MASK = 0x1
#: Valid VT-d bind flags in v5.10: below IOMMU_SVA_VTD_GPASID_LAST.
VTD_FLAGS_MASK = IOMMU_SVA_VTD_GPASID_LAST - 1
#: Valid ``iommu_page_response.flags``: IOMMU_PAGE_RESP_PASID_VALID.
RESPONSE_FLAGS_MASK = 0x1

#: The header's cache x granularity table (a.3): cache bits a granularity does not apply to.
#: Plain ints (not IntFlag) because this runs on every request.
GRANU_FORBIDDEN_CACHES: dict[int, int] = {
    int(InvGranularity.DOMAIN): int(CacheType.DEV_IOTLB),
    int(InvGranularity.PASID): 0,
    int(InvGranularity.ADDR): int(CacheType.PASID),
}

#: argsz a granularity needs: offsetofend of its union member (c.1 steps 4, 5).
GRANU_MIN_ARGSZ: dict[int, int] = {int(InvGranularity.PASID): 32, int(InvGranularity.ADDR): 56}

_GRANU_ADDR = int(InvGranularity.ADDR)
_GRANU_PASID = int(InvGranularity.PASID)
#: argsz the VT-d bind vendor data needs: offsetofend(vendor.vtd) (strict; d.1 #3 in 5.10).
BIND_VTD_MIN_ARGSZ = 72
#: argsz the SMMUv3 PASID-table config needs: offsetofend(vendor_data.smmuv3) (c.7 step 5).
PASID_TABLE_SMMUV3_MIN_ARGSZ = 32
#: Minimum argsz of a page response under strict: the whole v5.10 struct.
PAGE_RESPONSE_MIN_ARGSZ = 24

_ZERO6 = bytes(6)
_ZERO8 = bytes(8)
_ZERO2 = bytes(2)


def _granu_name(g: int) -> str:
    return InvGranularity(g).name if g < 3 else str(g)


# ---- cache invalidation (c.1, c.2) -----------------------------------------------------------


def cache_invalidate_argsz(info: CacheInvalidateInfo, argsz: int, prof: Profile) -> None:
    """c.1 steps 4-5: argsz must cover the union member the granularity uses."""
    need = GRANU_MIN_ARGSZ.get(info.granularity)
    if need is not None and argsz < need and "cache_invalidate.argsz_granularity" in prof.rules:
        raise fail(
            "cache_invalidate.argsz_granularity",
            granularity=_granu_name(info.granularity), need=need, argsz=argsz,
        )


def cache_invalidate_content(info: CacheInvalidateInfo, prof: Profile) -> None:
    """c.2 (``iommu_check_cache_invl_data``) in the kernel's order, plus strict's rules."""
    rules = prof.rules
    if info.version != 1 and "cache_invalidate.version" in rules:
        raise fail("cache_invalidate.version", version=info.version)
    cache = info.cache
    if cache & ~CACHE_TYPE_MASK and "cache_invalidate.cache_bits" in rules:
        raise fail("cache_invalidate.cache_bits", cache=cache)
    if cache == 0 and "cache_invalidate.cache_nonzero" in rules:
        raise fail("cache_invalidate.cache_nonzero")
    granu = info.granularity
    forbidden = GRANU_FORBIDDEN_CACHES.get(granu)
    if forbidden is None:
        if "cache_invalidate.granularity_range" in rules:
            raise fail("cache_invalidate.granularity_range", granularity=granu)
    else:
        if cache & forbidden and "cache_invalidate.cache_granularity" in rules:
            raise fail(
                "cache_invalidate.cache_granularity",
                granularity=_granu_name(granu), cache=CacheType(cache & forbidden).name,
            )
        if granu == _GRANU_ADDR:
            flags = info.granu.addr_info.flags
            if flags & ~ADDR_FLAGS_MASK and "cache_invalidate.addr_flags" in rules:
                raise fail("cache_invalidate.addr_flags", flags=flags)
        elif granu == _GRANU_PASID:
            flags = info.granu.pasid_info.flags
            if flags & ~PASID_FLAGS_MASK and "cache_invalidate.pasid_flags" in rules:
                raise fail("cache_invalidate.pasid_flags", flags=flags)
            if not flags & PASID_FLAGS_MASK and "cache_invalidate.pasid_needs_id" in rules:
                raise fail("cache_invalidate.pasid_needs_id", flags=flags)
    if info.padding != _ZERO6 and "cache_invalidate.padding" in rules:
        raise fail("cache_invalidate.padding", padding=info.padding.hex())


def check_cache_invalidate(
    info: CacheInvalidateInfo, profile: ProfileLike = "linux-5.10", argsz: int | None = None
) -> None:
    """The core's checks of a cache invalidation; with ``argsz``, the granularity's size too."""
    prof = get(profile)
    if argsz is not None:
        cache_invalidate_argsz(info, argsz, prof)
    cache_invalidate_content(info, prof)


# ---- guest PASID bind / unbind (c.3 - c.5) ---------------------------------------------------


def bind_argsz(data: GpasidBindData, argsz: int, prof: Profile, op: str = "bind") -> None:
    """Strict only: format INTEL_VTD needs argsz covering ``vendor.vtd``."""
    if (
        data.format == PasidFormat.INTEL_VTD
        and argsz < BIND_VTD_MIN_ARGSZ
        and "bind.argsz_vendor" in prof.rules
    ):
        raise fail("bind.argsz_vendor", op, format=data.format, need=BIND_VTD_MIN_ARGSZ,
                   argsz=argsz)


def unbind_argsz(data: GpasidBindData, argsz: int, prof: Profile) -> None:
    """:func:`bind_argsz` reported as ``unbind``."""
    bind_argsz(data, argsz, prof, "unbind")


def bind_content(data: GpasidBindData, prof: Profile, op: str = "bind") -> None:
    """``iommu_check_bind_data`` in the kernel's order, plus strict's vendor rules."""
    rules = prof.rules
    if data.version != 1 and "bind.version" in rules:
        raise fail("bind.version", op, version=data.version)
    fmt = data.format
    if fmt >= IOMMU_PASID_FORMAT_LAST and "bind.format_range" in rules:
        raise fail("bind.format_range", op, format=fmt)
    if fmt == 0 and "bind.format_nonzero" in rules:
        raise fail("bind.format_nonzero", op)
    if data.flags & ~BIND_FLAGS_MASK and "bind.flags" in rules:
        raise fail("bind.flags", op, flags=data.flags)
    if data.padding != _ZERO8 and "bind.padding" in rules:
        raise fail("bind.padding", op, padding=data.padding.hex())
    if fmt == PasidFormat.INTEL_VTD:
        vflags = data.vendor.vtd.flags
        if vflags & ~VTD_FLAGS_MASK and "bind.vtd_flags" in rules:
            raise fail("bind.vtd_flags", op, flags=vflags)


def check_bind(
    data: GpasidBindData, profile: ProfileLike = "linux-5.10", argsz: int | None = None
) -> None:
    """The core's checks of a guest PASID bind (c.3 step 4)."""
    prof = get(profile)
    if argsz is not None:
        bind_argsz(data, argsz, prof)
    bind_content(data, prof)


def check_unbind(
    data: GpasidBindData, profile: ProfileLike = "linux-5.10", argsz: int | None = None
) -> None:
    """The user unbind runs the whole bind validation (c.5), reported as ``unbind``."""
    prof = get(profile)
    if argsz is not None:
        bind_argsz(data, argsz, prof, "unbind")
    bind_content(data, prof, "unbind")


# ---- page response (c.6 step 3) --------------------------------------------------------------


def page_response_content(msg: PageResponse, prof: Profile) -> None:
    """c.6 step 3 (version, flags) plus strict's argsz and code rules."""
    rules = prof.rules
    if msg.argsz < PAGE_RESPONSE_MIN_ARGSZ and "page_response.argsz_minsz" in rules:
        raise fail("page_response.argsz_minsz", argsz=msg.argsz, minsz=PAGE_RESPONSE_MIN_ARGSZ)
    if msg.version != 1 and "page_response.version" in rules:
        raise fail("page_response.version", version=msg.version)
    if msg.flags & ~RESPONSE_FLAGS_MASK and "page_response.flags" in rules:
        raise fail("page_response.flags", flags=msg.flags)
    if msg.code > PageResponseCode.FAILURE and "page_response.code_range" in rules:
        raise fail("page_response.code_range", code=msg.code)


def check_page_response(msg: PageResponse, profile: ProfileLike = "linux-5.10") -> None:
    """The content checks of ``iommu_page_response()`` (no pending-fault matching here)."""
    page_response_content(msg, get(profile))


# ---- PASID table attach (c.7) ----------------------------------------------------------------


def attach_pasid_table_head(cfg: PasidTableConfig, argsz: int | None, prof: Profile) -> None:
    """c.7 steps 4-5: version (before the second copy), then the SMMUv3 size."""
    rules = prof.rules
    if cfg.version != 1 and "attach_pasid_table.version" in rules:
        raise fail("attach_pasid_table.version", version=cfg.version)
    if (
        argsz is not None
        and cfg.format == IOMMU_PASID_FORMAT_SMMUV3
        and argsz < PASID_TABLE_SMMUV3_MIN_ARGSZ
        and "attach_pasid_table.argsz_format" in rules
    ):
        raise fail("attach_pasid_table.argsz_format", format=cfg.format,
                   need=PASID_TABLE_SMMUV3_MIN_ARGSZ, argsz=argsz)


def attach_pasid_table_content(cfg: PasidTableConfig, prof: Profile) -> None:
    """c.7 step 7 (config), plus strict's padding rule."""
    rules = prof.rules
    if not 1 <= cfg.config <= 3 and "attach_pasid_table.config_range" in rules:
        raise fail("attach_pasid_table.config_range", config=cfg.config)
    if "attach_pasid_table.padding" in rules:
        if cfg.padding != _ZERO2:
            raise fail("attach_pasid_table.padding", field="padding", padding=cfg.padding.hex())
        vpad = cfg.vendor_data.smmuv3.padding
        if vpad != _ZERO2:
            raise fail("attach_pasid_table.padding", field="vendor_data.smmuv3.padding",
                       padding=vpad.hex())


def check_attach_pasid_table(
    cfg: PasidTableConfig, profile: ProfileLike = "linux-5.10", argsz: int | None = None
) -> None:
    """The core's checks of a PASID-table attach (c.7)."""
    prof = get(profile)
    attach_pasid_table_head(cfg, argsz, prof)
    attach_pasid_table_content(cfg, prof)

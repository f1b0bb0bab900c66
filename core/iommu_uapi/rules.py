"""The core's UAPI rule table: every check the UAPI layer makes, with its errno, text and profiles.

Each rule is one refusal the kernel (profile ``linux-5.10``) or the documented contract
(profile ``strict``) makes before a request reaches the IOMMU driver. The check code in
:mod:`iommu_uapi.abi` and :mod:`iommu_uapi.checks` takes its errno and message from here through
:func:`fail`, so a refusal always names the operation, the rule and the offending values, and
``docs/rules.md`` (written by ``python -m iommu_uapi.rules``) cannot drift from the code. The
table's quirks are the core's behaviours that differ by profile without refusing anything.

Size rules (``*.copy_minsz``, ``*.argsz_minsz``, ``*.copy_rest``, ``*.tail_nonzero``) belong to
the size discipline chosen per call (:class:`iommu_uapi.abi.SizeDiscipline`): ``tail_nonzero``
applies under ``IOMMUFD`` only, and a readable-memory (EFAULT) rule applies whatever the profile.

The rule type, the registry of tables (this one, the model's, every backend's) and :func:`fail`
live in :mod:`iommu_uapi.ruletable`; they are re-exported here under their old names.
"""

from __future__ import annotations

import errno as _errno
from functools import partial
from pathlib import Path

from .ruletable import Quirk, Rule, RuleTable, fail, register_table, write_markdown
from .ruletable import render_markdown as _render

__all__ = [
    "LINUX_5_10",
    "RULES",
    "RULES_BY_ID",
    "STRICT",
    "UAPI_QUIRKS",
    "UAPI_TABLE",
    "Rule",
    "fail",
    "render_markdown",
]

#: Profile names of the built-in profiles (see :mod:`iommu_uapi.profiles`).
LINUX_5_10 = "linux-5.10"
STRICT = "strict"
_BOTH = (LINUX_5_10, STRICT)
_STRICT = (STRICT,)
_5_10 = (LINUX_5_10,)

#: A UAPI rule: every built-in profile applies it unless it says otherwise.
_uapi = partial(Rule, profiles=_BOTH)


def _size_rules(
    op: str, minsz: int, source: str, profiles: tuple[str, ...] = _BOTH
) -> tuple[Rule, ...]:
    """The four rules of an argsz-first record's size discipline; ``profiles`` are those that
    look at argsz at all (readable memory matters to every profile)."""
    return (
        _uapi(
            f"{op}.copy_minsz", op, _errno.EFAULT,
            f"the first minsz = {minsz} bytes must be readable user memory",
            "cannot read minsz {minsz} bytes: only {have} readable", source=source,
        ),
        _uapi(
            f"{op}.argsz_minsz", op, _errno.EINVAL,
            f"argsz must be at least minsz = {minsz}",
            "argsz {argsz} is below minsz {minsz}", profiles=profiles, source=source,
        ),
        _uapi(
            f"{op}.copy_rest", op, _errno.EFAULT,
            "the bytes argsz claims (ARGSZ: up to the known size; IOMMUFD: all of them) must be "
            "readable user memory",
            "cannot read {need} bytes for argsz {argsz}: only {have} readable",
            profiles=profiles, source=source,
        ),
        _uapi(
            f"{op}.tail_nonzero", op, _errno.E2BIG,
            "IOMMUFD discipline only: bytes past the known size must be zero "
            "(copy_struct_from_user)",
            "argsz {argsz} exceeds the known size {size} and tail byte {index} is non-zero",
            profiles=profiles, source="include/linux/uaccess.h copy_struct_from_user",
        ),
    )


_EINVAL = _errno.EINVAL
_EFAULT = _errno.EFAULT

RULES: tuple[Rule, ...] = (
    # ---- plain codec (abi) ----------------------------------------------------------------
    _uapi("abi.short_buffer", "abi", _EFAULT,
         "a record is decoded from at least its C size of readable bytes",
         "{record} needs {size} bytes, got {have}"),
    _uapi("abi.long_buffer", "abi", _EINVAL,
         "from_bytes takes exactly the record's C size",
         "{record} is {size} bytes, got {have}"),
    _uapi("abi.field_range", "abi", _EINVAL,
         "every field holds a value of its C type (unsigned range, exact array/padding length)",
         "{record}.{field} = {value} is not a valid {ctype}"),
    _uapi("abi.decode", "abi", _EINVAL,
         "JSON and MessagePack documents must match the record's schema",
         "{record}: {detail}"),
    _uapi("profile.unknown", "profile", _EINVAL,
         "a profile is named by a registered name (or given as a Profile)",
         "unknown profile {name} (known: {known})"),
    _uapi("profile.exists", "profile", _errno.EEXIST,
         "a profile name is registered once unless replaced on purpose",
         "profile {name} is already registered"),
    # ---- iommu_uapi_cache_invalidate (reference c.1, c.2) ---------------------------------
    *_size_rules("cache_invalidate", 16, "c.1 steps 2, 3, 6"),
    _uapi("cache_invalidate.argsz_granularity", "cache_invalidate", _EINVAL,
         "argsz must cover the union member the granularity uses: PASID needs 32 "
         "(end of granu.pasid_info), ADDR needs 56 (end of granu.addr_info)",
         "granularity {granularity} needs argsz >= {need}, got {argsz}", source="c.1 steps 4, 5"),
    _uapi("cache_invalidate.version", "cache_invalidate", _EINVAL,
         "version must be IOMMU_CACHE_INVALIDATE_INFO_VERSION_1 (1)",
         "version must be 1, got {version}", source="c.2 step 1"),
    _uapi("cache_invalidate.cache_bits", "cache_invalidate", _EINVAL,
         "cache may only hold IOTLB | DEV_IOTLB | PASID (mask 0x7)",
         "cache 0x{cache:x} has bits outside 0x7", source="c.2 step 2"),
    _uapi("cache_invalidate.cache_nonzero", "cache_invalidate", _EINVAL,
         "cache must name at least one cache (linux-5.10 accepts 0 and does nothing)",
         "cache is 0: no cache to invalidate", profiles=_STRICT, source="header"),
    _uapi("cache_invalidate.granularity_range", "cache_invalidate", _EINVAL,
         "granularity must be DOMAIN, PASID or ADDR (< IOMMU_INV_GRANU_NR = 3)",
         "granularity {granularity} is not below 3", source="c.2 step 3"),
    _uapi("cache_invalidate.cache_granularity", "cache_invalidate", _EINVAL,
         "every cache bit must support the granularity: DOMAIN refuses DEV_IOTLB, "
         "ADDR refuses the PASID cache (header table)",
         "granularity {granularity} does not apply to cache {cache}", source="c.2 step 4, a.3"),
    _uapi("cache_invalidate.addr_flags", "cache_invalidate", _EINVAL,
         "ADDR granularity: granu.addr_info.flags may only hold PASID | ARCHID | LEAF (0x7)",
         "granu.addr_info.flags 0x{flags:x} has bits outside 0x7", source="c.2 step 4"),
    _uapi("cache_invalidate.pasid_flags", "cache_invalidate", _EINVAL,
         "PASID granularity: granu.pasid_info.flags may only hold PASID | ARCHID (0x3)",
         "granu.pasid_info.flags 0x{flags:x} has bits outside 0x3", source="c.2 step 4"),
    _uapi("cache_invalidate.pasid_needs_id", "cache_invalidate", _EINVAL,
         "PASID granularity: granu.pasid_info.flags must set PASID or ARCHID "
         "(linux-5.10 accepts neither)",
         "PASID granularity needs the PASID or ARCHID flag, flags are 0x{flags:x}",
         profiles=_STRICT, source="header"),
    _uapi("cache_invalidate.padding", "cache_invalidate", _EINVAL,
         "the 6 padding bytes must be zero",
         "padding must be zero, got {padding}", source="c.2 step 5"),
    # ---- iommu_uapi_sva_bind_gpasid / unbind (c.3 - c.5) ----------------------------------
    *_size_rules("bind", 56, "c.3 steps 1-3"),
    _uapi("bind.argsz_vendor", "bind", _EINVAL,
         "format INTEL_VTD: argsz must cover vendor.vtd (72); linux-5.10 leaves this to the "
         "VT-d driver",
         "format {format} needs argsz >= {need}, got {argsz}", profiles=_STRICT, source="d.1 #3"),
    _uapi("bind.version", "bind", _EINVAL,
         "version must be IOMMU_GPASID_BIND_VERSION_1 (1); unbind runs the same bind checks",
         "version must be 1, got {version}", source="c.3 step 4"),
    _uapi("bind.format_range", "bind", _EINVAL,
         "format must be below IOMMU_PASID_FORMAT_LAST (2)",
         "format {format} is not below 2", source="c.3 step 4"),
    _uapi("bind.format_nonzero", "bind", _EINVAL,
         "format must name a PASID format (linux-5.10's core passes 0 to the driver)",
         "format 0 names no PASID format", profiles=_STRICT, source="header"),
    _uapi("bind.flags", "bind", _EINVAL,
         "flags may only hold IOMMU_SVA_GPASID_VAL; all 64 bits are checked",
         "flags 0x{flags:x} has bits outside 0x1", source="c.3 step 4"),
    _uapi("bind.padding", "bind", _EINVAL,
         "the 8 padding bytes must be zero",
         "padding must be zero, got {padding}", source="c.3 step 4"),
    _uapi("bind.vtd_flags", "bind", _EINVAL,
         "format INTEL_VTD: vendor.vtd.flags may only hold bits below "
         "IOMMU_SVA_VTD_GPASID_LAST (0x3f)",
         "vendor.vtd.flags 0x{flags:x} has bits outside 0x3f", profiles=_STRICT,
         source="header, d.1 #4"),
    # ---- iommu_page_response (c.6 step 3) ------------------------------------------------
    *_size_rules("page_response", 24, "c.6 (linux-5.10 never reads argsz)", _STRICT),
    _uapi("page_response.version", "page_response", _EINVAL,
         "version must be IOMMU_PAGE_RESP_VERSION_1 (1)",
         "version must be 1, got {version}", source="c.6 step 3"),
    _uapi("page_response.flags", "page_response", _EINVAL,
         "flags may only hold IOMMU_PAGE_RESP_PASID_VALID",
         "flags 0x{flags:x} has bits outside 0x1", source="c.6 step 3"),
    _uapi("page_response.code_range", "page_response", _EINVAL,
         "code must be SUCCESS, INVALID or FAILURE (linux-5.10 passes any value to the driver)",
         "code {code} is not a page response code", profiles=_STRICT, source="header"),
    # ---- iommu_uapi_attach_pasid_table (c.7, Auger v15) -----------------------------------
    *_size_rules("attach_pasid_table", 24, "c.7 steps 2, 3, 6"),
    _uapi("attach_pasid_table.version", "attach_pasid_table", _EINVAL,
         "version must be PASID_TABLE_CFG_VERSION_1 (1), checked before the second copy",
         "version must be 1, got {version}", source="c.7 step 4"),
    _uapi("attach_pasid_table.argsz_format", "attach_pasid_table", _EINVAL,
         "format SMMUV3: argsz must cover vendor_data.smmuv3 (32)",
         "format {format} needs argsz >= {need}, got {argsz}", source="c.7 step 5"),
    _uapi("attach_pasid_table.config_range", "attach_pasid_table", _EINVAL,
         "config must be TRANSLATE, BYPASS or ABORT (1..3)",
         "config {config} is not in 1..3", source="c.7 step 7"),
    _uapi("attach_pasid_table.padding", "attach_pasid_table", _EINVAL,
         "padding and vendor_data.smmuv3.padding must be zero (linux-5.10 does not check)",
         "{field} must be zero, got {padding}", profiles=_STRICT, source="header"),
    # ---- iommu_nesting_info read back by user space (b.2) ----------------------------------
    *_size_rules("nesting_info", 32, "b.2"),
    _uapi("nesting_info.copy_argsz", "nesting_info", _EFAULT,
         "the argsz word of the user's nesting-info buffer must be readable and writable",
         "cannot access argsz: buffer of {have} bytes", source="b.2 size probe"),
    # ---- VFIO wrappers (b.2) --------------------------------------------------------------
    _uapi("nesting_op.copy_minsz", "nesting_op", _EFAULT,
         "the 8-byte VFIO header must be readable", "cannot read 8 header bytes: only {have}",
         source="b.2 Yi v8"),
    _uapi("nesting_op.argsz_minsz", "nesting_op", _EINVAL,
         "argsz must be at least 8", "argsz {argsz} is below minsz 8", source="b.2 Yi v8"),
    _uapi("nesting_op.flags", "nesting_op", _EINVAL,
         "flags may only hold the op in bits 15:0", "flags 0x{flags:x} has bits above 15",
         source="b.2 Yi v8"),
    _uapi("nesting_op.op", "nesting_op", _EINVAL,
         "the op must be BIND_PGTBL (0), UNBIND_PGTBL (1) or CACHE_INVLD (2)",
         "op {op} is not a nesting op", source="b.2 Yi v8"),
    _uapi("set_pasid_table.copy_minsz", "set_pasid_table", _EFAULT,
         "the 8-byte VFIO header must be readable", "cannot read 8 header bytes: only {have}",
         source="b.2 Auger v13"),
    _uapi("set_pasid_table.argsz_minsz", "set_pasid_table", _EINVAL,
         "argsz must be at least 8", "argsz {argsz} is below minsz 8", source="b.2 Auger v13"),
    _uapi("set_pasid_table.flags", "set_pasid_table", _EINVAL,
         "flags must be exactly SET (1) or exactly UNSET (2)",
         "flags 0x{flags:x} is neither SET nor UNSET", source="b.2 Auger v13"),
    _uapi("vfio_cache_invalidate.copy_minsz", "vfio_cache_invalidate", _EFAULT,
         "the 8-byte VFIO header must be readable", "cannot read 8 header bytes: only {have}",
         source="b.2 Auger v13"),
    _uapi("vfio_cache_invalidate.argsz_minsz", "vfio_cache_invalidate", _EINVAL,
         "argsz must be at least 8", "argsz {argsz} is below minsz 8", source="b.2 Auger v13"),
    _uapi("vfio_cache_invalidate.flags", "vfio_cache_invalidate", _EINVAL,
         "flags must be 0", "flags 0x{flags:x} must be 0", source="b.2 Auger v13"),
)

#: Behaviours of the core's UAPI layer and of the VFIO series that differ by profile.
UAPI_QUIRKS: tuple[Quirk, ...] = (
    Quirk("page_response.drop_on_driver_error",
          "iommu_page_response removes the pending fault even when the driver refuses the "
          "response (strict keeps it pending, so the response can be retried)",
          _5_10, source="c.6 step 5"),
    Quirk("vfio.cache_invalidate_ignores_errors",
          "VFIO_IOMMU_NESTING_OP cache invalidation ignores every device's result (strict "
          "reports the first failure after trying every device)", _5_10, source="b.2 Yi v8"),
    Quirk("vfio.bind_unwind_group",
          "a VFIO bind that fails on one device unbinds the PASID on every device of the "
          "group, a binding made before the call included (strict undoes only this call's "
          "binds)", _5_10, source="b.2 Yi v8"),
)

UAPI_TABLE = register_table(RuleTable(
    "uapi", RULES, quirks=UAPI_QUIRKS, title="UAPI checks of the core",
    intro="What the kernel's IOMMU core checks before a request reaches the driver, per "
          "profile (`iommu_uapi.rules`). Size rules run under the size discipline chosen per "
          "call; `*.tail_nonzero` applies under `IOMMUFD` only.",
))
RULES_BY_ID: dict[str, Rule] = UAPI_TABLE.by_id


def render_markdown() -> str:
    """``docs/rules.md``: the core's UAPI rules and quirks, the built-in profiles, the
    model's own refusals (:mod:`iommu_uapi.model_rules`), then the successor API's
    (:mod:`iommu_uapi.iommufd.rules`)."""
    from . import profiles
    from .iommufd.rules import IOMMUFD_TABLE
    from .model_rules import MODEL_TABLE

    return _render(
        "Rule table",
        "Generated from `iommu_uapi.rules` by `python -m iommu_uapi.rules`; do not edit. "
        "`iommu-uapi rules --backend NAME` adds a backend's own table (VT-d's is "
        "`plugins/vtd/RULES.md`).",
        [UAPI_TABLE, profiles.render_markdown(profiles.BUILTIN, (UAPI_TABLE, MODEL_TABLE)),
         MODEL_TABLE, IOMMUFD_TABLE],
    )


def main(argv: list[str] | None = None) -> int:
    """Write ``docs/rules.md`` (or the path given) from the tables."""
    return write_markdown(render_markdown(), Path("docs/rules.md"), argv)


if __name__ == "__main__":
    raise SystemExit(main())

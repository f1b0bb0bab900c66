"""The VT-d backend's own refusals: every ``vtd.*`` rule id, its errno and what it refuses.

The core refuses what the kernel's UAPI layer refuses (``docs/rules.md``); what the Intel driver
checks after that (reference kernel-uapi.md d.1-d.4) and what the hardware model refuses are
listed here, the driver's checks in the order it makes them. ``python -m iommu_uapi_vtd.rules
[PATH]`` writes the table as Markdown (``plugins/vtd/RULES.md``).
"""

from __future__ import annotations

import errno as _errno
import sys
from pathlib import Path

from iommu_uapi.errors import ENOTSUPP, errno_name
from iommu_uapi.model_rules import ModelRule

__all__ = ["VTD_RULES", "VTD_RULES_BY_ID", "render_markdown"]

_E, _BUSY, _NODEV, _NOSPC = _errno.EINVAL, _errno.EBUSY, _errno.ENODEV, _errno.ENOSPC


def _rules(where: str, *rows: tuple[str, int, str]) -> tuple[ModelRule, ...]:
    return tuple(ModelRule(rid, err, where, text) for rid, err, text in rows)


VTD_RULES: tuple[ModelRule, ...] = (
    *_rules(
        "sva_bind_gpasid (d.1, in order)",
        ("vtd.bind.format", _E, "format is not IOMMU_PASID_FORMAT_INTEL_VTD"),
        ("vtd.bind.argsz", _E, "argsz does not reach the end of vendor.vtd"),
        ("vtd.bind.vtd_flags", _E, "vendor.vtd.flags has bits outside the defined ones"),
        ("vtd.bind.not_pci", ENOTSUPP, "the device is not a PCI device"),
        ("vtd.bind.max_pasids", _E, "the device does not support 2^20 PASIDs"),
        ("vtd.bind.hpasid", _E, "hpasid outside 1..2^20-1"),
        ("vtd.bind.not_attached", _E, "the device is not attached to the domain"),
        ("vtd.bind.busy", _BUSY, "the device is already bound to that PASID"),
        ("vtd.bind.no_nest", _E, "the unit has no nested translation (ECAP.NEST)"),
        ("vtd.bind.not_nesting", _E, "the domain is not in nesting mode"),
        ("vtd.bind.entry_present", _BUSY, "the PASID entry is already present"),
        ("vtd.bind.addr_width", _E, "addr_width is not 48 (or 57 with CAP.FL5LP)"),
        ("vtd.bind.gpgd", _E, "gpgd lies beyond the domain's highest mapped address"),
        ("vtd.bind.sre", _E, "SRE asked without ECAP.SRS"),
        ("vtd.bind.eafe", _E, "EAFE asked without ECAP.EAFS"),
        ("vtd.bind.memory_type", _E, "memory-type flags the unit cannot honour"),
    ),
    *_rules(
        "cache_invalidate (d.3)",
        ("vtd.cache_invalidate.not_pci", _NODEV, "the device is not a PCI device"),
        ("vtd.cache_invalidate.not_nesting", _E, "the domain is not in nesting mode"),
        ("vtd.cache_invalidate.not_attached", _E, "the device is not attached"),
        ("vtd.cache_invalidate.cell", _E,
         "profile strict: a cache type x granularity VT-d has no descriptor for (linux-5.10 "
         "returns success without invalidating)"),
    ),
    *_rules(
        "page requests and responses (d.4)",
        ("vtd.page_response.no_pasid", _E, "the request carried no PASID"),
        ("vtd.page_response.pasid_range", _E, "the request's PASID lies outside 1..2^20-1"),
        ("vtd.page_response.not_bound", _NODEV, "the device is not bound to the PASID"),
        ("vtd.prq.grpid", _E, "a page request's group index is not 9-bit"),
        ("vtd.prq.private", _E, "private data is not two u64"),
        ("vtd.prq.overflow", _NOSPC, "the page request queue overflowed (PRS.PRO)"),
        ("vtd.prq.refused", _errno.EOPNOTSUPP,
         "the unit refused the page request (PRE clear, PASID not present ...); the fault is "
         "recorded"),
        ("vtd.prq-mode", _E, "a page-request queue mode other than the modelled ones"),
        ("vtd.prq-size", _E, "PQS outside 0..7"),
        ("vtd.prq-rid", _E, "a page group response's requester id is not 16-bit"),
        ("vtd.prq-code", _E, "a page group response code is not a u32"),
    ),
    *_rules(
        "domains and nesting",
        ("vtd.did-exhausted", _NOSPC, "every domain id is in use"),
        ("vtd.nesting.unsupported", _NODEV,
         "DOMAIN_ATTR_NESTING on a unit without scalable mode or nested translation"),
        ("vtd.nesting.attached", _NODEV, "DOMAIN_ATTR_NESTING after a device was attached"),
        ("vtd.nesting_info.not_nesting", _NODEV, "nesting_info of a domain not in nesting mode"),
        ("vtd.map.width", _E, "a stage-2 mapping beyond the domain's address width"),
        ("vtd.agaw", _E, "no SAGAW width fits within MGAW"),
    ),
    *_rules(
        "the hardware model",
        ("vtd.config", _E, "an inconsistent capability set (VtdConfig)"),
        ("vtd.config-key", _E, "an unknown configuration key given to the backend"),
        ("vtd.field-width", _E, "a register or descriptor field value does not fit its width"),
        ("vtd.size", _E, "an entry or descriptor decoded from the wrong number of bytes"),
        ("vtd.sid", _E, "a source id that is not 16-bit"),
        ("vtd.pasid", _E, "a PASID outside the unit's PASID width"),
        ("vtd.pdts", _E, "PDTS outside 0..7"),
        ("vtd.context-busy", _BUSY, "a context entry written over a present one"),
        ("vtd.context-missing", _NODEV, "a PASID table reached through no present context entry"),
        ("vtd.iq-size", _E, "invalidation queue size QS outside 0..7"),
        ("vtd.iq-descriptor", _E, "raw descriptor quadwords of the wrong count or width"),
        ("vtd.iq-full", _NOSPC, "more descriptors than the queue has free slots"),
        ("vtd.register", _E, "a register write that is not a 64-bit value"),
        ("vtd.frcd-index", _E, "a fault-recording register index beyond the unit's count"),
    ),
)

VTD_RULES_BY_ID: dict[str, ModelRule] = {r.id: r for r in VTD_RULES}


def render_markdown() -> str:
    """``plugins/vtd/RULES.md``: the table above."""
    lines = [
        "# VT-d backend rules",
        "",
        "Generated from `iommu_uapi_vtd.rules` by `python -m iommu_uapi_vtd.rules`; do not "
        "edit.",
        "",
        "The core's rules, checked before these, are in the core's `docs/rules.md`.",
        "",
        "| id | where | errno | refuses |",
        "|---|---|---|---|",
    ]
    for r in VTD_RULES:
        err = errno_name(r.errno) if r.errno is not None else "-"
        lines.append(f"| `{r.id}` | {r.where} | {err} | {r.text} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write ``RULES.md`` (or the path given) from the table."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path(__file__).resolve().parents[1] / "RULES.md"
    path.write_text(render_markdown(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

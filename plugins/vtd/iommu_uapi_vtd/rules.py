"""The VT-d backend's own refusals: every ``vtd.*`` rule id, its errno and what it refuses, and
the Linux driver's quirks that the profiles select.

The core refuses what the kernel's UAPI layer refuses (``docs/rules.md``); what the Intel driver
checks after that (reference kernel-uapi.md d.1-d.4) and what the hardware model refuses are
listed here, the driver's checks in the order it makes them. :data:`VTD_TABLE` is registered on
import and handed over with the backend's spec, so ``fail("vtd....")`` works anywhere,
``iommu-uapi rules --backend vtd`` prints it and the profiles pick up its rules and quirks.
``python -m iommu_uapi_vtd.rules [PATH]`` writes the table as Markdown (``plugins/vtd/RULES.md``).
"""

from __future__ import annotations

import errno as _errno
from pathlib import Path

from iommu_uapi.errors import ENOTSUPP
from iommu_uapi.profiles import LINUX_5_10, STRICT
from iommu_uapi.ruletable import (
    Quirk,
    Rule,
    RuleTable,
    fail,
    register_table,
    write_markdown,
)
from iommu_uapi.ruletable import render_markdown as _render

from .hazards import HAZARDS

__all__ = ["VTD_QUIRKS", "VTD_RULES", "VTD_RULES_BY_ID", "VTD_TABLE", "fail", "render_markdown"]

# ``fail`` is the core's, re-exported: importing it from here makes sure the table is registered.

_E, _BUSY, _NODEV, _NOSPC = _errno.EINVAL, _errno.EBUSY, _errno.ENODEV, _errno.ENOSPC


def _rules(where: str, operation: str, *rows: tuple[str, int, str]) -> tuple[Rule, ...]:
    """Rules of one part of the driver or the model, in every profile, reported as
    ``operation``."""
    return tuple(Rule(rid, operation, err, text, section=where) for rid, err, text in rows)


VTD_RULES: tuple[Rule, ...] = (
    *_rules(
        "sva_bind_gpasid (d.1, in order)", "bind",
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
        "cache_invalidate (d.3)", "cache_invalidate",
        ("vtd.cache_invalidate.not_pci", _NODEV, "the device is not a PCI device"),
        ("vtd.cache_invalidate.not_nesting", _E, "the domain is not in nesting mode"),
        ("vtd.cache_invalidate.not_attached", _E, "the device is not attached"),
    ),
    Rule("vtd.cache_invalidate.cell", "cache_invalidate", _E,
         "a cache type x granularity VT-d has no descriptor for (linux-5.10 ends the list "
         "there and returns success without invalidating the rest)",
         "VT-d has no descriptor for {cells}", profiles=(STRICT,), source="d.3",
         section="cache_invalidate (d.3)"),
    *_rules(
        "page requests and responses (d.4)", "page_response",
        ("vtd.page_response.no_pasid", _E, "the request carried no PASID"),
        ("vtd.page_response.pasid_range", _E, "the request's PASID lies outside 1..2^20-1"),
        ("vtd.page_response.not_bound", _NODEV, "the device is not bound to the PASID"),
    ),
    *_rules(
        "page requests and responses (d.4)", "page_request",
        ("vtd.prq.grpid", _E, "a page request's group index is not 9-bit"),
        ("vtd.prq.private", _E, "private data is not two u64"),
        ("vtd.prq.overflow", _NOSPC, "the page request queue overflowed (PRS.PRO)"),
        ("vtd.prq.refused", _errno.EOPNOTSUPP,
         "the unit refused the page request (PRE clear, PASID not present ...); the fault is "
         "recorded"),
        ("vtd.prq-size", _E, "PQS outside 0..7"),
    ),
    *_rules(
        "page requests and responses (d.4)", "page_response",
        ("vtd.prq-rid", _E, "a page group response's requester id is not 16-bit"),
    ),
    Rule("vtd.prq-code", "page_response", _E,
         "a page group response code is not a u32 (without the vtd.page_response.raw_code "
         "quirk: not SUCCESS, INVALID or FAILURE)",
         "code {code} is not SUCCESS, INVALID or FAILURE", source="d.4",
         section="page requests and responses (d.4)"),
    *_rules(
        "domains and nesting", "vtd",
        ("vtd.did-exhausted", _NOSPC, "every domain id is in use"),
        ("vtd.nesting.unsupported", _NODEV,
         "DOMAIN_ATTR_NESTING on a unit without scalable mode or nested translation"),
        ("vtd.nesting.attached", _NODEV, "DOMAIN_ATTR_NESTING after a device was attached"),
        ("vtd.nesting_info.not_nesting", _NODEV, "nesting_info of a domain not in nesting mode"),
        ("vtd.map.width", _E, "a stage-2 mapping beyond the domain's address width"),
        ("vtd.agaw", _E, "no SAGAW width fits within MGAW"),
    ),
    *_rules(
        "the hardware model", "vtd",
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

#: What the 5.10 Intel driver does that ``strict`` corrects, its isolation hazards
#: (:mod:`.hazards`) included.
VTD_QUIRKS: tuple[Quirk, ...] = (
    Quirk("vtd.prq.addr_page_number",
          "a page request is reported with the page number in prm.addr, not the page's "
          "address (intel_svm_prq_report does not shift it)", (LINUX_5_10,), source="d.4"),
    Quirk("vtd.page_response.raw_code",
          "the response code goes into the page group response unchanged and unmasked: "
          "FAILURE (2) is sent as the reserved code 2 and a code above 0xF spills into RID and "
          "PASID (strict sends 0/1/0xF and refuses other codes)", (LINUX_5_10,), source="d.4"),
    Quirk("vtd.cache_invalidate.psi_beyond_mamv",
          "a page-selective IOTLB invalidation larger than CAP.MAMV allows is sent as is (the "
          "hardware refuses it, so it is lost); strict sends a domain-selective one instead",
          (LINUX_5_10,), source="d.3"),
    *(Quirk(h.id, h.text, h.profiles, source=h.source) for h in HAZARDS.values()),
)

VTD_TABLE = register_table(RuleTable(
    "vtd", VTD_RULES, quirks=VTD_QUIRKS, title="The Intel driver and the VT-d model",
    intro="What the Intel driver (reference kernel-uapi.md d.1-d.4) and the VT-d hardware model "
          "refuse after the core's checks (`iommu_uapi_vtd.rules`); the driver's checks in the "
          "order it makes them.",
))
VTD_RULES_BY_ID: dict[str, Rule] = VTD_TABLE.by_id


def render_markdown() -> str:
    """``plugins/vtd/RULES.md``: the table above."""
    return _render(
        "VT-d backend rules",
        "Generated from `iommu_uapi_vtd.rules` by `python -m iommu_uapi_vtd.rules`; do not "
        "edit. The core's rules, checked before these, are in the core's `docs/rules.md`; "
        "`iommu-uapi rules --backend vtd` prints both.",
        [VTD_TABLE],
    )


def main(argv: list[str] | None = None) -> int:
    """Write ``RULES.md`` (or the path given) from the table."""
    return write_markdown(render_markdown(), Path(__file__).resolve().parents[1] / "RULES.md",
                          argv)


if __name__ == "__main__":
    raise SystemExit(main())

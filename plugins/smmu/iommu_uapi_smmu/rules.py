"""The SMMUv3 model's own refusals: every ``smmu.*`` rule id, its errno and what it refuses.

Architectural errors are not refusals: an ILLEGAL STE or CD, a bad StreamID or SubstreamID, an
illegal command are what the model *records* (events, CMDQ_CONS.ERR), as the hardware does.
What is refused with :class:`~iommu_uapi.errors.UAPIError` is a configuration the model cannot
hold, and (the backend) what the nested series' driver refuses, with its errno. (Record field
overflows raise the bit-field module's own rule ids.)

:data:`SMMU_TABLE` holds the rules and the quirks: what v15 (``linux-5.10``) does that
``strict`` corrects, which :mod:`.nested` and the backend ask the profile for. It is registered
on import and handed over with the backend's spec; ``python -m iommu_uapi_smmu.rules [PATH]``
writes ``plugins/smmu/RULES.md`` from it.
"""

from __future__ import annotations

import errno as _errno
from pathlib import Path

from iommu_uapi.profiles import LINUX_5_10, STRICT
from iommu_uapi.ruletable import Quirk, Rule, RuleTable, register_table, write_markdown
from iommu_uapi.ruletable import render_markdown as _render

__all__ = ["SMMU_QUIRKS", "SMMU_RULES", "SMMU_RULES_BY_ID", "SMMU_TABLE", "render_markdown"]

_E = _errno.EINVAL
_MODEL, _BACKEND = "the hardware model", "the smmuv3 backend"
#: v15's own refusals apply under every profile that has the quirk naming them (so their
#: ``profiles`` is every profile); the checks strict adds are strict's rules.
_V15, _STRICT = (LINUX_5_10,), (STRICT,)


def _rule(rid: str, err: int, where: str, text: str,
          profiles: tuple[str, ...] | None = None) -> Rule:
    return Rule(rid, rid.split(".")[0], err, text, profiles=profiles, section=where,
                source="kernel-uapi.md d.5" if where == _BACKEND else "")


SMMU_RULES: tuple[Rule, ...] = tuple(
    _rule(rid, err, _MODEL, text) for rid, err, text in (
        ("smmu.caps", _E, "an inconsistent capability set (SmmuCaps), or ID registers holding "
         "reserved encodings"),
        ("smmu.field-width", _E, "a register, table entry, command or record field value that "
         "does not fit its width"),
        ("smmu.size", _E, "a record decoded from the wrong number of bytes"),
        ("smmu.register", _E, "a register offset the SMMU does not implement"),
        ("smmu.strtab.fmt", _E, "STRTAB_BASE_CFG.FMT reserved, or two-level without "
         "IDR0.ST_LEVEL"),
        ("smmu.strtab.split", _E, "a two-level stream table whose SPLIT is not 6, 8 or 10"),
        ("smmu.event.size", _E, "an event record decoded from other than 32 bytes"),
        ("smmu.event.type", _E, "an event record of a reserved type"),
    )
) + tuple(
    _rule(rid, err, _BACKEND, text, tuple(profiles) or None) for rid, err, text, *profiles in (
        ("smmu.config-key", _E, "an unknown configuration key, or a stage-2 granule / IPA size "
         "the SMMU does not implement"),
        ("smmu.vmid-exhausted", _errno.ENOSPC, "domain_alloc with every VMID in use"),
        ("smmu.nesting.unsupported", _errno.ENODEV, "set_nesting on an SMMU without both stages"),
        ("smmu.nesting.attached", _errno.ENODEV, "set_nesting with devices already attached"),
        ("smmu.nesting_info.not_nesting", _errno.ENODEV,
         "nesting_info of a domain that is not in nesting mode"),
        ("smmu.attach_table.format", _E, "d.5 step 1: format is not SMMUV3"),
        ("smmu.attach_table.version", _E,
         "d.5 step 2: version or vendor_data.smmuv3.version is not 1"),
        ("smmu.attach_table.not_finalised", _E,
         "d.5 step 3: no device attached yet (the SMMU is not bound to the domain)"),
        ("smmu.attach_table.not_nested", _E, "d.5 step 4: the domain's stage is not NESTED"),
        ("smmu.attach_table.config", _E, "d.5 step 5: config is not TRANSLATE, BYPASS or ABORT"),
        ("smmu.attach_table.s1_replace", _E,
         "smmu.quirk.s1_replace_refused (linux-5.10): TRANSLATE while stage 1 is already set "
         "(S1->S1 replacement)"),
        ("smmu.attach_table.pasid_bits", _E,
         "linux-5.10: pasid_bits != 0 (a single CD only); strict: beyond IDR1.SSIDSIZE"),
        ("smmu.attach_table.s1fmt", _E,
         "strict: s1fmt reserved, or two-level without IDR0.CD2L", *_STRICT),
        ("smmu.attach_table.s1dss", _E, "strict: s1dss reserved (3)", *_STRICT),
        ("smmu.attach_table.base_ptr", _E,
         "strict: base_ptr not aligned to what the format reads, or beyond 52 bits", *_STRICT),
        ("smmu.inv.not_nested", _E, "d.5 step 1: cache_invalidate on a domain not NESTED"),
        ("smmu.inv.not_finalised", _E, "d.5 step 1: no SMMU bound to the domain yet"),
        ("smmu.inv.version", _E, "d.5 step 1: version is not 1"),
        ("smmu.inv.cache", _errno.ENOENT,
         "smmu.quirk.iotlb_only (linux-5.10, d.5 step 2): the PASID-cache or DEV_IOTLB bit set"),
        ("smmu.inv.no_iotlb", _E,
         "smmu.quirk.iotlb_only (linux-5.10, d.5 step 2): the IOTLB bit not set"),
        ("smmu.inv.pasid_flag", _errno.ENOENT,
         "smmu.quirk.pasid_flag_refused (linux-5.10, d.5 step 3): PASID or address "
         "granularity with the PASID flag"),
        ("smmu.inv.archid", _E,
         "d.5 step 3: PASID granularity without ARCHID (and, under strict, without PASID)"),
        ("smmu.inv.granule", _E, "d.5 step 3: address granularity, granule_size not a power of "
         "two"),
        ("smmu.inv.granularity", _E, "d.5 step 3: an unknown granularity"),
        ("smmu.pri.grpid", _E, "page_request: a group index that is not 9-bit"),
        ("smmu.pri.refused", _errno.EOPNOTSUPP,
         "page_request from a device without PRI, or a stream that does not translate"),
        ("smmu.pri.overflow", _errno.ENOSPC, "page_request: the PRI queue is full"),
        ("smmu.page_response.code", _E, "page_response: a code other than SUCCESS, INVALID "
         "and FAILURE"),
    )
)


#: What the v15 driver does that ``strict`` corrects; the code asks the profile for these.
SMMU_QUIRKS: tuple[Quirk, ...] = (
    Quirk("smmu.quirk.single_cd",
          "attach_pasid_table takes a single CD: pasid_bits != 0 refused, s1fmt and s1dss "
          "ignored, base_ptr put into STE.S1ContextPtr through its field mask (bits 55:6) "
          "unchecked; strict reads CD tables of 2^pasid_bits CDs and checks base_ptr",
          _V15, source="d.5"),
    Quirk("smmu.quirk.s1_replace_refused",
          "attach_pasid_table while stage 1 is set is refused (S1->S1 replacement); strict "
          "replaces the old table", _V15, source="d.5"),
    Quirk("smmu.quirk.iotlb_only",
          "cache_invalidate refuses the PASID-cache and device-TLB bits (ENOENT) and a record "
          "without the IOTLB bit (EINVAL); strict issues CFGI_CD / CFGI_CD_ALL and ATC_INV",
          _V15, source="d.5"),
    Quirk("smmu.quirk.pasid_flag_refused",
          "a PASID or address invalidation with the PASID flag is refused (ENOENT); strict "
          "resolves the PASID to the ASIDs the SMMU holds for that SubstreamID",
          _V15, source="d.5"),
    Quirk("smmu.quirk.global_all_vmids",
          "the global stage-1 invalidation (an address invalidation without ARCHID, domain "
          "granularity) is TLBI_NSNH_ALL, every VMID's entries; strict issues TLBI_NH_ALL of "
          "the domain's VMID", _V15, source="d.5"),
)

SMMU_TABLE = register_table(RuleTable(
    "smmuv3", SMMU_RULES, quirks=SMMU_QUIRKS, title="The SMMUv3 driver and model",
    intro="What the SMMUv3 hardware model and the nested series' driver (Auger v15, reference "
          "kernel-uapi.md d.5) refuse after the core's checks (`iommu_uapi_smmu.rules`), and "
          "what v15 does that `strict` corrects.",
))
SMMU_RULES_BY_ID: dict[str, Rule] = SMMU_TABLE.by_id


def render_markdown() -> str:
    """``plugins/smmu/RULES.md``: the table above."""
    return _render(
        "SMMUv3 backend rules",
        "Generated from `iommu_uapi_smmu.rules` by `python -m iommu_uapi_smmu.rules`; do not "
        "edit. The core's rules, checked before these, are in the core's `docs/rules.md`; "
        "`iommu-uapi rules --backend smmuv3` prints both.",
        [SMMU_TABLE],
    )


def main(argv: list[str] | None = None) -> int:
    """Write ``RULES.md`` (or the path given) from the table."""
    return write_markdown(render_markdown(), Path(__file__).resolve().parents[1] / "RULES.md",
                          argv)


if __name__ == "__main__":
    raise SystemExit(main())

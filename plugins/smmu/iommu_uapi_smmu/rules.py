"""The SMMUv3 model's own refusals: every ``smmu.*`` rule id, its errno and what it refuses.

Architectural errors are not refusals: an ILLEGAL STE or CD, a bad StreamID or SubstreamID, an
illegal command are what the model *records* (events, CMDQ_CONS.ERR), as the hardware does.
What is refused with :class:`~iommu_uapi.errors.UAPIError` is a configuration the model cannot
hold, and (the backend) what the nested series' driver refuses, with its errno. (Record field
overflows raise the bit-field module's own rule ids.)
"""

from __future__ import annotations

import errno as _errno

from iommu_uapi.model_rules import ModelRule

__all__ = ["SMMU_RULES", "SMMU_RULES_BY_ID"]

_E = _errno.EINVAL

SMMU_RULES: tuple[ModelRule, ...] = tuple(
    ModelRule(rid, err, "the hardware model", text) for rid, err, text in (
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
    ModelRule(rid, err, "the smmuv3 backend", text) for rid, err, text in (
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
         "linux-5.10: TRANSLATE while stage 1 is already set (S1->S1 replacement)"),
        ("smmu.attach_table.pasid_bits", _E,
         "linux-5.10: pasid_bits != 0 (a single CD only); strict: beyond IDR1.SSIDSIZE"),
        ("smmu.attach_table.s1fmt", _E,
         "strict: s1fmt reserved, or two-level without IDR0.CD2L"),
        ("smmu.attach_table.s1dss", _E, "strict: s1dss reserved (3)"),
        ("smmu.attach_table.base_ptr", _E,
         "strict: base_ptr not aligned to what the format reads, or beyond 52 bits"),
        ("smmu.inv.not_nested", _E, "d.5 step 1: cache_invalidate on a domain not NESTED"),
        ("smmu.inv.not_finalised", _E, "d.5 step 1: no SMMU bound to the domain yet"),
        ("smmu.inv.version", _E, "d.5 step 1: version is not 1"),
        ("smmu.inv.cache", _errno.ENOENT,
         "linux-5.10 (d.5 step 2): the PASID-cache or DEV_IOTLB bit set"),
        ("smmu.inv.no_iotlb", _E, "linux-5.10 (d.5 step 2): the IOTLB bit not set"),
        ("smmu.inv.pasid_flag", _errno.ENOENT,
         "linux-5.10 (d.5 step 3): PASID or address granularity with the PASID flag"),
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

SMMU_RULES_BY_ID: dict[str, ModelRule] = {r.id: r for r in SMMU_RULES}

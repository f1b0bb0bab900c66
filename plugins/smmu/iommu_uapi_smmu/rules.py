"""The SMMUv3 model's own refusals: every ``smmu.*`` rule id, its errno and what it refuses.

Architectural errors are not refusals: an ILLEGAL STE or CD, a bad StreamID or SubstreamID, an
illegal command are what the model *records* (events, CMDQ_CONS.ERR), as the hardware does.
What is refused with :class:`~iommu_uapi.errors.UAPIError` is a configuration the model cannot
hold. (Record field overflows raise the bit-field module's own rule ids.)
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
)

SMMU_RULES_BY_ID: dict[str, ModelRule] = {r.id: r for r in SMMU_RULES}

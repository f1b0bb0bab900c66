"""The SMMUv3 model's base record: the core's bit-field :class:`~iommu_uapi.hw.bits.Record`
refusing with the model's own rule ids."""

from __future__ import annotations

import errno

from iommu_uapi.hw.bits import Record, Refusal

__all__ = ["SmmuRecord"]


class SmmuRecord(Record, frozen=True, gc=False):
    """An SMMUv3 structure (register, STE, CD, command, event, PRI entry)."""

    FIELD_REFUSAL = Refusal(errno.EINVAL, rule="smmu.field-width")
    SIZE_REFUSAL = Refusal(errno.EINVAL, rule="smmu.size")

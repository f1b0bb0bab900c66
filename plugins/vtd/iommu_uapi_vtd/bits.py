"""VT-d's records: the core's bit-field records (:mod:`iommu_uapi.hw.bits`) refusing with
VT-d's rule ids.

Every VT-d structure in this package (registers, root/context/PASID entries, invalidation
descriptors, fault records, page requests) is a :class:`Record` whose ``LAYOUT`` names each
field's position once. Positions are absolute bit numbers inside the whole structure (bit 64 is
bit 0 of the second quadword), as in the VT-d specification's tables. A field value that does
not fit refuses with ``vtd.field-width``, an image of the wrong size with ``vtd.size``; reserved
bits the hardware finds set are reported as fault reasons and IQEI codes, not refusals.
"""

from __future__ import annotations

import errno

from iommu_uapi.hw.bits import Field, Refusal, bit, qwords_to_int
from iommu_uapi.hw.bits import Record as HwRecord

__all__ = ["Field", "Record", "bit", "qwords_to_int"]


class Record(HwRecord, frozen=True, gc=False):
    """A VT-d structure (see :class:`iommu_uapi.hw.bits.Record`)."""

    FIELD_REFUSAL = Refusal(errno.EINVAL, rule="vtd.field-width")
    SIZE_REFUSAL = Refusal(errno.EINVAL, rule="vtd.size")

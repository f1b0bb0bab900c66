"""``IOMMU_HWPT_INVALIDATE``: the array contract and its two copy helpers.

The core checks the command (``__reserved``, the array pointer and length), finds the object
(a nested HWPT; a paging HWPT is EINVAL), then copies the entries with the helper the vendor's
driver uses, chosen by ``data_type`` (:data:`ENTRY_TYPES`):

* the **per-entry** helper (VT-d, ``iommu_copy_struct_from_user_array``): each entry is copied
  just before it is executed; ``entry_len`` below the struct's minimum or above its size is
  EINVAL; ``entry_num == 0`` executes nothing and succeeds (the support probe);
* the **full-array** helper (SMMUv3 vIOMMU, ``iommu_copy_struct_from_full_user_array``):
  ``entry_num == 0`` is EINVAL, the whole array is copied before any entry is executed (an
  unreadable array handles nothing), entries of another length go through
  ``copy_struct_from_user`` one by one (shorter zero-extended, longer with a zero tail).

The backend executes the copied entries in order and stops at the first it refuses
(``iommu_hwpt_invalidate``); the call reports the number handled in ``entry_num`` whether it
succeeded or not, and returns the first failing entry's errno.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from ..abi import CRecord
from ..errors import UAPIError
from ..rules import fail
from .consts import HwptInvalidateDataType
from .records import (
    IommuHwptInvalidate,
    IommuHwptVtdS1Invalidate,
    IommuViommuArmSmmuv3Invalidate,
    copy_struct,
)

if TYPE_CHECKING:
    from .usermem import UserMemory

__all__ = ["ENTRY_TYPES", "CopyHelper", "copy_entries"]


class CopyHelper(enum.Enum):
    """How a driver copies the invalidation array (see the module docstring)."""

    PER_ENTRY = "per-entry"
    FULL_ARRAY = "full-array"


#: data_type -> (entry record, copy helper)
ENTRY_TYPES: dict[int, tuple[type[CRecord], CopyHelper]] = {
    int(HwptInvalidateDataType.VTD_S1): (IommuHwptVtdS1Invalidate, CopyHelper.PER_ENTRY),
    int(HwptInvalidateDataType.VIOMMU_ARM_SMMUV3): (IommuViommuArmSmmuv3Invalidate,
                                                   CopyHelper.FULL_ARRAY),
}


def copy_entries(user: UserMemory, cmd: IommuHwptInvalidate, want: int
                 ) -> tuple[list[CRecord], UAPIError | None]:
    """Copy the entries of ``cmd`` for an object whose entries are of data_type ``want``:
    returns the entries copied, in order, and the refusal that stopped the copy (None when all
    were copied). A refusal before the first entry (wrong type, bad length) is raised."""
    if cmd.data_type != want:
        raise fail("iommufd.hwpt_invalidate.data_type", data_type=cmd.data_type,
                   want=HwptInvalidateDataType(want).name)
    cls, helper = ENTRY_TYPES[want]
    num, length, base = cmd.entry_num, cmd.entry_len, cmd.data_uptr
    op = f"iommufd.{cls.OP}"  # type: ignore[attr-defined]
    if helper is CopyHelper.FULL_ARRAY:
        if num == 0:
            raise fail("iommufd.hwpt_invalidate.entry_num")
        raw = user.read(base, num * length)
        return [copy_struct(cls, raw[i * length:(i + 1) * length], op, 0)
                for i in range(num)], None
    if num == 0:
        return [], None
    if not cls.MINSZ <= length <= cls.SIZE:
        raise fail("iommufd.hwpt_invalidate.entry_len", entry_len=length, minsz=cls.MINSZ,
                   size=cls.SIZE)
    # each entry is copied just before it is executed: the first one that is not wholly
    # readable fails, those before it are handled (one read of what is readable serves all)
    data = user.readable(base, num * length)
    whole = len(data) // length
    decode = cls._cdecode
    if length == cls.SIZE:
        out: list[CRecord] = [decode(data, i * length) for i in range(whole)]
    else:
        pad = bytes(cls.SIZE - length)
        out = [decode(data[i * length:(i + 1) * length] + pad, 0) for i in range(whole)]
    if whole < num:
        return out, fail("iommufd.user.read", n=length, addr=base + whole * length)
    return out, None

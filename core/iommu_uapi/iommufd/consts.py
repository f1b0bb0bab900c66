"""iommufd's command codes, flags and enums, at the kernel's values (reference kernel-uapi.md f,
``include/uapi/linux/iommufd.h``).

Every command is ``_IO(';', 0x80 + n)``: type ``';'`` (0x3B) in bits 15:8, number in 7:0, no
size or direction bits.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

from ..uapi.consts import FaultPerm

__all__ = [
    "IOMMUFD_TYPE",
    "Cmd",
    "FaultQueueFlags",
    "HwCap",
    "HwInfoFlags",
    "HwInfoType",
    "HwptAllocFlags",
    "HwptDataType",
    "HwptInvalidateDataType",
    "IoasMapFlags",
    "PageResponseCode",
    "PgfaultFlags",
    "PgfaultPerm",
    "ViommuType",
    "VtdS1Flags",
    "VtdS1InvalidateFlags",
]

#: The ioctl type of every iommufd command (``IOMMUFD_TYPE``, ``';'``).
IOMMUFD_TYPE = ord(";")


def _io(nr: int) -> int:
    return IOMMUFD_TYPE << 8 | nr


class Cmd(IntEnum):
    """The iommufd ioctl command codes (``IOMMU_*``)."""

    DESTROY = _io(0x80)
    IOAS_ALLOC = _io(0x81)
    IOAS_MAP = _io(0x85)
    IOAS_UNMAP = _io(0x86)
    HWPT_ALLOC = _io(0x89)
    GET_HW_INFO = _io(0x8A)
    HWPT_INVALIDATE = _io(0x8D)
    FAULT_QUEUE_ALLOC = _io(0x8E)
    VIOMMU_ALLOC = _io(0x90)
    VDEVICE_ALLOC = _io(0x91)


class HwInfoType(IntEnum):
    """``enum iommu_hw_info_type``: the vendor struct ``IOMMU_GET_HW_INFO`` writes."""

    NONE = 0
    INTEL_VTD = 1
    ARM_SMMUV3 = 2


class HwInfoFlags(IntFlag):
    """``iommu_hw_info.flags``: none are defined for the output-only form modelled here."""


class HwCap(IntFlag):
    """``enum iommufd_hw_capabilities`` (``out_capabilities``)."""

    DIRTY_TRACKING = 1 << 0
    PCI_ATS_ENABLED = 1 << 1
    PCI_PASID_EXEC = 1 << 2
    PCI_PASID_PRIV = 1 << 3


class HwptAllocFlags(IntFlag):
    """``enum iommufd_hwpt_alloc_flags``."""

    NEST_PARENT = 1 << 0
    DIRTY_TRACKING = 1 << 1
    FAULT_ID_VALID = 1 << 2
    PASID = 1 << 3


class HwptDataType(IntEnum):
    """``enum iommu_hwpt_data_type``: the vendor data of a nested HWPT."""

    NONE = 0
    VTD_S1 = 1
    ARM_SMMUV3 = 2


class HwptInvalidateDataType(IntEnum):
    """``enum iommu_hwpt_invalidate_data_type``: the entries of ``IOMMU_HWPT_INVALIDATE``."""

    VTD_S1 = 0
    VIOMMU_ARM_SMMUV3 = 1


class VtdS1Flags(IntFlag):
    """``enum iommu_hwpt_vtd_s1_flags``: supervisor requests, extended accessed flag, write
    protection of supervisor writes."""

    SRE = 1 << 0
    EAFE = 1 << 1
    WPE = 1 << 2


class VtdS1InvalidateFlags(IntFlag):
    """``enum iommu_hwpt_vtd_s1_invalidate_flags``: LEAF (only leaf entries changed)."""

    LEAF = 1 << 0


class IoasMapFlags(IntFlag):
    """``enum iommufd_ioas_map_flags``."""

    FIXED_IOVA = 1 << 0
    WRITEABLE = 1 << 1
    READABLE = 1 << 2


class FaultQueueFlags(IntFlag):
    """``iommu_fault_alloc.flags``: none are defined."""


class PgfaultFlags(IntFlag):
    """``enum iommu_hwpt_pgfault_flags``."""

    PASID_VALID = 1 << 0
    LAST_PAGE = 1 << 1


#: ``enum iommu_hwpt_pgfault_perm``: the same bits as the 2020 ``IOMMU_FAULT_PERM_*``
PgfaultPerm = FaultPerm


class PageResponseCode(IntEnum):
    """``enum iommufd_page_response_code``: no FAILURE code (the group is answered)."""

    SUCCESS = 0
    INVALID = 1


class ViommuType(IntEnum):
    """``enum iommu_viommu_type``."""

    DEFAULT = 0
    ARM_SMMUV3 = 1

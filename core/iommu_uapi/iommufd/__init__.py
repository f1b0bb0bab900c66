"""iommufd, the successor of the 2020 nested-IOMMU calls, over the same backends.

The 2020 calls (:mod:`iommu_uapi.uapi`, ``IOMMU.uapi_*``) were never used by a mainline VMM;
their lessons went into iommufd (reference kernel-uapi.md f), which QEMU and cloud-hypervisor
drive today. :class:`IommuFd` takes iommufd's commands by their kernel codes (:class:`Cmd`) on
one :class:`~iommu_uapi.iommu.IOMMU`, so a VMM developer speaks either generation to the same
backend and sees the same hardware behaviour: a nested HWPT installs what a guest PASID bind
installs, ``IOMMU_HWPT_INVALIDATE`` issues what ``cache_invalidate`` issues.
"""

from . import rules as _rules  # noqa: F401  (registers the iommufd.* rules first)
from .client import Client
from .consts import (
    IOMMUFD_TYPE,
    Cmd,
    FaultQueueFlags,
    HwCap,
    HwInfoFlags,
    HwInfoType,
    HwptAllocFlags,
    HwptDataType,
    HwptInvalidateDataType,
    IoasMapFlags,
    PageResponseCode,
    PgfaultFlags,
    PgfaultPerm,
    ViommuType,
    VtdS1Flags,
    VtdS1InvalidateFlags,
)
from .fd import IommuFd
from .invalidate import ENTRY_TYPES, CopyHelper
from .records import (
    RECORDS,
    IommuDestroy,
    IommuFaultAlloc,
    IommuHwInfo,
    IommuHwInfoArmSmmuv3,
    IommuHwInfoVtd,
    IommuHwptAlloc,
    IommuHwptArmSmmuv3,
    IommuHwptInvalidate,
    IommuHwptPageResponse,
    IommuHwptPgfault,
    IommuHwptVtdS1,
    IommuHwptVtdS1Invalidate,
    IommuIoasAlloc,
    IommuIoasMap,
    IommuIoasUnmap,
    IommuVdeviceAlloc,
    IommuViommuAlloc,
    IommuViommuArmSmmuv3Invalidate,
    copy_struct,
)
from .rules import IOMMUFD_RULES
from .usermem import UserMemory

__all__ = [
    "ENTRY_TYPES",
    "IOMMUFD_RULES",
    "IOMMUFD_TYPE",
    "RECORDS",
    "Client",
    "Cmd",
    "CopyHelper",
    "FaultQueueFlags",
    "HwCap",
    "HwInfoFlags",
    "HwInfoType",
    "HwptAllocFlags",
    "HwptDataType",
    "HwptInvalidateDataType",
    "IoasMapFlags",
    "IommuDestroy",
    "IommuFaultAlloc",
    "IommuFd",
    "IommuHwInfo",
    "IommuHwInfoArmSmmuv3",
    "IommuHwInfoVtd",
    "IommuHwptAlloc",
    "IommuHwptArmSmmuv3",
    "IommuHwptInvalidate",
    "IommuHwptPageResponse",
    "IommuHwptPgfault",
    "IommuHwptVtdS1",
    "IommuHwptVtdS1Invalidate",
    "IommuIoasAlloc",
    "IommuIoasMap",
    "IommuIoasUnmap",
    "IommuVdeviceAlloc",
    "IommuViommuAlloc",
    "IommuViommuArmSmmuv3Invalidate",
    "PageResponseCode",
    "PgfaultFlags",
    "PgfaultPerm",
    "UserMemory",
    "ViommuType",
    "VtdS1Flags",
    "VtdS1InvalidateFlags",
    "copy_struct",
]

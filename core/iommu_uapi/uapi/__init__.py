"""The IOMMU UAPI records and constants (see :mod:`iommu_uapi.uapi.consts`).

Every record is a frozen msgspec Struct with the kernel's C layout (:mod:`iommu_uapi.abi`):
``to_bytes``/``from_bytes``, ``c_layout``, JSON and MessagePack, and for argsz-first records
``from_user`` (size discipline, then the core's checks of a profile).
"""

from .bind import GpasidBindData, GpasidBindDataVtd, GpasidBindVendor
from .cache_invalidate import CacheInvalidateInfo, InvAddrInfo, InvGranu, InvPasidInfo
from .consts import *  # noqa: F403
from .consts import __all__ as _consts_all
from .fault import Fault, FaultPageRequest, FaultUnrecoverable
from .nesting import NestingInfo, NestingInfoVendor, NestingInfoVtd, nesting_info_probe
from .page_response import PageResponse
from .pasid_table import PasidSmmuv3, PasidTableConfig, PasidTableVendor
from .vfio import (
    VfioInfoCapHeader,
    VfioInfoCapNesting,
    VfioIommuType1CacheInvalidate,
    VfioIommuType1NestingOp,
    VfioIommuType1SetPasidTable,
)

#: Every record class, for tools and tests that iterate over them.
RECORDS = (
    FaultUnrecoverable,
    FaultPageRequest,
    Fault,
    PageResponse,
    InvPasidInfo,
    InvAddrInfo,
    InvGranu,
    CacheInvalidateInfo,
    GpasidBindDataVtd,
    GpasidBindVendor,
    GpasidBindData,
    PasidSmmuv3,
    PasidTableVendor,
    PasidTableConfig,
    NestingInfoVtd,
    NestingInfoVendor,
    NestingInfo,
    VfioIommuType1NestingOp,
    VfioIommuType1SetPasidTable,
    VfioIommuType1CacheInvalidate,
    VfioInfoCapHeader,
    VfioInfoCapNesting,
)

__all__ = [
    *_consts_all,
    "RECORDS",
    "CacheInvalidateInfo",
    "Fault",
    "FaultPageRequest",
    "FaultUnrecoverable",
    "GpasidBindData",
    "GpasidBindDataVtd",
    "GpasidBindVendor",
    "InvAddrInfo",
    "InvGranu",
    "InvPasidInfo",
    "NestingInfo",
    "NestingInfoVendor",
    "NestingInfoVtd",
    "PageResponse",
    "PasidSmmuv3",
    "PasidTableConfig",
    "PasidTableVendor",
    "VfioInfoCapHeader",
    "VfioInfoCapNesting",
    "VfioIommuType1CacheInvalidate",
    "VfioIommuType1NestingOp",
    "VfioIommuType1SetPasidTable",
    "nesting_info_probe",
]

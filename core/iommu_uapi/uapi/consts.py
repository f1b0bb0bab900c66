"""Every flag and enum of the IOMMU UAPI, at its kernel value.

Values are those of ``include/uapi/linux/iommu.h`` as of v5.10 (blob e1d9e75f2c94), plus the
out-of-tree nesting series (Auger v15 PASID-table config, Yi Liu v8 nesting info and VFIO
wrappers). Where a name was never given a value upstream, the value here is ours and says so.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

__all__ = [
    "IOMMU_CACHE_INVALIDATE_INFO_VERSION_1",
    "IOMMU_CACHE_INV_TYPE_NR",
    "IOMMU_GPASID_BIND_VERSION_1",
    "IOMMU_PAGE_RESP_VERSION_1",
    "IOMMU_PASID_FORMAT_LAST",
    "IOMMU_PASID_FORMAT_SMMUV3",
    "IOMMU_SVA_VTD_GPASID_LAST",
    "IOMMU_SVA_VTD_GPASID_MTS_MASK",
    "PASID_TABLE_CFG_VERSION_1",
    "PASID_TABLE_SMMUV3_CFG_VERSION_1",
    "VFIO_IOMMU_CACHE_INVALIDATE",
    "VFIO_IOMMU_NESTING_OP",
    "VFIO_IOMMU_SET_PASID_TABLE",
    "VFIO_IOMMU_TYPE1_INFO_CAP_NESTING",
    "VFIO_NESTING_OP_MASK",
    "CacheType",
    "FaultPerm",
    "FaultReason",
    "FaultType",
    "GpasidBindFlags",
    "InvAddrFlags",
    "InvGranularity",
    "InvPasidFlags",
    "NestingFeature",
    "NestingOp",
    "PageRequestFlags",
    "PageResponseCode",
    "PageResponseFlags",
    "PasidConfig",
    "PasidFormat",
    "SetPasidTableFlags",
    "UnrecoverableFlags",
    "VtdGpasidFlags",
]


class FaultPerm(IntFlag):
    """``IOMMU_FAULT_PERM_*``: the access a fault or page request was for."""

    READ = 1 << 0
    WRITE = 1 << 1
    EXEC = 1 << 2
    PRIV = 1 << 3


class FaultType(IntEnum):
    """``enum iommu_fault_type``."""

    DMA_UNRECOV = 1
    PAGE_REQ = 2


class FaultReason(IntEnum):
    """``enum iommu_fault_reason``: the generic reason an unrecoverable fault carries."""

    UNKNOWN = 0
    PASID_FETCH = 1
    BAD_PASID_ENTRY = 2
    PASID_INVALID = 3
    WALK_EABT = 4
    PTE_FETCH = 5
    PERMISSION = 6
    ACCESS = 7
    OOR_ADDRESS = 8


class UnrecoverableFlags(IntFlag):
    """``IOMMU_FAULT_UNRECOV_*``: which fields of ``iommu_fault_unrecoverable`` are valid."""

    PASID_VALID = 1 << 0
    ADDR_VALID = 1 << 1
    FETCH_ADDR_VALID = 1 << 2


class PageRequestFlags(IntFlag):
    """``IOMMU_FAULT_PAGE_REQUEST_*`` and ``IOMMU_FAULT_PAGE_RESPONSE_NEEDS_PASID``."""

    PASID_VALID = 1 << 0
    LAST_PAGE = 1 << 1
    PRIV_DATA = 1 << 2
    RESPONSE_NEEDS_PASID = 1 << 3


class PageResponseCode(IntEnum):
    """``enum iommu_page_response_code``."""

    SUCCESS = 0
    INVALID = 1
    FAILURE = 2


class PageResponseFlags(IntFlag):
    """``IOMMU_PAGE_RESP_*`` flags of ``iommu_page_response``."""

    PASID_VALID = 1 << 0


class InvGranularity(IntEnum):
    """``enum iommu_inv_granularity``; ``IOMMU_INV_GRANU_NR`` is 3."""

    DOMAIN = 0
    PASID = 1
    ADDR = 2


class CacheType(IntFlag):
    """``IOMMU_CACHE_INV_TYPE_*``: the caches a ``cache`` bitmask names."""

    IOTLB = 1 << 0
    DEV_IOTLB = 1 << 1
    PASID = 1 << 2


class InvAddrFlags(IntFlag):
    """``IOMMU_INV_ADDR_FLAGS_*`` of ``iommu_inv_addr_info``."""

    PASID = 1 << 0
    ARCHID = 1 << 1
    LEAF = 1 << 2


class InvPasidFlags(IntFlag):
    """``IOMMU_INV_PASID_FLAGS_*`` of ``iommu_inv_pasid_info``."""

    PASID = 1 << 0
    ARCHID = 1 << 1


class VtdGpasidFlags(IntFlag):
    """``IOMMU_SVA_VTD_GPASID_*`` (v5.10; WPE = 1<<6 came in v5.13 and is not valid here)."""

    SRE = 1 << 0
    EAFE = 1 << 1
    PCD = 1 << 2
    PWT = 1 << 3
    EMTE = 1 << 4
    CD = 1 << 5


class GpasidBindFlags(IntFlag):
    """``iommu_gpasid_bind_data.flags``: only ``IOMMU_SVA_GPASID_VAL``."""

    VAL = 1 << 0


class PasidFormat(IntEnum):
    """``IOMMU_PASID_FORMAT_*``. The bind struct (v5.10) knows INTEL_VTD = 1 (LAST = 2); the
    PASID-table config (Auger v15) uses SMMUV3 = 1 in its own ``format`` field."""

    INTEL_VTD = 1


#: ``IOMMU_PASID_FORMAT_LAST`` in v5.10: the core rejects a bind ``format`` >= 2.
IOMMU_PASID_FORMAT_LAST = 2
#: ``IOMMU_PASID_FORMAT_SMMUV3`` (Auger v15, ``iommu_pasid_table_config.format``).
IOMMU_PASID_FORMAT_SMMUV3 = 1


class PasidConfig(IntEnum):
    """``IOMMU_PASID_CONFIG_*`` of ``iommu_pasid_table_config.config`` (Auger v15)."""

    TRANSLATE = 1
    BYPASS = 2
    ABORT = 3


class NestingFeature(IntFlag):
    """``IOMMU_NESTING_FEAT_*`` as in Yi Liu's v8 (March 2021), the latest posting."""

    BIND_PGTBL = 1 << 0
    CACHE_INVLD = 1 << 1


class NestingOp(IntEnum):
    """``VFIO_IOMMU_NESTING_OP_*`` (Yi Liu v8): the op lives in the low 16 bits of ``flags``."""

    BIND_PGTBL = 0
    UNBIND_PGTBL = 1
    CACHE_INVLD = 2


class SetPasidTableFlags(IntFlag):
    """``VFIO_PASID_TABLE_FLAG_*`` of ``vfio_iommu_type1_set_pasid_table`` (Auger v13)."""

    SET = 1 << 0
    UNSET = 1 << 1


IOMMU_PAGE_RESP_VERSION_1 = 1
IOMMU_CACHE_INVALIDATE_INFO_VERSION_1 = 1
IOMMU_GPASID_BIND_VERSION_1 = 1
IOMMU_CACHE_INV_TYPE_NR = 3
#: One past the last valid VT-d bind flag in v5.10: the allowed mask is 0x3f.
IOMMU_SVA_VTD_GPASID_LAST = 1 << 6
#: CD | EMTE | PCD | PWT: the memory-type flags the 5.10 Intel driver refuses.
IOMMU_SVA_VTD_GPASID_MTS_MASK = 0x3C
PASID_TABLE_CFG_VERSION_1 = 1
PASID_TABLE_SMMUV3_CFG_VERSION_1 = 1
VFIO_NESTING_OP_MASK = 0xFFFF
#: ``VFIO_IOMMU_TYPE1_INFO_CAP_NESTING``: 4 in Yi Liu's v8 (3 was taken by DMA_AVAIL in v5.10).
VFIO_IOMMU_TYPE1_INFO_CAP_NESTING = 4
#: ``_IO(';', 100 + 18)``: Yi Liu v8's nesting op. Auger v13 claimed the same number.
VFIO_IOMMU_NESTING_OP = 0x3B76
#: ``_IO(';', 100 + 18)`` in Auger's VFIO v13 (collides with the nesting op above).
VFIO_IOMMU_SET_PASID_TABLE = 0x3B76
#: ``_IO(';', 100 + 19)`` in Auger's VFIO v13.
VFIO_IOMMU_CACHE_INVALIDATE = 0x3B77

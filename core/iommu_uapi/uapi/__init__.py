"""The IOMMU UAPI records and constants (see :mod:`iommu_uapi.uapi.consts`)."""

from .consts import *  # noqa: F403
from .consts import __all__ as _consts_all

__all__ = list(_consts_all)

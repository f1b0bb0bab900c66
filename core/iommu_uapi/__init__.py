"""iommu-uapi: the Linux IOMMU user API as executable, validated records and IOMMU models."""

from __future__ import annotations

from .errors import FeatureError, MemoryAccessError, UAPIError
from .memory import GuestMemory, PhysicalMemory

__version__ = "0.1.0"

__all__ = [
    "FeatureError",
    "GuestMemory",
    "MemoryAccessError",
    "PhysicalMemory",
    "UAPIError",
    "__version__",
]

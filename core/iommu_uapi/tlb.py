"""The tagged IOTLB: :class:`TLB`, :class:`TLBEntry` and :data:`Tag`, kept importable here; they
live in :mod:`iommu_uapi.caches.iotlb` beside the other translation caches."""

from __future__ import annotations

from .caches.iotlb import TLB, Tag, TLBEntry

__all__ = ["TLB", "TLBEntry", "Tag"]

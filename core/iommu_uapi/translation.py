"""The data path's vocabulary: translations, translation contexts and translation faults."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import msgspec

if TYPE_CHECKING:
    from .caches.iotlb import Fields
    from .tlb import TLB, Tag, TLBEntry
    from .uapi import Fault

__all__ = ["Translation", "TranslationContext", "TranslationFault"]


class Translation(msgspec.Struct, frozen=True, gc=False):
    """Where a DMA landed: ``paddr`` of the byte asked for, the leaf's ``page_size``, the
    effective ``perm`` (``IOMMU_FAULT_PERM_*`` bits), and what it cost: page-table descriptor
    reads of both stages (``table_reads``, 0 on an IOTLB hit) and configuration-structure reads
    (context, PASID, STE, CD entries: ``config_reads``). Immutable and hashable; a C struct, so
    the IOTLB hit path builds one in a few tens of nanoseconds."""

    paddr: int
    page_size: int
    perm: int
    table_reads: int
    config_reads: int


class TranslationContext(Protocol):
    """What a backend builds for (device, PASID) and the data path calls on an IOTLB miss.

    ``tag`` tags the IOTLB entries it fills; ``config_reads`` counts the configuration reads
    made to build it; ``atc`` is the device TLB to consult first (or None: no ATS).
    ``walk(iova, access)`` returns the leaf as a ``TLBEntry`` (or its fields as a plain tuple
    in that order, which the IOTLB stores without a copy) and the descriptor reads made, or
    raises :class:`TranslationFault`.
    """

    tag: Tag
    config_reads: int
    atc: TLB | None

    def walk(self, iova: int, access: int, /) -> tuple[TLBEntry | Fields, int]: ...


class TranslationFault(Exception):
    """A DMA was refused. ``fault`` is the generic ``iommu_fault`` record reported to the
    device's fault consumer (None when the architecture records the fault but does not report it,
    e.g. fault processing disabled); ``native`` is the backend's own record (VT-d fault reason
    and FRCD contents, SMMU event); ``reason`` a one-line explanation."""

    def __init__(self, fault: Fault | None, native: object = None, reason: str = "") -> None:
        self.fault = fault
        self.native = native
        self.reason = reason
        super().__init__(reason or "translation fault")

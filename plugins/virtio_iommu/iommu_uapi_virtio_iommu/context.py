"""Translation contexts the façade's data path calls on an IOTLB miss (no PASID).

A context is built for an endpoint when the façade first translates for it after a
configuration change (ATTACH, DETACH, ATTACH_TABLE): the device's order of
:mod:`.translate` decides what it is. An endpoint that faults before any mapping is looked at
(an endpoint QEMU has no record of) gets no context: building it raises the fault; an
unattached endpoint without bypass gets a context that faults (R_DOMAIN) on every address
outside its MSI region. Otherwise the context's ``walk`` applies the per-address steps (reserved
regions, mappings, permissions) and returns the leaf the façade's IOTLB caches under the
domain's tag, the tag the device's own UNMAP invalidates: a hit never reaches the device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from iommu_uapi.tlb import TLB, TLBEntry

from .config import U64_MAX
from .events import FaultFlags
from .events import FaultReason as Reason
from .probe import ResvSubtype
from .translate import _R, _RWX, _W, _X, _fault, _leaf

if TYPE_CHECKING:
    from .device import VirtioIommuDevice
    from .domains import Domain

__all__ = ["IDENTITY_TAG", "UNATTACHED_TAG", "Context", "FaultContext", "IdentityContext",
           "MappingContext", "build_context"]

#: The IOTLB tag of untranslated (bypass) accesses of an endpoint: ("bypass", endpoint).
IDENTITY_TAG: Final = "bypass"
#: The IOTLB tag of an unattached endpoint's MSI pages: ("unattached", endpoint).
UNATTACHED_TAG: Final = "unattached"
_ALL: Final = _R | _W | _X
_IDENTITY_SIZE: Final = 1 << 12


def _region_fault(dev: VirtioIommuDevice, endpoint: int, iova: int,
                  access: int) -> TLBEntry | None:
    """The reserved-region step: an MSI region passes untranslated (one page), a RESERVED one
    faults; None outside every region."""
    for region in dev.regions.get(endpoint, ()):
        if region.start <= iova <= region.end:
            if region.subtype == ResvSubtype.MSI:
                base = iova & -_IDENTITY_SIZE
                return TLBEntry(base, _IDENTITY_SIZE, base, _ALL)
            raise _fault(dev, endpoint, iova, access, Reason.MAPPING, 0, "virtio.dma.reserved")
    return None


class IdentityContext:
    """An endpoint in bypass (unattached with bypass allowed, or in a bypass domain): every
    access passes untranslated, one 4 KiB page per IOTLB entry."""

    __slots__ = ("atc", "config_reads", "dev", "endpoint", "tag")

    def __init__(self, dev: VirtioIommuDevice, endpoint: int) -> None:
        self.dev = dev
        self.endpoint = endpoint
        self.tag: tuple[str, int] = (IDENTITY_TAG, endpoint)
        self.config_reads = 0
        self.atc: TLB | None = None

    def walk(self, iova: int, access: int, /) -> tuple[TLBEntry, int]:
        """The identity leaf of ``iova`` (reserved regions still apply)."""
        msi = _region_fault(self.dev, self.endpoint, iova, access)
        if msi is not None:
            return msi, 0
        base = iova & -_IDENTITY_SIZE
        return TLBEntry(base, _IDENTITY_SIZE, base, _ALL), 0


class MappingContext:
    """An endpoint attached to a translated domain: its mappings decide."""

    __slots__ = ("atc", "config_reads", "dev", "domain", "endpoint", "tag")

    def __init__(self, dev: VirtioIommuDevice, endpoint: int, domain: Domain) -> None:
        self.dev = dev
        self.endpoint = endpoint
        self.domain = domain
        self.tag = domain.tag
        self.config_reads = 0
        self.atc: TLB | None = None

    def walk(self, iova: int, access: int, /) -> tuple[TLBEntry, int]:
        """The leaf of the mapping covering ``iova``, or the device's fault."""
        dev, endpoint = self.dev, self.endpoint
        msi = _region_fault(dev, endpoint, iova, access)
        if msi is not None:
            return msi, 0
        mapping = self.domain.mappings.find(iova)
        if mapping is None:
            raise _fault(dev, endpoint, iova, access, Reason.MAPPING, 0, "virtio.dma.unmapped")
        entry = _leaf(mapping, iova)
        perm = entry.perm
        if access & ~perm & _RWX:
            lacking = 0
            if access & (_R | _X) and not perm & _R:
                lacking |= FaultFlags.READ
            if access & _W and not perm & _W:
                lacking |= FaultFlags.WRITE
            raise _fault(dev, endpoint, iova, access, Reason.MAPPING, lacking,
                         "virtio.dma.permission")
        if entry.paddr + entry.size - 1 > U64_MAX:  # QEMU wraps; the IOTLB holds no wrap
            entry = entry._replace(paddr=entry.paddr & U64_MAX)
        return entry, 0


class FaultContext:
    """An endpoint that reaches no memory (unattached, bypass not allowed): per address, an
    MSI region still passes and a RESERVED one faults R_MAPPING (the device's step 2); every
    other access faults with ``reason`` (R_DOMAIN)."""

    __slots__ = ("atc", "config_reads", "dev", "endpoint", "reason", "rule", "tag")

    def __init__(self, dev: VirtioIommuDevice, endpoint: int, reason: Reason,
                 rule: str) -> None:
        self.dev = dev
        self.endpoint = endpoint
        self.reason = reason
        self.rule = rule
        self.tag: tuple[str, int] = (UNATTACHED_TAG, endpoint)
        self.config_reads = 0
        self.atc: TLB | None = None

    def walk(self, iova: int, access: int, /) -> tuple[TLBEntry, int]:
        """The MSI identity page, or the fault."""
        msi = _region_fault(self.dev, self.endpoint, iova, access)
        if msi is not None:
            return msi, 0
        raise _fault(self.dev, self.endpoint, iova, access, self.reason, 0, self.rule)


Context = IdentityContext | MappingContext | FaultContext


def build_context(dev: VirtioIommuDevice, endpoint: int, iova: int, access: int) -> Context:
    """The context of requests without PASID from ``endpoint`` (steps 1, 3 and 4 of the
    device's order); raises :class:`~iommu_uapi.translation.TranslationFault` for an endpoint
    QEMU has no record of (step 1 comes before the reserved regions; the fault names ``iova``
    and ``access``, the request that met it)."""
    if dev.endpoint_records and endpoint not in dev.records:
        if dev.bypass_allowed():
            return IdentityContext(dev, endpoint)
        raise _fault(dev, endpoint, iova, access, Reason.UNKNOWN, 0,
                     "virtio.dma.unknown_endpoint")
    domain = dev.attached.get(endpoint)
    if domain is None:
        if dev.bypass_allowed():
            return IdentityContext(dev, endpoint)
        return FaultContext(dev, endpoint, Reason.DOMAIN, "virtio.dma.unattached")
    if domain.bypass:
        return IdentityContext(dev, endpoint)
    return MappingContext(dev, endpoint, domain)


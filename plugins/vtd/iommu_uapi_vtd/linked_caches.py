"""The VT-d caches joined to the core's data path.

The core looks up the IOTLB (``iommu.iotlb``) and each ATS device's ATC (``dev.atc``, tagged
``(pasid,)``) on every DMA, and keeps a translation context per (device, PASID) built from the
configuration caches. :func:`linked_caches` builds a :class:`~.caches.VtdCaches` whose
invalidations reach exactly those structures:

* its ``iotlb`` *is* the core's IOTLB;
* its ``devtlb`` holds the devices' ATCs and maps a descriptor's ``(sid, pasid)`` selection to
  the ATC's ``(pasid,)`` tags (:class:`AtcDeviceTlbs`);
* dropping a context-cache or PASID-cache entry tells the core to forget its translation
  contexts (``on_config_drop``), so the next DMA reads the configuration again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from iommu_uapi.tlb import TLB

from .caches import (
    CachedContext,
    CachedPasid,
    ContextCache,
    DeviceTlbs,
    PasidCache,
    VtdCaches,
)

__all__ = ["AtcDeviceTlbs", "NotifyingContextCache", "NotifyingPasidCache", "linked_caches"]


class AtcDeviceTlbs(DeviceTlbs):
    """Device TLBs that are the core's ``dev.atc`` (tags ``(pasid,)``, None without PASID)."""

    def attach(self, sid: int, atc: TLB) -> None:
        """Use ``atc`` as the device TLB of ``sid``."""
        self.tlbs[sid] = atc

    def detach(self, sid: int) -> None:
        """Forget the device TLB of ``sid``."""
        self.tlbs.pop(sid, None)

    def invalidate(self, sid: int, prefix: tuple[Hashable, ...], addr: int, size: int) -> int:
        """Drop ``sid``'s ATC entries under ``prefix`` (``(sid,)`` or ``(sid, pasid)``)
        overlapping ``[addr, addr + size)``."""
        tlb = self.tlbs.get(sid)
        return 0 if tlb is None else tlb.invalidate(prefix[1:], addr, size)


class NotifyingContextCache(ContextCache):
    """A context cache that calls ``on_drop`` whenever an invalidation removes entries."""

    def __init__(self, on_drop: Callable[[], None]) -> None:
        super().__init__()
        self.on_drop = on_drop

    def _drop(self, match: Callable[[int, CachedContext], bool]) -> int:
        dropped = super()._drop(match)
        if dropped:
            self.on_drop()
        return dropped


class NotifyingPasidCache(PasidCache):
    """A PASID cache that calls ``on_drop`` whenever an invalidation removes entries."""

    def __init__(self, on_drop: Callable[[], None]) -> None:
        super().__init__()
        self.on_drop = on_drop

    def _drop(self, match: Callable[[tuple[int, int], CachedPasid], bool]) -> int:
        dropped = super()._drop(match)
        if dropped:
            self.on_drop()
        return dropped


def linked_caches(iotlb: TLB, on_config_drop: Callable[[], None]) -> VtdCaches:
    """The caches of one IOMMU, sharing the core's IOTLB and device ATCs."""
    caches = VtdCaches()
    caches.iotlb = iotlb
    caches.devtlb = AtcDeviceTlbs()
    caches.context = NotifyingContextCache(on_config_drop)
    caches.pasid = NotifyingPasidCache(on_config_drop)
    return caches

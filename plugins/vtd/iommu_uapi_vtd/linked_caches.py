"""The VT-d caches joined to the core's data path.

The core looks up the IOTLB (``iommu.iotlb``) and each ATS device's ATC (``dev.atc``, tagged
``(pasid,)``) on every DMA, and keeps a translation context per (device, PASID) built from the
configuration caches. :func:`linked_caches` builds a :class:`~.caches.VtdCaches` whose
invalidations reach exactly those structures:

* its ``iotlb`` *is* the core's IOTLB;
* its ``devtlb`` holds the devices' ATCs and maps a descriptor's ``(sid, pasid)`` selection to
  the ATC's ``(pasid,)`` tags (:class:`AtcDeviceTlbs`);
* dropping context-cache entries reports their source ids (``on_context_drop``), dropping
  PASID-cache entries their (source id, PASID) keys (``on_pasid_drop``), so that the core forgets
  exactly the translation contexts built from them and the next DMA of those reads the
  configuration again.
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
    """A context cache that calls ``on_drop(sids)`` with the source ids an invalidation
    removed (when it removed any)."""

    def __init__(self, on_drop: Callable[[list[int]], None]) -> None:
        super().__init__()
        self.on_drop = on_drop

    def _drop(self, match: Callable[[int, CachedContext], bool]) -> int:
        gone: list[int] = []

        def noted(sid: int, cached: CachedContext) -> bool:
            if match(sid, cached):
                gone.append(sid)
                return True
            return False

        dropped = super()._drop(noted)
        if gone:
            self.on_drop(gone)
        return dropped


class NotifyingPasidCache(PasidCache):
    """A PASID cache that calls ``on_drop(keys)`` with the (source id, PASID) keys an
    invalidation removed (when it removed any)."""

    def __init__(self, on_drop: Callable[[list[tuple[int, int]]], None]) -> None:
        super().__init__()
        self.on_drop = on_drop

    def _drop(self, match: Callable[[tuple[int, int], CachedPasid], bool]) -> int:
        gone: list[tuple[int, int]] = []

        def noted(key: tuple[int, int], cached: CachedPasid) -> bool:
            if match(key, cached):
                gone.append(key)
                return True
            return False

        dropped = super()._drop(noted)
        if gone:
            self.on_drop(gone)
        return dropped


def linked_caches(iotlb: TLB, on_context_drop: Callable[[list[int]], None],
                  on_pasid_drop: Callable[[list[tuple[int, int]]], None]) -> VtdCaches:
    """The caches of one IOMMU, sharing the core's IOTLB and device ATCs; invalidations that
    drop configuration entries report them to ``on_context_drop``/``on_pasid_drop``."""
    caches = VtdCaches()
    caches.iotlb = iotlb
    caches.devtlb = AtcDeviceTlbs()
    caches.context = NotifyingContextCache(on_context_drop)
    caches.pasid = NotifyingPasidCache(on_pasid_drop)
    return caches

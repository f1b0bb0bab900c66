"""The VT-d caches joined to the core's data path.

The core looks up the IOTLB (``iommu.iotlb``) and each ATS device's ATC (``dev.atc``, tagged
``(pasid,)``) on every DMA, and keeps a translation context per (device, PASID) built from the
configuration caches. :func:`linked_caches` builds a :class:`~.caches.VtdCaches` whose
invalidations reach exactly those structures:

* its ``iotlb`` *is* the core's IOTLB;
* its ``devtlb`` holds the devices' ATCs and maps a descriptor's ``(sid, pasid)`` selection to
  the ATC's ``(pasid,)`` tags (:class:`AtcDeviceTlbs`);
* every invalidation of the context or PASID cache also tells a
  :class:`~.forgetting.ContextForgetting` what it selected, which forgets exactly the core's
  translation contexts built from the selected entries, so the next DMA of those reads the
  configuration again.
"""

from __future__ import annotations

from collections.abc import Hashable

from iommu_uapi.tlb import TLB

from .caches import ContextCache, DeviceTlbs, PasidCache, VtdCaches
from .forgetting import ContextForgetting

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
    """A context cache whose invalidations also forget the contexts they cover."""

    def __init__(self, forgetting: ContextForgetting) -> None:
        super().__init__()
        self.forgetting = forgetting

    def invalidate_global(self) -> int:
        """Drop every entry; forget every context."""
        dropped = super().invalidate_global()
        self.forgetting.context_global()
        return dropped

    def invalidate_domain(self, did: int) -> int:
        """Drop the entries used with ``did``; forget those devices' contexts."""
        dropped = super().invalidate_domain(did)
        self.forgetting.context_domain(did)
        return dropped

    def invalidate_device(self, sid: int, fm: int) -> int:
        """Drop the entries of the SIDs selected; forget their contexts."""
        dropped = super().invalidate_device(sid, fm)
        self.forgetting.context_device(sid, fm)
        return dropped


class NotifyingPasidCache(PasidCache):
    """A PASID cache whose invalidations also forget the contexts they cover."""

    def __init__(self, forgetting: ContextForgetting) -> None:
        super().__init__()
        self.forgetting = forgetting

    def invalidate_global(self) -> int:
        """Drop every entry; forget every context."""
        dropped = super().invalidate_global()
        self.forgetting.pasid_global()
        return dropped

    def invalidate_domain(self, did: int) -> int:
        """Drop the entries tagged ``did``; forget the contexts built from them."""
        dropped = super().invalidate_domain(did)
        self.forgetting.pasid_domain(did)
        return dropped

    def invalidate_pasid(self, did: int, pasid: int) -> int:
        """Drop the entries of ``pasid`` tagged ``did``; forget the contexts built from them."""
        dropped = super().invalidate_pasid(did, pasid)
        self.forgetting.pasid_entry(did, pasid)
        return dropped


def linked_caches(iotlb: TLB, forgetting: ContextForgetting) -> VtdCaches:
    """The caches of one IOMMU, sharing the core's IOTLB and device ATCs; configuration-cache
    invalidations also forget, through ``forgetting``, the contexts they cover."""
    caches = VtdCaches()
    caches.iotlb = iotlb
    caches.devtlb = AtcDeviceTlbs()
    caches.context = NotifyingContextCache(forgetting)
    caches.pasid = NotifyingPasidCache(forgetting)
    return caches

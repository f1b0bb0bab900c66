"""The VT-d caches joined to the core's data path.

The core looks up the IOTLB (``iommu.iotlb``) and each ATS device's ATC (``dev.atc``, tagged
``(pasid,)``) on every DMA, and keeps a translation context per (device, PASID) built from the
configuration caches. :func:`linked_caches` builds a :class:`~.caches.VtdCaches` whose
invalidations reach exactly those structures:

* its ``iotlb`` *is* the core's IOTLB;
* its ``devtlb`` holds the devices' ATCs and maps a descriptor's ``(sid, pasid)`` selection to
  the ATC's ``(pasid,)`` tags (:class:`AtcDeviceTlbs`);
* a context-cache or PASID-cache entry leaving the cache (invalidated or evicted) tells the core
  which translation contexts to forget (``forget(sid, pasid)``: every PASID of the source id for
  a context entry; the PASID, and the requests without PASID when the context's RID_PASID is
  that PASID, for a PASID entry), so the next DMA reads the configuration again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from iommu_uapi.caches.tags import Tag
from iommu_uapi.tlb import TLB

from .caches import ContextCache, DeviceTlbs, PasidCache, VtdCaches
from .context import VtdContext

if TYPE_CHECKING:
    from iommu_uapi.iommu import IOMMU

__all__ = [
    "AtcDeviceTlbs",
    "NotifyingContextCache",
    "NotifyingPasidCache",
    "forget_contexts",
    "linked_caches",
]

#: ``forget(sid, pasid)``: drop the translation contexts of ``sid`` for ``pasid`` (and for
#: requests without PASID); ``pasid`` None: every context of ``sid``; ``sid`` None: every
#: context.
Forget = Callable[[int | None, int | None], None]


def forget_contexts(iommu: IOMMU, sid: int | None, pasid: int | None) -> None:
    """Make ``iommu`` forget the translation contexts a dropped configuration entry of ``sid``
    was used for: ``pasid`` None, its context entry (every context of ``sid``); ``sid`` None,
    every entry; else the PASID entry of (``sid``, ``pasid``): the context of that PASID and,
    when RID_PASID is that PASID, the context of requests without PASID. Costs what it drops."""
    if sid is None:
        iommu.forget_all_contexts()
    elif pasid is None:
        iommu.forget_contexts(sid)
    else:
        rid = iommu.context_of(sid, None)
        through = isinstance(rid, VtdContext) and rid.pasid == pasid
        iommu.forget_contexts(sid, (pasid, None) if through else (pasid,))


class AtcDeviceTlbs(DeviceTlbs):
    """Device TLBs that are the core's ``dev.atc`` (tags ``(pasid,)``, None without PASID)."""

    def invalidate(self, dev: Hashable, prefix: Tag, addr: int, size: int) -> int:
        """Drop the ATC entries of ``dev`` (a source id) under ``prefix`` (``(sid,)`` or
        ``(sid, pasid)``) overlapping ``[addr, addr + size)``."""
        tlb = self.tlbs.get(dev)
        return 0 if tlb is None else tlb.invalidate(prefix[1:], addr, size)


class NotifyingContextCache(ContextCache):
    """A context cache whose dropped entries make the core forget every context of their SID
    (a global invalidation: every context, once)."""

    def __init__(self, forget: Forget) -> None:
        def dropped(sids: list[int]) -> None:
            for sid in sids:
                forget(sid, None)

        super().__init__(on_drop=dropped, on_flush=lambda: forget(None, None))


class NotifyingPasidCache(PasidCache):
    """A PASID cache whose dropped entries make the core forget exactly the contexts built on
    them (a global invalidation: every context, once)."""

    def __init__(self, forget: Forget) -> None:
        def dropped(keys: list[tuple[int, int]]) -> None:
            for sid, pasid in keys:
                forget(sid, pasid)

        super().__init__(on_drop=dropped, on_flush=lambda: forget(None, None))


def linked_caches(iotlb: TLB, forget: Forget) -> VtdCaches:
    """The caches of one IOMMU, sharing the core's IOTLB and device ATCs; ``forget`` hears
    every configuration entry that leaves the caches (see :func:`forget_contexts`)."""
    caches = VtdCaches()
    caches.iotlb = iotlb
    caches.devtlb = AtcDeviceTlbs()
    caches.context = NotifyingContextCache(forget)
    caches.pasid = NotifyingPasidCache(forget)
    return caches

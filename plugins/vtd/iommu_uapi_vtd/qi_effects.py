"""What each invalidation-queue descriptor reaches (hw-formats 1.9.11), executed by the queue.

:func:`handler` picks the function that executes a decoded descriptor: by its type, and for the
types with a granularity by G (:class:`~.qi.ContextCacheGranularity`,
:class:`~.qi.IotlbGranularity`, :class:`~.qi.PasidIotlbGranularity`,
:class:`~.qi.PasidCacheGranularity`), from one table per type. Each function takes the queue
(its caches, memory, status registers and page-response consumer) and the descriptor, and
returns how many cache entries it removed. The decoder refuses reserved granularities, so every
decoded descriptor finds its row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from iommu_uapi.caches.devtlb import ats_selection
from iommu_uapi.errors import MemoryAccessError

from .qi import (
    ContextCacheGranularity,
    ContextCacheInv,
    Descriptor,
    DescriptorError,
    DevTlbInv,
    IecInv,
    InvWait,
    IotlbGranularity,
    IotlbInv,
    Iqei,
    PageGroupResponse,
    PasidCacheGranularity,
    PasidCacheInv,
    PasidDevTlbInv,
    PasidIotlbGranularity,
    PasidIotlbInv,
    devtlb_range,
    page_range,
)

if TYPE_CHECKING:
    from .iq import InvalidationQueue

__all__ = ["Handler", "handler"]

#: Executes one descriptor on the queue's unit; returns the cache entries it removed.
Handler = Callable[["InvalidationQueue", Any], int]


# -- context cache (type 1) ------------------------------------------------------------------


def _context_global(q: InvalidationQueue, d: ContextCacheInv) -> int:
    return q.caches.context.invalidate_global()


def _context_domain(q: InvalidationQueue, d: ContextCacheInv) -> int:
    return q.caches.context.invalidate_domain(d.DID)


def _context_device(q: InvalidationQueue, d: ContextCacheInv) -> int:
    return q.caches.context.invalidate_device(d.SID, d.FM)


# -- IOTLB by domain (type 2) ----------------------------------------------------------------


def _iotlb_global(q: InvalidationQueue, d: IotlbInv) -> int:
    c = q.caches
    return c.iotlb.flush() + c.fl_psc.invalidate() + c.sl_psc.invalidate()


def _iotlb_domain(q: InvalidationQueue, d: IotlbInv) -> int:
    c = q.caches
    return (c.iotlb.invalidate(("fl", d.DID)) + c.iotlb.invalidate(("sl", d.DID))
            + c.fl_psc.invalidate((d.DID,)) + c.sl_psc.invalidate((d.DID,)))


def _iotlb_page(q: InvalidationQueue, d: IotlbInv) -> int:
    c = q.caches
    base, size = page_range(d.ADDR, d.AM)
    # SL-only/PT translations of the range go; first-level and nested translations of the DID
    # may derive from the changed second-level range at any input address, so all go.
    n = c.iotlb.invalidate(("sl", d.DID), base, size) + c.iotlb.invalidate(("fl", d.DID))
    if not d.IH:
        n += c.sl_psc.invalidate((d.DID,), base, size) + c.fl_psc.invalidate((d.DID,))
    return n


# -- device TLBs (types 3 and 8) -------------------------------------------------------------


def _devtlb(q: InvalidationQueue, d: DevTlbInv) -> int:
    base, size = devtlb_range(d.ADDR, d.S)
    # The device receives an ATS Invalidate Request without a PASID prefix: by PCIe it drops
    # every entry of the range, those requested with a PASID included (ats_selection).
    return q.caches.devtlb.invalidate(d.SID, (d.SID, *ats_selection(None)), base, size)


def _pasid_devtlb(q: InvalidationQueue, d: PasidDevTlbInv) -> int:
    base, size = devtlb_range(d.ADDR, d.S)
    # G asks the device to drop the range for every PASID (its global translations); the model
    # drops the range under every PASID of the device, a legal over-invalidation.
    prefix = (d.SID, *ats_selection(d.PASID, global_invalidate=bool(d.G)))
    return q.caches.devtlb.invalidate(d.SID, prefix, base, size)


# -- interrupt entries, waits, page responses (types 4, 5, 9) -----------------------------------


def _iec(q: InvalidationQueue, d: IecInv) -> int:
    return 0    # interrupt-entry cache: not modelled, the descriptor is accepted


def _wait(q: InvalidationQueue, d: InvWait) -> int:
    if d.SW:
        try:
            q.mem.write32(d.STADDR, d.STDATA)
        except MemoryAccessError:
            raise DescriptorError(Iqei.FETCH_ERROR, "wait descriptor: status address "
                                  f"{d.STADDR:#x} outside memory") from None
    if d.IF:
        q.status.set_iwc()
        q.status.raise_invalidation_event()
    return 0


def _page_response(q: InvalidationQueue, d: PageGroupResponse) -> int:
    if q.page_response is not None:
        q.page_response(d)
    return 0


# -- PASID-based IOTLB (type 6) and PASID cache (type 7) ---------------------------------------


def _pasid_iotlb_non_global(q: InvalidationQueue, d: PasidIotlbInv) -> int:
    c = q.caches
    return (c.iotlb.invalidate(("fl", d.DID, d.PASID), include_global=False)
            + c.fl_psc.invalidate((d.DID, d.PASID)))


def _pasid_iotlb_page(q: InvalidationQueue, d: PasidIotlbInv) -> int:
    c = q.caches
    base, size = page_range(d.ADDR, d.AM)
    n = c.iotlb.invalidate(("fl", d.DID, d.PASID), base, size)
    if not d.IH:
        n += c.fl_psc.invalidate((d.DID, d.PASID), base, size)
    return n


def _pasid_cache_domain(q: InvalidationQueue, d: PasidCacheInv) -> int:
    return q.caches.pasid.invalidate_domain(d.DID)


def _pasid_cache_pasid(q: InvalidationQueue, d: PasidCacheInv) -> int:
    return q.caches.pasid.invalidate_pasid(d.DID, d.PASID)


def _pasid_cache_global(q: InvalidationQueue, d: PasidCacheInv) -> int:
    return q.caches.pasid.invalidate_global()


#: The types whose scope G selects: granularity -> handler.
_BY_GRANULARITY: dict[type[Descriptor], dict[int, Handler]] = {
    ContextCacheInv: {
        ContextCacheGranularity.GLOBAL: _context_global,
        ContextCacheGranularity.DOMAIN: _context_domain,
        ContextCacheGranularity.DEVICE: _context_device,
    },
    IotlbInv: {
        IotlbGranularity.GLOBAL: _iotlb_global,
        IotlbGranularity.DOMAIN: _iotlb_domain,
        IotlbGranularity.PAGE: _iotlb_page,
    },
    PasidIotlbInv: {
        PasidIotlbGranularity.NON_GLOBAL: _pasid_iotlb_non_global,
        PasidIotlbGranularity.PAGE: _pasid_iotlb_page,
    },
    PasidCacheInv: {
        PasidCacheGranularity.DOMAIN: _pasid_cache_domain,
        PasidCacheGranularity.PASID: _pasid_cache_pasid,
        PasidCacheGranularity.GLOBAL: _pasid_cache_global,
    },
}
#: The other types: one handler each.
_BY_TYPE: dict[type[Descriptor], Handler] = {
    DevTlbInv: _devtlb,
    IecInv: _iec,
    InvWait: _wait,
    PasidDevTlbInv: _pasid_devtlb,
    PageGroupResponse: _page_response,
}


def handler(d: Descriptor) -> Handler:
    """The function that executes the decoded descriptor ``d`` (by type, then granularity)."""
    scopes = _BY_GRANULARITY.get(type(d))
    if scopes is None:
        return _BY_TYPE[type(d)]
    return scopes[d.G]  # type: ignore[attr-defined]

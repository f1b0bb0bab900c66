"""What each invalidation-queue descriptor reaches (hw-formats 1.9.11), executed by the queue.

:func:`bind` turns a decoded descriptor into its :data:`Effect`: the function that executes it
on a queue's unit (its caches, memory, status registers and page-response consumer) and returns
how many cache entries it removed. The binding is chosen by the descriptor's type, and for the
types with a granularity by G (:class:`~.qi.ContextCacheGranularity`,
:class:`~.qi.IotlbGranularity`, :class:`~.qi.PasidIotlbGranularity`,
:class:`~.qi.PasidCacheGranularity`), from one table; what does not depend on the unit's state
(the tags, the address range a page-selective invalidation names) is computed once, at binding,
so that a queue that memoises decoded descriptors (:class:`~.sync_queue.SyncQueue`) executes a
repeated one without decoding its fields again. The decoder refuses reserved granularities, so
every decoded descriptor finds its row.

The invalidations that carry an address (IOTLB, PASID-based IOTLB, device-TLB) also have an
:data:`AddressEffect`, :func:`bind_address`: bound once to a *template* (the descriptor with its
address fields zero, hence its tags), it executes any descriptor of that template, reading the
range from the descriptor's own address fields. :func:`bind` of such a descriptor is its
template's address effect applied to it, so the two execute alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from iommu_uapi.caches.devtlb import ats_selection
from iommu_uapi.errors import MemoryAccessError
from iommu_uapi.hw.ats import ats_range

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
)

if TYPE_CHECKING:
    from .iq import InvalidationQueue

__all__ = ["AddressEffect", "Effect", "bind", "bind_address"]

_PAGE = 1 << 12  # the ranges of page-selective invalidations are qi.page_range's
#: A bound descriptor: executes it on the queue's unit, returns the cache entries it removed.
Effect = Callable[["InvalidationQueue"], int]
#: A template's effect: executes a descriptor of that template (its address fields read from
#: it) on the queue's unit, returns the cache entries it removed.
AddressEffect = Callable[["InvalidationQueue", Any], int]
_Binder = Callable[[Any], Effect]
_AddressBinder = Callable[[Any], AddressEffect]


# -- context cache (type 1) ------------------------------------------------------------------


def _context_global(d: ContextCacheInv) -> Effect:
    return lambda q: q.caches.context.invalidate_global()


def _context_domain(d: ContextCacheInv) -> Effect:
    did = d.DID
    return lambda q: q.caches.context.invalidate_domain(did)


def _context_device(d: ContextCacheInv) -> Effect:
    sid, fm = d.SID, d.FM
    return lambda q: q.caches.context.invalidate_device(sid, fm)


# -- IOTLB by domain (type 2) ----------------------------------------------------------------


def _iotlb_global(d: IotlbInv) -> Effect:
    def run(q: InvalidationQueue) -> int:
        c = q.caches
        return c.iotlb.flush() + c.fl_psc.invalidate() + c.sl_psc.invalidate()
    return run


def _iotlb_domain(d: IotlbInv) -> Effect:
    fl, sl, psc = ("fl", d.DID), ("sl", d.DID), (d.DID,)

    def run(q: InvalidationQueue) -> int:
        c = q.caches
        return (c.iotlb.invalidate(fl) + c.iotlb.invalidate(sl) + c.fl_psc.invalidate(psc)
                + c.sl_psc.invalidate(psc))
    return run


def _iotlb_page(t: IotlbInv) -> AddressEffect:
    fl, sl, psc = ("fl", t.DID), ("sl", t.DID), (t.DID,)

    def run(q: InvalidationQueue, d: IotlbInv) -> int:
        # SL-only/PT translations of the range go; first-level and nested translations of the
        # DID may derive from the changed second-level range at any input address, so all go.
        # (a prefix never filled has nothing to drop: its invalidation is skipped)
        am = d.AM
        size = _PAGE << am  # page_range, inline
        base = d.ADDR & -size
        c = q.caches
        iotlb = c.iotlb
        # (sl is filled by any DMA: no membership test first)
        n = iotlb.invalidate(sl, base, size) if am else iotlb.invalidate_page(sl, base)
        if fl in iotlb.prefixes:
            n += iotlb.invalidate(fl)
        if not d.IH:
            sl_psc, fl_psc = c.sl_psc, c.fl_psc
            if psc in sl_psc.prefixes:
                n += sl_psc.invalidate(psc, base, size)
            if psc in fl_psc.prefixes:
                n += fl_psc.invalidate(psc)
        return n
    return run


# -- device TLBs (types 3 and 8) -------------------------------------------------------------


def _devtlb(t: DevTlbInv) -> AddressEffect:
    # The device receives an ATS Invalidate Request without a PASID prefix: by PCIe it drops
    # every entry of the range, those requested with a PASID included (ats_selection).
    sid, prefix = t.SID, (t.SID, *ats_selection(None))

    def run(q: InvalidationQueue, d: DevTlbInv) -> int:
        return q.caches.devtlb.invalidate(sid, prefix, *ats_range(d.ADDR, d.S))
    return run


def _pasid_devtlb(t: PasidDevTlbInv) -> AddressEffect:
    # G asks the device to drop the range for every PASID (its global translations); the model
    # drops the range under every PASID of the device, a legal over-invalidation.
    sid, prefix = t.SID, (t.SID, *ats_selection(t.PASID, global_invalidate=bool(t.G)))

    def run(q: InvalidationQueue, d: PasidDevTlbInv) -> int:
        return q.caches.devtlb.invalidate(sid, prefix, *ats_range(d.ADDR, d.S))
    return run


# -- interrupt entries, waits, page responses (types 4, 5, 9) -----------------------------------


def _iec(d: IecInv) -> Effect:
    return lambda q: 0    # interrupt-entry cache: not modelled, the descriptor is accepted


def _wait(d: InvWait) -> Effect:
    def run(q: InvalidationQueue) -> int:
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
    return run


def _page_response(d: PageGroupResponse) -> Effect:
    def run(q: InvalidationQueue) -> int:
        if q.page_response is not None:
            q.page_response(d)
        return 0
    return run


# -- PASID-based IOTLB (type 6) and PASID cache (type 7) ---------------------------------------


def _pasid_iotlb_non_global(d: PasidIotlbInv) -> Effect:
    tag, psc = ("fl", d.DID, d.PASID), (d.DID, d.PASID)

    def run(q: InvalidationQueue) -> int:
        c = q.caches
        return c.iotlb.invalidate(tag, include_global=False) + c.fl_psc.invalidate(psc)
    return run


def _pasid_iotlb_page(t: PasidIotlbInv) -> AddressEffect:
    tag, psc = ("fl", t.DID, t.PASID), (t.DID, t.PASID)

    def run(q: InvalidationQueue, d: PasidIotlbInv) -> int:
        size = _PAGE << d.AM  # page_range, inline
        base = d.ADDR & -size
        c = q.caches
        if d.IH:    # only leaves changed: the paging-structure caches stay
            return c.iotlb.invalidate(tag, base, size)
        return c.iotlb.invalidate(tag, base, size) + c.fl_psc.invalidate(psc, base, size)
    return run


def _pasid_cache_domain(d: PasidCacheInv) -> Effect:
    did = d.DID
    return lambda q: q.caches.pasid.invalidate_domain(did)


def _pasid_cache_pasid(d: PasidCacheInv) -> Effect:
    did, pasid = d.DID, d.PASID
    return lambda q: q.caches.pasid.invalidate_pasid(did, pasid)


def _pasid_cache_global(d: PasidCacheInv) -> Effect:
    return lambda q: q.caches.pasid.invalidate_global()


#: The types whose scope G selects: granularity -> binder.
_BY_GRANULARITY: dict[type[Descriptor], dict[int, _Binder]] = {
    ContextCacheInv: {
        ContextCacheGranularity.GLOBAL: _context_global,
        ContextCacheGranularity.DOMAIN: _context_domain,
        ContextCacheGranularity.DEVICE: _context_device,
    },
    IotlbInv: {
        IotlbGranularity.GLOBAL: _iotlb_global,
        IotlbGranularity.DOMAIN: _iotlb_domain,
    },
    PasidIotlbInv: {
        PasidIotlbGranularity.NON_GLOBAL: _pasid_iotlb_non_global,
    },
    PasidCacheInv: {
        PasidCacheGranularity.DOMAIN: _pasid_cache_domain,
        PasidCacheGranularity.PASID: _pasid_cache_pasid,
        PasidCacheGranularity.GLOBAL: _pasid_cache_global,
    },
}
#: The other types: one binder each.
_BY_TYPE: dict[type[Descriptor], _Binder] = {
    IecInv: _iec,
    InvWait: _wait,
    PageGroupResponse: _page_response,
}
#: The rows whose range the descriptor's address fields name: (type, G or None) -> binder of
#: the template's :data:`AddressEffect`.
_BY_ADDRESS: dict[tuple[type[Descriptor], int | None], _AddressBinder] = {
    (IotlbInv, IotlbGranularity.PAGE): _iotlb_page,
    (PasidIotlbInv, PasidIotlbGranularity.PAGE): _pasid_iotlb_page,
    (DevTlbInv, None): _devtlb,
    (PasidDevTlbInv, None): _pasid_devtlb,
}


def bind_address(template: Descriptor) -> AddressEffect:
    """The :data:`AddressEffect` of the decoded template ``template`` (a descriptor whose
    address fields are zero): a row that names a range reads it from each descriptor it
    executes; any other row ignores the address fields, as its hardware does."""
    scopes = _BY_GRANULARITY.get(type(template))
    g = getattr(template, "G", None) if scopes is not None else None
    binder = _BY_ADDRESS.get((type(template), g))
    if binder is not None:
        return binder(template)
    effect = bind(template)
    return lambda q, d: effect(q)


def bind(d: Descriptor) -> Effect:
    """The :data:`Effect` of the decoded descriptor ``d`` (chosen by type, then granularity)."""
    scopes = _BY_GRANULARITY.get(type(d))
    if scopes is None:
        binder = _BY_TYPE.get(type(d))
        g = None
    else:
        g = d.G  # type: ignore[attr-defined]
        binder = scopes.get(g)
    if binder is None:  # a row that reads the range from the descriptor
        at = _BY_ADDRESS[(type(d), g)](d)
        return lambda q: at(q, d)
    return binder(d)

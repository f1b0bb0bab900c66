"""The data path: a device's DMA through the device TLB, the IOTLB and the translation contexts.

:meth:`DataPath.translate` is the per-DMA entry point. Its IOTLB hit is three dictionary reads
(device, PASID, page) with no hook call, no exception and no allocation but the result. A miss
whose values the hit probe vouched for (plain ints, None for no PASID, a device of this IOMMU)
checks their ranges alone and runs :meth:`DataPath._resolve` (device TLB, IOTLB, context
building, the walk and the fills); any other request takes :meth:`DataPath._translate`, which
makes every check of a malformed request, with its rule id, before the same.

A *translation context* is what the backend builds for one (device, PASID) from its
configuration (context/PASID entries, STE/CD, ...) through the ``iommu_translation_context``
hook; the data path keeps it until the backend or the control path forgets it. Contexts are held
on their :class:`Device` by PASID, each as a :data:`Route` (the context, its IOTLB tag, that
tag's bucket and the device TLB), so a miss finds all it reads in one lookup and forgetting
costs what it drops: one (device, PASID), one device, or everything (a global configuration
invalidation). For each context without a device TLB the hit path keeps the IOTLB bucket of the
context's tag on the device too (requests without PASID in one slot, the others by PASID),
unless the IOTLB's replacement policy must see every hit (LRU: then hits take the miss path,
which reports them); the buckets are the IOTLB's own (emptied in place by invalidation), so the
view never holds a stale entry.

Threads (see ``docs/concurrency.md``): the hit path takes no lock. Everything past it but the
checks of the request's values (the device TLB, context building, the walk and every cache
fill) runs holding :attr:`DataPath.lock`, the re-entrant lock the façade's control calls hold,
so a walk never interleaves with a control call: one that started before an invalidation fills
the caches before the invalidation runs, and the invalidation then removes what it filled. Under
the lock the miss checks again that the device is still this IOMMU's (it may have been removed
while the DMA waited). A hit reads the live IOTLB buckets, which control calls empty in place,
so once an invalidation has returned no hit sees what it removed.

The hit probe validates its values by exact type and the device by the IOMMU it was added to; a
``dev`` that is not a :class:`Device` at all fails the first attribute read, the one exception
caught there, and takes the full path, which refuses it; a value out of range also sends the
request to the full path, which refuses it with its rule id. The IOTLB's buckets hold plain
tuples, so the hit unpacks its entry at a plain tuple's cost (see :mod:`iommu_uapi.caches.iotlb`).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterable, Mapping

from .caches.iotlb import Fields
from .device import Device
from .errors import UAPIError
from .tlb import TLB, Tag
from .translation import Translation, TranslationContext, TranslationFault
from .uapi import Fault
from .uapi.consts import FaultPerm

__all__ = ["ACCESS_BITS", "ContextBuilder", "DataPath", "Route"]

_U64 = 1 << 64
_PASID_LIMIT = 1 << 20
_READ = int(FaultPerm.READ)
#: The ``IOMMU_FAULT_PERM_*`` bits an access may carry.
ACCESS_BITS = int(FaultPerm.READ | FaultPerm.WRITE | FaultPerm.EXEC | FaultPerm.PRIV)
#: By a cached leaf's permissions: the valid accesses (READ, WRITE or EXEC, optionally PRIV)
#: it allows, so that one set lookup both validates the access and checks it on an IOTLB hit.
_ALLOWED: tuple[frozenset[int], ...] = tuple(
    frozenset(a for a in range(1, 16) if a & 7 and a & perm == a) for perm in range(16))
#: The valid accesses as plain ints: READ, WRITE or EXEC, optionally PRIV.
_ACCESSES = frozenset(a for a in range(16) if a & 7)
#: What the hit path finds for a PASID without a context: an empty bucket (never filled).
_NO_BUCKET: dict[int, Fields] = {}

Bucket = dict[int, Fields]
#: A translation context as the miss path holds it on the :class:`Device` (by PASID): the
#: context, its IOTLB tag, that tag's bucket (the IOTLB's own, emptied in place) and the device
#: TLB to consult first (None: no ATS, or DTE clear).
Route = tuple[TranslationContext, Tag, Bucket, TLB | None]
#: ``build(dev, pasid, iova, access)``: the backend's translation context for (device, PASID),
#: or :class:`TranslationFault` when the configuration refuses the request.
ContextBuilder = Callable[[Device, "int | None", int, int], TranslationContext]
#: ``report(dev, fault)``: deliver a fault to the device's consumer.
FaultReporter = Callable[[Device, Fault], None]


class DataPath:
    """The per-DMA path of one IOMMU (see the module docstring).

    ``devices`` maps requester ID to the registered :class:`Device` (the façade's own table,
    read, never changed here); ``build`` makes a context; ``report`` delivers faults.
    """

    iotlb: TLB
    #: serialises the control path and the miss path (re-entrant: a hook may call back)
    lock: threading.RLock

    def __init__(self, iotlb: TLB, devices: Mapping[int, Device], build: ContextBuilder,
                 report: FaultReporter) -> None:
        self.iotlb = iotlb
        self._devices = devices
        self._build = build
        self._report_fault = report
        self.lock = threading.RLock()

    # -- devices -------------------------------------------------------------------------------

    def _device_added(self, dev: Device) -> None:
        """Give a newly registered device its (empty) contexts and hit-path view."""
        dev._rid, dev._paths, dev._routes, dev._owner = _NO_BUCKET, {}, {}, self
        dev._hits = self.iotlb

    def _device_removed(self, dev: Device) -> None:
        """Forget a removed device's contexts and hit-path view."""
        with self.lock:
            dev._rid, dev._paths, dev._routes, dev._owner = _NO_BUCKET, {}, {}, None

    # -- contexts ------------------------------------------------------------------------------

    def _routes_of(self, sid: int) -> dict[int | None, Route] | None:
        dev = self._devices.get(sid)
        return None if dev is None else dev._routes

    def context_of(self, sid: int, pasid: int | None) -> TranslationContext | None:
        """The cached translation context of requests from ``sid`` with ``pasid`` (None: no
        context is cached; the next DMA builds one)."""
        route = (self._routes_of(sid) or {}).get(pasid)
        return None if route is None else route[0]

    def contexts_of(self, sid: int) -> dict[int | None, TranslationContext]:
        """The cached contexts of device ``sid`` by PASID (a copy)."""
        return {pasid: route[0] for pasid, route in (self._routes_of(sid) or {}).items()}

    def forget_contexts(self, sid: int, pasids: Iterable[int | None] | None = None) -> int:
        """Forget the cached translation contexts of device ``sid``: those of ``pasids`` (None
        in it: requests without PASID), or all of the device's when ``pasids`` is None.
        Returns how many were dropped; each is rebuilt from the configuration on its next DMA.
        Costs what it drops."""
        with self.lock:
            dev = self._devices.get(sid)
            return 0 if dev is None else self._forget(dev, pasids)

    @staticmethod
    def _forget(dev: Device, pasids: Iterable[int | None] | None) -> int:
        routes = dev._routes
        if not routes:
            return 0
        if pasids is None:
            dropped = len(routes)
            routes.clear()
            dev._rid = _NO_BUCKET
            dev._paths.clear()
            return dropped
        dropped = 0
        for pasid in pasids:
            if routes.pop(pasid, None) is not None:
                if pasid is None:
                    dev._rid = _NO_BUCKET
                else:
                    dev._paths.pop(pasid, None)
                dropped += 1
        return dropped

    def forget_all_contexts(self) -> int:
        """Forget every cached translation context (a global configuration invalidation)."""
        with self.lock:
            return sum(self._forget(dev, None) for dev in self._devices.values())

    def invalidate_contexts(self, sid: int | None = None, pasid: int | None = None,
                            *, all_pasids: bool = True) -> None:
        """Forget cached translation contexts: every one (``sid`` None), device ``sid``'s, or
        with ``all_pasids=False`` only its context for ``pasid``. Prefer
        :meth:`forget_contexts`, which names several PASIDs at once."""
        if sid is None:
            self.forget_all_contexts()
        else:
            self.forget_contexts(sid, None if all_pasids else (pasid,))

    # -- the per-DMA path ----------------------------------------------------------------------

    def translate(self, dev: Device, iova: int, *, pasid: int | None = None,
                  access: int = _READ) -> Translation:
        """Translate one DMA of ``dev`` (with ``pasid``, or without) for ``access``
        (``IOMMU_FAULT_PERM_*`` bits; plain ints are fastest: ``FaultPerm`` flags pay Python's
        enum arithmetic and take the full path).

        Returns a :class:`Translation` or raises :class:`TranslationFault` (also reported to the
        device's fault consumer). The IOTLB hit is one or two dict lookups (the PASID's bucket,
        the page) and no hook call. A miss of a request whose types the hit path vouched for
        (plain ints, None for ``pasid``, a device of this IOMMU) checks the ranges of its values
        alone and goes to :meth:`_resolve` under the lock (whose IOTLB miss runs inline when
        the context is kept and has no device TLB); any other request takes
        :meth:`_translate`, which checks everything.
        """
        try:
            if dev._owner is self and iova.__class__ is int is access.__class__:
                if pasid is None:
                    entry = dev._rid.get(iova >> 12)
                elif pasid.__class__ is int:
                    entry = dev._paths.get(pasid, _NO_BUCKET).get(iova >> 12)
                else:
                    return self._translate(dev, iova, pasid, access)
                if entry is not None:
                    base, size, paddr, perm, _ = entry
                    if access in _ALLOWED[perm]:
                        dev._hits.hits += 1  # the IOTLB's, or the device TLB's
                        return Translation(paddr + iova - base, size, perm, 0, 0)
                if (access in _ACCESSES and not iova >> 64 and iova >= 0
                        and (pasid is None or 0 <= pasid < _PASID_LIMIT)):
                    # a miss whose types were vouched for above: its ranges are checked
                    lock = self.lock
                    lock.acquire()
                    try:
                        # :meth:`_resolve`'s IOTLB miss, inline for a kept context without a
                        # device TLB whose bucket still misses (anything else: _resolve)
                        route = dev._routes.get(pasid)
                        if route is None or route[3] is not None or dev._owner is not self:
                            return self._resolve(dev, iova, pasid, access)
                        ctx, tag, bucket, _ = route
                        vpn = iova >> 12
                        if vpn in bucket:  # filled meanwhile, or a hit the probe could not take
                            return self._resolve(dev, iova, pasid, access)
                        tlb = self.iotlb
                        tlb.misses += 1
                        try:
                            entry, reads = ctx.walk(iova, access)
                        except TranslationFault as fault:
                            if fault.fault is not None:
                                self._report_fault(dev, fault.fault)
                            raise
                        if entry.__class__ is not tuple:
                            entry = tuple(entry)  # type: ignore[assignment]  # as _resolve
                        tlb.fill_page(tag, bucket, vpn, entry)
                        base, size, paddr, perm, _ = entry
                        return Translation(paddr + iova - base, size, perm, reads, 0)
                    finally:
                        lock.release()
        except AttributeError:
            if getattr(dev, "_owner", None) is self:  # raised past the first read
                raise
            # ``dev`` is not a Device: the full path refuses it
        return self._translate(dev, iova, pasid, access)

    def _translate(self, dev: Device, iova: int, pasid: int | None,
                   access: int) -> Translation:
        """The full path of a request the hit path could not vouch for: every check of the
        request, then :meth:`_resolve` under the lock."""
        if not isinstance(dev, Device) or self._devices.get(dev.sid) is not dev:
            raise _unknown(dev)
        if pasid is not None and (not isinstance(pasid, int) or not 0 <= pasid < _PASID_LIMIT):
            raise UAPIError(errno.EINVAL, f"translate: pasid {pasid!r} is not a 20-bit PASID",
                            rule="translate.pasid")
        if not isinstance(iova, int) or not 0 <= iova < _U64:
            raise UAPIError(errno.EINVAL, f"translate: iova {iova!r} is not a u64",
                            rule="translate.iova")
        if not isinstance(access, int) or access & ~ACCESS_BITS or not access & 7:
            raise UAPIError(errno.EINVAL, f"translate: access {access!r} must name READ, WRITE "
                            "or EXEC (and optionally PRIV)", rule="translate.access")
        if not (iova.__class__ is int is access.__class__
                and (pasid is None or pasid.__class__ is int)):  # int subclasses: plain ints
            iova, access = int(iova), int(access)
            pasid = None if pasid is None else int(pasid)
        with self.lock:
            return self._resolve(dev, iova, pasid, access)

    def _resolve(self, dev: Device, iova: int, pasid: int | None,
                 access: int) -> Translation:
        """Device TLB, IOTLB, context and walk for a checked request (the lock held)."""
        if dev._owner is not self:  # removed since the request was checked
            raise _unknown(dev)
        route = dev._routes.get(pasid)
        config_reads = 0
        if route is None:
            route = self._route(dev, pasid, iova, access)
            config_reads = route[0].config_reads
        ctx, tag, bucket, atc = route
        vpn = iova >> 12
        if atc is not None:
            found = atc.bucket((pasid,)).get(vpn)
            if found is not None and found[3] & access == access:
                atc.hits += 1
                if atc.sees_hits:
                    atc.touch((pasid,), vpn)
                base, size, paddr, perm, _ = found
                return Translation(paddr + iova - base, size, perm, 0, config_reads)
            atc.misses += 1
        tlb = self.iotlb
        found = bucket.get(vpn)
        if found is not None and found[3] & access == access:
            tlb.hits += 1
            if tlb.sees_hits:
                tlb.touch(tag, vpn)
            if atc is not None:
                atc.fill((pasid,), iova, found)
            base, size, paddr, perm, _ = found
            return Translation(paddr + iova - base, size, perm, 0, config_reads)
        tlb.misses += 1
        try:
            entry, reads = ctx.walk(iova, access)
        except TranslationFault as fault:
            if fault.fault is not None:
                self._report_fault(dev, fault.fault)
            raise
        if entry.__class__ is not tuple:
            entry = tuple(entry)  # type: ignore[assignment]  # the fields, as the caches store them
        tlb.fill_page(tag, bucket, vpn, entry)
        if atc is not None:
            atc.fill((pasid,), iova, entry)
        base, size, paddr, perm, _ = entry
        return Translation(paddr + iova - base, size, perm, reads, config_reads)

    def _route(self, dev: Device, pasid: int | None, iova: int, access: int) -> Route:
        """Build the context of (``dev``, ``pasid``) through the backend and keep it, with the
        hit path's view of its IOTLB bucket (faults are reported)."""
        try:
            ctx = self._build(dev, pasid, iova, access)
        except TranslationFault as fault:
            if fault.fault is not None:
                self._report_fault(dev, fault.fault)
            raise
        tlb, tag, atc = self.iotlb, ctx.tag, ctx.atc
        route: Route = (ctx, tag, tlb.bucket(tag), atc)
        dev._routes[pasid] = route
        # the hit path's bucket: the IOTLB's, or the device TLB's when the device has one (it
        # answers first); none when the cache's policy must see every hit (LRU)
        cache = tlb if atc is None else atc
        if not cache.sees_hits:
            if dev._hits is not cache:  # the device's hit path counts into one cache
                dev._rid, dev._hits = _NO_BUCKET, cache
                dev._paths.clear()
            hot = route[2] if atc is None else atc.bucket((pasid,))
            if pasid is None:
                dev._rid = hot
            else:
                dev._paths[pasid] = hot
        return route


def _unknown(dev: object) -> UAPIError:
    return UAPIError(errno.ENODEV, f"{dev!r} is not a device of this IOMMU",
                     rule="device.unknown")

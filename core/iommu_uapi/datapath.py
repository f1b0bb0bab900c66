"""The data path: a device's DMA through the device TLB, the IOTLB and the translation contexts.

:meth:`DataPath.translate` is the per-DMA entry point. Its IOTLB hit is three dictionary reads
(device, PASID, page) with no hook call, no exception and no allocation but the result; the
checks of a malformed request, context building, the device TLB and the walk on a miss are
:meth:`DataPath._translate`'s.

A *translation context* is what the backend builds for one (device, PASID) from its
configuration (context/PASID entries, STE/CD, ...) through the ``iommu_translation_context``
hook; the data path keeps it until the backend or the control path forgets it. Contexts are held
by requester ID and then by PASID, so forgetting costs what it drops: one (device, PASID), one
device, or everything (a global configuration invalidation). For each context without a device
TLB the hit path keeps the IOTLB bucket of the context's tag on the :class:`Device` it registered
(requests without PASID in one slot, the others by PASID), unless the IOTLB's replacement policy
must see every hit (LRU: then hits take the full path, which reports them); the buckets are the
IOTLB's own (emptied in place by invalidation), so the view never holds a stale entry.

Threads (see ``docs/concurrency.md``): the hit path takes no lock. Everything past it (the
checks, the device TLB, context building, the walk and every cache fill) runs holding
:attr:`DataPath.lock`, the re-entrant lock the façade's control calls hold, so a walk never
interleaves with a control call: one that started before an invalidation fills the caches before
the invalidation runs, and the invalidation then removes what it filled. A hit reads the live
IOTLB buckets, which control calls empty in place, so once an invalidation has returned no hit
sees what it removed.

The hit path validates its values by exact type (plain ints, None for no PASID) and the device by
the IOMMU it was added to; a ``dev`` that is not a :class:`Device` at all fails the first
attribute read, the one exception caught there, and takes the full path, which refuses it. A miss
never raises: it simply takes the full path. The IOTLB's buckets hold plain tuples, so the hit
unpacks its entry at a plain tuple's cost (see :mod:`iommu_uapi.caches.iotlb`).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable, Iterable, Mapping

from .caches.iotlb import Fields
from .device import Device
from .errors import UAPIError
from .tlb import TLB
from .translation import Translation, TranslationContext, TranslationFault
from .uapi import Fault
from .uapi.consts import FaultPerm

__all__ = ["ACCESS_BITS", "ContextBuilder", "DataPath"]

_U64 = 1 << 64
_PASID_LIMIT = 1 << 20
_READ = int(FaultPerm.READ)
#: The ``IOMMU_FAULT_PERM_*`` bits an access may carry.
ACCESS_BITS = int(FaultPerm.READ | FaultPerm.WRITE | FaultPerm.EXEC | FaultPerm.PRIV)
#: By a cached leaf's permissions: the valid accesses (READ, WRITE or EXEC, optionally PRIV)
#: it allows, so that one set lookup both validates the access and checks it on an IOTLB hit.
_ALLOWED: tuple[frozenset[int], ...] = tuple(
    frozenset(a for a in range(1, 16) if a & 7 and a & perm == a) for perm in range(16))
#: What the hit path finds for a PASID without a context: an empty bucket (never filled).
_NO_BUCKET: dict[int, Fields] = {}

Bucket = dict[int, Fields]
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
        #: requester ID -> PASID (None: without PASID) -> context
        self._contexts: dict[int, dict[int | None, TranslationContext]] = {}

    # -- devices -------------------------------------------------------------------------------

    def _device_added(self, dev: Device) -> None:
        """Give a newly registered device its (empty) contexts and hit-path view."""
        self._contexts[dev.sid] = {}
        dev._rid, dev._paths, dev._owner = _NO_BUCKET, {}, self

    def _device_removed(self, dev: Device) -> None:
        """Forget a removed device's contexts and hit-path view."""
        self.forget_contexts(dev.sid)
        self._contexts.pop(dev.sid, None)
        dev._rid, dev._paths, dev._owner = _NO_BUCKET, {}, None

    @staticmethod
    def _unview(dev: Device, pasid: int | None) -> None:
        if pasid is None:
            dev._rid = _NO_BUCKET
        else:
            dev._paths.pop(pasid, None)

    # -- contexts ------------------------------------------------------------------------------

    def context_of(self, sid: int, pasid: int | None) -> TranslationContext | None:
        """The cached translation context of requests from ``sid`` with ``pasid`` (None: no
        context is cached; the next DMA builds one)."""
        contexts = self._contexts.get(sid)
        return None if contexts is None else contexts.get(pasid)

    def contexts_of(self, sid: int) -> dict[int | None, TranslationContext]:
        """The cached contexts of device ``sid`` by PASID (a copy)."""
        return dict(self._contexts.get(sid, {}))

    def forget_contexts(self, sid: int, pasids: Iterable[int | None] | None = None) -> int:
        """Forget the cached translation contexts of device ``sid``: those of ``pasids`` (None
        in it: requests without PASID), or all of the device's when ``pasids`` is None.
        Returns how many were dropped; each is rebuilt from the configuration on its next DMA.
        Costs what it drops."""
        with self.lock:
            return self._forget(sid, pasids)

    def _forget(self, sid: int, pasids: Iterable[int | None] | None) -> int:
        contexts = self._contexts.get(sid)
        if not contexts:
            return 0
        dev = self._devices[sid]
        if pasids is None:
            dropped = len(contexts)
            contexts.clear()
            dev._rid = _NO_BUCKET
            dev._paths.clear()
            return dropped
        dropped = 0
        for pasid in pasids:
            if contexts.pop(pasid, None) is not None:
                self._unview(dev, pasid)
                dropped += 1
        return dropped

    def forget_all_contexts(self) -> int:
        """Forget every cached translation context (a global configuration invalidation)."""
        with self.lock:
            return self._forget_all()

    def _forget_all(self) -> int:
        dropped = 0
        for sid, contexts in self._contexts.items():
            if contexts:
                dropped += len(contexts)
                contexts.clear()
                dev = self._devices[sid]
                dev._rid = _NO_BUCKET
                dev._paths.clear()
        return dropped

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
        the page) and no hook call; a request whose values are not plain ints (None for
        ``pasid``), or not of a device of this IOMMU, and every miss take :meth:`_translate`.
        """
        try:
            if dev._owner is self and iova.__class__ is int is access.__class__:
                if pasid is None:
                    entry = dev._rid.get(iova >> 12)
                elif pasid.__class__ is int:
                    entry = dev._paths.get(pasid, _NO_BUCKET).get(iova >> 12)
                else:
                    entry = None
                if entry is not None:
                    base, size, paddr, perm, _ = entry
                    if access in _ALLOWED[perm]:
                        self.iotlb.hits += 1
                        return Translation(paddr + iova - base, size, perm, 0, 0)
        except AttributeError:  # ``dev`` is not a Device: the full path refuses it
            pass
        return self._translate(dev, iova, pasid, access)

    def _translate(self, dev: Device, iova: int, pasid: int | None,
                   access: int) -> Translation:
        """The rest of the data path: the checks of the request, context build, device TLB,
        IOTLB miss and walk."""
        if not isinstance(dev, Device) or self._devices.get(dev.sid) is not dev:
            raise UAPIError(errno.ENODEV, f"{dev!r} is not a device of this IOMMU",
                            rule="device.unknown")
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
        config_reads = 0
        ctx = self._contexts[dev.sid].get(pasid)
        if ctx is None:
            ctx = self._context(dev, pasid, iova, access)
            config_reads = ctx.config_reads
        vpn = iova >> 12
        atc = ctx.atc
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
        found = tlb.bucket(ctx.tag).get(vpn)
        if found is not None and found[3] & access == access:
            tlb.hits += 1
            if tlb.sees_hits:
                tlb.touch(ctx.tag, vpn)
            if atc is not None:
                atc.fill((pasid,), iova, found)
            base, size, paddr, perm, _ = found
            return Translation(paddr + iova - base, size, perm, 0, config_reads)
        tlb.misses += 1
        return self._miss(dev, ctx, iova, access, pasid, config_reads)

    def _context(self, dev: Device, pasid: int | None, iova: int,
                 access: int) -> TranslationContext:
        try:
            ctx = self._build(dev, pasid, iova, access)
        except TranslationFault as fault:
            if fault.fault is not None:
                self._report_fault(dev, fault.fault)
            raise
        self._contexts[dev.sid][pasid] = ctx
        hot = self.iotlb.hot_bucket(ctx.tag) if ctx.atc is None else None
        if hot is not None:  # None: the IOTLB's policy sees every hit (LRU), or a device TLB
            if pasid is None:
                dev._rid = hot
            else:
                dev._paths[pasid] = hot
        return ctx

    def _miss(self, dev: Device, ctx: TranslationContext, iova: int, access: int,
              pasid: int | None, config_reads: int) -> Translation:
        try:
            entry, reads = ctx.walk(iova, access)
        except TranslationFault as fault:
            if fault.fault is not None:
                self._report_fault(dev, fault.fault)
            raise
        if entry.__class__ is not tuple:
            entry = tuple(entry)  # type: ignore[assignment]  # the fields, as the caches store them
        self.iotlb.fill(ctx.tag, iova, entry)
        if ctx.atc is not None:
            ctx.atc.fill((pasid,), iova, entry)
        base, size, paddr, perm, _ = entry
        return Translation(paddr + iova - base, size, perm, reads, config_reads)

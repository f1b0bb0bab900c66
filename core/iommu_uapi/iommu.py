"""The façade a user holds: one IOMMU model, its devices and domains, the kernel-named calls.

Control path (bind, unbind, invalidate, page response, PASID table): user bytes go in at a
kernel-named entry point (``uapi_cache_invalidate`` ...); the record's ``from_user`` applies the
size discipline and the core's checks of the profile, then one hook call reaches the backend,
which applies its own rules and executes native commands on its tables and caches. The in-kernel
variants (``cache_invalidate`` ...) take typed records and run the same checks. A refused call
raises :class:`~iommu_uapi.errors.UAPIError` and changes nothing. As in the kernel, an operation
the backend does not implement is refused with ``ENODEV`` before the user buffer is read.

Data path (:meth:`IOMMU.translate`): device TLB (ATS devices), then the core IOTLB, then on a
miss the backend's translation context for (device, PASID) — built by a hook when the
configuration changed, then cached — walks the tables. No hook call runs per DMA.
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Iterable
from typing import Any

from . import profiles
from .abi import SizeDiscipline
from .device import Device, Domain
from .errors import UAPIError
from .faults import FaultParam
from .features import Capabilities, Feature, Negotiated
from .hookspecs import instance_hook_names
from .memory import PhysicalMemory
from .observers import add_observer
from .operations import UAPIOperations
from .pasid import PasidSet, PasidSpace
from .plugins import direct_dispatch, get_backend, global_observers, instance_manager, tracing
from .tlb import TLB, TLBEntry
from .translation import Translation, TranslationContext, TranslationFault
from .uapi import Fault
from .uapi.consts import FaultPerm

__all__ = ["IOMMU", "Device", "Domain", "Translation", "TranslationFault"]

_U64 = 1 << 64
_READ = int(FaultPerm.READ)
_ACCESS_BITS = int(FaultPerm.READ | FaultPerm.WRITE | FaultPerm.EXEC | FaultPerm.PRIV)
#: By a cached leaf's permissions: the valid accesses (READ, WRITE or EXEC, optionally PRIV)
#: it allows, so that one set lookup both validates the access and checks it on an IOTLB hit.
_ALLOWED: tuple[frozenset[int], ...] = tuple(
    frozenset(a for a in range(1, 16) if a & 7 and a & perm == a) for perm in range(16))
#: The feature each operation needs from the backend's capabilities (plain ints: the gate runs
#: on every control call, and Flag arithmetic costs a microsecond).
_OP_FEATURE: dict[str, int] = {
    "iommu_sva_bind_gpasid": int(Feature.BIND_PGTBL),
    "iommu_sva_unbind_gpasid": int(Feature.BIND_PGTBL),
    "iommu_cache_invalidate": int(Feature.CACHE_INVLD),
    "iommu_attach_pasid_table": int(Feature.BIND_PASID_TABLE),
    "iommu_detach_pasid_table": int(Feature.BIND_PASID_TABLE),
    "iommu_page_request": int(Feature.PAGE_REQUEST),
    "iommu_page_response": int(Feature.PAGE_REQUEST),
}


class IOMMU(UAPIOperations):
    """One IOMMU model: a backend instance, its memory, devices, domains, IOTLB and faults.

    ``backend`` is a registered backend name (``"vtd"``) or a backend instance object; ``config``
    is passed to the backend's factory. ``profile`` (``"linux-5.10"`` or ``"strict"``) and
    ``discipline`` (the 2020 argsz rules or iommufd's) are the defaults of every call.
    """

    def __init__(
        self,
        backend: str | object,
        *,
        memory: PhysicalMemory | None = None,
        profile: str = "linux-5.10",
        discipline: SizeDiscipline = SizeDiscipline.ARGSZ,
        pasids: PasidSpace | None = None,
        observers: Iterable[object] = (),
        iotlb: TLB | None = None,
        **config: Any,
    ) -> None:
        profile = profiles.get(profile).name
        self.memory = memory if memory is not None else PhysicalMemory()
        if isinstance(backend, str):
            spec = get_backend(backend)
            self.backend_name = spec.name
            self.backend: object = spec.factory(self.memory, **config)
        else:
            self.backend_name = getattr(backend, "name", type(backend).__name__)
            self.backend = backend
        self.profile = profile
        self.discipline = discipline
        self.iotlb = iotlb if iotlb is not None else TLB()
        self.devices: dict[int, Device] = {}
        self.domains: dict[int, Domain] = {}
        self.fault_log: deque[tuple[Device, Fault]] = deque(maxlen=4096)
        self.negotiated: Negotiated | None = None
        self._contexts: dict[tuple[int, int | None], TranslationContext] = {}
        # the hit path: device -> PASID (None: no PASID) -> the IOTLB bucket of its context's
        # tag; kept for contexts without a device TLB, dropped with the context
        self._hot: dict[Device, dict[int | None, dict[int, TLBEntry]]] = {}
        self._fault_params: dict[int, FaultParam] = {}
        self._bindings: dict[tuple[int, int], Domain] = {}
        self._next_domain = 1
        self._pm = instance_manager(self.backend, self.backend_name)
        self.hook = self._pm.hook
        # hooks only the backend sees, called without pluggy's machinery (see direct_dispatch);
        # emptied for good once anything monitors hook calls
        self._monitored = tracing()
        self._direct: dict[str, Any] = (
            {} if self._monitored else direct_dispatch(self._pm, self.backend))
        self.ops = frozenset(n for n in instance_hook_names()
                             if callable(getattr(self.backend, n, None)))
        for observer in (*global_observers(), *observers):
            self.add_observer(observer)
        if "iommu_instance_init" in self.ops:
            self.hook.iommu_instance_init(iommu=self)
        self.capabilities: Capabilities = self._call("iommu_capabilities")
        self.pasids = pasids if pasids is not None else PasidSpace(
            self.capabilities.pasid_bits or 20)
        self.pasids.free_notifiers.append(self._pasid_freed)

    def __repr__(self) -> str:
        return (f"IOMMU({self.backend_name!r}, devices={len(self.devices)}, "
                f"domains={len(self.domains)}, profile={self.profile!r})")

    # -- dispatch ------------------------------------------------------------------------------

    def _call(self, hook: str, **kwargs: Any) -> Any:
        direct = self._direct.get(hook)  # only ever holds the backend's own hooks
        if direct is not None:
            return direct(**kwargs)
        if hook not in self.ops:
            raise UAPIError(errno.ENODEV, f"{hook.removeprefix('iommu_')}: backend "
                            f"{self.backend_name!r} does not implement it", rule="op.missing")
        return getattr(self.hook, hook)(**kwargs)

    def _gate(self, hook: str) -> None:
        """Refuse (ENODEV, before reading user memory) an op the backend lacks."""
        feature = _OP_FEATURE.get(hook)
        if hook not in self.ops or (feature is not None and
                                    not int(self.capabilities.features) & feature):
            raise UAPIError(errno.ENODEV, f"{hook.removeprefix('iommu_')}: backend "
                            f"{self.backend_name!r} does not provide it", rule="op.missing")

    def add_observer(self, observer: object) -> None:
        """Watch or wrap every hook call of this instance (see :mod:`iommu_uapi.observers`)."""
        add_observer(self._pm, observer)
        if hasattr(observer, "before") or hasattr(observer, "after"):
            self._monitored = True
        self._direct = {} if self._monitored else direct_dispatch(self._pm, self.backend)

    def invalidate_contexts(self, sid: int | None = None, pasid: int | None = None,
                            *, all_pasids: bool = True) -> None:
        """Forget cached translation contexts (the backend calls this when configuration that
        contexts were built from may have changed); they are rebuilt on next use."""
        if sid is None:
            self._contexts.clear()
            self._hot.clear()
            return
        for key in [k for k in self._contexts if k[0] == sid and (all_pasids or k[1] == pasid)]:
            del self._contexts[key]
        for dev in [d for d in self._hot if d.sid == sid]:
            if all_pasids:
                del self._hot[dev]
            else:
                self._hot[dev].pop(pasid, None)

    def _check_dev(self, dev: Device) -> Device:
        if not isinstance(dev, Device) or self.devices.get(dev.sid) is not dev:
            raise UAPIError(errno.ENODEV, f"{dev!r} is not a device of this IOMMU",
                            rule="device.unknown")
        return dev

    def _check_domain(self, domain: Domain) -> Domain:
        if not isinstance(domain, Domain) or self.domains.get(domain.id) is not domain:
            raise UAPIError(errno.EINVAL, f"{domain!r} is not a domain of this IOMMU",
                            rule="domain.unknown")
        return domain

    def _profile(self, profile: str | None) -> str:
        return self.profile if profile is None else profiles.get(profile).name

    # -- topology ------------------------------------------------------------------------------

    def add_device(self, sid: int, **kwargs: Any) -> Device:
        """Put a device with requester ID ``sid`` behind this IOMMU (see :class:`Device`)."""
        if not isinstance(sid, int) or not 0 <= sid <= 0xFFFF:
            raise UAPIError(errno.EINVAL, f"add_device: requester ID {sid!r} is not a u16",
                            rule="device.sid")
        if sid in self.devices:
            raise UAPIError(errno.EEXIST, f"add_device: requester ID {sid:#06x} is taken",
                            rule="device.exists")
        dev = Device(sid, **kwargs)
        if dev.ats:
            dev.atc = TLB()
        self._call("iommu_device_add", dev=dev)
        self.devices[sid] = dev
        self._fault_params[sid] = FaultParam()
        return dev

    def remove_device(self, dev: Device) -> None:
        """Detach (if attached) and remove a device."""
        self._check_dev(dev)
        if dev.domain is not None:
            self.detach_device(dev.domain, dev)
        self._call("iommu_device_remove", dev=dev)
        del self.devices[dev.sid]
        del self._fault_params[dev.sid]
        self.invalidate_contexts(dev.sid)

    def domain_alloc(self, *, nesting: bool = False) -> Domain:
        """A new host domain (optionally put in nesting mode right away)."""
        domain = Domain(self._next_domain)
        self._call("iommu_domain_alloc", domain=domain)
        self._next_domain += 1
        self.domains[domain.id] = domain
        if nesting:
            try:
                self.set_nesting(domain)
            except UAPIError:
                self.domain_free(domain)
                raise
        return domain

    def domain_free(self, domain: Domain) -> None:
        """Free a domain; ``EBUSY`` while devices are attached."""
        self._check_domain(domain)
        if domain.devices:
            raise UAPIError(errno.EBUSY, f"domain_free: {len(domain.devices)} device(s) still "
                            "attached", rule="domain.busy")
        self._call("iommu_domain_free", domain=domain)
        del self.domains[domain.id]

    def set_nesting(self, domain: Domain) -> None:
        """Set ``DOMAIN_ATTR_NESTING`` (before the first attach)."""
        self._check_domain(domain)
        self._call("iommu_domain_set_nesting", domain=domain)
        domain.nesting = True

    def attach_device(self, domain: Domain, dev: Device) -> None:
        """Attach ``dev`` to ``domain`` (requests without PASID then use its stage-2 tables)."""
        self._check_domain(domain)
        self._check_dev(dev)
        if dev.domain is not None:
            raise UAPIError(errno.EBUSY, f"attach: {dev!r} is attached to domain "
                            f"{dev.domain.id}", rule="attach.busy")
        self._call("iommu_attach_dev", domain=domain, dev=dev)
        dev.domain = domain
        domain.devices.append(dev)
        self.invalidate_contexts(dev.sid)

    def detach_device(self, domain: Domain, dev: Device) -> None:
        """Detach ``dev``; guest PASIDs still bound to it are unbound first."""
        self._check_domain(domain)
        self._check_dev(dev)
        if dev.domain is not domain:
            raise UAPIError(errno.EINVAL, f"detach: {dev!r} is not attached to domain "
                            f"{domain.id}", rule="detach.not_attached")
        for _sid, pasid in [k for k in self._bindings if k[0] == dev.sid]:
            self.sva_unbind_gpasid(domain, dev, pasid)
        self._call("iommu_detach_dev", domain=domain, dev=dev)
        dev.domain = None
        domain.devices.remove(dev)
        self.invalidate_contexts(dev.sid)

    def map(self, domain: Domain, iova: int, paddr: int, size: int, prot: int) -> None:
        """Map ``[iova, iova + size)`` to ``paddr`` in the domain's stage-2 (host) tables."""
        self._check_domain(domain)
        for name, value in (("iova", iova), ("paddr", paddr), ("size", size), ("prot", prot)):
            if not isinstance(value, int) or not 0 <= value < _U64:
                raise UAPIError(errno.EINVAL, f"map: {name} {value!r} is not a u64", rule="map.u64")
        self._call("iommu_map", domain=domain, iova=iova, paddr=paddr, size=size, prot=prot)

    def unmap(self, domain: Domain, iova: int, size: int) -> int:
        """Unmap ``[iova, iova + size)``; returns the bytes unmapped."""
        self._check_domain(domain)
        for name, value in (("iova", iova), ("size", size)):
            if not isinstance(value, int) or not 0 <= value < _U64:
                raise UAPIError(errno.EINVAL, f"unmap: {name} {value!r} is not a u64",
                                rule="unmap.u64")
        return int(self._call("iommu_unmap", domain=domain, iova=iova, size=size))

    def iova_to_phys(self, domain: Domain, iova: int) -> int:
        """What ``iova`` maps to in the domain's stage-2 tables (0 when unmapped)."""
        self._check_domain(domain)
        if not isinstance(iova, int) or not 0 <= iova < _U64:
            raise UAPIError(errno.EINVAL, f"iova_to_phys: iova {iova!r} is not a u64",
                            rule="iova_to_phys.u64")
        return int(self._call("iommu_iova_to_phys", domain=domain, iova=iova))

    # -- PASIDs --------------------------------------------------------------------------------

    def pasid_set(self, name: str, quota: int) -> PasidSet:
        """A per-VM PASID set in this IOMMU's PASID space."""
        return self.pasids.create_set(name, quota)

    def free_pasid(self, pasid: int, pasid_set: PasidSet | None = None) -> None:
        """Free a host PASID; every guest binding of it is torn down first, so this never fails
        on a valid, allocated PASID."""
        self.pasids.free(pasid, pasid_set)

    def _pasid_freed(self, pasid: int) -> None:
        for sid, bound in [k for k in self._bindings if k[1] == pasid]:
            self.sva_unbind_gpasid(self._bindings[(sid, bound)], self.devices[sid], bound)

    def bound_pasids(self, dev: Device) -> list[int]:
        """The host PASIDs bound to guest page tables on ``dev``."""
        return sorted(p for s, p in self._bindings if s == dev.sid)

    # -- the data path -------------------------------------------------------------------------

    def translate(self, dev: Device, iova: int, *, pasid: int | None = None,
                  access: int = _READ) -> Translation:
        """Translate one DMA of ``dev`` (with ``pasid``, or without) for ``access``
        (``IOMMU_FAULT_PERM_*`` bits; plain ints are fastest: ``FaultPerm`` flags pay Python's
        enum arithmetic on every hit).

        Returns a :class:`Translation` or raises :class:`TranslationFault` (also reported to the
        device's fault consumer). The IOTLB hit path is three dict lookups (device, PASID, page)
        and no hook call; everything else, the checks of a bad request included, is
        :meth:`_translate`'s.
        """
        try:
            base, size, paddr, perm, _ = self._hot[dev][pasid][iova >> 12]
            if access in _ALLOWED[perm] and isinstance(access, int):
                self.iotlb.hits += 1
                return Translation(paddr + iova - base, size, perm, 0, 0)
        except (KeyError, TypeError):
            pass  # no context yet, no entry, or bad input: the full path sorts it out
        return self._translate(dev, iova, pasid, access)

    def _translate(self, dev: Device, iova: int, pasid: int | None,
                   access: int) -> Translation:
        """The rest of the data path: the checks of the request, context build, device TLB,
        IOTLB miss and walk."""
        self._check_dev(dev)
        if pasid is not None and (not isinstance(pasid, int) or not 0 <= pasid < 1 << 20):
            raise UAPIError(errno.EINVAL, f"translate: pasid {pasid!r} is not a 20-bit PASID",
                            rule="translate.pasid")
        if not isinstance(iova, int) or not 0 <= iova < _U64:
            raise UAPIError(errno.EINVAL, f"translate: iova {iova!r} is not a u64",
                            rule="translate.iova")
        if not isinstance(access, int) or access & ~_ACCESS_BITS or not access & 7:
            raise UAPIError(errno.EINVAL, f"translate: access {access!r} must name READ, WRITE "
                            "or EXEC (and optionally PRIV)", rule="translate.access")
        config_reads = 0
        ctx = self._contexts.get((dev.sid, pasid))
        if ctx is None:
            ctx = self._context(dev, pasid, iova, access)
            config_reads = ctx.config_reads
        vpn = iova >> 12
        atc = ctx.atc
        if atc is not None:
            entry = atc.bucket((pasid,)).get(vpn)
            if entry is not None and entry.perm & access == access:
                atc.hits += 1
                if atc.sees_hits:
                    atc.touch((pasid,), vpn)
                return Translation(entry.paddr + iova - entry.iova, entry.size, entry.perm, 0,
                                   config_reads)
            atc.misses += 1
        tlb = self.iotlb
        entry = tlb.bucket(ctx.tag).get(vpn)
        if entry is not None and entry.perm & access == access:
            tlb.hits += 1
            if tlb.sees_hits:
                tlb.touch(ctx.tag, vpn)
            if atc is not None:
                atc.fill((pasid,), iova, entry)
            return Translation(entry.paddr + iova - entry.iova, entry.size, entry.perm, 0,
                               config_reads)
        tlb.misses += 1
        return self._miss(dev, ctx, iova, access, pasid, config_reads)

    def _context(self, dev: Device, pasid: int | None, iova: int,
                 access: int) -> TranslationContext:
        try:
            ctx: TranslationContext = self._call("iommu_translation_context", dev=dev,
                                                 pasid=pasid, iova=iova, access=access)
        except TranslationFault as fault:
            if fault.fault is not None:
                self._report(dev, fault.fault)
            raise
        self._contexts[(dev.sid, pasid)] = ctx
        hot = self.iotlb.hot_bucket(ctx.tag) if ctx.atc is None else None
        if hot is not None:  # None: the IOTLB's policy sees every hit (LRU)
            self._hot.setdefault(dev, {})[pasid] = hot
        return ctx

    def _miss(self, dev: Device, ctx: TranslationContext, iova: int, access: int,
              pasid: int | None, config_reads: int) -> Translation:
        try:
            entry, reads = ctx.walk(iova, access)
        except TranslationFault as fault:
            if fault.fault is not None:
                self._report(dev, fault.fault)
            raise
        self.iotlb.fill(ctx.tag, iova, entry)
        if ctx.atc is not None:
            ctx.atc.fill((pasid,), iova, entry)
        return Translation(entry.paddr + iova - entry.iova, entry.size, entry.perm, reads,
                           config_reads)

"""The façade a user holds: one IOMMU model, its devices and domains, the kernel-named calls.

An :class:`IOMMU` is composed of four parts, each in its own module:

* :class:`~iommu_uapi.dispatch.Dispatch` (``iommu.dispatch``): the hook calls into the backend
  and its observers, and the gate that refuses with ``ENODEV`` an operation the backend does
  not provide (before the user buffer is read, as the kernel does);
* :class:`~iommu_uapi.operations.UAPIOperations` (``iommu.uapi``): the control path. User bytes go
  in at a kernel-named entry point (``uapi_cache_invalidate`` ...), which the façade forwards;
  the record's ``from_user`` applies the size discipline and the core's checks of the profile,
  then one hook call reaches the backend, which applies its own rules and executes native
  commands on its tables and caches. A refused call raises
  :class:`~iommu_uapi.errors.UAPIError` and changes nothing;
* :class:`~iommu_uapi.datapath.DataPath` (the base of :class:`IOMMU`, so that
  :meth:`IOMMU.translate` is one method call): device TLB, core IOTLB, and on a miss the
  backend's translation context for (device, PASID), built by a hook when the configuration
  changed and cached until it is forgotten. No hook call runs per DMA;
* :class:`~iommu_uapi.host_map.HostMappings` (a base of :class:`IOMMU`): ``map``/``unmap``,
  ``map_pages``/``unmap_pages`` and ``iova_to_phys`` of the domains' stage-2 tables, a one-page
  map or unmap handed to the backend's hook directly.

The façade itself holds the topology: devices, domains, PASID sets.

Threads (``docs/concurrency.md``): every control call of the façade (topology, map/unmap, the UAPI
operations, PASID frees) holds the instance's re-entrant :attr:`~DataPath.lock`, so control calls
on one :class:`IOMMU` are serialised. :meth:`IOMMU.translate` may run in other threads at the same
time: it returns a translation valid before or after each concurrent control call and raises
nothing but :class:`TranslationFault` or :class:`UAPIError`; once an invalidation, unmap or unbind
has returned, no translation sees what it removed. Its IOTLB hit takes no lock; its miss path holds
the lock (see :mod:`iommu_uapi.datapath`).
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Iterable
from typing import Any

from . import profiles
from .abi import SizeDiscipline
from .datapath import DataPath
from .device import Device, Domain, known_device
from .dispatch import Dispatch
from .errors import UAPIError
from .features import CacheCell, Capabilities, Feature, Negotiated, negotiate
from .host_map import HostMappings
from .memory import PhysicalMemory
from .operations import UAPIOperations
from .pasid import PasidSet, PasidSpace
from .plugins import get_backend, global_observers
from .serialised import forward, serialised
from .tlb import TLB
from .translation import Translation, TranslationContext, TranslationFault
from .uapi import Fault

__all__ = ["IOMMU", "Device", "Domain", "Translation", "TranslationFault"]

class IOMMU(HostMappings, DataPath):
    """One IOMMU model: a backend instance, its memory, devices, domains, IOTLB and faults.

    ``backend`` is a registered backend name (``"vtd"``) or a backend instance object; ``config``
    is passed to the backend's factory. ``profile`` (``"linux-5.10"`` or ``"strict"``) and
    ``discipline`` (the 2020 argsz rules or iommufd's) are the defaults of every call.

    Threads: control calls (every method but :meth:`translate`) are serialised by the instance's
    :attr:`lock`; :meth:`translate` may run in any number of other threads meanwhile and sees each
    control call either not yet or entirely done; once an invalidation, unmap or unbind has
    returned, no translation sees what it removed. The caches' counters are exact for
    single-threaded use; concurrent IOTLB hits may lose increments of ``iotlb.hits``. Calls made
    through ``iommu.uapi`` directly skip the lock (see ``docs/concurrency.md``).
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
        self.devices: dict[int, Device] = {}
        self.domains: dict[int, Domain] = {}
        self.negotiated: Negotiated | None = None
        self._next_domain = 1
        #: the declared stage-2 page sizes (smallest first, as a set, the smallest's low bits)
        self._page_sizes: tuple[int, ...] = (0x1000,)
        self._page_set: frozenset[int] = frozenset(self._page_sizes)
        self._align_mask = 0xFFF
        self.dispatch = Dispatch(self.backend, self.backend_name)
        self.hook = self.dispatch.hook
        self.ops = self.dispatch.ops
        self.uapi = UAPIOperations(self)
        #: every fault reported, with its device, newest last
        self.fault_log: deque[tuple[Device, Fault]] = self.uapi.fault_log
        super().__init__(iotlb if iotlb is not None else TLB(), self.devices,
                         self._build_context, self.uapi.report)
        for observer in (*global_observers(), *observers):
            self.add_observer(observer)
        if "iommu_instance_init" in self.ops:
            self.hook.iommu_instance_init(iommu=self)
        self.capabilities = self.dispatch.call("iommu_capabilities")
        self.pasids = pasids if pasids is not None else PasidSpace(
            self.capabilities.pasid_bits or 20)
        self.pasids.free_notifiers.append(self._pasid_freed)

    def __repr__(self) -> str:
        return (f"IOMMU({self.backend_name!r}, devices={len(self.devices)}, "
                f"domains={len(self.domains)}, profile={self.profile!r})")

    @property
    def capabilities(self) -> Capabilities:
        """The backend's declared :class:`~iommu_uapi.features.Capabilities`."""
        return self._capabilities

    @capabilities.setter
    def capabilities(self, caps: Capabilities) -> None:
        self._capabilities = caps
        self.dispatch.features = int(caps.features)
        sizes = tuple(1 << b for b in range(64) if caps.page_sizes >> b & 1) or (0x1000,)
        self._page_sizes, self._page_set, self._align_mask = (
            sizes, frozenset(sizes), sizes[0] - 1)

    def _pasid_freed(self, pasid: int) -> None:
        with self.lock:
            self.uapi.pasid_freed(pasid)

    @serialised
    def add_observer(self, observer: object) -> None:
        """Watch or wrap every hook call of this instance (see :mod:`iommu_uapi.observers`)."""
        self.dispatch.add_observer(observer)

    def _build_context(self, dev: Device, pasid: int | None, iova: int,
                       access: int) -> TranslationContext:
        ctx: TranslationContext = self.dispatch.hooks.iommu_translation_context(
            dev=dev, pasid=pasid, iova=iova, access=access)
        return ctx

    def _dev(self, dev: Device) -> Device:
        return known_device(self.devices, dev)

    # -- the UAPI (see iommu_uapi.operations) --------------------------------------------------

    uapi_sva_bind_gpasid = forward(UAPIOperations.uapi_sva_bind_gpasid)
    sva_bind_gpasid = forward(UAPIOperations.sva_bind_gpasid)
    uapi_sva_unbind_gpasid = forward(UAPIOperations.uapi_sva_unbind_gpasid)
    sva_unbind_gpasid = forward(UAPIOperations.sva_unbind_gpasid)
    uapi_cache_invalidate = forward(UAPIOperations.uapi_cache_invalidate)
    cache_invalidate = forward(UAPIOperations.cache_invalidate)
    uapi_attach_pasid_table = forward(UAPIOperations.uapi_attach_pasid_table)
    attach_pasid_table = forward(UAPIOperations.attach_pasid_table)
    detach_pasid_table = forward(UAPIOperations.detach_pasid_table)
    nesting_info = forward(UAPIOperations.nesting_info)
    register_fault_handler = forward(UAPIOperations.register_fault_handler)
    unregister_fault_handler = forward(UAPIOperations.unregister_fault_handler)
    pending_page_requests = forward(UAPIOperations.pending_page_requests)
    page_request = forward(UAPIOperations.page_request)
    uapi_page_response = forward(UAPIOperations.uapi_page_response)
    page_response = forward(UAPIOperations.page_response)
    bound_pasids = forward(UAPIOperations.bound_pasids)

    @serialised
    def negotiate(self, /, require: Feature | int = 0,
                  cache_ops: Iterable[tuple[int, int] | CacheCell] = (), **kwargs: Any
                  ) -> Negotiated:
        """Check upfront (see :func:`iommu_uapi.features.negotiate`) and remember the result."""
        self.negotiated = negotiate(self, require, cache_ops, **kwargs)
        return self.negotiated

    # -- topology ------------------------------------------------------------------------------

    @serialised
    def add_device(self, /, sid: int, **kwargs: Any) -> Device:
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
        self.dispatch.call("iommu_device_add", dev=dev)
        self.devices[sid] = dev
        self._device_added(dev)
        self.uapi.device_added(dev)
        return dev

    @serialised
    def remove_device(self, dev: Device) -> None:
        """Detach (if attached) and remove a device."""
        self._dev(dev)
        if dev.domain is not None:
            self.detach_device(dev.domain, dev)
        self.dispatch.call("iommu_device_remove", dev=dev)
        self._device_removed(dev)
        self.uapi.device_removed(dev)
        del self.devices[dev.sid]

    @serialised
    def domain_alloc(self, *, nesting: bool = False) -> Domain:
        """A new host domain (optionally put in nesting mode right away)."""
        domain = Domain(self._next_domain)
        self.dispatch.call("iommu_domain_alloc", domain=domain)
        self._next_domain += 1
        self.domains[domain.id] = domain
        if nesting:
            try:
                self.set_nesting(domain)
            except UAPIError:
                self.domain_free(domain)
                raise
        return domain

    @serialised
    def domain_free(self, domain: Domain) -> None:
        """Free a domain; ``EBUSY`` while devices are attached."""
        self._domain(domain)
        if domain.devices:
            raise UAPIError(errno.EBUSY, f"domain_free: {len(domain.devices)} device(s) still "
                            "attached", rule="domain.busy")
        self.dispatch.call("iommu_domain_free", domain=domain)
        del self.domains[domain.id]

    @serialised
    def set_nesting(self, domain: Domain) -> None:
        """Set ``DOMAIN_ATTR_NESTING`` (before the first attach)."""
        self._domain(domain)
        self.dispatch.call("iommu_domain_set_nesting", domain=domain)
        domain.nesting = True

    @serialised
    def attach_device(self, domain: Domain, dev: Device) -> None:
        """Attach ``dev`` to ``domain`` (requests without PASID then use its stage-2 tables)."""
        self._domain(domain)
        self._dev(dev)
        if dev.domain is not None:
            raise UAPIError(errno.EBUSY, f"attach: {dev!r} is attached to domain "
                            f"{dev.domain.id}", rule="attach.busy")
        self.dispatch.call("iommu_attach_dev", domain=domain, dev=dev)
        dev.domain = domain
        domain.devices.append(dev)
        self.forget_contexts(dev.sid)

    @serialised
    def detach_device(self, domain: Domain, dev: Device) -> None:
        """Detach ``dev``; guest PASIDs still bound to it are unbound first."""
        self._domain(domain)
        self._dev(dev)
        if dev.domain is not domain:
            raise UAPIError(errno.EINVAL, f"detach: {dev!r} is not attached to domain "
                            f"{domain.id}", rule="detach.not_attached")
        self.uapi.unbind_device(domain, dev)
        self.dispatch.call("iommu_detach_dev", domain=domain, dev=dev)
        dev.domain = None
        domain.devices.remove(dev)
        self.forget_contexts(dev.sid)

    # -- PASIDs --------------------------------------------------------------------------------

    @serialised
    def pasid_set(self, name: str, quota: int) -> PasidSet:
        """A per-VM PASID set in this IOMMU's PASID space."""
        return self.pasids.create_set(name, quota)

    @serialised
    def free_pasid(self, pasid: int, pasid_set: PasidSet | None = None) -> None:
        """Free a host PASID; every guest binding of it is torn down first, so this never fails
        on a valid, allocated PASID."""
        self.pasids.free(pasid, pasid_set)

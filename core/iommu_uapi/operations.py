"""The UAPI operations of the façade, as iommu.rst lists them: guest PASID bind and unbind,
cache invalidation, PASID-table attach and detach, nesting info, faults and page requests and
responses.

Each user-bytes entry point (``uapi_*``) first refuses, with ``ENODEV``, an operation the backend
does not provide (before reading the buffer, as the kernel does); then the record's
``from_user`` applies the size discipline and the core's checks of the profile; then one hook
call reaches the backend. The in-kernel variants take typed records and run the same checks.

:class:`UAPIOperations` is one part of an :class:`~iommu_uapi.iommu.IOMMU` (its ``uapi``
attribute), which forwards its kernel-named methods here. It keeps what the operations own: the
guest PASID bindings, each device's fault consumer and pending page requests, the fault log. It
reaches the rest through the :class:`Facade` it is given: the public defaults and tables of the
façade, the hook dispatch, and the data path's context forgetting.
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Protocol

from . import checks, profiles
from .abi import SizeDiscipline
from .bound_tables import BoundTables
from .device import Device, Domain, known_device, known_domain
from .dispatch import Dispatch
from .errors import UAPIError
from .faults import FaultHandler, FaultParam
from .uapi import (
    CacheInvalidateInfo,
    Fault,
    GpasidBindData,
    NestingInfo,
    PageResponse,
    PasidTableConfig,
)
from .uapi.consts import FaultPerm
from .uapi.nesting import nesting_info_probe

__all__ = ["Facade", "UAPIOperations"]

_U64 = 1 << 64
_ACCESS_BITS = int(FaultPerm.READ | FaultPerm.WRITE | FaultPerm.EXEC | FaultPerm.PRIV)


class Facade(Protocol):
    """What the operations read of the façade they belong to."""

    profile: str
    discipline: SizeDiscipline
    dispatch: Dispatch

    @property
    def devices(self) -> Mapping[int, Device]:
        """Registered devices by requester ID."""
        ...

    @property
    def domains(self) -> Mapping[int, Domain]:
        """Registered domains by id."""
        ...

    def forget_contexts(self, sid: int, pasids: Iterable[int | None] | None = None) -> int:
        """Forget the data path's translation contexts of ``sid`` (see DataPath)."""
        ...


class UAPIOperations:
    """The kernel-named UAPI entry points of one façade (see the module docstring)."""

    def __init__(self, facade: Facade) -> None:
        self.facade = facade
        self.dispatch = facade.dispatch
        #: guest PASID bindings: (requester ID, host PASID) -> domain
        self.bindings: dict[tuple[int, int], Domain] = {}
        #: the guest table of each binding (``strict`` refuses a second table for a PASID)
        self.tables = BoundTables()
        #: each device's fault consumer and pending page requests, by requester ID
        self.fault_params: dict[int, FaultParam] = {}
        #: every fault reported, with its device, newest last
        self.fault_log: deque[tuple[Device, Fault]] = deque(maxlen=4096)

    # -- plumbing ------------------------------------------------------------------------------

    def profile_of(self, profile: str | None) -> str:
        """The profile a call runs under: ``profile``, or the façade's default."""
        return self.facade.profile if profile is None else profiles.get(profile).name

    def _dev(self, dev: Device) -> Device:
        return known_device(self.facade.devices, dev)

    def _domain(self, domain: Domain) -> Domain:
        return known_domain(self.facade.domains, domain)

    def device_added(self, dev: Device) -> None:
        """Give a new device its (empty) fault parameters."""
        self.fault_params[dev.sid] = FaultParam()

    def device_removed(self, dev: Device) -> None:
        """Forget a removed device's fault parameters."""
        del self.fault_params[dev.sid]

    def bound_pasids(self, dev: Device) -> list[int]:
        """The host PASIDs bound to guest page tables on ``dev``."""
        return sorted(p for s, p in self.bindings if s == dev.sid)

    def unbind_device(self, domain: Domain, dev: Device) -> None:
        """Unbind every guest PASID still bound on ``dev`` (before it is detached)."""
        for _sid, pasid in [k for k in self.bindings if k[0] == dev.sid]:
            self.sva_unbind_gpasid(domain, dev, pasid)

    def pasid_freed(self, pasid: int) -> None:
        """A host PASID is being freed: tear down every guest binding of it first."""
        for sid, bound in [k for k in self.bindings if k[1] == pasid]:
            self.sva_unbind_gpasid(self.bindings[(sid, bound)], self.facade.devices[sid], bound)

    # -- the UAPI: guest PASID bind ------------------------------------------------------------

    def uapi_sva_bind_gpasid(self, domain: Domain, dev: Device, ubuf: bytes, *,
                             profile: str | None = None,
                             discipline: SizeDiscipline | None = None) -> None:
        """``iommu_uapi_sva_bind_gpasid``: bind from user bytes (``iommu_gpasid_bind_data``)."""
        self.dispatch.gate("iommu_sva_bind_gpasid")
        profile = self.profile_of(profile)
        data = GpasidBindData.from_user(ubuf, profile=profile,
                                        discipline=discipline or self.facade.discipline)
        self._bind(domain, dev, data, profile)

    def sva_bind_gpasid(self, domain: Domain, dev: Device, data: GpasidBindData, *,
                        profile: str | None = None) -> None:
        """In-kernel bind with a typed record (the same checks as the user path)."""
        self.dispatch.gate("iommu_sva_bind_gpasid")
        profile = self.profile_of(profile)
        checks.check_bind(data, profile)
        self._bind(domain, dev, data, profile)

    def _bind(self, domain: Domain, dev: Device, data: GpasidBindData, profile: str) -> None:
        self._domain(domain)
        self._dev(dev)
        self.tables.check(domain, dev, data, profile)
        self.dispatch.hooks.iommu_sva_bind_gpasid(domain=domain, dev=dev, data=data,
                                                  argsz=data.argsz, profile=profile)
        self.bindings[(dev.sid, data.hpasid)] = domain
        self.tables.add(domain, dev, data)
        self.facade.forget_contexts(dev.sid, (data.hpasid,))

    def uapi_sva_unbind_gpasid(self, domain: Domain, dev: Device, ubuf: bytes, *,
                               profile: str | None = None,
                               discipline: SizeDiscipline | None = None) -> None:
        """``iommu_uapi_sva_unbind_gpasid``: as 5.10, checks that *bind* exists, runs the full
        bind validation on the bytes, then unbinds ``hpasid`` truncated to 32 bits."""
        self.dispatch.gate("iommu_sva_bind_gpasid")
        profile = self.profile_of(profile)
        data = GpasidBindData.from_user(ubuf, profile=profile,
                                        discipline=discipline or self.facade.discipline,
                                        operation="unbind")
        self.sva_unbind_gpasid(domain, dev, data.hpasid & 0xFFFF_FFFF)

    def sva_unbind_gpasid(self, domain: Domain, dev: Device, pasid: int) -> None:
        """``iommu_sva_unbind_gpasid``: unbind host PASID ``pasid`` of ``dev``; its pending page
        requests are drained. Succeeds when nothing was bound."""
        self.dispatch.gate("iommu_sva_unbind_gpasid")
        self._domain(domain)
        self._dev(dev)
        if not isinstance(pasid, int) or not 0 <= pasid < _U64:
            raise UAPIError(errno.EINVAL, f"sva_unbind_gpasid: pasid {pasid!r} is not an ioasid",
                            rule="unbind.ioasid")
        self.dispatch.hooks.iommu_sva_unbind_gpasid(domain=domain, dev=dev, pasid=pasid)
        bound = self.bindings.pop((dev.sid, pasid), None)
        if bound is not None:
            self.tables.remove(bound, dev.sid, pasid)
            self.fault_params[dev.sid].drain(pasid)
        self.facade.forget_contexts(dev.sid, (pasid,))

    # -- the UAPI: cache invalidation ----------------------------------------------------------

    def uapi_cache_invalidate(self, domain: Domain, dev: Device, ubuf: bytes, *,
                              profile: str | None = None,
                              discipline: SizeDiscipline | None = None) -> None:
        """``iommu_uapi_cache_invalidate`` from user bytes (``iommu_cache_invalidate_info``)."""
        self.dispatch.gate("iommu_cache_invalidate")
        facade = self.facade
        profile = facade.profile if profile is None else profiles.get(profile).name
        info = CacheInvalidateInfo.from_user(ubuf, profile=profile,
                                             discipline=discipline or facade.discipline)
        self._invalidate(domain, dev, info, profile)

    def cache_invalidate(self, domain: Domain, dev: Device, info: CacheInvalidateInfo, *,
                         profile: str | None = None) -> None:
        """In-kernel cache invalidation with a typed record (the same checks)."""
        self.dispatch.gate("iommu_cache_invalidate")
        profile = self.profile_of(profile)
        checks.check_cache_invalidate(info, profile)
        self._invalidate(domain, dev, info, profile)

    def _invalidate(self, domain: Domain, dev: Device, info: CacheInvalidateInfo,
                    profile: str) -> None:
        facade = self.facade
        known_domain(facade.domains, domain)
        known_device(facade.devices, dev)
        self.dispatch.hooks.iommu_cache_invalidate(domain=domain, dev=dev, info=info,
                                                   profile=profile)

    # -- the UAPI: PASID table (SMMU style) ----------------------------------------------------

    def uapi_attach_pasid_table(self, domain: Domain, ubuf: bytes, *,
                                profile: str | None = None,
                                discipline: SizeDiscipline | None = None) -> None:
        """``iommu_uapi_attach_pasid_table`` from user bytes (``iommu_pasid_table_config``)."""
        self.dispatch.gate("iommu_attach_pasid_table")
        profile = self.profile_of(profile)
        cfg = PasidTableConfig.from_user(ubuf, profile=profile,
                                         discipline=discipline or self.facade.discipline)
        self._attach_table(domain, cfg, profile)

    def attach_pasid_table(self, domain: Domain, cfg: PasidTableConfig, *,
                           profile: str | None = None) -> None:
        """In-kernel PASID-table attach with a typed record (the same checks)."""
        self.dispatch.gate("iommu_attach_pasid_table")
        profile = self.profile_of(profile)
        checks.check_attach_pasid_table(cfg, profile)
        self._attach_table(domain, cfg, profile)

    def _attach_table(self, domain: Domain, cfg: PasidTableConfig, profile: str) -> None:
        self._domain(domain)
        self.dispatch.hooks.iommu_attach_pasid_table(domain=domain, cfg=cfg, profile=profile)
        self._forget_domain(domain)

    def detach_pasid_table(self, domain: Domain) -> None:
        """Remove the guest PASID table of ``domain``."""
        self.dispatch.gate("iommu_detach_pasid_table")
        self._domain(domain)
        self.dispatch.hooks.iommu_detach_pasid_table(domain=domain)
        self._forget_domain(domain)

    def _forget_domain(self, domain: Domain) -> None:
        """Forget the translation contexts of the devices attached to ``domain`` (its guest
        PASID table changed)."""
        for dev in domain.devices:
            self.facade.forget_contexts(dev.sid)

    # -- nesting info -------------------------------------------------------------------------

    def nesting_info(self, domain: Domain, ubuf: bytearray | None = None) -> NestingInfo | None:
        """``DOMAIN_ATTR_NESTING``: the domain's ``iommu_nesting_info``.

        With ``ubuf`` (a user buffer whose first u32 is argsz): an argsz below the record's size
        is a size probe, answered by writing the size into argsz and returning None; otherwise
        the record is written into ``ubuf`` and returned.
        """
        self._domain(domain)
        if ubuf is not None and not nesting_info_probe(ubuf):
            return None
        info: NestingInfo = self.dispatch.hooks.iommu_nesting_info(domain=domain)
        if ubuf is not None:
            ubuf[: info.SIZE] = info.to_bytes()
        return info

    # -- faults and page requests --------------------------------------------------------------

    def register_fault_handler(self, dev: Device, handler: FaultHandler) -> None:
        """Install ``dev``'s fault consumer (``EBUSY`` if it has one)."""
        self.fault_params[self._dev(dev).sid].register(handler)

    def unregister_fault_handler(self, dev: Device) -> None:
        """Remove ``dev``'s fault consumer (``EBUSY`` while page requests are pending)."""
        self.fault_params[self._dev(dev).sid].unregister()

    def pending_page_requests(self, dev: Device) -> list[Fault]:
        """The page requests of ``dev`` waiting for a response."""
        return list(self.fault_params[self._dev(dev).sid].pending)

    def report(self, dev: Device, fault: Fault) -> None:
        """Log ``fault`` and deliver it to ``dev``'s consumer (pending when a page request)."""
        self.fault_log.append((dev, fault))
        self.fault_params[dev.sid].report(fault)

    def page_request(self, dev: Device, iova: int, *, pasid: int | None = None,
                     access: int = FaultPerm.READ, grpid: int = 0, last: bool = True,
                     private_data: tuple[int, int] | None = None) -> Fault:
        """A device with PRI asks for ``iova`` to be made present; returns the generic fault
        reported to the consumer (pending until answered when ``last``)."""
        self.dispatch.gate("iommu_page_request")
        self._dev(dev)
        if not isinstance(iova, int) or not 0 <= iova < _U64 or access & ~_ACCESS_BITS:
            raise UAPIError(errno.EINVAL, f"page_request: bad address {iova!r} or access "
                            f"{access!r}", rule="page_request.input")
        fault: Fault = self.dispatch.hooks.iommu_page_request(
            dev=dev, pasid=pasid, addr=iova, access=access, grpid=grpid, last=last,
            private_data=private_data)
        self.report(dev, fault)
        return fault

    def uapi_page_response(self, dev: Device, ubuf: bytes, *, profile: str | None = None,
                           discipline: SizeDiscipline | None = None) -> None:
        """A page response from user bytes (``iommu_page_response``)."""
        self.dispatch.gate("iommu_page_response")
        profile = self.profile_of(profile)
        msg = PageResponse.from_user(ubuf, profile=profile,
                                     discipline=discipline or self.facade.discipline)
        self._respond(dev, msg, profile, checked=True)

    def page_response(self, dev: Device, msg: PageResponse, *,
                      profile: str | None = None) -> None:
        """``iommu_page_response``: answer a pending page request (reference §c.6 order)."""
        self._respond(dev, msg, self.profile_of(profile), checked=False)

    def _respond(self, dev: Device, msg: PageResponse, profile: str, checked: bool) -> None:
        self._dev(dev)
        if dev.domain is None:
            raise UAPIError(errno.ENODEV, f"page_response: {dev!r} has no domain",
                            rule="page_response.no_domain")
        self.dispatch.gate("iommu_page_response")
        param = self.fault_params[dev.sid]
        if param.handler is None:
            raise UAPIError(errno.EINVAL, "page_response: no fault consumer is registered",
                            rule="page_response.no_handler")
        if not checked:
            checks.check_page_response(msg, profile)
        fault, msg = param.match(msg)
        try:
            self.dispatch.hooks.iommu_page_response(dev=dev, fault=fault, msg=msg,
                                                    profile=profile)
        except UAPIError:
            if profiles.get(profile).quirk("page_response.drop_on_driver_error"):
                param.complete(fault)
            raise
        param.complete(fault)

"""The UAPI operations of the façade, as iommu.rst lists them: guest PASID bind and unbind,
cache invalidation, PASID-table attach and detach, nesting info and negotiation, faults and page
requests and responses.

Each user-bytes entry point (``uapi_*``) first refuses, with ``ENODEV``, an operation the backend
does not provide (before reading the buffer, as the kernel does); then the record's
``from_user`` applies the size discipline and the core's checks of the profile; then one hook
call reaches the backend. The in-kernel variants take typed records and run the same checks.
:class:`~iommu_uapi.iommu.IOMMU` inherits these methods.
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from . import checks, profiles
from .abi import SizeDiscipline
from .device import Device, Domain
from .errors import UAPIError
from .faults import FaultHandler, FaultParam
from .features import CacheCell, Capabilities, Feature, Negotiated, negotiate
from .pasid import PasidSpace
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

__all__ = ["UAPIOperations"]

_U64 = 1 << 64
_ACCESS_BITS = int(FaultPerm.READ | FaultPerm.WRITE | FaultPerm.EXEC | FaultPerm.PRIV)


class UAPIOperations:
    """The kernel-named UAPI entry points (mixed into :class:`~iommu_uapi.iommu.IOMMU`)."""

    backend_name: str
    discipline: SizeDiscipline
    capabilities: Capabilities
    negotiated: Negotiated | None
    pasids: PasidSpace
    fault_log: deque[tuple[Device, Fault]]
    _bindings: dict[tuple[int, int], Domain]
    _fault_params: dict[int, FaultParam]

    if TYPE_CHECKING:
        def _call(self, hook: str, **kwargs: Any) -> Any: ...
        def _gate(self, hook: str) -> None: ...
        def _check_dev(self, dev: Device) -> Device: ...
        def _check_domain(self, domain: Domain) -> Domain: ...
        def _profile(self, profile: str | None) -> str: ...
        def invalidate_contexts(self, sid: int | None = None, pasid: int | None = None,
                                *, all_pasids: bool = True) -> None: ...

    # -- the UAPI: guest PASID bind ------------------------------------------------------------

    def uapi_sva_bind_gpasid(self, domain: Domain, dev: Device, ubuf: bytes, *,
                             profile: str | None = None,
                             discipline: SizeDiscipline | None = None) -> None:
        """``iommu_uapi_sva_bind_gpasid``: bind from user bytes (``iommu_gpasid_bind_data``)."""
        self._gate("iommu_sva_bind_gpasid")
        profile = self._profile(profile)
        data = GpasidBindData.from_user(ubuf, profile=profile,
                                        discipline=discipline or self.discipline)
        self._bind(domain, dev, data, profile)

    def sva_bind_gpasid(self, domain: Domain, dev: Device, data: GpasidBindData, *,
                        profile: str | None = None) -> None:
        """In-kernel bind with a typed record (the same checks as the user path)."""
        self._gate("iommu_sva_bind_gpasid")
        profile = self._profile(profile)
        checks.check_bind(data, profile)
        self._bind(domain, dev, data, profile)

    def _bind(self, domain: Domain, dev: Device, data: GpasidBindData, profile: str) -> None:
        self._check_domain(domain)
        self._check_dev(dev)
        self._call("iommu_sva_bind_gpasid", domain=domain, dev=dev, data=data,
                   argsz=data.argsz, profile=profile)
        self._bindings[(dev.sid, data.hpasid)] = domain
        self.invalidate_contexts(dev.sid)

    def uapi_sva_unbind_gpasid(self, domain: Domain, dev: Device, ubuf: bytes, *,
                               profile: str | None = None,
                               discipline: SizeDiscipline | None = None) -> None:
        """``iommu_uapi_sva_unbind_gpasid``: as 5.10, checks that *bind* exists, runs the full
        bind validation on the bytes, then unbinds ``hpasid`` truncated to 32 bits."""
        self._gate("iommu_sva_bind_gpasid")
        profile = self._profile(profile)
        data = GpasidBindData.from_user(ubuf, profile=profile,
                                        discipline=discipline or self.discipline,
                                        operation="unbind")
        self.sva_unbind_gpasid(domain, dev, data.hpasid & 0xFFFF_FFFF)

    def sva_unbind_gpasid(self, domain: Domain, dev: Device, pasid: int) -> None:
        """``iommu_sva_unbind_gpasid``: unbind host PASID ``pasid`` of ``dev``; its pending page
        requests are drained. Succeeds when nothing was bound."""
        self._gate("iommu_sva_unbind_gpasid")
        self._check_domain(domain)
        self._check_dev(dev)
        if not isinstance(pasid, int) or not 0 <= pasid < _U64:
            raise UAPIError(errno.EINVAL, f"sva_unbind_gpasid: pasid {pasid!r} is not an ioasid",
                            rule="unbind.ioasid")
        self._call("iommu_sva_unbind_gpasid", domain=domain, dev=dev, pasid=pasid)
        if self._bindings.pop((dev.sid, pasid), None) is not None:
            self._fault_params[dev.sid].drain(pasid)
        self.invalidate_contexts(dev.sid)

    # -- the UAPI: cache invalidation ----------------------------------------------------------

    def uapi_cache_invalidate(self, domain: Domain, dev: Device, ubuf: bytes, *,
                              profile: str | None = None,
                              discipline: SizeDiscipline | None = None) -> None:
        """``iommu_uapi_cache_invalidate`` from user bytes (``iommu_cache_invalidate_info``)."""
        self._gate("iommu_cache_invalidate")
        profile = self._profile(profile)
        info = CacheInvalidateInfo.from_user(ubuf, profile=profile,
                                             discipline=discipline or self.discipline)
        self._invalidate(domain, dev, info, profile)

    def cache_invalidate(self, domain: Domain, dev: Device, info: CacheInvalidateInfo, *,
                         profile: str | None = None) -> None:
        """In-kernel cache invalidation with a typed record (the same checks)."""
        self._gate("iommu_cache_invalidate")
        profile = self._profile(profile)
        checks.check_cache_invalidate(info, profile)
        self._invalidate(domain, dev, info, profile)

    def _invalidate(self, domain: Domain, dev: Device, info: CacheInvalidateInfo,
                    profile: str) -> None:
        self._check_domain(domain)
        self._check_dev(dev)
        self._call("iommu_cache_invalidate", domain=domain, dev=dev, info=info, profile=profile)

    # -- the UAPI: PASID table (SMMU style) ----------------------------------------------------

    def uapi_attach_pasid_table(self, domain: Domain, ubuf: bytes, *,
                                profile: str | None = None,
                                discipline: SizeDiscipline | None = None) -> None:
        """``iommu_uapi_attach_pasid_table`` from user bytes (``iommu_pasid_table_config``)."""
        self._gate("iommu_attach_pasid_table")
        profile = self._profile(profile)
        cfg = PasidTableConfig.from_user(ubuf, profile=profile,
                                         discipline=discipline or self.discipline)
        self._attach_table(domain, cfg, profile)

    def attach_pasid_table(self, domain: Domain, cfg: PasidTableConfig, *,
                           profile: str | None = None) -> None:
        """In-kernel PASID-table attach with a typed record (the same checks)."""
        self._gate("iommu_attach_pasid_table")
        profile = self._profile(profile)
        checks.check_attach_pasid_table(cfg, profile)
        self._attach_table(domain, cfg, profile)

    def _attach_table(self, domain: Domain, cfg: PasidTableConfig, profile: str) -> None:
        self._check_domain(domain)
        self._call("iommu_attach_pasid_table", domain=domain, cfg=cfg, profile=profile)
        self.invalidate_contexts()

    def detach_pasid_table(self, domain: Domain) -> None:
        """Remove the guest PASID table of ``domain``."""
        self._gate("iommu_detach_pasid_table")
        self._check_domain(domain)
        self._call("iommu_detach_pasid_table", domain=domain)
        self.invalidate_contexts()

    # -- nesting info and negotiation ----------------------------------------------------------

    def nesting_info(self, domain: Domain, ubuf: bytearray | None = None) -> NestingInfo | None:
        """``DOMAIN_ATTR_NESTING``: the domain's ``iommu_nesting_info``.

        With ``ubuf`` (a user buffer whose first u32 is argsz): an argsz below the record's size
        is a size probe, answered by writing the size into argsz and returning None; otherwise
        the record is written into ``ubuf`` and returned.
        """
        self._check_domain(domain)
        if ubuf is not None and not nesting_info_probe(ubuf):
            return None
        info: NestingInfo = self._call("iommu_nesting_info", domain=domain)
        if ubuf is not None:
            ubuf[: info.SIZE] = info.to_bytes()
        return info

    def negotiate(self, require: Feature | int = 0,
                  cache_ops: Iterable[tuple[int, int] | CacheCell] = (), **kwargs: Any
                  ) -> Negotiated:
        """Check upfront (see :func:`iommu_uapi.features.negotiate`) and remember the result."""
        self.negotiated = negotiate(self, require, cache_ops, **kwargs)
        return self.negotiated

    # -- faults and page requests --------------------------------------------------------------

    def register_fault_handler(self, dev: Device, handler: FaultHandler) -> None:
        """Install ``dev``'s fault consumer (``EBUSY`` if it has one)."""
        self._fault_params[self._check_dev(dev).sid].register(handler)

    def unregister_fault_handler(self, dev: Device) -> None:
        """Remove ``dev``'s fault consumer (``EBUSY`` while page requests are pending)."""
        self._fault_params[self._check_dev(dev).sid].unregister()

    def pending_page_requests(self, dev: Device) -> list[Fault]:
        """The page requests of ``dev`` waiting for a response."""
        return list(self._fault_params[self._check_dev(dev).sid].pending)

    def _report(self, dev: Device, fault: Fault) -> None:
        self.fault_log.append((dev, fault))
        self._fault_params[dev.sid].report(fault)

    def page_request(self, dev: Device, iova: int, *, pasid: int | None = None,
                     access: int = FaultPerm.READ, grpid: int = 0, last: bool = True,
                     private_data: tuple[int, int] | None = None) -> Fault:
        """A device with PRI asks for ``iova`` to be made present; returns the generic fault
        reported to the consumer (pending until answered when ``last``)."""
        self._gate("iommu_page_request")
        self._check_dev(dev)
        if not isinstance(iova, int) or not 0 <= iova < _U64 or access & ~_ACCESS_BITS:
            raise UAPIError(errno.EINVAL, f"page_request: bad address {iova!r} or access "
                            f"{access!r}", rule="page_request.input")
        fault: Fault = self._call("iommu_page_request", dev=dev, pasid=pasid, addr=iova,
                                  access=access, grpid=grpid, last=last,
                                  private_data=private_data)
        self._report(dev, fault)
        return fault

    def uapi_page_response(self, dev: Device, ubuf: bytes, *, profile: str | None = None,
                           discipline: SizeDiscipline | None = None) -> None:
        """A page response from user bytes (``iommu_page_response``)."""
        self._gate("iommu_page_response")
        profile = self._profile(profile)
        msg = PageResponse.from_user(ubuf, profile=profile,
                                     discipline=discipline or self.discipline)
        self._respond(dev, msg, profile, checked=True)

    def page_response(self, dev: Device, msg: PageResponse, *,
                      profile: str | None = None) -> None:
        """``iommu_page_response``: answer a pending page request (reference §c.6 order)."""
        self._respond(dev, msg, self._profile(profile), checked=False)

    def _respond(self, dev: Device, msg: PageResponse, profile: str, checked: bool) -> None:
        self._check_dev(dev)
        if dev.domain is None:
            raise UAPIError(errno.ENODEV, f"page_response: {dev!r} has no domain",
                            rule="page_response.no_domain")
        self._gate("iommu_page_response")
        param = self._fault_params[dev.sid]
        if param.handler is None:
            raise UAPIError(errno.EINVAL, "page_response: no fault consumer is registered",
                            rule="page_response.no_handler")
        if not checked:
            checks.check_page_response(msg, profile)
        fault, msg = param.match(msg)
        try:
            self._call("iommu_page_response", dev=dev, fault=fault, msg=msg, profile=profile)
        except UAPIError:
            if profiles.get(profile).quirk("page_response.drop_on_driver_error"):
                param.complete(fault)
            raise
        param.complete(fault)

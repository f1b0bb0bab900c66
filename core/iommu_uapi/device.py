"""Devices and domains as the façade hands them to users and backends."""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import UAPIError

if TYPE_CHECKING:
    from .caches.iotlb import Fields
    from .datapath import Route
    from .tlb import TLB

__all__ = ["Device", "Domain", "known_device", "known_domain"]


class Device:
    """A DMA requester behind an IOMMU, identified by its PCI requester ID (``sid``).

    ``ats`` says the device has an address translation cache (a device TLB, :attr:`atc`);
    ``pri`` that it can issue page requests; ``max_pasids`` is its PASID capability (the Intel
    driver refuses a guest bind unless it is 2**20). ``data`` is the backend's per-device state.
    """

    #: the cache whose hits the hit path's buckets count: set when the device is added to an
    #: IOMMU (the IOTLB), changed by the data path (see ``_rid``)
    _hits: TLB

    __slots__ = ("_hits", "_owner", "_paths", "_rid", "_routes", "atc", "ats", "data", "domain",
                 "max_pasids", "name", "pci", "pri", "sid")

    def __init__(self, sid: int, *, name: str | None = None, pci: bool = True, ats: bool = False,
                 pri: bool = False, max_pasids: int = 1 << 20) -> None:
        self.sid = sid
        self.name = name or f"{sid >> 8:02x}:{sid >> 3 & 0x1F:02x}.{sid & 7}"
        self.pci = pci
        self.ats = ats
        self.pri = pri
        self.max_pasids = max_pasids
        self.domain: Domain | None = None
        self.atc: TLB | None = None
        self.data: Any = None
        # the data path's view of the caches for this device, kept by the IOMMU it was added to
        # (``_owner``): the bucket of requests without PASID, and the buckets by PASID, of the
        # one cache whose hits they count (``_hits``: the IOTLB, or the device TLB that answers
        # first); and its translation contexts by PASID, each with what a miss reads beside it
        self._owner: object = None
        self._rid: dict[int, Fields] = {}
        self._paths: dict[int, dict[int, Fields]] = {}
        self._routes: dict[int | None, Route] = {}

    @property
    def bus(self) -> int:
        """PCI bus number (requester ID bits 15:8)."""
        return self.sid >> 8

    @property
    def devfn(self) -> int:
        """PCI device/function (requester ID bits 7:0)."""
        return self.sid & 0xFF

    def __repr__(self) -> str:
        return f"Device({self.name}, sid={self.sid:#06x})"


class Domain:
    """A host (unmanaged) domain: a stage-2 address space that devices attach to.

    ``nesting`` is the ``DOMAIN_ATTR_NESTING`` attribute; ``devices`` the attached devices;
    ``data`` the backend's state (domain ID, tables).

    ``map_one``/``unmap_one`` are the backend's one-page paths of this domain (None: its
    ``iommu_map``/``iommu_unmap`` hooks serve): a backend may set them when it allocates the
    domain, as ``map_one(iova, paddr, size, prot)`` and ``unmap_one(iova, size) -> bytes
    unmapped``, each doing exactly what the hook does for one naturally aligned page of a
    declared size (the flush of an unmap included). The façade calls them for such a page,
    after its checks, while nothing else sees hook calls.
    """

    __slots__ = ("data", "devices", "id", "map_one", "nesting", "unmap_one")

    def __init__(self, domain_id: int) -> None:
        self.id = domain_id
        self.nesting = False
        self.devices: list[Device] = []
        self.data: Any = None
        self.map_one: Callable[[int, int, int, int], None] | None = None
        self.unmap_one: Callable[[int, int], int] | None = None

    def __repr__(self) -> str:
        return f"Domain({self.id}, nesting={self.nesting}, devices={len(self.devices)})"


def known_device(devices: Mapping[int, Device], dev: Device) -> Device:
    """``dev`` if it is the device registered under its requester ID in ``devices``, else
    ``ENODEV`` (rule ``device.unknown``)."""
    if not isinstance(dev, Device) or devices.get(dev.sid) is not dev:
        raise UAPIError(errno.ENODEV, f"{dev!r} is not a device of this IOMMU",
                        rule="device.unknown")
    return dev


def known_domain(domains: Mapping[int, Domain], domain: Domain) -> Domain:
    """``domain`` if it is the domain registered under its id in ``domains``, else ``EINVAL``
    (rule ``domain.unknown``)."""
    if not isinstance(domain, Domain) or domains.get(domain.id) is not domain:
        raise UAPIError(errno.EINVAL, f"{domain!r} is not a domain of this IOMMU",
                        rule="domain.unknown")
    return domain

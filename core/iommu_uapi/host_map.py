"""The façade's stage-2 (host) mapping calls: ``map``/``unmap`` of ranges, ``map_pages``/
``unmap_pages`` and ``iova_to_phys``, with their checks (a base of
:class:`~iommu_uapi.iommu.IOMMU`).

A range is cut into the largest declared page sizes that fit, as the kernel's ``iommu_map``
cuts it, and handed to the backend's ``iommu_map_pages``; a backend without it gets the whole
range through ``iommu_map`` and applies its own rules. Every call holds the instance's lock.

The hottest control calls are a one-page ``map`` and ``unmap`` (a NIC's ring maps a buffer, lets
the device read it and unmaps it): when the arguments are plain ints naming one naturally
aligned page of a declared size in a domain of this IOMMU, one expression checks all of it and
the backend's ``iommu_map``/``iommu_unmap`` is called directly (while nothing else sees hook
calls, :attr:`~iommu_uapi.dispatch.Dispatch.direct_map`), or the domain's own one-page path
when the backend gave it one (:attr:`~iommu_uapi.device.Domain.map_one`,
:attr:`~iommu_uapi.device.Domain.unmap_one`). Anything else takes the full checks, which refuse
with the same errnos and rule ids.
"""

from __future__ import annotations

import errno
import threading

from .device import Domain, known_domain
from .dispatch import Dispatch
from .errors import UAPIError
from .pgtable.tree import page_chunks
from .serialised import serialised

__all__ = ["HostMappings"]

_U64 = 1 << 64


def _not_u64(**values: object) -> str | None:
    """The first of ``values`` that is not a u64, named with its value (None: all are)."""
    for name, value in values.items():
        if not isinstance(value, int) or not 0 <= value < _U64:
            return f"{name} {value!r}"
    return None


class HostMappings:
    """The stage-2 mapping calls of the façade (a base of :class:`~iommu_uapi.iommu.IOMMU`,
    which provides what is declared here)."""

    #: the instance's lock (:class:`~iommu_uapi.datapath.DataPath`'s)
    lock: threading.RLock
    domains: dict[int, Domain]
    dispatch: Dispatch
    #: the declared page sizes (smallest first), as a set, and the smallest's low bits
    _page_sizes: tuple[int, ...]
    _page_set: frozenset[int]
    _align_mask: int

    def _domain(self, domain: Domain) -> Domain:
        return known_domain(self.domains, domain)

    def map(self, domain: Domain, iova: int, paddr: int, size: int, prot: int) -> None:
        """Map ``[iova, iova + size)`` to ``paddr`` in the domain's stage-2 (host) tables: any
        size aligned to the smallest declared page size, cut into the largest page sizes that
        fit, as the kernel's ``iommu_map`` cuts it; all or nothing. A backend with
        ``iommu_map_pages`` is given the pages (the façade checks the alignment, ``map.align``);
        one without it gets the whole range through ``iommu_map`` and applies its own rules."""
        lock = self.lock  # serialised (inline: the hottest control calls)
        lock.acquire()
        try:
            if (iova.__class__ is int is paddr.__class__ is size.__class__ is prot.__class__
                    and size in self._page_set and not (iova | paddr | prot) >> 64
                    and not (iova | paddr) & (size - 1) and domain.__class__ is Domain
                    and self.domains.get(domain.id) is domain):
                # one page of a declared size, every check passed (a negative value fails the
                # shift): the backend's iommu_map maps that one leaf, called directly when only
                # the backend sees the hook
                direct = self.dispatch.direct_map
                if direct is not None:
                    one = domain.map_one  # the backend's one-page path of the domain
                    if one is None:
                        direct(domain, iova, paddr, size, prot)
                    else:
                        one(iova, paddr, size, prot)
                    return
            self._map(domain, iova, paddr, size, prot)
        finally:
            lock.release()

    def _map(self, domain: Domain, iova: int, paddr: int, size: int, prot: int) -> None:
        self._domain(domain)
        if not (iova.__class__ is int is paddr.__class__ is size.__class__
                is prot.__class__ and 0 <= iova < _U64 and 0 <= paddr < _U64
                and 0 <= size < _U64 and 0 <= prot < _U64) and (
                    bad := _not_u64(iova=iova, paddr=paddr, size=size, prot=prot)):
            raise UAPIError(errno.EINVAL, f"map: {bad} is not a u64", rule="map.u64")
        ops, call = self.dispatch.ops, self.dispatch.call
        if "iommu_map_pages" not in ops:  # the backend's own rules, its own cut
            call("iommu_map", domain=domain, iova=iova, paddr=paddr, size=size, prot=prot)
            return
        if not size or (iova | paddr | size) & self._align_mask:
            raise UAPIError(errno.EINVAL, f"map: iova {iova:#x}, paddr {paddr:#x}, size "
                            f"{size:#x} must be aligned to the smallest page size, and "
                            "size non-zero", rule="map.align")
        if "iommu_map" in ops and size in self._page_set and not (iova | paddr) & (size - 1):
            # one page: the backend's iommu_map maps that one leaf (its builder's single-page
            # path)
            call("iommu_map", domain=domain, iova=iova, paddr=paddr, size=size, prot=prot)
            return
        done: list[tuple[int, int, int]] = []
        try:
            for va, pa, pgsize, count in page_chunks(iova, paddr, size, self._page_sizes):
                call("iommu_map_pages", domain=domain, iova=va, paddr=pa, pgsize=pgsize,
                     pgcount=count, prot=prot)
                done.append((va, pgsize, count))
        except BaseException:
            for va, pgsize, count in reversed(done):
                self._unmap_pages(domain, va, pgsize, count)
            raise

    @serialised
    def map_pages(self, domain: Domain, iova: int, paddr: int, pgsize: int, pgcount: int,
                  prot: int) -> int:
        """Map ``pgcount`` pages of ``pgsize`` (a declared page size) from ``iova`` to ``paddr``
        onwards (io-pgtable's ``map_pages``); all or nothing. Returns the bytes mapped."""
        self._domain(domain)
        if (bad := _not_u64(iova=iova, paddr=paddr, pgcount=pgcount, prot=prot)) is not None:
            raise UAPIError(errno.EINVAL, f"map_pages: {bad} is not a u64", rule="map.u64")
        if not self._pages(iova | paddr, pgsize, pgcount):
            raise UAPIError(errno.EINVAL, f"map_pages: {pgcount!r} page(s) of {pgsize!r}: the size "
                            "must be a declared page size the addresses are aligned to, the "
                            "count non-zero", rule="map.pages")
        if "iommu_map_pages" not in self.dispatch.ops:
            self.dispatch.call("iommu_map", domain=domain, iova=iova, paddr=paddr,
                               size=pgsize * pgcount, prot=prot)
            return pgsize * pgcount
        return int(self.dispatch.call("iommu_map_pages", domain=domain, iova=iova, paddr=paddr,
                                      pgsize=pgsize, pgcount=pgcount, prot=prot))

    def unmap(self, domain: Domain, iova: int, size: int) -> int:
        """Unmap ``[iova, iova + size)`` (any size aligned to the smallest declared page size);
        returns the bytes unmapped, which stop at the first page not mapped. The backend flushes
        what it unmapped with one range invalidation. The façade checks the alignment
        (``unmap.align``) for a backend with ``iommu_unmap_pages``; others apply their own."""
        lock = self.lock  # serialised (inline: the hottest control calls)
        lock.acquire()
        try:
            if (iova.__class__ is int is size.__class__ and size in self._page_set
                    and not iova >> 64 and not iova & (size - 1) and domain.__class__ is Domain
                    and self.domains.get(domain.id) is domain):
                # one page of a declared size, every check passed
                direct = self.dispatch.direct_unmap
                if direct is not None:
                    one = domain.unmap_one  # the backend's one-page path of the domain
                    if one is not None:
                        return one(iova, size)
                    return int(direct(domain, iova, size))
            return self._unmap(domain, iova, size)
        finally:
            lock.release()

    def _unmap(self, domain: Domain, iova: int, size: int) -> int:
        self._domain(domain)
        if not (iova.__class__ is int is size.__class__ and 0 <= iova < _U64
                and 0 <= size < _U64) and (bad := _not_u64(iova=iova, size=size)):
            raise UAPIError(errno.EINVAL, f"unmap: {bad} is not a u64", rule="unmap.u64")
        if "iommu_unmap_pages" in self.dispatch.ops and (
                not size or (iova | size) & self._align_mask):
            raise UAPIError(errno.EINVAL, f"unmap: iova {iova:#x}, size {size:#x} must be "
                            "aligned to the smallest page size, and size non-zero",
                            rule="unmap.align")
        return int(self.dispatch.call("iommu_unmap", domain=domain, iova=iova, size=size))

    @serialised
    def unmap_pages(self, domain: Domain, iova: int, pgsize: int, pgcount: int) -> int:
        """Unmap ``pgcount`` pages of ``pgsize`` from ``iova`` (io-pgtable's ``unmap_pages``),
        flushed with one range invalidation; returns the bytes unmapped."""
        self._domain(domain)
        if (bad := _not_u64(iova=iova, pgcount=pgcount)) is not None:
            raise UAPIError(errno.EINVAL, f"unmap_pages: {bad} is not a u64", rule="unmap.u64")
        if not self._pages(iova, pgsize, pgcount):
            raise UAPIError(errno.EINVAL, f"unmap_pages: {pgcount!r} page(s) of {pgsize!r}: the "
                            "size must be a declared page size iova is aligned to, the count "
                            "non-zero", rule="unmap.pages")
        return self._unmap_pages(domain, iova, pgsize, pgcount)

    def _unmap_pages(self, domain: Domain, iova: int, pgsize: int, pgcount: int) -> int:
        if "iommu_unmap_pages" not in self.dispatch.ops:
            return int(self.dispatch.call("iommu_unmap", domain=domain, iova=iova,
                                          size=pgsize * pgcount))
        return int(self.dispatch.call("iommu_unmap_pages", domain=domain, iova=iova,
                                      pgsize=pgsize, pgcount=pgcount))

    def _pages(self, bits: int, pgsize: int, pgcount: int) -> bool:
        return (pgsize in self._page_set and bool(pgcount) and not bits & (pgsize - 1)
                and pgsize * pgcount < _U64)

    @serialised
    def iova_to_phys(self, domain: Domain, iova: int) -> int:
        """What ``iova`` maps to in the domain's stage-2 tables (0 when unmapped)."""
        self._domain(domain)
        if not isinstance(iova, int) or not 0 <= iova < _U64:
            raise UAPIError(errno.EINVAL, f"iova_to_phys: iova {iova!r} is not a u64",
                            rule="iova_to_phys.u64")
        return int(self.dispatch.call("iommu_iova_to_phys", domain=domain, iova=iova))

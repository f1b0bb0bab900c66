"""Feature reporting and negotiation: refuse at setup what could not be done at run time.

Some calls (free PASID, unbind guest PASID, unbind PASID table, cache invalidate) cannot report a
host failure to the guest on every architecture: a VT-d guest's invalidation descriptor has no
status, so a host that silently drops it leaves stale translations. A VMM therefore asks
:func:`negotiate` before the guest starts, and refuses to start when the backend lacks a feature or
a cache-type x granularity cell it needs. After a successful negotiation those calls must not fail
on valid input; every call can still fail on bad input, with an errno, changing nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntFlag, StrEnum
from typing import Protocol

import msgspec

from .errors import FeatureError
from .uapi.consts import CacheType, InvGranularity

_GRANULARITIES = frozenset(g.value for g in InvGranularity)
_ALL_CACHES = sum(CacheType)

__all__ = [
    "UNREPORTABLE_OPERATIONS",
    "CacheCell",
    "Capabilities",
    "FailureReport",
    "Feature",
    "HasCapabilities",
    "Negotiated",
    "negotiate",
]


class Feature(IntFlag):
    """The five features iommu.rst says vendor drivers report.

    SYSWIDE_PASID, BIND_PGTBL and CACHE_INVLD carry the values posted with the VFIO nesting series
    (Yi Liu v7, Sep 2020). BIND_PASID_TABLE and PAGE_REQUEST were named in iommu.rst but never
    given values upstream; 1<<3 and 1<<4 are this project's.
    """

    SYSWIDE_PASID = 1 << 0
    BIND_PGTBL = 1 << 1
    CACHE_INVLD = 1 << 2
    BIND_PASID_TABLE = 1 << 3
    PAGE_REQUEST = 1 << 4


class FailureReport(StrEnum):
    """How a host-side failure of an operation reaches the guest."""

    #: The guest's request carries a status the host can set (virtio-iommu's request status).
    STATUS = "status"
    #: Only as an asynchronous error interrupt or event (SMMUv3 CERROR, VT-d IQE on malformed).
    ERROR_INTERRUPT = "error-interrupt"
    #: Not at all: the guest believes the operation succeeded.
    NONE = "none"


#: The operations iommu.rst's seed discussion named as unable to fail without catastrophe.
UNREPORTABLE_OPERATIONS = ("free_pasid", "sva_unbind_gpasid", "detach_pasid_table",
                           "cache_invalidate")


class CacheCell(msgspec.Struct, frozen=True, gc=False):
    """One cell of the cache-type x granularity table (``IOMMU_CACHE_INV_TYPE_*`` bit, granu)."""

    cache: CacheType
    granularity: InvGranularity

    def __str__(self) -> str:
        return f"{self.cache.name}x{self.granularity.name}"


class Capabilities(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """What a backend instance can do, declared once and checked by :func:`negotiate`.

    ``formats`` are the PASID formats accepted by bind / PASID-table attach
    (``IOMMU_PASID_FORMAT_*``); ``pasid_bits`` the PASID width; ``input_address_widths`` the
    stage-1 (guest) address widths a bind may ask for; ``output_address_width`` the host address
    width; ``page_sizes`` a bitmap of the stage-2 page and block sizes; ``cache_cells`` the
    invalidations the backend executes (anything else it would drop or refuse);
    ``failure_reporting`` how a failure of each operation reaches the guest; ``profiles`` the
    validation profiles the backend supports.
    """

    features: Feature
    formats: tuple[int, ...] = ()
    pasid_bits: int = 0
    input_address_widths: tuple[int, ...] = ()
    output_address_width: int = 48
    page_sizes: int = 0x1000
    cache_cells: frozenset[CacheCell] = frozenset()
    failure_reporting: dict[str, FailureReport] = msgspec.field(default_factory=dict)
    profiles: tuple[str, ...] = ("linux-5.10", "strict")

    def supports(self, cache: int, granularity: int) -> bool:
        """Whether every cache bit set in ``cache`` is executed at ``granularity``."""
        if granularity not in _GRANULARITIES or not cache or cache & ~_ALL_CACHES:
            return False
        granu = InvGranularity(granularity)
        return all(CacheCell(b, granu) in self.cache_cells for b in CacheType if cache & b)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready description (feature and cell names spelled out)."""
        return {
            "features": [f.name for f in Feature if self.features & f],
            "formats": list(self.formats),
            "pasid_bits": self.pasid_bits,
            "input_address_widths": list(self.input_address_widths),
            "output_address_width": self.output_address_width,
            "page_sizes": [1 << b for b in range(64) if self.page_sizes >> b & 1],
            "cache_cells": sorted(str(c) for c in self.cache_cells),
            "failure_reporting": {k: str(v) for k, v in sorted(self.failure_reporting.items())},
            "profiles": list(self.profiles),
        }


class Negotiated(msgspec.Struct, frozen=True, gc=False):
    """The outcome of a successful negotiation: what the user may now rely on."""

    features: Feature
    cache_cells: frozenset[CacheCell]
    capabilities: Capabilities


class HasCapabilities(Protocol):
    """Anything that declares :class:`Capabilities` (an ``IOMMU`` instance)."""

    @property
    def capabilities(self) -> Capabilities: ...


def _cells(cache_ops: Iterable[tuple[int, int] | CacheCell]) -> list[CacheCell]:
    cells: list[CacheCell] = []
    for op in cache_ops:
        if isinstance(op, CacheCell):
            cells.append(op)
            continue
        cache, granu = op
        for bit in CacheType:
            if cache & bit:
                cells.append(CacheCell(bit, InvGranularity(granu)))
    return cells


def negotiate(
    target: HasCapabilities | Capabilities,
    require: Feature | int = 0,
    cache_ops: Iterable[tuple[int, int] | CacheCell] = (),
    *,
    pasid_bits: int | None = None,
    address_width: int | None = None,
    formats: Iterable[int] = (),
    report_failures: Iterable[str] = (),
) -> Negotiated:
    """Check upfront that ``target`` can do everything asked, or raise :class:`FeatureError`.

    ``require`` lists :class:`Feature` flags; ``cache_ops`` the (cache bitmask, granularity) pairs
    the guest will issue; ``pasid_bits``/``address_width``/``formats`` what the guest's vIOMMU will
    advertise; ``report_failures`` the operations whose host-side failures the VMM must report
    to the guest (each must be declared :attr:`FailureReport.STATUS`, e.g.
    :data:`UNREPORTABLE_OPERATIONS`). The error lists *every* missing item, so a VMM prints one
    reason and exits.
    """
    caps = target if isinstance(target, Capabilities) else target.capabilities
    missing: list[str] = [f"feature {f.name}" for f in Feature if require & f and
                          not caps.features & f]
    cells = _cells(cache_ops)
    missing += [f"cache cell {c}" for c in cells if c not in caps.cache_cells]
    if cells and not caps.features & Feature.CACHE_INVLD and not require & Feature.CACHE_INVLD:
        missing.append("feature CACHE_INVLD")
    if pasid_bits is not None and pasid_bits > caps.pasid_bits:
        missing.append(f"pasid_bits {pasid_bits} (backend has {caps.pasid_bits})")
    if address_width is not None and address_width not in caps.input_address_widths:
        missing.append(f"address width {address_width} (backend has "
                       f"{list(caps.input_address_widths)})")
    missing += [f"format {f}" for f in formats if f not in caps.formats]
    missing += [f"failure reporting of {op} (backend: {caps.failure_reporting.get(op, 'none')})"
                for op in report_failures
                if caps.failure_reporting.get(op) is not FailureReport.STATUS]
    if missing:
        raise FeatureError(dict.fromkeys(missing))
    return Negotiated(Feature(require), frozenset(cells), caps)

"""The IOMMU a replay runs on: a backend with the chosen cache geometries, and the features a
trace needs from it (checked before the first event, so a replay that could not finish never
starts)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..caches import CacheCounters, Geometry, WalkCache
from ..features import Feature
from ..iommu import IOMMU
from ..tlb import TLB
from .errors import trace_error
from .events import (
    AttachTable,
    Bind,
    DetachTable,
    Event,
    Invalidate,
    PageRequest,
    PageResponse,
    Unbind,
)
from .geometry import trace_preset

__all__ = ["REQUIRES", "backend_caches", "cache_name", "check_capabilities", "header_needs",
           "make_iommu", "required_features", "set_walk_geometry"]

#: The feature each event kind needs from a backend (the others need only the façade).
REQUIRES: dict[type, Feature] = {
    Bind: Feature.BIND_PGTBL,
    Unbind: Feature.BIND_PGTBL,
    AttachTable: Feature.BIND_PASID_TABLE,
    DetachTable: Feature.BIND_PASID_TABLE,
    Invalidate: Feature.CACHE_INVLD,
    PageRequest: Feature.PAGE_REQUEST,
    PageResponse: Feature.PAGE_REQUEST,
}
def required_features(events: Iterable[Event]) -> Feature:
    """The features ``events`` need (a pass over them)."""
    need = Feature(0)
    requires = REQUIRES
    for event in events:
        feature = requires.get(type(event))
        if feature is not None:
            need |= feature
    return need


def backend_caches(backend: object) -> list[tuple[str, CacheCounters]]:
    """The caches a backend keeps as attributes, itself or in its ``caches`` attribute."""
    found: dict[str, CacheCounters] = {}
    for holder in (getattr(backend, "caches", None), backend):
        attrs = getattr(holder, "__dict__", None)
        for name, cache in sorted((attrs or {}).items()):
            if isinstance(cache, CacheCounters) and name not in found:
                found[name] = cache
    return list(found.items())


def set_walk_geometry(iommu: IOMMU, geometry: Geometry) -> int:
    """Give every walk cache the backend keeps (as an attribute, or in its ``caches``
    attribute) ``geometry`` (each level), emptied; returns how many there were. Call it before
    the first DMA: the caches keep their identity, so what the backend holds sees the new
    geometry."""
    found = 0
    for _, cache in backend_caches(iommu.backend):
        if isinstance(cache, WalkCache):
            WalkCache.__init__(cache, cache.granule, cache.stride, geometry)
            found += 1
    return found


def make_iommu(backend: str, *, cache: str | None = None, iotlb: Geometry | None = None,
               walk: Geometry | None = None, **config: Any) -> IOMMU:
    """An IOMMU on ``backend`` whose IOTLB has the geometry of preset ``cache`` (default
    ``unbounded``), or ``iotlb`` when given, and whose walk caches have ``walk`` (every
    level; default: as the backend builds them)."""
    geometry = iotlb if iotlb is not None else trace_preset(cache or "unbounded").iotlb
    iommu = IOMMU(backend, iotlb=TLB(geometry=geometry), **config)
    if walk is not None:
        set_walk_geometry(iommu, walk)
    return iommu


def check_capabilities(iommu: IOMMU, need: Feature, origin: str) -> None:
    """Refuse upfront (``trace.capability``) when ``iommu``'s backend lacks a needed feature."""
    missing = need & ~Feature(int(iommu.capabilities.features))
    if missing:
        names = ", ".join(f.name or str(int(f)) for f in Feature if f & missing)
        raise trace_error("trace.capability", None, f"backend {iommu.backend_name!r} cannot "
                          f"replay {origin}: it lacks {names}")


def header_needs(requires: list[str] | None) -> Feature | None:
    """The features a header's ``requires`` names (None: the header does not say)."""
    if requires is None:
        return None
    need = Feature(0)
    for name in requires:
        if name not in Feature.__members__:
            raise trace_error("trace.corrupt", None, f"header requires unknown feature {name!r}")
        need |= Feature[name]
    return need


def cache_name(cache: str | None, iotlb: Geometry | None, walk: Geometry | None) -> str:
    """How a summary names a cache configuration: the preset, or the geometries given."""
    name = cache or "unbounded"
    if iotlb is not None:
        name = f"iotlb={iotlb.entries},{iotlb.ways or 0},{iotlb.policy}"
    if walk is not None:
        name += f" walk={walk.entries},{walk.ways or 0},{walk.policy}"
    return name

"""Cache geometries a replay can use: the core's presets plus a VT-d-like IOTLB, and the
``SIZE,WAYS,POLICY`` spelling of one IOTLB geometry on the command line.

``vtd-iotlb`` is an IOTLB of 64 entries, fully associative, LRU: the capacity pcie-bench
(Neugebauer et al., SIGCOMM 2018) measured on Intel Xeon E5 servers from where DMA throughput
falls off with 4 KiB pages. Intel documents no IOTLB size; this is a measured behaviour, not a
specification. Every other cache of that preset is unbounded.
"""

from __future__ import annotations

from ..caches import PRESETS, UNBOUNDED, CachePreset, Geometry
from .errors import trace_error

__all__ = ["TRACE_PRESETS", "parse_geometry", "trace_preset"]

TRACE_PRESETS: dict[str, CachePreset] = {
    **PRESETS,
    "vtd-iotlb": PRESETS["unbounded"]._replace(name="vtd-iotlb",
                                               iotlb=Geometry(64, None, "lru")),
}


def trace_preset(name: str) -> CachePreset:
    """The preset ``name`` (``EINVAL`` naming the known ones otherwise)."""
    try:
        return TRACE_PRESETS[name]
    except KeyError:
        known = ", ".join(TRACE_PRESETS)
        raise trace_error("trace.preset", None, f"no cache preset {name!r}; known: {known}"
                          ) from None


def parse_geometry(text: str) -> Geometry:
    """``"SIZE[,WAYS[,POLICY]]"`` (WAYS 0 or empty: fully associative; SIZE ``inf``: unbounded)
    as a checked :class:`Geometry`; ``ValueError`` saying what is wrong."""
    parts = [p.strip() for p in text.split(",")]
    if not 1 <= len(parts) <= 3 or not parts[0]:
        raise ValueError(f"IOTLB geometry {text!r} is not SIZE[,WAYS[,POLICY]]")
    if parts[0] in ("inf", "unbounded"):
        return UNBOUNDED
    try:
        entries = int(parts[0])
        ways = int(parts[1]) if len(parts) > 1 and parts[1] not in ("", "0") else None
    except ValueError:
        raise ValueError(f"IOTLB geometry {text!r}: SIZE and WAYS are integers") from None
    policy = parts[2] if len(parts) > 2 else "lru"
    if entries <= 0:
        raise ValueError(f"IOTLB geometry {text!r}: SIZE must be positive")
    return Geometry(entries, ways, policy).check()

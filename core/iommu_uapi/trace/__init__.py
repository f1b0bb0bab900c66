"""Trace-driven IOTLB research: record what a VMM or a workload does, replay it on any backend
and cache geometry, and read hit rates and walk costs.

* :mod:`.events`, :mod:`.format` - the trace: framed MessagePack events, streamed, gzip optional;
* :mod:`.recorder` - :class:`Recorder`, attached to an :class:`~iommu_uapi.iommu.IOMMU`;
* :mod:`.replay` - :func:`replay` returning :class:`ReplayStats` (:mod:`.stats`), on the IOMMU
  :mod:`.machine` makes (backend, cache geometries, the features a trace needs);
* :mod:`.workloads` - deterministic generators (NIC rings, streaming, random, cyclic, nested);
* :mod:`.sweep` - geometries x workloads x backends, in worker processes or on Dask;
* :mod:`.plot` - figures (the ``plot`` extra: matplotlib).

See ``docs/traces.md``.
"""

from __future__ import annotations

from .errors import TRACE_RULES, TRACE_TABLE
from .events import EVENT_TYPES, FORMAT_VERSION, Event, Header
from .format import TraceInfo, TraceReader, TraceWriter, encode_events, trace_info
from .geometry import TRACE_PRESETS, parse_geometry, trace_preset
from .recorder import Recorder
from .replay import Replayer, make_iommu, replay, required_features
from .stats import CacheStats, ContextStats, ReadStats, ReplayStats
from .workloads import WORKLOADS, workload

__all__ = [
    "EVENT_TYPES",
    "FORMAT_VERSION",
    "TRACE_PRESETS",
    "TRACE_RULES",
    "TRACE_TABLE",
    "WORKLOADS",
    "CacheStats",
    "ContextStats",
    "Event",
    "Header",
    "ReadStats",
    "Recorder",
    "ReplayStats",
    "Replayer",
    "TraceInfo",
    "TraceReader",
    "TraceWriter",
    "encode_events",
    "make_iommu",
    "parse_geometry",
    "replay",
    "required_features",
    "trace_info",
    "trace_preset",
    "workload",
]

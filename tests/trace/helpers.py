"""Shared helpers of the trace tests: the test backend registered as ``mini``, traces in
memory, and replays of generated workloads."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import minibackend

from iommu_uapi import plugins
from iommu_uapi.caches import Geometry
from iommu_uapi.trace import ReplayStats, TraceWriter, replay, workload


def register_mini() -> Iterator[None]:
    """Register the test backend as ``mini`` (and ``mini-table``) for the duration of a test."""
    plugins.register_plugin("mini", minibackend)
    plugins.register_plugin("mini-table", minibackend.table_plugin)
    try:
        yield
    finally:
        plugins.unregister_plugin("mini")
        plugins.unregister_plugin("mini-table")


def trace_bytes(kind: str, **params: Any) -> bytes:
    """The workload as a trace file's bytes."""
    header, events = workload(kind, **params)
    buf = io.BytesIO()
    with TraceWriter(buf, header) as writer:
        writer.extend(events)
    return buf.getvalue()


def run(kind: str, backend: str = "mini", iotlb: Geometry | None = None,
        **params: Any) -> ReplayStats:
    """Replay a generated workload."""
    return replay(io.BytesIO(trace_bytes(kind, **params)), backend, iotlb=iotlb)


def lru(n: int) -> Geometry:
    """An n-entry fully associative LRU IOTLB."""
    return Geometry(n, None, "lru")

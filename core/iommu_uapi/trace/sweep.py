"""Sweeps: cache geometries x workloads x backends, one replay per point, one row per point.

Points run in worker processes by default (:class:`concurrent.futures.ProcessPoolExecutor`),
or on a Dask cluster when given a scheduler address or a ``dask.distributed.Client`` (the
``trace`` extra). Every point is independent and deterministic, so both give the same rows, in
the order of the points.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from itertools import islice, product
from typing import Any

import msgspec

from ..caches import Geometry
from ..features import Feature
from .events import Event
from .format import CHUNK, TraceReader
from .machine import cache_name, check_capabilities, make_iommu, required_features
from .replay import Replayer
from .workloads import workload

__all__ = ["SweepPoint", "parse_workload", "points", "read_rows", "run_point", "sweep",
           "write_csv", "write_json"]


class SweepPoint(msgspec.Struct, frozen=True):
    """One replay: ``workload`` (``KIND[:key=value,...]`` or a trace file's path) on
    ``backend`` with IOTLB geometry ``iotlb`` (None: the preset ``cache``'s) and walk caches
    ``walk`` (None: as the backend builds them)."""

    backend: str
    workload: str
    cache: str = "unbounded"
    iotlb: Geometry | None = None
    walk: Geometry | None = None


def parse_workload(spec: str) -> tuple[str, dict[str, Any]]:
    """``"ring:mode=deferred,batch=8"`` -> ``("ring", {"mode": "deferred", "batch": 8})``
    (values that read as integers become integers)."""
    kind, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"workload parameter {item!r} in {spec!r} is not KEY=VALUE")
        try:
            params[key.strip()] = int(value, 0)
        except ValueError:
            params[key.strip()] = value.strip()
    return kind.strip(), params


def points(backends: Sequence[str], workloads: Sequence[str],
           iotlbs: Sequence[Geometry | None] = (None,),
           walks: Sequence[Geometry | None] = (None,), cache: str = "unbounded"
           ) -> list[SweepPoint]:
    """Every combination, backends outermost."""
    return [SweepPoint(b, w, cache, i, k)
            for b, w, i, k in product(backends, workloads, iotlbs, walks)]


def _chunks(events: Iterable[Event]) -> Iterator[list[Event]]:
    it = iter(events)
    while chunk := list(islice(it, CHUNK)):
        yield chunk


def run_point(point: SweepPoint) -> dict[str, Any]:
    """Replay one point and flatten its summary into a row."""
    iommu = make_iommu(point.backend, cache=point.cache, iotlb=point.iotlb, walk=point.walk)
    replayer = Replayer(iommu)
    if os.path.exists(point.workload):
        with TraceReader(point.workload) as scan:
            need = required_features(scan)
        check_capabilities(iommu, need, point.workload)
        with TraceReader(point.workload) as reader:
            replayer.run(reader.frames())
    else:
        kind, params = parse_workload(point.workload)
        header, events = workload(kind, **params)
        need = Feature(0)
        for name in header.requires or ():
            need |= Feature[name]
        check_capabilities(iommu, need, point.workload)
        replayer.run(_chunks(events))
    stats = replayer.stats(cache_name(point.cache, point.iotlb, point.walk))
    iotlb = stats.caches["iotlb"]
    geometry = point.iotlb if point.iotlb is not None else iommu.iotlb.geometry
    walk_entries = point.walk.entries if point.walk is not None else None
    row: dict[str, Any] = {
        "backend": point.backend, "workload": point.workload, "cache": stats.cache,
        "iotlb_entries": geometry.entries, "iotlb_ways": geometry.ways or 0,
        "iotlb_policy": geometry.policy, "walk_entries": walk_entries,
        "events": stats.events, "dmas": stats.dmas, "translations": stats.translations,
        "faults": stats.faults, "refused": sum(stats.refused.values()),
        "iotlb_hits": iotlb.hits, "iotlb_misses": iotlb.misses,
        "iotlb_hit_rate": round(iotlb.hit_rate, 6),
        "table_reads_mean": round(stats.table_reads.mean, 6),
        "table_reads_p50": stats.table_reads.p50, "table_reads_p90": stats.table_reads.p90,
        "table_reads_p99": stats.table_reads.p99, "table_reads_max": stats.table_reads.max,
        "config_reads_mean": round(stats.config_reads.mean, 6),
        "invalidations": sum(stats.invalidations.values()),
    }
    for name, cache in stats.caches.items():
        if name != "iotlb":
            row[f"{name}_hits"] = cache.hits
            row[f"{name}_misses"] = cache.misses
    return row


def sweep(todo: Sequence[SweepPoint], *, jobs: int | None = None,
          scheduler: Any = None) -> list[dict[str, Any]]:
    """Run every point and return their rows in order: on ``jobs`` worker processes (None: one
    per CPU; 1: in this process), or on Dask when ``scheduler`` is an address or a
    ``dask.distributed.Client``."""
    if scheduler is not None:
        from dask.distributed import Client

        client = scheduler if isinstance(scheduler, Client) else Client(scheduler)  # type: ignore[no-untyped-call]
        try:
            futures = client.map(run_point, list(todo), pure=False)
            return list(client.gather(futures))  # type: ignore[no-untyped-call]
        finally:
            if client is not scheduler:
                client.close()  # type: ignore[no-untyped-call]
    if jobs == 1 or len(todo) <= 1:
        return [run_point(p) for p in todo]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(run_point, todo))


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def write_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """One line per row, every column any row has (empty where a row has none)."""
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=_columns(rows), restval="")
        writer.writeheader()
        writer.writerows(rows)


def write_json(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """The rows as a JSON list."""
    with open(path, "w") as out:
        json.dump(list(rows), out, indent=1)
        out.write("\n")


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows back from a sweep's CSV or JSON file (numbers as numbers)."""
    text = os.fspath(path)
    if text.endswith(".json"):
        with open(text) as f:
            return list(json.load(f))
    with open(text, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return None if value == "" else value

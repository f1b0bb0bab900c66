"""Sweeps: one row per point, the same rows in this process, in worker processes and on a
local Dask cluster; rows written as CSV and JSON and drawn as figures."""

from __future__ import annotations

import json

import pytest

from iommu_uapi.caches import Geometry
from iommu_uapi.trace.sweep import parse_workload, points, read_rows, sweep, write_csv, write_json

POINTS = points(["mini"], ["cyclic:pages=16,dmas=200", "ring:mode=deferred,batch=16,ring=8,"
                           "buffer=4096,packets=256"],
                [Geometry(n, None, "lru") for n in (8, 16, 32)])


def test_parse_workload_reads_kind_and_integer_parameters() -> None:
    assert parse_workload("ring:mode=deferred,batch=0x10") == (
        "ring", {"mode": "deferred", "batch": 16})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_workload("ring:mode")


def test_a_sweep_has_one_row_per_point_in_order() -> None:
    rows = sweep(POINTS, jobs=1)
    assert [(r["workload"], r["iotlb_entries"]) for r in rows] == [
        (p.workload, p.iotlb.entries) for p in POINTS if p.iotlb is not None]
    cyclic = [r["iotlb_hits"] for r in rows if r["workload"].startswith("cyclic")]
    assert cyclic == [0, 184, 184]


def test_worker_processes_give_the_same_rows() -> None:
    assert sweep(POINTS, jobs=2) == sweep(POINTS, jobs=1)


def test_a_local_dask_cluster_gives_the_same_rows_as_the_process_pool() -> None:
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        on_dask = sweep(POINTS, scheduler=client)
        by_address = sweep(POINTS[:2], scheduler=cluster.scheduler_address)
    assert on_dask == sweep(POINTS, jobs=2)
    assert by_address == on_dask[:2]


def test_a_trace_file_is_a_workload_of_a_sweep(tmp_path: object) -> None:
    from .helpers import trace_bytes

    spec = "cyclic:pages=16,dmas=200"
    kind, params = parse_workload(spec)
    path = f"{tmp_path}/c.trace"
    with open(path, "wb") as f:
        f.write(trace_bytes(kind, **params))
    lru8 = Geometry(8, None, "lru")
    by_spec, by_file = sweep(points(["mini"], [spec, path], [lru8]), jobs=1)
    assert by_file["workload"] == path
    assert {k: v for k, v in by_file.items() if k != "workload"} == {
        k: v for k, v in by_spec.items() if k != "workload"}


def test_rows_round_trip_through_csv_and_json(tmp_path: object) -> None:
    rows = sweep(POINTS[:2], jobs=1)
    write_csv(rows, f"{tmp_path}/r.csv")
    write_json(rows, f"{tmp_path}/r.json")
    assert read_rows(f"{tmp_path}/r.json") == rows
    back = read_rows(f"{tmp_path}/r.csv")
    assert [r["iotlb_hits"] for r in back] == [r["iotlb_hits"] for r in rows]
    with open(f"{tmp_path}/r.json") as f:
        assert len(json.load(f)) == 2


def test_the_hit_rate_figure_is_written_as_png_and_svg(tmp_path: object) -> None:
    pytest.importorskip("matplotlib")
    from iommu_uapi.trace.plot import plot

    rows = sweep(POINTS, jobs=1)
    png, svg = f"{tmp_path}/f.png", f"{tmp_path}/f.svg"
    assert plot(rows, [png, svg]) == 2
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(svg) as f:
        text = f.read()
    assert "IOTLB entries" in text and "IOTLB hit rate" in text and "cyclic" in text

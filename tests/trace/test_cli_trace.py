"""The trace commands of ``iommu-uapi``: workload -> trace info -> replay -> sweep -> plot, and
one clear line (exit 1) for a bad trace."""

from __future__ import annotations

import json
import os

import pytest

from iommu_uapi.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse's usage errors
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def test_workload_info_and_replay(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    path = f"{tmp_path}/ring.trace.gz"
    status, _, err = _run(capsys, "workload", "ring", "--mode", "strict", "--ring", "8",
                          "--packets", "100", "-o", path)
    assert status == 0 and "wrote 303 events" in err
    status, out, _ = _run(capsys, "trace", "info", path, "--json")
    info = json.loads(out)
    assert status == 0
    assert info["events"] == {"Dma": 100, "Map": 100, "Unmap": 100, "DeviceAdd": 1,
                              "DomainAlloc": 1, "AttachDevice": 1}
    assert info["header"]["meta"]["mode"] == "strict"
    status, out, _ = _run(capsys, "trace", "info", path)
    assert status == 0 and "Dma" in out and "303 events" in out
    status, out, _ = _run(capsys, "replay", path, "--backend", "mini", "--iotlb", "64,0,lru",
                          "--json")
    stats = json.loads(out)
    assert status == 0
    assert stats["caches"]["iotlb"]["hits"] == 0 and stats["dmas"] == 100
    assert stats["cache"] == "iotlb=64,0,lru"
    status, out, _ = _run(capsys, "replay", path, "--backend", "mini", "--cache", "vtd-iotlb",
                          "--per-context")
    assert status == 0 and "iotlb" in out and "walk length" in out and "0x0100:-" in out


def test_a_truncated_trace_is_one_line_naming_the_offset(
        tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    path = f"{tmp_path}/c.trace"
    _run(capsys, "workload", "cyclic", "--pages", "4", "--dmas", "50", "-o", path)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:-9])
    for argv in (["trace", "info", path], ["replay", path, "--backend", "mini"]):
        status, _, err = _run(capsys, *argv)
        assert status == 1
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "[trace.truncated]" in err and "at byte offset" in err


def test_usage_errors_exit_2(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    path = f"{tmp_path}/x.trace"
    assert _run(capsys, "workload", "cyclic", "--mode", "strict", "-o", path)[0] == 2
    _run(capsys, "workload", "cyclic", "--pages", "2", "--dmas", "2", "-o", path)
    assert _run(capsys, "replay", path, "--backend", "nosuch")[0] == 2
    assert _run(capsys, "replay", path, "--backend", "mini", "--iotlb", "x")[0] == 2
    assert _run(capsys, "replay", path, "--backend", "mini", "--cache", "nosuch")[0] == 2
    assert _run(capsys, "replay", f"{tmp_path}/none", "--backend", "mini")[0] == 2


def test_sweep_and_plot(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path, json_path = f"{tmp_path}/r.csv", f"{tmp_path}/r.json"
    status, _, err = _run(capsys, "sweep", "--backend", "mini", "--workload",
                          "cyclic:pages=8,dmas=80", "--sizes", "4,8,16", "--jobs", "1",
                          "-o", csv_path, "--json-output", json_path)
    assert status == 0 and "3 points" in err
    with open(json_path) as f:
        rows = json.load(f)
    assert [r["iotlb_hits"] for r in rows] == [0, 72, 72]
    pytest.importorskip("matplotlib")
    fig = f"{tmp_path}/f.png"
    status, _, err = _run(capsys, "plot", csv_path, "-o", fig)
    assert status == 0 and os.path.getsize(fig) > 1000

"""The iommu-uapi command: every subcommand, its output, and its exit statuses."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import types

import minibackend
import pytest

from iommu_uapi import plugins
from iommu_uapi.cli import main, record_types
from iommu_uapi.hookspecs import hookimpl
from iommu_uapi.uapi import CacheInvalidateInfo, InvAddrInfo, InvGranu

GOOD = CacheInvalidateInfo(argsz=56, version=1, cache=1, granularity=2, granu=InvGranu(
    addr_info=InvAddrInfo(addr=0x10000, granule_size=0x1000, nb_granules=2))).to_bytes()


@pytest.fixture
def mini() -> object:
    plugins.register_plugin("mini", minibackend)
    yield
    plugins.unregister_plugin("mini")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_every_record_is_known_by_python_and_c_name() -> None:
    types = record_types()
    assert types["cacheinvalidateinfo"] is types["iommu_cache_invalidate_info"]
    assert types["fault"].SIZE == 64 and types["iommu_gpasid_bind_data"].SIZE == 72


def test_layout_prints_offsets(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "layout", "iommu_gpasid_bind_data")
    assert code == 0
    assert "size 72, minsz 56" in out
    assert any(line.split()[:3] == ["12", "4", "addr_width"] for line in out.splitlines())
    code, out, _ = run(capsys, "layout", "Fault", "--json")
    assert json.loads(out)["members"]["prm.grpid"] == [16, 4]


def test_decode_accepts_and_shows_fields(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "decode", "CacheInvalidateInfo", GOOD.hex())
    assert code == 0 and "verdict: accepted under linux-5.10" in out
    assert "granule_size = 4096 (0x1000)" in out and "padding = 000000000000" in out


def test_decode_rejection_is_exit_1_with_errno_and_rule(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    bad = bytearray(GOOD)
    bad[10] = 1  # padding
    code, out, _ = run(capsys, "decode", "CacheInvalidateInfo", bad.hex(), "--json")
    verdict = json.loads(out)["verdict"]
    assert code == 1 and verdict["errno"] == "EINVAL"
    assert verdict["rule"] == "cache_invalidate.padding"


def test_decode_reads_standard_input(capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(GOOD.hex().encode())))
    code, out, _ = run(capsys, "decode", "CacheInvalidateInfo", "-", "--profile", "strict")
    assert code == 0 and "accepted under strict" in out


def test_encode_round_trips_through_json(capsys: pytest.CaptureFixture[str]) -> None:
    doc = CacheInvalidateInfo.from_bytes(GOOD).to_json().decode()
    code, out, _ = run(capsys, "encode", "CacheInvalidateInfo", doc)
    assert code == 0 and out.strip() == GOOD.hex()
    code, _, err = run(capsys, "encode", "CacheInvalidateInfo", '{"cache": 999}')
    assert code == 1 and "EINVAL" in err


@pytest.mark.parametrize("record", ["CacheInvalidateInfo", "Fault", "GpasidBindData",
                                    "NestingInfo", "VfioInfoCapNesting"])
def test_decode_output_feeds_encode_and_back(capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch,
                                             record: str) -> None:
    rec_type = record_types()[record.lower()]
    raw = bytes((7 * i + 1) & 0xFF for i in range(rec_type.SIZE))  # every byte non-zero
    code, decoded, _ = run(capsys, "decode", record, raw.hex(), "--json")
    doc = json.loads(decoded)
    # decode's whole output, or just its record, is encode's input: the same bytes come back
    for text in (decoded, json.dumps(doc["record"])):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
        code, out, err = run(capsys, "encode", record, "-")
        assert code == 0, err
        assert bytes.fromhex(out.strip()) == raw
    # and encode's hex is decode's input
    _, again, _ = run(capsys, "decode", record, out.strip(), "--json")
    assert json.loads(again)["record"] == doc["record"]


def test_encode_refuses_unknown_field_names(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "encode", "PageResponse", '{"argz": 56}')
    assert code == 1 and out == ""
    assert "[abi.decode]" in err and "argz" in err


def test_encode_of_bytes_that_are_not_utf8_is_a_rejection() -> None:
    out = subprocess.run([sys.executable, "-m", "iommu_uapi.cli", "encode", "PageResponse", "-"],
                         input=b"\xff", capture_output=True, timeout=60,
                         env={**os.environ, "PYTHONIOENCODING": "utf-8:strict"})
    assert out.returncode == 1, out.stderr
    assert b"Traceback" not in out.stderr and b"[abi.decode]" in out.stderr


def test_encode_refuses_another_structs_decode_output(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    _, decoded, _ = run(capsys, "decode", "PageResponse", bytes(24).hex(), "--json")
    assert run(capsys, "encode", "Fault", decoded)[0] == 2


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "layout", "NoSuchStruct")[0] == 2
    assert run(capsys, "decode", "Fault", "zz")[0] == 2
    for argv in (["frobnicate"], ["decode", "Fault", "00", "--profile", "bogus"],
                 ["decode", "Fault", "00", "--discipline", "bogus"], []):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("usage: iommu-uapi") and "usage error" in err, argv
    assert run(capsys, "features", "nosuch")[0] == 2
    assert run(capsys, "matrix", "--backend", "nosuch")[0] == 2


def test_bare_command_prints_a_usage_line() -> None:
    out = subprocess.run([sys.executable, "-m", "iommu_uapi.cli"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.startswith("usage: iommu-uapi") and "Traceback" not in out.stderr


def test_a_closed_pipe_ends_quietly_with_the_sigpipe_status() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "iommu_uapi.cli", "rules"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line is written (| head -0)
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 128 + signal.SIGPIPE
    assert err == ""


def test_ctrl_c_during_the_matrix_ends_quietly_with_the_sigint_status(
        capsys: pytest.CaptureFixture[str]) -> None:
    class Interrupts(minibackend.MiniBackend):
        @hookimpl
        def iommu_capabilities(self) -> object:
            raise KeyboardInterrupt

    plugin = types.SimpleNamespace(iommu_register_backends=lambda register: register(
        plugins.BackendSpec(name="ctrlc", factory=Interrupts)))
    plugins.register_plugin("ctrlc", plugin)
    try:
        code, out, err = run(capsys, "matrix", "--backend", "ctrlc")
    finally:
        plugins.unregister_plugin("ctrlc")
    assert code == 128 + signal.SIGINT
    assert "Traceback" not in out + err and "pytest exit" not in out + err


def test_backends_and_features(capsys: pytest.CaptureFixture[str], mini: object) -> None:
    code, out, _ = run(capsys, "backends", "--json")
    rows = {row["name"]: row for row in json.loads(out)["backends"]}
    assert code == 0 and "BIND_PGTBL" in rows["mini"]["features"]
    code, out, _ = run(capsys, "features", "mini", "--json")
    assert json.loads(out)["pasid_bits"] == 20
    code, out, _ = run(capsys, "features", "mini")
    assert "cache_cells" in out


def test_rules_lists_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "rules", "--json")
    rows = json.loads(out)
    assert code == 0 and any(r["id"] == "cache_invalidate.padding" for r in rows)

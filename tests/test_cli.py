"""The iommu-uapi command: every subcommand, its output, and its exit statuses."""

from __future__ import annotations

import json
import sys

import minibackend
import pytest

from iommu_uapi import plugins
from iommu_uapi.cli import main, record_types
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
    import io

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(GOOD.hex().encode())))
    code, out, _ = run(capsys, "decode", "CacheInvalidateInfo", "-", "--profile", "strict")
    assert code == 0 and "accepted under strict" in out


def test_encode_round_trips_through_json(capsys: pytest.CaptureFixture[str]) -> None:
    doc = CacheInvalidateInfo.from_bytes(GOOD).to_json().decode()
    code, out, _ = run(capsys, "encode", "CacheInvalidateInfo", doc)
    assert code == 0 and out.strip() == GOOD.hex()
    code, _, err = run(capsys, "encode", "CacheInvalidateInfo", '{"cache": 999}')
    assert code == 1 and "EINVAL" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "layout", "NoSuchStruct")[0] == 2
    assert run(capsys, "decode", "Fault", "zz")[0] == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2


def test_backends_and_features(capsys: pytest.CaptureFixture[str], mini: object) -> None:
    code, out, _ = run(capsys, "backends", "--json")
    rows = {row["name"]: row for row in json.loads(out)["backends"]}
    assert code == 0 and "BIND_PGTBL" in rows["mini"]["features"]
    code, out, _ = run(capsys, "features", "mini", "--json")
    assert json.loads(out)["pasid_bits"] == 20
    code, out, _ = run(capsys, "features", "mini")
    assert "cache_cells" in out
    assert run(capsys, "features", "nosuch")[0] == 1


def test_rules_lists_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "rules", "--json")
    rows = json.loads(out)
    assert code == 0 and any(r["id"] == "cache_invalidate.padding" for r in rows)

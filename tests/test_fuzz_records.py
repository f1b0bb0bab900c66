"""Bounded fuzz of every ``from_user``: random bytes and argsz give a record or a UAPIError, never
another exception, and the same buffer always gives the same answer."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iommu_uapi.abi import SizeDiscipline
from iommu_uapi.errors import UAPIError
from iommu_uapi.uapi import (
    RECORDS,
    CacheInvalidateInfo,
    GpasidBindData,
    NestingInfo,
    PageResponse,
    PasidTableConfig,
    VfioIommuType1CacheInvalidate,
    VfioIommuType1NestingOp,
    VfioIommuType1SetPasidTable,
)

_CI = CacheInvalidateInfo(56, 1, 1, 2).to_bytes()
_BIND = GpasidBindData(argsz=72, version=1, format=1).to_bytes()
_TABLE = PasidTableConfig(argsz=32, version=1, format=1, config=1).to_bytes()

# entry point, a valid seed buffer (mutated by the fuzzer, so content rules are reached)
ENTRY: dict[str, tuple[Callable[..., Any], bytes]] = {
    "cache_invalidate": (CacheInvalidateInfo.from_user, _CI),
    "bind": (GpasidBindData.from_user, _BIND),
    "unbind": (lambda b, p, d: GpasidBindData.from_user(b, p, d, operation="unbind"), _BIND),
    "attach_pasid_table": (PasidTableConfig.from_user, _TABLE),
    "page_response": (PageResponse.from_user, PageResponse(24, 1).to_bytes()),
    "nesting_info": (NestingInfo.from_user, NestingInfo(argsz=64).to_bytes()),
    "nesting_op": (VfioIommuType1NestingOp.from_user, struct.pack("<II", 64, 2) + _CI),
    "set_pasid_table": (VfioIommuType1SetPasidTable.from_user,
                        struct.pack("<II", 40, 1) + _TABLE),
    "vfio_cache_invalidate": (VfioIommuType1CacheInvalidate.from_user,
                              struct.pack("<II", 64, 0) + _CI),
}


@st.composite
def _buffers(draw: st.DrawFn, seed: bytes) -> bytes:
    """Random bytes, or the seed with a few bytes changed and its length cut or extended."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=len(seed) + 24))
    buf = bytearray(seed)
    for _ in range(draw(st.integers(0, 4))):
        buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(buf) + 16))
    return bytes(buf[:cut]) + bytes(draw(st.binary(max_size=max(0, cut - len(buf)))))


def _outcome(
    fn: Callable[..., Any], buf: bytes | bytearray, profile: str, disc: SizeDiscipline
) -> Any:
    try:
        result = fn(buf, profile, disc)
    except UAPIError as err:
        return ("error", err.errno, err.rule, err.message)
    if isinstance(result, tuple):  # VFIO wrappers: (header, inner bytes)
        return ("ok", result[0], bytes(result[1]))
    return ("ok", result)


@pytest.mark.parametrize("op", sorted(ENTRY))
def test_from_user_fuzz(op: str) -> None:
    fn, seed = ENTRY[op]
    size = len(seed)

    @settings(max_examples=300, deadline=None)
    @given(
        raw=_buffers(seed),
        argsz=st.one_of(st.none(), st.integers(0, size + 24), st.integers(0, 2**32 - 1)),
        profile=st.sampled_from(["linux-5.10", "strict"]),
        disc=st.sampled_from(list(SizeDiscipline)),
    )
    def run(raw: bytes, argsz: int | None, profile: str, disc: SizeDiscipline) -> None:
        if argsz is not None and len(raw) >= 4:
            raw = struct.pack("<I", argsz) + raw[4:]
        first = _outcome(fn, raw, profile, disc)
        assert _outcome(fn, raw, profile, disc) == first
        assert _outcome(fn, bytearray(raw), profile, disc) == first
        if first[0] == "ok" and not isinstance(first[1], VfioIommuType1NestingOp):
            rec = first[1]
            assert len(rec.to_bytes()) == type(rec).SIZE

    run()


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_plain_decoders_refuse_junk_with_uapi_error(cls: Any) -> None:
    @settings(max_examples=60, deadline=None)
    @given(st.binary(max_size=cls.SIZE + 8))
    def run(junk: bytes) -> None:
        for decode in (cls.from_bytes, cls.from_json, cls.from_msgpack):
            try:
                rec = decode(junk)
            except UAPIError:
                continue
            assert len(rec.to_bytes()) == cls.SIZE

    run()

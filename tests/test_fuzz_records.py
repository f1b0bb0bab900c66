"""Bounded fuzz of every ``from_user`` and of every record's plain decoders (``from_bytes``,
``from_json``, ``from_msgpack``): random or mutated input gives a record or a UAPIError with an
errno and a rule, never another exception, and the same input always gives the same answer.
Something that is not a buffer at all is refused the same way (EFAULT) in every profile."""

from __future__ import annotations

import array
import errno
import json
import struct
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_iommu import Rig

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


# ---- buffers that are not bytes: refused the same way in every profile -------------------------

#: Things a caller may pass that are not readable user memory.
NOT_BUFFERS: dict[str, Any] = {
    "None": None,
    "str": "\x18" + "\0" * 63,
    "int": 64,
    "list": list(range(64)),
    "strided view": memoryview(bytes(128))[::2],
    "object": object(),
}


@pytest.mark.parametrize("what", sorted(NOT_BUFFERS))
@pytest.mark.parametrize("op", sorted(ENTRY))
def test_from_user_refuses_a_non_buffer_with_efault_in_every_profile(op: str, what: str) -> None:
    fn = ENTRY[op][0]
    rule = {"unbind": "bind"}.get(op, op) + ".copy_minsz"
    for profile in ("linux-5.10", "strict"):
        for disc in SizeDiscipline:
            with pytest.raises(UAPIError) as err:
                fn(NOT_BUFFERS[what], profile, disc)
            assert (err.value.errno, err.value.rule) == (errno.EFAULT, rule), (profile, disc)


def test_contiguous_buffers_other_than_bytes_are_read_like_bytes() -> None:
    raw = PageResponse(24, 1, grpid=3).to_bytes()
    for profile in ("linux-5.10", "strict"):
        for buf in (memoryview(raw), array.array("I", raw), memoryview(raw + raw)[:24]):
            assert PageResponse.from_user(buf, profile) == PageResponse.from_bytes(raw)


def test_facade_entry_points_refuse_a_non_buffer_with_efault() -> None:
    rig = Rig()
    calls = {
        "cache_invalidate": lambda b: rig.iommu.uapi_cache_invalidate(rig.domain, rig.dev2, b),
        "bind": lambda b: rig.iommu.uapi_sva_bind_gpasid(rig.domain, rig.dev2, b),
        "page_response": lambda b: rig.iommu.uapi_page_response(rig.dev, b),
        "nesting_info": lambda b: rig.iommu.nesting_info(rig.domain, b),
    }
    for op, call in calls.items():
        for profile in ("linux-5.10", "strict"):
            rig.iommu.profile = profile
            for what, buf in NOT_BUFFERS.items():
                if buf is None and op == "nesting_info":
                    continue  # no buffer: nesting_info returns the record instead
                with pytest.raises(UAPIError) as err:
                    call(buf)
                assert err.value.errno == errno.EFAULT, (op, profile, what)


# ---- the plain decoders: from_bytes, from_json, from_msgpack -----------------------------------

DECODERS = ("from_bytes", "from_json", "from_msgpack")


def _decode_outcome(cls: Any, decoder: str, data: Any) -> Any:
    try:
        rec = getattr(cls, decoder)(data)
    except UAPIError as err:
        assert err.rule in ("abi.short_buffer", "abi.long_buffer", "abi.decode",
                            "abi.field_range"), err.rule
        assert err.errno in (errno.EINVAL, errno.EFAULT)
        return ("error", err.errno, err.rule)
    assert type(rec) is cls
    assert len(rec.to_bytes()) == cls.SIZE
    return ("ok", rec)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_deep_nesting_is_refused_not_a_recursion_error(cls: Any) -> None:
    deep_json = '{"x":' * 3000 + "1" + "}" * 3000
    deep_list = "[" * 100_000 + "]" * 100_000
    deep_msgpack = b"\x91" * 100_000 + b"\x01"
    for decoder, data in (("from_json", deep_json), ("from_json", deep_list.encode()),
                          ("from_msgpack", deep_msgpack)):
        with pytest.raises(UAPIError) as err:
            getattr(cls, decoder)(data)
        assert (err.value.errno, err.value.rule) == (errno.EINVAL, "abi.decode")


@pytest.mark.parametrize("what", sorted(NOT_BUFFERS))
@pytest.mark.parametrize("decoder", DECODERS)
def test_decoders_refuse_a_non_buffer_with_efault(decoder: str, what: str) -> None:
    for cls in RECORDS:
        data = NOT_BUFFERS[what]
        if decoder == "from_json" and isinstance(data, str):
            continue  # text is what from_json reads
        with pytest.raises(UAPIError) as err:
            getattr(cls, decoder)(data)
        assert (err.value.errno, err.value.rule) == (errno.EFAULT, "abi.short_buffer")


def _json_value() -> st.SearchStrategy[Any]:
    """Any JSON value, nested a little: what a mutated document may put in a field."""
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(),
                     st.text(max_size=12), st.sampled_from(["AAAAAAAA", "", "=="]))
    return st.recursive(leaf, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
        max_leaves=6)


def _replace_somewhere(doc: Any, path: list[int], value: Any) -> Any:
    """``doc`` with the field picked by ``path`` (indices into nested objects) replaced."""
    if not isinstance(doc, dict) or not doc or not path:
        return value
    keys = sorted(doc)
    key = keys[path[0] % len(keys)]
    return {**doc, key: _replace_somewhere(doc[key], path[1:], value)}


def _mutated_bytes(seed: bytes) -> st.SearchStrategy[bytes]:
    return st.tuples(
        st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255), st.integers(0, 2)),
                 max_size=6),
        st.binary(max_size=4),
    ).map(lambda t: _apply_edits(seed, *t))


def _apply_edits(seed: bytes, edits: list[tuple[int, int, int]], tail: bytes) -> bytes:
    buf = bytearray(seed)
    for at, byte, kind in edits:
        pos = at % (len(buf) + 1)
        if kind == 0 and pos < len(buf):
            buf[pos] = byte
        elif kind == 1:
            buf.insert(pos, byte)
        elif buf:
            del buf[pos % len(buf)]
    return bytes(buf) + tail


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_decoders_give_a_record_or_a_uapi_error_on_mutated_input(cls: Any) -> None:
    """Bounded fuzz of the three decoders of each record: its own encodings with bytes
    changed, inserted or deleted, JSON documents with a field replaced by any JSON value, and
    MessagePack of the same documents; the same input always gives the same answer."""
    seed = cls()
    doc = json.loads(seed.to_json())
    encodings = {"from_bytes": seed.to_bytes(), "from_json": seed.to_json(),
                 "from_msgpack": seed.to_msgpack()}

    @settings(deadline=None)
    @given(decoder=st.sampled_from(DECODERS), data=st.data())
    def run(decoder: str, data: st.DataObject) -> None:
        if data.draw(st.booleans()):
            raw: Any = data.draw(_mutated_bytes(encodings[decoder]))
        else:
            path = data.draw(st.lists(st.integers(0, 31), min_size=1, max_size=3))
            changed = _replace_somewhere(doc, path, data.draw(_json_value()))
            raw = (json.dumps(changed).encode() if decoder != "from_msgpack"
                   else _msgpack_or_none(changed))
            if raw is None:
                return
        first = _decode_outcome(cls, decoder, raw)
        assert _decode_outcome(cls, decoder, bytearray(raw)) == first
        if first[0] == "ok":
            rec = first[1]
            raw_bytes = rec.to_bytes()  # union members that disagree: the bytes decide
            assert cls.from_bytes(raw_bytes).to_bytes() == raw_bytes
            assert cls.from_json(rec.to_json()) == rec
            assert cls.from_msgpack(rec.to_msgpack()) == rec

    run()


def _msgpack_or_none(doc: Any) -> bytes | None:
    try:
        return msgspec.msgpack.encode(doc)
    except (OverflowError, TypeError):  # an int beyond 64 bits has no MessagePack encoding
        return None

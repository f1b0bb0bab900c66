"""The C-ABI machinery: layout, codec, unions, range checks, JSON and MessagePack."""

from __future__ import annotations

import ctypes
import errno
from typing import Annotated

import msgspec
import pytest

from iommu_uapi.abi import (
    U8,
    U16,
    U32,
    U64,
    CRecord,
    Pad6,
    U64x2,
    anon_union,
    cstruct,
    cunion,
    pad_type,
)
from iommu_uapi.errors import UAPIError


@cstruct(cname="holey")
class Holey(CRecord, frozen=True, gc=False):
    a: U8 = 0
    b: U64 = 0
    c: U16 = 0


@cstruct()
class Inner(CRecord, frozen=True, gc=False):
    x: U32 = 0
    y: U32 = 0


@cstruct()
class Wide(CRecord, frozen=True, gc=False):
    w: U64 = 0
    v: U64 = 0


@cunion()
class Either(CRecord, frozen=True, gc=False):
    inner: Inner = msgspec.field(default_factory=Inner)
    wide: Wide = msgspec.field(default_factory=Wide)


@cstruct(minsz="u")
class Outer(CRecord, frozen=True, gc=False):
    argsz: U32 = 0
    tag: U8 = 0
    pad: Annotated[bytes, pad_type(3).__metadata__[0]] = bytes(3)
    u: Either = msgspec.field(default_factory=Either)


_A = anon_union("a")


@cstruct()
class Anon(CRecord, frozen=True, gc=False):
    kind: U32 = 0
    first: Annotated[Inner, _A] = msgspec.field(default_factory=Inner)
    second: Annotated[U64x2, _A] = (0, 0)
    raw: Annotated[Pad6, _A] = bytes(6)


class CHoley(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint8), ("b", ctypes.c_uint64), ("c", ctypes.c_uint16)]


def test_layout_inserts_c_holes_like_the_compiler() -> None:
    assert Holey.SIZE == ctypes.sizeof(CHoley) == 24
    lay = Holey.c_layout()
    for name in ("a", "b", "c"):
        assert lay[name][0] == getattr(CHoley, name).offset
    assert Holey.__cabi__.holes == ((1, 7), (18, 6))
    raw = Holey(1, 2, 3).to_bytes()
    assert raw == bytes([1]) + bytes(7) + (2).to_bytes(8, "little") + b"\x03\x00" + bytes(6)
    assert Holey.from_bytes(raw) == Holey(1, 2, 3)


def test_union_size_alignment_and_member_paths() -> None:
    assert Either.SIZE == 16 and Either.ALIGN == 8
    assert Outer.SIZE == 24 and Outer.MINSZ == 8
    lay = Outer.c_layout()
    assert lay["u"] == (8, 16)
    assert lay["u.inner.y"] == (12, 4)
    assert lay["u.wide.v"] == (16, 8)


def test_union_decode_gives_every_member_from_the_same_bytes() -> None:
    raw = bytes(range(24))
    o = Outer.from_bytes(raw)
    assert o.u.inner.x == int.from_bytes(raw[8:12], "little")
    assert o.u.wide.w == int.from_bytes(raw[8:16], "little")
    assert o.to_bytes() == raw


def test_union_encode_later_member_wins_and_zero_members_are_skipped() -> None:
    only_inner = Outer(u=Either(inner=Inner(1, 2)))
    assert only_inner.to_bytes()[8:16] == b"\x01\0\0\0\x02\0\0\0"
    both = Outer(u=Either(inner=Inner(1, 2), wide=Wide(w=0x0909, v=7)))
    assert both.to_bytes()[8:24] == (0x0909).to_bytes(8, "little") + (7).to_bytes(8, "little")


def test_anonymous_union_members_share_the_offset() -> None:
    assert Anon.SIZE == 24
    lay = Anon.c_layout()
    assert lay["first"] == (8, 8) and lay["second"] == (8, 16) and lay["raw"] == (8, 6)
    assert lay["first.y"] == (12, 4)
    a = Anon(kind=1, second=(5, 6))
    back = Anon.from_bytes(a.to_bytes())
    assert back.second == (5, 6)
    assert back.first == Inner(5, 0)
    assert back.raw == (5).to_bytes(6, "little")
    assert back.to_bytes() == a.to_bytes()


@pytest.mark.parametrize(
    ("record", "field"),
    [
        (Holey(a=256), "a"),
        (Holey(b=2**64), "b"),
        (Holey(b=-1), "b"),
        (Holey(c=1 << 16), "c"),
        (Outer(pad=b"\0\0"), "pad"),
        (Outer(pad=b"\0\0\0\0"), "pad"),
        (Outer(u=Either(inner=Inner(x=2**32))), "u.inner.x"),
        (Outer(u=Either(wide=Wide(v=2**64))), "u.wide.v"),
        (Outer(u=Inner()), "u"),  # type: ignore[arg-type]
        (Anon(second=(1, 2, 3)), "second"),  # type: ignore[arg-type]
        (Anon(second=(1, -2)), "second"),
        (Anon(raw=b"x"), "raw"),
        (Holey(a="1"), "a"),  # type: ignore[arg-type]
    ],
)
def test_out_of_range_field_is_einval_naming_the_field(record: CRecord, field: str) -> None:
    with pytest.raises(UAPIError) as exc:
        record.to_bytes()
    assert exc.value.errno == errno.EINVAL
    assert exc.value.rule == "abi.field_range"
    assert f".{field} = " in exc.value.message


def test_from_bytes_needs_exactly_size() -> None:
    with pytest.raises(UAPIError) as short:
        Outer.from_bytes(bytes(23))
    assert short.value.errno == errno.EFAULT
    with pytest.raises(UAPIError) as long:
        Outer.from_bytes(bytes(25))
    assert long.value.errno == errno.EINVAL
    with pytest.raises(UAPIError) as bad:
        Outer.from_bytes(42)  # type: ignore[arg-type]
    assert bad.value.errno == errno.EFAULT
    words = memoryview(bytearray(24)).cast("Q")
    assert Outer.from_bytes(words) == Outer()


def test_json_and_msgpack_round_trip_with_field_names() -> None:
    o = Outer(argsz=24, tag=3, u=Either(wide=Wide(2**64 - 1, 5)))
    text = o.to_json()
    assert b'"argsz":24' in text and b'"wide"' in text
    decoded = Outer.from_json(text)
    assert decoded.to_bytes() == o.to_bytes()
    assert Outer.from_msgpack(o.to_msgpack()) == o


@pytest.mark.parametrize(
    "doc",
    [
        b'{"argsz": -1}',
        b'{"tag": 256}',
        b'{"u": {"wide": {"w": 18446744073709551616}}}',
        b'{"pad": "AAAAAA=="}',
        b"[1, 2",
        b'"text"',
    ],
)
def test_bad_json_is_einval(doc: bytes) -> None:
    with pytest.raises(UAPIError) as exc:
        Outer.from_json(doc)
    assert exc.value.errno == errno.EINVAL


def test_bad_msgpack_is_einval() -> None:
    for doc in (b"\xc1", msgspec.msgpack.encode({"tag": -3}), b""):
        with pytest.raises(UAPIError) as exc:
            Outer.from_msgpack(doc)
        assert exc.value.errno == errno.EINVAL


def test_a_non_buffer_is_efault_for_every_decoder() -> None:
    for decode in (Outer.from_msgpack, Outer.from_json, Outer.from_bytes):
        with pytest.raises(UAPIError) as exc:
            decode(7)  # type: ignore[arg-type]
        assert (exc.value.errno, exc.value.rule) == (errno.EFAULT, "abi.short_buffer")


def test_field_without_c_type_is_refused() -> None:
    with pytest.raises(TypeError):

        @cstruct()
        class Bad(CRecord, frozen=True, gc=False):
            f: float = 0.0

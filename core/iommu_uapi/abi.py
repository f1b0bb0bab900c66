"""The C-ABI machinery of the UAPI records: :class:`CRecord` and the decorators that lay a
record out and compile its codec.

A UAPI record is a frozen :class:`msgspec.Struct` deriving from :class:`CRecord` whose fields
carry their C type (:mod:`.layout`: :data:`U8` ... :data:`U64`, padding, arrays, nested records,
unions). :func:`cstruct` / :func:`cunion` lay the fields out as gcc does on x86-64 and compile
the byte codec once per class (:mod:`.codec`). How the kernel copies an argsz-first record from
user memory is :mod:`.argsz` (:class:`SizeDiscipline`, :func:`copy_from_user`). This module
re-exports the names of both, so ``from iommu_uapi.abi import ...`` reaches everything.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from typing import Any, ClassVar, Self, TypeVar

import msgspec

from .argsz import HeadCheck, SizeDiscipline, copy_from_user
from .codec import Compiler
from .layout import (
    U8,
    U16,
    U32,
    U64,
    CLayout,
    Pad2,
    Pad6,
    Pad8,
    Pad12,
    Pad56,
    U64x2,
    anon_union,
    field_paths,
    lay_out,
    pad_type,
)
from .rules import fail

__all__ = [
    "U8",
    "U16",
    "U32",
    "U64",
    "CLayout",
    "CRecord",
    "HeadCheck",
    "Pad2",
    "Pad6",
    "Pad8",
    "Pad12",
    "Pad56",
    "SizeDiscipline",
    "U64x2",
    "anon_union",
    "copy_from_user",
    "cstruct",
    "cunion",
    "pad_type",
]

R = TypeVar("R", bound="CRecord")


class CRecord(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=True):
    """Base of every UAPI record: a frozen Struct with an exact little-endian C layout.

    Its JSON and MessagePack forms name the kernel's fields only: a document with any other
    field name (a typo such as ``argz``) is refused, not decoded as zeroes.
    """

    SIZE: ClassVar[int]
    MINSZ: ClassVar[int]
    ALIGN: ClassVar[int]
    CNAME: ClassVar[str]
    __cabi__: ClassVar[CLayout]
    _cdecode: ClassVar[Callable[[Any, int], Any]]
    _cencode: ClassVar[Callable[[Any], bytes]]

    def to_bytes(self) -> bytes:
        """The record's ``SIZE`` bytes; EINVAL (``abi.field_range``) for an out-of-range field."""
        return type(self)._cencode(self)

    def validate(self) -> None:
        """Raise EINVAL naming the first field whose value does not fit its C type."""
        type(self)._cencode(self)

    @classmethod
    def from_bytes(cls, buf: bytes | bytearray | memoryview) -> Self:
        """Decode exactly ``SIZE`` bytes; no rules. EFAULT (``abi.short_buffer``) if shorter or
        not a bytes-like buffer at all, EINVAL (``abi.long_buffer``) if longer."""
        if type(buf) is not bytes and type(buf) is not bytearray:
            buf = _byte_view(buf, cls)
        n = len(buf)
        if n != cls.SIZE:
            rule = "abi.short_buffer" if n < cls.SIZE else "abi.long_buffer"
            raise fail(rule, record=cls.__name__, size=cls.SIZE, have=n)
        return typing.cast(Self, cls._cdecode(buf, 0))

    @classmethod
    def c_layout(cls) -> dict[str, tuple[int, int]]:
        """C member paths to (offset, size), nested and union members included."""
        return dict(cls.__cabi__.paths)

    def to_json(self) -> bytes:
        """The record as a JSON object with the kernel's field names (padding as base64)."""
        return _JSON_ENCODER.encode(self)

    @classmethod
    def from_json(cls, data: bytes | bytearray | memoryview | str) -> Self:
        """Decode and range-check a JSON document (text or UTF-8 bytes). Whatever the input,
        the answer is the record or a :class:`UAPIError`: EINVAL (``abi.decode``) for a
        document that does not match the schema (nesting too deep included), EINVAL
        (``abi.field_range``) for a value its C type cannot hold, EFAULT (``abi.short_buffer``)
        for something that is neither text nor a bytes-like buffer."""
        return _checked_decode(cls, data, _json_decoders)

    def to_msgpack(self) -> bytes:
        """The record as MessagePack (a map keyed by field name)."""
        return _MSGPACK_ENCODER.encode(self)

    @classmethod
    def from_msgpack(cls, data: bytes | bytearray | memoryview) -> Self:
        """Decode and range-check MessagePack, with :meth:`from_json`'s refusals (text is not
        a MessagePack buffer: EFAULT)."""
        return _checked_decode(cls, data, _msgpack_decoders)


_JSON_ENCODER = msgspec.json.Encoder()
_MSGPACK_ENCODER = msgspec.msgpack.Encoder()
_json_decoders: dict[type, Any] = {}
_msgpack_decoders: dict[type, Any] = {}


#: What msgspec may raise on a hostile document: schema and syntax errors, a nesting deeper
#: than the interpreter's recursion limit, text that is not valid UTF-8.
_DECODE_ERRORS = (msgspec.DecodeError, TypeError, ValueError, RecursionError, BufferError)


def _checked_decode(cls: type[R], data: Any, cache: dict[type, Any]) -> R:
    dec = cache.get(cls)
    if dec is None:
        dec = (msgspec.json.Decoder if cache is _json_decoders else msgspec.msgpack.Decoder)(cls)
        cache[cls] = dec
    kind = type(data)
    if kind is not bytes and not (kind is str and cache is _json_decoders):
        data = _byte_view(data, cls)
    try:
        obj = dec.decode(data)
    except RecursionError:
        raise fail("abi.decode", record=cls.__name__,
                   detail="the document nests deeper than any record") from None
    except _DECODE_ERRORS as exc:
        raise fail("abi.decode", record=cls.__name__, detail=str(exc)) from None
    obj.validate()
    return typing.cast(R, obj)


def _byte_view(buf: object, cls: type[CRecord]) -> memoryview:
    """A flat byte view of any C-contiguous buffer; EFAULT (``abi.short_buffer``) for anything
    that is not readable memory (``None``, ``str``, numbers, lists, strided views)."""
    try:
        return memoryview(buf).cast("B")  # type: ignore[arg-type]
    except (TypeError, ValueError, BufferError):
        raise fail("abi.short_buffer", record=cls.__name__, size=cls.SIZE,
                   have=f"a {type(buf).__name__} (not contiguous bytes)") from None


def _compile(cls: type[R], cname: str, is_union: bool, minsz: str | int | None) -> type[R]:
    if not (isinstance(cls, type) and issubclass(cls, CRecord)):
        raise TypeError(f"{cls!r} must derive from CRecord")
    fields, size, align, holes = lay_out(cls, is_union)
    ftuple = tuple(fields)
    lay = CLayout(cname or cls.__name__, size, align, is_union, ftuple, (), tuple(holes),
                  field_paths(ftuple, 0, ""))
    cls.__cabi__ = lay
    comp = Compiler(cls, lay)
    decode, formats = comp.compile_decode()
    cls.__cabi__ = lay._replace(formats=formats)
    cls._cdecode = staticmethod(decode)
    cls._cencode = staticmethod(comp.compile_encode())
    cls.SIZE = size
    cls.ALIGN = align
    cls.CNAME = lay.cname
    if minsz is None:
        cls.MINSZ = size
    elif isinstance(minsz, str):
        cls.MINSZ = lay.paths[minsz][0]
    else:
        cls.MINSZ = minsz
    return cls


def cstruct(
    *, cname: str = "", minsz: str | int | None = None
) -> Callable[[type[R]], type[R]]:
    """Lay out a :class:`CRecord` subclass as a C struct and compile its codec.

    ``minsz`` is the kernel's minimum size of an argsz-first record: a member name (its offset,
    ``offsetof``) or a number; ``None`` means the whole struct (records without argsz).
    """

    def deco(cls: type[R]) -> type[R]:
        return _compile(cls, cname, False, minsz)

    return deco


def cunion(*, cname: str = "") -> Callable[[type[R]], type[R]]:
    """Lay out a :class:`CRecord` subclass as a C union: every member at offset 0.

    Decoding gives every member from the same bytes; encoding writes the members in
    declaration order over a zeroed area, later members winning where they overlap.
    """

    def deco(cls: type[R]) -> type[R]:
        return _compile(cls, cname, True, None)

    return deco

"""C types and C layout: the field types of a UAPI record and how gcc lays a record out.

A record field carries its C type in ``Annotated`` metadata (:data:`U8` ... :data:`U64`, padding
such as :data:`Pad6`, the ``__u64[2]`` array :data:`U64x2`, nested records, named unions and
anonymous unions). :func:`lay_out` places the fields as gcc does on x86-64: natural alignment,
members of an anonymous union at one offset, implicit padding recorded as holes.
"""

from __future__ import annotations

import typing
from typing import TYPE_CHECKING, Annotated, Any, NamedTuple

import msgspec

if TYPE_CHECKING:
    from .abi import CRecord

__all__ = [
    "CTYPES",
    "U8",
    "U16",
    "U32",
    "U64",
    "CField",
    "CLayout",
    "Pad2",
    "Pad6",
    "Pad8",
    "Pad12",
    "Pad56",
    "U64x2",
    "anon_union",
    "field_paths",
    "lay_out",
    "pad_type",
]

#: The C integer types: struct code, size (and alignment), largest value.
CTYPES: dict[str, tuple[str, int, int]] = {
    "u8": ("B", 1, 0xFF),
    "u16": ("H", 2, 0xFFFF),
    "u32": ("I", 4, 0xFFFF_FFFF),
    "u64": ("Q", 8, 0xFFFF_FFFF_FFFF_FFFF),
}

U8 = Annotated[int, msgspec.Meta(ge=0, le=0xFF, extra={"ctype": "u8"})]
U16 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFF, extra={"ctype": "u16"})]
U32 = Annotated[int, msgspec.Meta(ge=0, le=0xFFFF_FFFF, extra={"ctype": "u32"})]
#: msgspec bounds must fit in int64, so the upper bound of a ``__u64`` is enforced by the codec.
U64 = Annotated[int, msgspec.Meta(ge=0, extra={"ctype": "u64"})]
#: ``__u64 x[2]`` (``private_data``), a tuple of two ints.
U64x2 = Annotated[tuple[U64, U64], msgspec.Meta(extra={"ctype": "u64", "count": 2})]

Pad2 = Annotated[bytes, msgspec.Meta(min_length=2, max_length=2, extra={"count": 2})]
Pad6 = Annotated[bytes, msgspec.Meta(min_length=6, max_length=6, extra={"count": 6})]
Pad8 = Annotated[bytes, msgspec.Meta(min_length=8, max_length=8, extra={"count": 8})]
Pad12 = Annotated[bytes, msgspec.Meta(min_length=12, max_length=12, extra={"count": 12})]
Pad56 = Annotated[bytes, msgspec.Meta(min_length=56, max_length=56, extra={"count": 56})]


def pad_type(n: int) -> Any:
    """A ``__u8 padding[n]`` field type built at run time (the named aliases are ``PadN``)."""
    return Annotated[bytes, msgspec.Meta(min_length=n, max_length=n, extra={"count": n})]


def anon_union(group: str = "u") -> msgspec.Meta:
    """Metadata marking a field as a member of the anonymous union ``group``.

    Consecutive fields with the same group share one offset, as the members of a C anonymous
    union do; the group is as large as its largest member.
    """
    return msgspec.Meta(extra={"anon_union": group})


class CField(NamedTuple):
    """One field of a record, laid out."""

    name: str
    kind: str  # "int" | "bytes" | "array" | "record"
    offset: int
    size: int
    align: int
    code: str  # struct code of the value (int, bytes) or of one element (array)
    length: int  # bytes length or array length
    ctype: str
    cls: type[CRecord] | None
    group: str | None


class CLayout(NamedTuple):
    """The C layout of one record class and its compiled codec."""

    cname: str
    size: int
    align: int
    is_union: bool
    fields: tuple[CField, ...]
    formats: tuple[str, ...]  # one "<" format per decode segment; [0] is the record's own
    holes: tuple[tuple[int, int], ...]  # implicit padding (offset, size) inserted as C does
    paths: dict[str, tuple[int, int]]


def _align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _describe(name: str, hint: Any) -> CField:
    """A field's kind, size, alignment and codes from its annotation (offset filled later)."""
    extra: dict[str, Any] = {}
    base = hint
    if typing.get_origin(hint) is Annotated:
        base = hint.__origin__
        for meta in hint.__metadata__:
            if isinstance(meta, msgspec.Meta) and meta.extra:
                extra.update(meta.extra)
    group = extra.get("anon_union")
    if base is int:
        code, size, _ = CTYPES[extra["ctype"]]
        return CField(name, "int", 0, size, size, code, 1, extra["ctype"], None, group)
    if base is bytes:
        n = int(extra["count"])
        return CField(name, "bytes", 0, n, 1, f"{n}s", n, f"u8[{n}]", None, group)
    if typing.get_origin(base) is tuple:
        code, esize, _ = CTYPES[extra["ctype"]]
        n = int(extra["count"])
        ctype = f"{extra['ctype']}[{n}]"
        return CField(name, "array", 0, esize * n, esize, code, n, ctype, None, group)
    lay = getattr(base, "__cabi__", None) if isinstance(base, type) else None
    if isinstance(lay, CLayout):  # a laid-out record (only CRecord subclasses get one)
        return CField(name, "record", 0, lay.size, lay.align, "", 1, lay.cname, base, group)
    raise TypeError(f"field {name!r}: {hint!r} has no C type metadata")


def lay_out(cls: type[CRecord], is_union: bool) -> tuple[list[CField], int, int, list[Any]]:
    """The fields of ``cls`` at their offsets, its size, its alignment and its holes."""
    hints = typing.get_type_hints(cls, include_extras=True)
    raw = [_describe(n, hints[n]) for n in cls.__struct_fields__]
    fields: list[CField] = []
    holes: list[tuple[int, int]] = []
    off = 0
    align = 1
    i = 0
    while i < len(raw):
        f = raw[i]
        if is_union:
            fields.append(f._replace(offset=0))
            off = max(off, f.size)
            align = max(align, f.align)
            i += 1
            continue
        j = i + 1
        if f.group is not None:
            while j < len(raw) and raw[j].group == f.group:
                j += 1
        members = raw[i:j]
        malign = max(m.align for m in members)
        start = _align_up(off, malign)
        if start != off:
            holes.append((off, start - off))
        fields.extend(m._replace(offset=start) for m in members)
        off = start + max(m.size for m in members)
        align = max(align, malign)
        i = j
    size = _align_up(off, align)
    if size != off:
        holes.append((off, size - off))
    return fields, size, align, holes


def field_paths(fields: tuple[CField, ...], base: int, prefix: str) -> dict[str, tuple[int, int]]:
    """Every member path (``granu.addr_info.pasid``) to its (offset, size)."""
    out: dict[str, tuple[int, int]] = {}
    for f in fields:
        path = prefix + f.name
        out[path] = (base + f.offset, f.size)
        if f.cls is not None:
            out.update(field_paths(f.cls.__cabi__.fields, base + f.offset, path + "."))
    return out

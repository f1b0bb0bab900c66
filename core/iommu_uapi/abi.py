"""The C-ABI machinery: field types, record layout, byte codec and the two size disciplines.

A UAPI record is a frozen :class:`msgspec.Struct` deriving from :class:`CRecord` whose fields
carry their C type in ``Annotated`` metadata (:data:`U8` ... :data:`U64`, padding such as
:data:`Pad6`, the ``__u64[2]`` array :data:`U64x2`, nested records, named unions and anonymous
unions). The :func:`cstruct` / :func:`cunion` decorators lay the fields out as gcc does on
x86-64 (natural alignment, little-endian), then compile the byte codec once per class:

* decoding is one ``struct.Struct.unpack_from`` per *segment*: the record's own fields and every
  union member that fits beside them without conflicting bytes share one ``"<"`` format (a
  member field at the same offset with the same C type as another reuses its value), so a
  ``CacheInvalidateInfo`` decodes with a single unpack; only genuinely overlapping members
  (``Fault``'s ``padding2``) need a second;
* encoding packs the non-union fields, then writes each union's members in declaration order
  over the zeroed union area, so a later member wins where members overlap. A member equal to
  its all-zero value is skipped, so a record built in code only needs the member it means.

The size disciplines (:class:`SizeDiscipline`) model how the kernel copies an argsz-first record
from user memory; :func:`copy_from_user` reproduces their order of checks and errnos (reference
kernel-uapi.md c.1, c.3, c.7 and ``copy_struct_from_user``).
"""

from __future__ import annotations

import enum
import struct
import typing
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, NamedTuple, Self, TypeVar

import msgspec

from .errors import UAPIError
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

#: The C integer types: struct code, size (and alignment), largest value.
_CTYPES: dict[str, tuple[str, int, int]] = {
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


class _Field(NamedTuple):
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
    fields: tuple[_Field, ...]
    formats: tuple[str, ...]  # one "<" format per decode segment; [0] is the record's own
    holes: tuple[tuple[int, int], ...]  # implicit padding (offset, size) inserted as C does
    paths: dict[str, tuple[int, int]]


R = TypeVar("R", bound="CRecord")


class CRecord(msgspec.Struct, frozen=True, gc=False):
    """Base of every UAPI record: a frozen Struct with an exact little-endian C layout."""

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
        """Decode exactly ``SIZE`` bytes; no rules. EFAULT if shorter, EINVAL if longer."""
        if type(buf) is not bytes and type(buf) is not bytearray:
            buf = _byte_view(buf, cls.__name__)
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
    def from_json(cls, data: bytes | str) -> Self:
        """Decode and range-check a JSON document; EINVAL (``abi.decode``) on bad input."""
        return _checked_decode(cls, data, _json_decoders)

    def to_msgpack(self) -> bytes:
        """The record as MessagePack (a map keyed by field name)."""
        return _MSGPACK_ENCODER.encode(self)

    @classmethod
    def from_msgpack(cls, data: bytes) -> Self:
        """Decode and range-check MessagePack; EINVAL (``abi.decode``) on bad input."""
        return _checked_decode(cls, data, _msgpack_decoders)


_JSON_ENCODER = msgspec.json.Encoder()
_MSGPACK_ENCODER = msgspec.msgpack.Encoder()
_json_decoders: dict[type, Any] = {}
_msgpack_decoders: dict[type, Any] = {}


def _checked_decode(cls: type[R], data: Any, cache: dict[type, Any]) -> R:
    dec = cache.get(cls)
    if dec is None:
        dec = (msgspec.json.Decoder if cache is _json_decoders else msgspec.msgpack.Decoder)(cls)
        cache[cls] = dec
    try:
        obj = dec.decode(data)
    except (msgspec.DecodeError, TypeError, ValueError) as exc:
        raise fail("abi.decode", record=cls.__name__, detail=str(exc)) from None
    obj.validate()
    return typing.cast(R, obj)


def _byte_view(buf: object, what: str) -> memoryview:
    """A flat byte view of any buffer; EFAULT for something that is not readable memory."""
    try:
        return memoryview(buf).cast("B")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise fail("abi.short_buffer", record=what, size="a buffer", have="none") from None


# ---- layout ----------------------------------------------------------------------------------


def _align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def _describe(name: str, hint: Any) -> _Field:
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
        code, size, _ = _CTYPES[extra["ctype"]]
        return _Field(name, "int", 0, size, size, code, 1, extra["ctype"], None, group)
    if base is bytes:
        n = int(extra["count"])
        return _Field(name, "bytes", 0, n, 1, f"{n}s", n, f"u8[{n}]", None, group)
    if typing.get_origin(base) is tuple:
        code, esize, _ = _CTYPES[extra["ctype"]]
        n = int(extra["count"])
        ctype = f"{extra['ctype']}[{n}]"
        return _Field(name, "array", 0, esize * n, esize, code, n, ctype, None, group)
    if isinstance(base, type) and issubclass(base, CRecord) and hasattr(base, "__cabi__"):
        lay = base.__cabi__
        return _Field(name, "record", 0, lay.size, lay.align, "", 1, lay.cname, base, group)
    raise TypeError(f"field {name!r}: {hint!r} has no C type metadata")


def _lay_out(cls: type[CRecord], is_union: bool) -> tuple[list[_Field], int, int, list[Any]]:
    hints = typing.get_type_hints(cls, include_extras=True)
    raw = [_describe(n, hints[n]) for n in cls.__struct_fields__]
    fields: list[_Field] = []
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


def _paths(fields: tuple[_Field, ...], base: int, prefix: str) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for f in fields:
        path = prefix + f.name
        out[path] = (base + f.offset, f.size)
        if f.cls is not None:
            out.update(_paths(f.cls.__cabi__.fields, base + f.offset, path + "."))
    return out


# ---- codec compilation -----------------------------------------------------------------------


class _Seg:
    """One decode segment: leaves (offset, code, size) that can be unpacked by one format."""

    def __init__(self) -> None:
        self.owner: dict[int, tuple[int, str]] = {}
        self.leaves: dict[tuple[int, str], int] = {}

    def fits(self, leaves: list[tuple[int, str, int]]) -> bool:
        for off, code, size in leaves:
            for b in range(off, off + size):
                o = self.owner.get(b)
                if o is not None and o != (off, code):
                    return False
        return True

    def add(self, leaves: list[tuple[int, str, int]]) -> None:
        for off, code, size in leaves:
            self.leaves[(off, code)] = size
            for b in range(off, off + size):
                self.owner[b] = (off, code)


def _main_leaves(f: _Field, at: int) -> list[tuple[int, str, int]]:
    """The leaves of a field outside any union (unions choose their own segments)."""
    if f.kind == "int":
        return [(at, f.code, f.size)]
    if f.kind == "bytes":
        return [(at, f.code, f.size)]
    if f.kind == "array":
        esize = f.size // f.length
        return [(at + k * esize, f.code, esize) for k in range(f.length)]
    assert f.cls is not None
    lay = f.cls.__cabi__
    if lay.is_union:
        return []
    out: list[tuple[int, str, int]] = []
    for sub in lay.fields:
        if sub.group is None:
            out.extend(_main_leaves(sub, at + sub.offset))
    return out


class _Compiler:
    """Generates the decode and encode functions of one record class."""

    def __init__(self, cls: type[CRecord], lay: CLayout) -> None:
        self.cls = cls
        self.lay = lay
        self.segs: list[_Seg] = []
        self.names: dict[str, Any] = {
            "_fail": _encode_failure,
            "_struct_error": (
                struct.error, TypeError, AttributeError, IndexError, ValueError, OverflowError,
                UAPIError,
            ),
        }

    def const(self, value: Any) -> str:
        name = f"_k{len(self.names)}"
        self.names[name] = value
        return name

    # decode -------------------------------------------------------------------------------

    def var(self, seg: int, off: int, code: str) -> str:
        return f"s{seg}_{off}_{code}"

    def place(self, leaves: list[tuple[int, str, int]]) -> int:
        for k, seg in enumerate(self.segs):
            if seg.fits(leaves):
                seg.add(leaves)
                return k
        self.segs.append(_Seg())
        self.segs[-1].add(leaves)
        return len(self.segs) - 1

    def field_expr(self, f: _Field, at: int, seg: int) -> str:
        if f.kind in ("int", "bytes"):
            return self.var(seg, at, f.code)
        if f.kind == "array":
            esize = f.size // f.length
            return "(" + "".join(self.var(seg, at + k * esize, f.code) + ", "
                                 for k in range(f.length)) + ")"
        assert f.cls is not None
        lay = f.cls.__cabi__
        if lay.is_union:
            return self.record_expr(f.cls, at, None)
        return self.record_expr(f.cls, at, seg)

    def member_expr(self, f: _Field, at: int) -> str:
        seg = self.place(_main_leaves(f, at))
        return self.field_expr(f, at, seg)

    def record_expr(self, cls: type[CRecord], base: int, seg: int | None) -> str:
        args = []
        for f in cls.__cabi__.fields:
            at = base + f.offset
            if seg is None or f.group is not None:
                args.append(self.member_expr(f, at))
            else:
                args.append(self.field_expr(f, at, seg))
        return f"{self.const(cls)}({', '.join(args)})"

    def compile_decode(self) -> tuple[Callable[[Any, int], Any], tuple[str, ...]]:
        top = self.cls.__cabi__
        if top.is_union:
            expr = self.record_expr(self.cls, 0, None)
            if not self.segs:
                self.segs.append(_Seg())
        else:
            first = [
                leaf for f in top.fields if f.group is None for leaf in _main_leaves(f, f.offset)
            ]
            self.segs.append(_Seg())
            self.segs[0].add(first)
            expr = self.record_expr(self.cls, 0, 0)
        lines = ["def _decode(buf, off=0):"]
        formats = []
        for k, seg in enumerate(self.segs):
            leaves = sorted(seg.leaves.items())
            start = 0 if k == 0 else leaves[0][0][0]
            fmt = "<"
            pos = start
            targets = []
            for (off, code), size in leaves:
                if off > pos:
                    fmt += f"{off - pos}x"
                fmt += code
                pos = off + size
                targets.append(self.var(k, off, code))
            if k == 0 and pos < top.size:
                fmt += f"{top.size - pos}x"
            formats.append(fmt)
            unpack = self.const(struct.Struct(fmt).unpack_from)
            where = "off" if start == 0 else f"off + {start}"
            lines.append(f"    ({', '.join(targets)},) = {unpack}(buf, {where})")
        lines.append(f"    return {expr}")
        ns = dict(self.names)
        exec("\n".join(lines), ns)  # generated from the layout tables only
        self.names = ns
        return ns["_decode"], tuple(formats)

    # encode -------------------------------------------------------------------------------

    def compile_encode(self) -> Callable[[Any], bytes]:
        top = self.cls.__cabi__
        checks: list[str] = []
        leaves: list[tuple[int, str, int, str]] = []
        overlays: list[tuple[_Field, int, str]] = []
        self.walk_encode(self.cls, 0, "o", checks, leaves, overlays)
        leaves.sort()
        fmt = "<"
        pos = 0
        values = []
        for off, code, size, expr in leaves:
            if off > pos:
                fmt += f"{off - pos}x"
            fmt += code
            pos = off + size
            values.append(expr)
        if pos < top.size:
            fmt += f"{top.size - pos}x"
        pack = self.const(struct.Struct(fmt).pack)
        body = list(checks)
        if not overlays:
            body.append(f"return {pack}({', '.join(values)})")
        else:
            body.append(f"b = bytearray({pack}({', '.join(values)}))")
            for f, at, expr in overlays:
                body.extend(self.overlay(f, at, expr))
            body.append("return bytes(b)")
        lines = ["def _encode(o):", "    try:"]
        lines += ["        " + line for line in body]
        lines += [
            "    except _struct_error:",
            f"        raise _fail({self.const(self.cls)}, o) from None",
        ]
        ns = dict(self.names)
        exec("\n".join(lines), ns)  # generated from the layout tables only
        return typing.cast(Callable[[Any], bytes], ns["_encode"])

    def walk_encode(
        self,
        cls: type[CRecord],
        base: int,
        path: str,
        checks: list[str],
        leaves: list[tuple[int, str, int, str]],
        overlays: list[tuple[_Field, int, str]],
    ) -> None:
        lay = cls.__cabi__
        if lay.is_union:
            for f in lay.fields:
                overlays.append((f, base + f.offset, f"{path}.{f.name}"))
            return
        for f in lay.fields:
            at = base + f.offset
            expr = f"{path}.{f.name}"
            if f.group is not None:
                overlays.append((f, at, expr))
            elif f.kind == "int":
                leaves.append((at, f.code, f.size, expr))
            elif f.kind == "bytes":
                checks.append(f"if len({expr}) != {f.length}: raise ValueError")
                leaves.append((at, f.code, f.size, expr))
            elif f.kind == "array":
                checks.append(f"if len({expr}) != {f.length}: raise ValueError")
                esize = f.size // f.length
                for k in range(f.length):
                    leaves.append((at + k * esize, f.code, esize, f"{expr}[{k}]"))
            else:
                assert f.cls is not None
                checks.append(f"if type({expr}) is not {self.const(f.cls)}: raise TypeError")
                self.walk_encode(f.cls, at, expr, checks, leaves, overlays)

    def overlay(self, f: _Field, at: int, expr: str) -> list[str]:
        end = at + f.size
        if f.kind == "record":
            assert f.cls is not None
            zero = self.const(f.cls())
            enc = self.const(f.cls._cencode)
            return [
                f"m = {expr}",
                f"if type(m) is not {self.const(f.cls)}: raise TypeError",
                f"if m != {zero}: b[{at}:{end}] = {enc}(m)",
            ]
        if f.kind == "bytes":
            return [
                f"m = {expr}",
                f"if len(m) != {f.length}: raise ValueError",
                f"if m != {self.const(bytes(f.length))}: b[{at}:{end}] = m",
            ]
        pack = self.const(struct.Struct("<" + f.code * f.length).pack)
        if f.kind == "array":
            return [
                f"m = {expr}",
                f"if len(m) != {f.length}: raise ValueError",
                f"if any(m): b[{at}:{end}] = {pack}(*m)",
            ]
        return [f"m = {expr}", f"if m: b[{at}:{end}] = {pack}(m)"]


def _bad_value(f: _Field, value: Any) -> bool:
    """True when ``value`` is not a valid value of field ``f`` (records are checked deeper)."""
    if f.kind == "int":
        return not isinstance(value, int) or not 0 <= value <= _CTYPES[f.ctype][2]
    if f.kind == "bytes":
        return not isinstance(value, bytes | bytearray) or len(value) != f.length
    if f.kind == "array":
        hi = _CTYPES[f.ctype.split("[")[0]][2]
        return (
            not isinstance(value, tuple | list)
            or len(value) != f.length
            or not all(isinstance(v, int) and 0 <= v <= hi for v in value)
        )
    return not isinstance(value, f.cls)  # type: ignore[arg-type]


def _first_bad(cls: type[CRecord], obj: Any, prefix: str) -> tuple[str, _Field, Any] | None:
    for f in cls.__cabi__.fields:
        value = getattr(obj, f.name, None)
        path = prefix + f.name
        if _bad_value(f, value):
            return path, f, value
        if f.cls is not None:
            found = _first_bad(f.cls, value, path + ".")
            if found is not None:
                return found
    return None


def _encode_failure(cls: type[CRecord], obj: Any) -> UAPIError:
    found = _first_bad(cls, obj, "")
    if found is None:  # pragma: no cover - the codec refused something the checker accepts
        return fail("abi.field_range", record=cls.__name__, field="?", value="?", ctype="?")
    path, f, value = found
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return fail("abi.field_range", record=cls.__name__, field=path, value=text, ctype=f.ctype)


def _compile(cls: type[R], cname: str, is_union: bool, minsz: str | int | None) -> type[R]:
    if not (isinstance(cls, type) and issubclass(cls, CRecord)):
        raise TypeError(f"{cls!r} must derive from CRecord")
    fields, size, align, holes = _lay_out(cls, is_union)
    ftuple = tuple(fields)
    lay = CLayout(cname or cls.__name__, size, align, is_union, ftuple, (), tuple(holes),
                  _paths(ftuple, 0, ""))
    cls.__cabi__ = lay
    comp = _Compiler(cls, lay)
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


# ---- size disciplines ------------------------------------------------------------------------


class SizeDiscipline(enum.Enum):
    """How an argsz-first record is copied from user memory.

    ``ARGSZ`` is the 2020 kernel: copy minsz, require argsz >= minsz, apply the per-variant
    minimum, copy ``min(argsz, SIZE)`` into a zeroed copy and never read the tail.
    ``IOMMUFD`` is ``copy_struct_from_user``: the same minimum, a shorter struct zero-extended,
    a longer one accepted only if every byte past ``SIZE`` is zero (else E2BIG).
    """

    ARGSZ = "argsz"
    IOMMUFD = "iommufd"


_ARGSZ_WORD = struct.Struct("<I").unpack_from

#: Called with the record decoded from the bytes copied so far (only fields below minsz are
#: meaningful), the user's argsz and the caller's context (a profile); raises to refuse before
#: the rest is copied.
HeadCheck = Callable[[Any, int, Any], None]


def copy_from_user(
    cls: type[R],
    buf: bytes | bytearray | memoryview,
    op: str,
    discipline: SizeDiscipline = SizeDiscipline.ARGSZ,
    head_check: HeadCheck | None = None,
    ctx: Any = None,
    label: str | None = None,
) -> R:
    """Copy an argsz-first record from the user buffer ``buf`` as the kernel does.

    ``len(buf)`` models how much user memory is readable. In order: fewer than ``MINSZ``
    readable bytes -> EFAULT (``op.copy_minsz``); argsz < ``MINSZ`` -> EINVAL
    (``op.argsz_minsz``); ``head_check`` (the per-variant minimum and anything the kernel checks
    before the second copy); then the rest: under ARGSZ EFAULT if fewer than
    ``min(argsz, SIZE)`` bytes are readable (the tail past ``SIZE`` is never read); under
    IOMMUFD, when argsz > ``SIZE``, EFAULT if fewer than argsz bytes are readable and E2BIG if a
    tail byte is non-zero, else EFAULT if fewer than argsz bytes are readable. The result is the
    kernel copy: bytes past argsz are zero, ``argsz`` is the user's. ``label`` renames the
    operation in messages (``unbind`` copies bind data under the ``bind.*`` rules).
    """
    if type(buf) is not bytes and type(buf) is not bytearray:
        try:
            buf = memoryview(buf).cast("B")
        except (TypeError, ValueError):
            raise fail(f"{op}.copy_minsz", label, minsz=cls.MINSZ, have=0) from None
    size = cls.SIZE
    minsz = cls.MINSZ
    have = len(buf)
    if have < minsz:
        raise fail(f"{op}.copy_minsz", label, minsz=minsz, have=have)
    argsz: int = _ARGSZ_WORD(buf, 0)[0]
    if argsz < minsz:
        raise fail(f"{op}.argsz_minsz", label, argsz=argsz, minsz=minsz)
    if argsz >= size and have >= size:
        rec: R = cls._cdecode(buf, 0)
    else:
        take = min(argsz, size, have)
        rec = cls._cdecode(bytes(buf[:take]) + bytes(size - take), 0)
    if head_check is not None:
        head_check(rec, argsz, ctx)
    if discipline is SizeDiscipline.IOMMUFD and argsz > size:
        if have < argsz:
            raise fail(f"{op}.copy_rest", label, need=argsz, argsz=argsz, have=have)
        tail = bytes(buf[size:argsz])
        if tail.count(0) != len(tail):
            index = size + next(i for i, byte in enumerate(tail) if byte)
            raise fail(f"{op}.tail_nonzero", label, argsz=argsz, size=size, index=index)
    else:
        need = min(argsz, size)
        if have < need:
            raise fail(f"{op}.copy_rest", label, need=need, argsz=argsz, have=have)
    return rec

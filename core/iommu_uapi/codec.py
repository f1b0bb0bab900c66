"""The byte codec of a laid-out record, compiled once per class.

* Decoding is one ``struct.Struct.unpack_from`` per *segment*: the record's own fields and every
  union member that fits beside them without conflicting bytes share one ``"<"`` format (a
  member field at the same offset with the same C type as another reuses its value), so a
  ``CacheInvalidateInfo`` decodes with a single unpack; only genuinely overlapping members
  (``Fault``'s ``padding2``) need a second.
* Encoding packs the non-union fields, then writes each union's members in declaration order
  over the zeroed union area, so a later member wins where members overlap. A member equal to
  its all-zero value is skipped, so a record built in code only needs the member it means.
* A value that does not fit its C type is refused with EINVAL (``abi.field_range``) naming the
  first such field.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from .errors import UAPIError
from .layout import CTYPES, CField, CLayout
from .rules import fail

if TYPE_CHECKING:
    from .abi import CRecord

__all__ = ["Compiler", "encode_failure"]

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


def _main_leaves(f: CField, at: int) -> list[tuple[int, str, int]]:
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


class Compiler:
    """Generates the decode and encode functions of one record class."""

    def __init__(self, cls: type[CRecord], lay: CLayout) -> None:
        self.cls = cls
        self.lay = lay
        self.segs: list[_Seg] = []
        self.names: dict[str, Any] = {
            "_fail": encode_failure,
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

    def field_expr(self, f: CField, at: int, seg: int) -> str:
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

    def member_expr(self, f: CField, at: int) -> str:
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
        overlays: list[tuple[CField, int, str]] = []
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
        return cast(Callable[[Any], bytes], ns["_encode"])

    def walk_encode(
        self,
        cls: type[CRecord],
        base: int,
        path: str,
        checks: list[str],
        leaves: list[tuple[int, str, int, str]],
        overlays: list[tuple[CField, int, str]],
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

    def overlay(self, f: CField, at: int, expr: str) -> list[str]:
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


def _bad_value(f: CField, value: Any) -> bool:
    """True when ``value`` is not a valid value of field ``f`` (records are checked deeper)."""
    if f.kind == "int":
        return not isinstance(value, int) or not 0 <= value <= CTYPES[f.ctype][2]
    if f.kind == "bytes":
        return not isinstance(value, bytes | bytearray) or len(value) != f.length
    if f.kind == "array":
        hi = CTYPES[f.ctype.split("[")[0]][2]
        return (
            not isinstance(value, tuple | list)
            or len(value) != f.length
            or not all(isinstance(v, int) and 0 <= v <= hi for v in value)
        )
    return not isinstance(value, f.cls)  # type: ignore[arg-type]


def _first_bad(cls: type[CRecord], obj: Any, prefix: str) -> tuple[str, CField, Any] | None:
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


def encode_failure(cls: type[CRecord], obj: Any) -> UAPIError:
    found = _first_bad(cls, obj, "")
    if found is None:  # pragma: no cover - the codec refused something the checker accepts
        return fail("abi.field_range", record=cls.__name__, field="?", value="?", ctype="?")
    path, f, value = found
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return fail("abi.field_range", record=cls.__name__, field=path, value=text, ctype=f.ctype)

"""The record commands of ``iommu-uapi``: ``decode``, ``encode`` and ``layout``.

``decode --json`` writes the record in the records' own JSON form (:meth:`CRecord.to_json`:
kernel field names, byte arrays as base64), so its output is ``encode``'s input, whole or just
its ``record`` member; ``encode``'s hex is ``decode``'s input. Both directions round-trip.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import msgspec

from .abi import CRecord, SizeDiscipline
from .errors import UAPIError, errno_name
from .rules import fail

__all__ = ["UsageError", "cmd_decode", "cmd_encode", "cmd_layout", "record_types"]


class UsageError(Exception):
    """A command line that cannot be carried out as given (exit status 2)."""


def record_types() -> dict[str, type[CRecord]]:
    """Every UAPI record, the 2020 ones and iommufd's, by Python name and by C name
    (``CacheInvalidateInfo``, ``iommu_cache_invalidate_info``, ``iommu_hwpt_alloc``),
    case-insensitively keyed in lower case."""
    from . import iommufd, uapi

    found: dict[str, type[CRecord]] = {}
    for module in (uapi, iommufd):
        for name in dir(module):
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, CRecord) and obj is not CRecord:
                found[name.lower()] = obj
                found[obj.CNAME.lower()] = obj
                found[obj.CNAME.lower().removeprefix("struct ")] = obj
    return found


def _record(name: str) -> type[CRecord]:
    rec = record_types().get(name.lower())
    if rec is None:
        names = sorted({cls.__name__ for cls in record_types().values()})
        raise UsageError(f"unknown struct {name!r}; known: {', '.join(names)}")
    return rec


def _read_hex(text: str) -> bytes:
    """The bytes of ``decode``'s argument: hex (spaces, ``0x``, ``,`` and ``:`` allowed), or
    ``-``: standard input as hex, else as raw bytes."""
    if text == "-":
        raw = sys.stdin.buffer.read()
        try:
            return bytes.fromhex(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return raw
    cleaned = "".join(text.replace("0x", "").replace(",", " ").replace(":", " ").split())
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise UsageError(f"not hex bytes: {text[:40]!r}") from None


def emit(data: object) -> None:
    """Print ``data`` as indented JSON."""
    print(json.dumps(data, indent=2, default=str))


def _hex_bytes(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _hex_bytes(v) for k, v in value.items()}
    return value


def _verdict(rec_type: type[CRecord], data: bytes, profile: str,
             discipline: SizeDiscipline) -> tuple[CRecord | None, UAPIError | None]:
    from_user = getattr(rec_type, "from_user", None)
    try:
        if from_user is not None:
            return from_user(data, profile=profile, discipline=discipline), None
        return rec_type.from_bytes(data), None
    except UAPIError as exc:
        return None, exc


def cmd_decode(args: argparse.Namespace) -> int:
    """Decode a record from bytes and give the verdict of the checks."""
    rec_type = _record(args.struct)
    data = _read_hex(args.hex)
    profile = args.profile
    rec, error = _verdict(rec_type, data, profile, SizeDiscipline(args.discipline))
    plain: CRecord | None = rec
    if plain is None:
        try:  # show what the bytes say even when the checks refuse them
            plain = rec_type.from_bytes(data[: rec_type.SIZE].ljust(rec_type.SIZE, b"\0"))
        except UAPIError:
            plain = None
    verdict: dict[str, Any] = {"accepted": error is None, "profile": profile,
                               "discipline": args.discipline}
    if error is not None:
        verdict.update(errno=errno_name(error.errno), rule=error.rule, message=error.message)
    if args.json:
        record = None if plain is None else json.loads(plain.to_json())
        emit({"struct": rec_type.__name__, "record": record, "verdict": verdict})
    else:
        print(f"{rec_type.__name__} ({rec_type.CNAME}, {rec_type.SIZE} bytes)")
        if plain is not None:
            _print_fields(_hex_bytes(msgspec.to_builtins(plain, builtin_types=(bytes,))), "  ")
        if error is None:
            print(f"verdict: accepted under {profile} ({args.discipline})")
        else:
            print(f"verdict: rejected {errno_name(error.errno)} [{error.rule}]: {error.message}")
    return 0 if error is None else 1


def _print_fields(value: object, indent: str) -> None:
    assert isinstance(value, dict)
    for key, item in value.items():
        if isinstance(item, dict):
            print(f"{indent}{key}:")
            _print_fields(item, indent + "  ")
        elif isinstance(item, int):
            print(f"{indent}{key} = {item} ({item:#x})")
        else:
            print(f"{indent}{key} = {item}")


def _encode_input(rec_type: type[CRecord], data: bytes) -> CRecord:
    """The record a JSON document describes: a record document, or ``decode --json``'s whole
    output (its ``record`` member is taken; its ``struct`` must be ``rec_type``)."""
    try:
        doc = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        detail = "the document nests too deeply" if isinstance(exc, RecursionError) else exc
        raise fail("abi.decode", record=rec_type.__name__, detail=str(detail)) from None
    if isinstance(doc, dict) and {"struct", "record", "verdict"} <= doc.keys():
        if str(doc["struct"]).lower() not in {rec_type.__name__.lower(), rec_type.CNAME.lower()}:
            raise UsageError(f"the document is decode's output for {doc['struct']!r}, "
                             f"not {rec_type.__name__}")
        if doc["record"] is None:
            raise fail("abi.decode", record=rec_type.__name__,
                       detail="decode's output holds no record")
        data = msgspec.json.encode(doc["record"])
    return rec_type.from_json(data)


def cmd_encode(args: argparse.Namespace) -> int:
    """Encode a record from JSON and print its bytes as hex."""
    rec_type = _record(args.struct)
    raw = sys.stdin.buffer.read() if args.json_text == "-" else args.json_text.encode(
        "utf-8", "surrogateescape")
    data = _encode_input(rec_type, raw).to_bytes()
    if args.raw:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        print(data.hex())
    return 0


def cmd_layout(args: argparse.Namespace) -> int:
    """Print a record's C layout: member path, offset, size."""
    rec_type = _record(args.struct)
    layout = rec_type.c_layout()
    if args.json:
        emit({"struct": rec_type.__name__, "cname": rec_type.CNAME, "size": rec_type.SIZE,
              "minsz": rec_type.MINSZ, "members": {k: list(v) for k, v in layout.items()}})
        return 0
    print(f"struct {rec_type.CNAME.removeprefix('struct ')}: size {rec_type.SIZE}, minsz "
          f"{rec_type.MINSZ}")
    width = max(len(k) for k in layout)
    for path, (offset, size) in sorted(layout.items(), key=lambda kv: (kv[1][0], kv[0])):
        print(f"  {offset:>4}  {size:>3}  {path:<{width}}")
    return 0

"""The ``iommu-uapi`` command: backends, features, and the UAPI records from the shell.

Exit status: 0 success, 1 input rejected (the errno and rule are printed), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import msgspec

from . import __version__, plugins, profiles
from .abi import CRecord, SizeDiscipline
from .errors import UAPIError, errno_name

__all__ = ["main", "record_types"]


def record_types() -> dict[str, type[CRecord]]:
    """Every UAPI record by Python name and by C name (``CacheInvalidateInfo``,
    ``iommu_cache_invalidate_info``), case-insensitively keyed in lower case."""
    from . import uapi

    found: dict[str, type[CRecord]] = {}
    for name in dir(uapi):
        obj = getattr(uapi, name)
        if isinstance(obj, type) and issubclass(obj, CRecord) and obj is not CRecord:
            found[name.lower()] = obj
            found[obj.CNAME.lower()] = obj
            found[obj.CNAME.lower().removeprefix("struct ")] = obj
    return found


class UsageError(Exception):
    """A command line that cannot be carried out as given (exit status 2)."""


def _record(name: str) -> type[CRecord]:
    rec = record_types().get(name.lower())
    if rec is None:
        names = sorted({cls.__name__ for cls in record_types().values()})
        raise UsageError(f"unknown struct {name!r}; known: {', '.join(names)}")
    return rec


def _read_hex(text: str) -> bytes:
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


def _emit(data: object) -> None:
    print(json.dumps(data, indent=2, default=str))


def _hex_bytes(value: object) -> object:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _hex_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hex_bytes(v) for v in value]
    return value


def _plain(value: object) -> object:
    """A record as plain data, byte arrays (padding) shown as hex."""
    return _hex_bytes(msgspec.to_builtins(value, builtin_types=(bytes,), enc_hook=str))


# --- commands ------------------------------------------------------------------------------------


def cmd_backends(args: argparse.Namespace) -> int:
    """List installed backends: name, distribution, version, features."""
    reg = plugins.registry()
    rows: list[dict[str, object]] = []
    for name, spec in sorted(reg.backends.items()):
        features: object
        try:
            from .iommu import IOMMU

            features = IOMMU(name).capabilities.to_dict()["features"]
        except UAPIError as exc:
            features = f"unavailable: {exc}"
        rows.append({"name": name, "distribution": spec.distribution, "version": spec.version,
                     "description": spec.description, "features": features})
    problems = [{"entry_point": p.entry_point, "distribution": p.distribution, "error": p.error}
                for p in reg.problems]
    if args.json:
        _emit({"backends": rows, "problems": problems})
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"iommu-uapi {__version__}: installed backends")
    for col in ("name", "distribution", "version", "features"):
        table.add_column(col)
    for row in rows:
        feats = row["features"]
        table.add_row(str(row["name"]), str(row["distribution"]), str(row["version"]),
                      ", ".join(feats) if isinstance(feats, list) else str(feats))
    console = Console()
    if rows:
        console.print(table)
    else:
        console.print("no backends installed (install e.g. plugins/vtd)")
    for p in problems:
        console.print(f"[yellow]skipped plugin {p['entry_point']} "
                      f"({p['distribution'] or 'no distribution'}): {p['error']}[/yellow]")
    return 0


def cmd_features(args: argparse.Namespace) -> int:
    """Print one backend's capabilities."""
    from .iommu import IOMMU

    caps = IOMMU(args.backend).capabilities.to_dict()
    if args.json:
        _emit(caps)
        return 0
    width = max(len(k) for k in caps)
    for key, value in caps.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        if isinstance(value, dict):
            shown = ", ".join(f"{k}: {v}" for k, v in value.items())
        print(f"{key:<{width}}  {shown}")
    return 0


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
    profile = profiles.get(args.profile).name
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
        _emit({"struct": rec_type.__name__, "record": _plain(plain) if plain else None,
               "verdict": verdict})
    else:
        print(f"{rec_type.__name__} ({rec_type.CNAME}, {rec_type.SIZE} bytes)")
        if plain is not None:
            _print_fields(_plain(plain), "  ")
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


def cmd_encode(args: argparse.Namespace) -> int:
    """Encode a record from JSON and print its bytes as hex."""
    rec_type = _record(args.struct)
    text = sys.stdin.read() if args.json_text == "-" else args.json_text
    rec = rec_type.from_json(text)
    data = rec.to_bytes()
    if args.raw:
        sys.stdout.buffer.write(data)
    else:
        print(data.hex())
    return 0


def cmd_layout(args: argparse.Namespace) -> int:
    """Print a record's C layout: member path, offset, size."""
    rec_type = _record(args.struct)
    layout = rec_type.c_layout()
    if args.json:
        _emit({"struct": rec_type.__name__, "cname": rec_type.CNAME, "size": rec_type.SIZE,
               "minsz": rec_type.MINSZ, "members": {k: list(v) for k, v in layout.items()}})
        return 0
    print(f"struct {rec_type.CNAME.removeprefix('struct ')}: size {rec_type.SIZE}, minsz "
          f"{rec_type.MINSZ}")
    width = max(len(k) for k in layout)
    for path, (offset, size) in sorted(layout.items(), key=lambda kv: (kv[1][0], kv[0])):
        print(f"  {offset:>4}  {size:>3}  {path:<{width}}")
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    """Print the rule tables: the core's UAPI checks and the model's refusals, plus with
    ``--backend`` that backend's own table and profiles (every rule with its errno and the
    profiles applying it, every quirk with the profiles that have it)."""
    from . import profiles as profs
    from . import ruletable
    from .model_rules import MODEL_TABLE
    from .rules import UAPI_TABLE
    from .ruletable import RuleTable, render_markdown

    tables: list[RuleTable] = [UAPI_TABLE, MODEL_TABLE]
    names = list(profs.BUILTIN)
    if args.backend is not None:
        reg = plugins.registry()
        spec = reg.backends.get(args.backend)
        if spec is None:
            have = ", ".join(sorted(reg.backends)) or "none installed"
            raise UsageError(f"unknown backend {args.backend!r} (installed: {have})")
        if spec.rules is not None:
            tables.append(spec.rules)
        names += [p.name for p in spec.profiles if p.name not in names]
    if args.json:
        _emit([row for t in tables for row in t.to_rows()])
    elif args.markdown:
        sys.stdout.write(render_markdown(
            "Rule table", "Generated by `iommu-uapi rules --markdown"
            + (f" --backend {args.backend}`." if args.backend else "`."),
            [tables[0], profs.render_markdown(names, tables), *tables[1:]]))
    else:
        for t in tables:
            print(f"# {t.title} ({t.name})")
            for r in t.rules:
                err = "-" if r.errno is None else errno_name(r.errno)
                prof = "all" if r.profiles is None else ",".join(r.profiles)
                print(f"{r.id:<44} {err:<8} {prof:<18} {r.text}")
            for q in t.quirks:
                print(f"{q.id:<44} {'quirk':<8} {','.join(q.profiles):<18} {q.text}")
        print("# Profiles")
        for name in names:
            p = profs.get(name)
            on = [f"{k}={v!r}" if v is not True else k for k, v in p.quirks.items()
                  if v != ruletable.quirk_declaration(k).default]
            base = f" (based on {p.base})" if p.base else ""
            print(f"{name}{base}: {len(p.rules)} rules; quirks: {', '.join(on) or 'none'}")
    return 0


def cmd_matrix(args: argparse.Namespace) -> int:
    """Run the conformance suite against every (or the named) installed backend."""
    from .matrix import run_matrix

    names = args.backend or sorted(plugins.registry().backends)
    if not names:
        print("iommu-uapi: no backends installed (install e.g. plugins/vtd)", file=sys.stderr)
        return 2
    for name in names:
        plugins.get_backend(name)
    results = run_matrix(names, progress=not args.json and sys.stderr.isatty())
    if args.json:
        _emit([{"backend": r.backend, "ok": r.ok, "error": r.error,
                "areas": {area: {"verdict": a.verdict, "passed": a.passed, "failed": a.failed,
                                 "skipped": a.skipped, "skip_reasons": a.skip_reasons,
                                 "failures": a.failures}
                          for area, a in r.areas.items()}} for r in results])
    else:
        from rich.console import Console
        from rich.table import Table

        areas = list(dict.fromkeys(a for r in results for a in r.areas))
        table = Table(title="iommu-uapi conformance matrix")
        table.add_column("area")
        for r in results:
            table.add_column(r.backend)
        style = {"passed": "green", "failed": "bold red", "not supported": "yellow"}
        for area in areas:
            cells = []
            for r in results:
                a = r.areas.get(area)
                cells.append("-" if a is None else f"[{style[a.verdict]}]{a.summary()}[/]")
            table.add_row(area, *cells)
        console = Console()
        console.print(table)
        for r in results:
            if r.error:
                console.print(f"[bold red]{r.backend}: the suite did not run: {r.error}[/]")
            for a in r.areas.values():
                for failure in a.failures:
                    console.print(f"[red]{r.backend}: {failure}[/]")
    return 0 if all(r.ok for r in results) else 1


def cmd_new_backend(args: argparse.Namespace) -> int:
    """Generate the skeleton of a backend distribution."""
    from pathlib import Path

    from .scaffold import generate

    directory = Path(args.directory or f"iommu-uapi-{args.name.replace('_', '-')}")
    for path in generate(args.name, directory):
        print(path)
    print(f"next: pip install -e {directory} && iommu-uapi matrix --backend {args.name}")
    return 0


# --- parser --------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"iommu-uapi: usage error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the documentation and tests)."""
    parser = _Parser(prog="iommu-uapi", description=(
        "Drive IOMMU models through the Linux IOMMU user API: list backends, decode and check "
        "UAPI structs, show their C layout."))
    parser.add_argument("--version", action="version", version=f"iommu-uapi {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("backends", help="list installed backends and their features")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_backends)

    p = sub.add_parser("features", help="show one backend's capabilities")
    p.add_argument("backend", help="backend name, e.g. vtd")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_features)

    prof = ", ".join(profiles.names())
    p = sub.add_parser("decode", help="decode a struct from bytes and check it")
    p.add_argument("struct", help="record name, e.g. CacheInvalidateInfo or "
                                  "iommu_cache_invalidate_info")
    p.add_argument("hex", help="the bytes as hex (spaces allowed), or - for standard input")
    p.add_argument("--profile", default="linux-5.10", help=f"validation profile ({prof})")
    p.add_argument("--discipline", default="argsz", choices=[d.value for d in SizeDiscipline],
                   help="size rules: the 2020 kernel's argsz copy or iommufd's")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("encode", help="encode a struct from JSON and print its bytes")
    p.add_argument("struct", help="record name")
    p.add_argument("json_text", metavar="JSON", help="the record as a JSON object, or -")
    p.add_argument("--raw", action="store_true", help="write raw bytes instead of hex")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("layout", help="show a struct's C layout (offsets and sizes)")
    p.add_argument("struct", help="record name")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_layout)

    p = sub.add_parser("matrix", help="run the conformance suite against installed backends")
    p.add_argument("--backend", action="append", metavar="NAME",
                   help="only this backend (repeatable; default: every installed backend)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_matrix)

    p = sub.add_parser("new-backend", help="generate the skeleton of a backend distribution")
    p.add_argument("name", help="backend name (a lower-case identifier)")
    p.add_argument("directory", nargs="?", help="where (default: ./iommu-uapi-NAME)")
    p.set_defaults(func=cmd_new_backend)

    p = sub.add_parser("rules", help="list every validation rule with its errno and profiles")
    p.add_argument("--backend", metavar="NAME",
                   help="add this installed backend's own rules and profiles")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="machine-readable output")
    out.add_argument("--markdown", action="store_true", help="the tables as a Markdown document")
    p.set_defaults(func=cmd_rules)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"iommu-uapi: usage error: {exc}", file=sys.stderr)
        return 2
    except UAPIError as exc:
        rule = f" [{exc.rule}]" if exc.rule else ""
        print(f"iommu-uapi: rejected: {errno_name(exc.errno)}{rule}: {exc.message}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``iommu-uapi`` command: backends, features, and the UAPI records from the shell.

Exit status: 0 success; 1 input rejected (bytes or JSON refused by a rule: the errno and rule
are printed) or a conformance failure; 2 usage error (an unknown command, option, struct,
profile or backend, a directory ``new-backend`` cannot use); 130 interrupted (Ctrl-C); 141
standard output closed early (``iommu-uapi rules | head -1``). The last two end quietly.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from . import __version__, plugins, profiles
from .abi import SizeDiscipline
from .cli_records import UsageError, cmd_decode, cmd_encode, cmd_layout, record_types
from .cli_records import emit as _emit
from .errors import UAPIError, errno_name

__all__ = ["UsageError", "main", "record_types"]

#: The shell's status for a command ended by SIGINT / SIGPIPE (128 + the signal number).
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


def _backend(name: str) -> str:
    """``name`` if a backend of that name is installed; a usage error naming the installed
    ones (and the plugin's load error, when the name is a plugin that failed to load)."""
    try:
        return plugins.get_backend(name).name
    except UAPIError as exc:
        raise UsageError(exc.message) from None


def _profile(name: str) -> str:
    """An argparse type: a registered profile's name."""
    try:
        return profiles.get(name).name
    except UAPIError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


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

    caps = IOMMU(_backend(args.backend)).capabilities.to_dict()
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
    from .matrix import BackendResult, areas, run_matrix

    reg = plugins.registry()
    broken = {p.entry_point: p for p in reg.problems if p.entry_point not in reg.backends}
    excluded = set(args.exclude or ())
    if args.backend:
        wanted = [n if n in broken else _backend(n) for n in dict.fromkeys(args.backend)]
    else:
        wanted = sorted({*reg.backends, *broken})
    wanted = [n for n in wanted if n not in excluded]
    if not wanted:
        raise UsageError("no backend to run (install one, e.g. plugins/vtd, or exclude fewer)")
    names = [n for n in wanted if n not in broken]
    known = areas()
    unknown = [a for a in args.area or () if a not in known]
    if unknown:
        raise UsageError(f"no area {unknown[0]!r} (areas: {', '.join(known)})")
    results = run_matrix(names, progress=not args.json and sys.stderr.isatty(),
                         only=args.area or ())
    results += [BackendResult(n, error=f"the plugin did not load "
                                       f"({broken[n].distribution or 'no distribution'}): "
                                       f"{broken[n].error}")
                for n in wanted if n in broken]
    if args.json:
        _emit([{"backend": r.backend, "ok": r.ok, "error": r.error,
                "areas": {area: {"verdict": a.verdict, "passed": a.passed, "failed": a.failed,
                                 "skipped": a.skipped, "skip_reasons": a.skip_reasons,
                                 "failures": a.failures}
                          for area, a in r.areas.items()}} for r in results])
    else:
        from rich.console import Console
        from rich.table import Table

        shown = list(dict.fromkeys(a for r in results for a in r.areas))
        table = Table(title="iommu-uapi conformance matrix")
        table.add_column("area")
        for r in results:
            table.add_column(r.backend)
        style = {"passed": "green", "failed": "bold red", "not supported": "yellow"}
        for area in shown:
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
    try:
        written = generate(args.name, directory)
    except UAPIError as exc:  # the name or the directory given cannot be used
        raise UsageError(f"{errno_name(exc.errno)} [{exc.rule}]: {exc.message}") from None
    for path in written:
        print(path)
    print(f"next: pip install -e {directory} && iommu-uapi matrix --backend {args.name}")
    return 0


# --- parser --------------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
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
    p.add_argument("--profile", default="linux-5.10", type=_profile,
                   help=f"validation profile ({prof})")
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
                   help="only this backend (repeatable; default: every installed backend, "
                        "a plugin that fails to load included, as a failure)")
    p.add_argument("--exclude", action="append", metavar="NAME",
                   help="leave this backend or broken plugin out (repeatable)")
    p.add_argument("--area", action="append", metavar="AREA",
                   help="only this area of the suite, e.g. 'invalidation' (repeatable)")
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

    from .trace.cli import add_commands as add_trace_commands

    add_trace_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module's docstring)."""
    try:
        return _run(argv)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _run(argv: Sequence[str] | None) -> int:
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


def _silence_stdout() -> None:
    """Point standard output at /dev/null once its reader is gone, so that the interpreter's
    final flush does not report the broken pipe a second time."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (captured output)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The trace subcommands of ``iommu-uapi``: ``trace info``, ``replay``, ``workload``, ``sweep``
and ``plot`` (the same exit statuses as the rest of the command: 1 rejected input, the rule and
the byte offset named on one line; 2 usage error)."""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from ..caches import Geometry
from ..cli_records import UsageError
from .format import TraceWriter, trace_info
from .geometry import TRACE_PRESETS, parse_geometry
from .replay import replay
from .stats import ReplayStats
from .sweep import points, read_rows, sweep, write_csv, write_json
from .workloads import WORKLOADS, workload

__all__ = ["add_commands"]

#: Workload options of ``iommu-uapi workload`` (dest, type, help); each kind takes some.
_WORKLOAD_OPTIONS: tuple[tuple[str, type, str], ...] = (
    ("mode", str, "ring: strict, deferred or none"),
    ("ring", int, "ring: slots"),
    ("buffer", int, "ring: bytes per buffer"),
    ("packets", int, "ring: packets"),
    ("batch", int, "ring deferred: unmaps per flush"),
    ("timer", int, "ring deferred: flush after this many ns of trace time"),
    ("interval", int, "ring: ns between packets"),
    ("pages", int, "stream/random/cyclic/nested: pages"),
    ("per_page", int, "stream: DMAs per page"),
    ("passes", int, "stream: passes over the buffer"),
    ("dmas", int, "random/cyclic/nested: DMAs"),
    ("pasids", int, "nested: PASIDs per device"),
    ("s2_page", int, "nested: stage-2 page size"),
    ("page", int, "page size in bytes"),
    ("devices", int, "devices"),
    ("seed", int, "random seed"),
)


def _geometry(text: str) -> Geometry:
    try:
        return parse_geometry(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _preset(name: str) -> str:
    if name not in TRACE_PRESETS:
        raise argparse.ArgumentTypeError(
            f"no cache preset {name!r}; known: {', '.join(TRACE_PRESETS)}")
    return name


def _backend(name: str) -> str:
    from ..cli import _backend as installed

    return installed(name)


def cmd_trace_info(args: argparse.Namespace) -> int:
    """``trace info FILE``: the header and the event counts."""
    info = trace_info(args.file)
    if args.json:
        sys.stdout.write(msgspec.json.encode(info).decode() + "\n")
        return 0
    h = info.header
    console = Console()
    console.print(f"trace format version {h.version}; backend {h.backend or '(any)'}; "
                  f"config {h.config or {}}; cache {h.cache or '-'}")
    if h.requires is not None:
        console.print(f"requires: {', '.join(h.requires) or 'nothing beyond the façade'}")
    if h.meta:
        console.print("meta: " + ", ".join(f"{k}={v}" for k, v in h.meta.items()))
    table = Table(title=f"{info.total} events, {info.bytes} bytes (uncompressed)")
    table.add_column("event")
    table.add_column("count", justify="right")
    for name, n in info.events.items():
        table.add_row(name, str(n))
    console.print(table)
    if info.first_t is not None and info.last_t is not None:
        console.print(f"time span: {info.last_t - info.first_t} ns")
    return 0


def _print_stats(stats: ReplayStats) -> None:
    console = Console()
    console.print(f"backend {stats.backend}, cache {stats.cache}: {stats.events} events, "
                  f"{stats.dmas} DMAs, {stats.translations} translations, {stats.faults} "
                  f"faults" + (f", refused {stats.refused}" if stats.refused else ""))
    caches = Table(title="caches")
    for col in ("cache", "hits", "misses", "hit rate", "fills", "evictions", "dropped"):
        caches.add_column(col, justify="left" if col in ("cache", "dropped") else "right")
    for name, c in stats.caches.items():
        caches.add_row(name, str(c.hits), str(c.misses), f"{c.hit_rate:.4f}", str(c.fills),
                       str(c.evictions), ", ".join(f"{k}={v}" for k, v in c.dropped.items()))
    console.print(caches)
    reads = Table(title="reads per translation")
    for col in ("", "mean", "p50", "p90", "p99", "max"):
        reads.add_column(col, justify="right")
    for name, r in (("table", stats.table_reads), ("config", stats.config_reads)):
        reads.add_row(name, f"{r.mean:.3f}", str(r.p50), str(r.p90), str(r.p99), str(r.max))
    console.print(reads)
    hist = Table(title="walk length (table reads) histogram")
    hist.add_column("reads", justify="right")
    hist.add_column("translations", justify="right")
    for reads_n, count in sorted(stats.table_reads.histogram.items()):
        hist.add_row(str(reads_n), str(count))
    console.print(hist)
    if stats.invalidations:
        inv = Table(title="invalidations")
        inv.add_column("kind")
        inv.add_column("calls", justify="right")
        for kind, calls in stats.invalidations.items():
            inv.add_row(kind, str(calls))
        console.print(inv)
    if stats.contexts:
        ctx = Table(title="per device:PASID")
        for col in ("device:pasid", "translations", "walks", "table reads", "faults"):
            ctx.add_column(col, justify="right")
        for key, per in stats.contexts.items():
            ctx.add_row(key, str(per.translations), str(per.walks), str(per.table_reads),
                        str(per.faults))
        console.print(ctx)


def cmd_replay(args: argparse.Namespace) -> int:
    """``replay TRACE --backend NAME``: replay and summarise."""
    backend = _backend(args.backend)
    if not os.path.exists(args.trace):
        raise UsageError(f"no trace file {args.trace!r}")
    progress_cb = None
    progress = None
    if not args.json and not args.no_progress and sys.stderr.isatty():
        from rich.progress import Progress

        progress = Progress(console=Console(stderr=True), transient=True)
        task = progress.add_task("replaying", total=os.path.getsize(args.trace))

        def progress_cb(events: int, done: int) -> None:
            progress.update(task, completed=done)

        progress.start()
    try:
        stats = replay(args.trace, backend, cache=args.cache, iotlb=args.iotlb, walk=args.walk,
                       per_context=args.per_context, progress=progress_cb)
    finally:
        if progress is not None:
            progress.stop()
    if args.json:
        sys.stdout.write(msgspec.json.encode(stats).decode() + "\n")
    else:
        _print_stats(stats)
    return 0


def cmd_workload(args: argparse.Namespace) -> int:
    """``workload KIND ... -o TRACE``: generate a deterministic trace."""
    make = WORKLOADS[args.kind]
    accepted = set(inspect.signature(make).parameters)
    params: dict[str, Any] = {}
    for dest, _, _ in _WORKLOAD_OPTIONS:
        value = getattr(args, dest)
        if value is None:
            continue
        if dest not in accepted:
            raise UsageError(f"workload {args.kind} takes no --{dest.replace('_', '-')}")
        params[dest] = value
    try:
        header, events = workload(args.kind, **params)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with TraceWriter(args.output, header) as writer:
        writer.extend(events)
        writer.flush()
        n = writer.events
    print(f"wrote {n} events to {args.output}", file=sys.stderr)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """``sweep``: geometries x workloads x backends, rows to CSV/JSON."""
    backends = [_backend(b) for b in args.backend]
    iotlbs: list[Geometry | None] = list(args.iotlb or [])
    for size in args.sizes or []:
        iotlbs.append(Geometry(size, args.ways or None, args.policy).check())
    walks: list[Geometry | None] = list(args.walk or []) or [None]
    todo = points(backends, args.workload, iotlbs or [None], walks, args.cache)
    rows = sweep(todo, jobs=args.jobs, scheduler=args.scheduler)
    if args.output:
        write_csv(rows, args.output)
    if args.json_output:
        write_json(rows, args.json_output)
    if not args.output and not args.json_output:
        sys.stdout.write(msgspec.json.encode(rows).decode() + "\n")
    else:
        print(f"{len(rows)} points", file=sys.stderr)
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """``plot RESULTS -o FIG``: a figure from a sweep's rows."""
    try:
        from .plot import plot
    except ImportError:  # pragma: no cover - the extra is missing
        raise UsageError("plotting needs matplotlib: pip install 'iommu-uapi[plot]'") from None
    if not os.path.exists(args.results):
        raise UsageError(f"no results file {args.results!r}")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("plotting needs matplotlib: pip install 'iommu-uapi[plot]'") from None
    lines = plot(read_rows(args.results), args.output, kind=args.kind, title=args.title)
    print(f"{lines} lines drawn into {', '.join(args.output)}", file=sys.stderr)
    return 0


def add_commands(sub: Any) -> None:
    """Add the trace subcommands to the ``iommu-uapi`` parser's subparsers."""
    presets = ", ".join(TRACE_PRESETS)
    p = sub.add_parser("trace", help="inspect a trace file")
    tsub = p.add_subparsers(dest="trace_command", required=True, parser_class=type(p))
    q = tsub.add_parser("info", help="print a trace's header and event counts")
    q.add_argument("file", help="the trace (.trace, or gzip)")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_trace_info)

    p = sub.add_parser("replay", help="replay a trace on a backend and cache geometry")
    p.add_argument("trace", help="the trace file")
    p.add_argument("--backend", required=True, help="backend name, e.g. vtd")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--cache", type=_preset, help=f"cache preset ({presets})")
    g.add_argument("--iotlb", type=_geometry, metavar="SIZE,WAYS,POLICY",
                   help="IOTLB geometry (WAYS 0: fully associative; POLICY lru, fifo, random)")
    p.add_argument("--walk", type=_geometry, metavar="SIZE,WAYS,POLICY",
                   help="every walk cache's geometry (per level)")
    p.add_argument("--per-context", action="store_true", help="also count per device and PASID")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("workload", help="generate a deterministic workload trace")
    p.add_argument("kind", choices=list(WORKLOADS), help="the workload")
    for dest, typ, text in _WORKLOAD_OPTIONS:
        p.add_argument(f"--{dest.replace('_', '-')}", dest=dest, type=typ, help=text)
    p.add_argument("-o", "--output", required=True, help="the trace to write (.gz: compressed)")
    p.set_defaults(func=cmd_workload)

    p = sub.add_parser("sweep", help="replay workloads x cache geometries x backends")
    p.add_argument("--backend", action="append", required=True, help="backend (repeatable)")
    p.add_argument("--workload", action="append", required=True, metavar="SPEC",
                   help="KIND[:key=value,...] or a trace file (repeatable)")
    p.add_argument("--iotlb", action="append", type=_geometry, metavar="SIZE,WAYS,POLICY",
                   help="an IOTLB geometry (repeatable)")
    p.add_argument("--sizes", type=lambda t: [int(x) for x in t.split(",")], metavar="N,N,...",
                   help="IOTLB sizes, with --ways and --policy")
    p.add_argument("--ways", type=int, default=0, help="ways for --sizes (0: fully assoc.)")
    p.add_argument("--policy", default="lru", help="replacement policy for --sizes")
    p.add_argument("--walk", action="append", type=_geometry, metavar="SIZE,WAYS,POLICY",
                   help="a walk-cache geometry (repeatable)")
    p.add_argument("--cache", type=_preset, default="unbounded",
                   help=f"preset for the caches not swept ({presets})")
    p.add_argument("--jobs", type=int, help="worker processes (default: one per CPU)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on this Dask scheduler (needs the 'trace' extra)")
    p.add_argument("-o", "--output", help="CSV file of the rows")
    p.add_argument("--json-output", help="JSON file of the rows")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("plot", help="draw a figure from sweep results (needs the 'plot' extra)")
    p.add_argument("results", help="a sweep's CSV or JSON")
    p.add_argument("-o", "--output", action="append", required=True,
                   help="figure file, .png or .svg (repeatable)")
    p.add_argument("--kind", choices=["hit-rate", "walk"], default="hit-rate")
    p.add_argument("--title", help="the figure's title")
    p.set_defaults(func=cmd_plot)

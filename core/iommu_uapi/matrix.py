"""``iommu-uapi matrix``: the conformance suite against every installed backend, in-process.

Each backend runs the packaged suite (:mod:`iommu_uapi.testing.suite`) through ``pytest.main``;
a small pytest plugin collects every test's outcome by *area* (the suite's test classes), and the
result is a backend x area table: passed, failed, or not supported (every test skipped, with the
capability that was missing).
"""

from __future__ import annotations

import contextlib
import io
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AreaResult", "BackendResult", "areas", "run_backend", "run_matrix"]

SUITE = "iommu_uapi.testing.suite"


def areas() -> list[str]:
    """The suite's areas, in its order: ``size rules``, ``rules``, ... (one per test class)."""
    from .testing.suite import test_conformance

    classes = [v for k, v in vars(test_conformance).items()
               if k.startswith("Test") and isinstance(v, type)]
    return [_area(f"suite.py::{cls.__name__}::test") for cls in classes]


@dataclass
class AreaResult:
    """Outcomes of one area's tests on one backend."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """``failed`` if any test failed; ``not supported`` if every test skipped; else
        ``passed``."""
        if self.failed:
            return "failed"
        if self.passed == 0 and self.skipped:
            return "not supported"
        return "passed"

    def summary(self) -> str:
        """One cell of the table."""
        if self.failed:
            return f"failed {self.failed}/{self.passed + self.failed}"
        if self.passed == 0 and self.skipped:
            return "not supported: " + (self.skip_reasons[0] if self.skip_reasons else "?")
        extra = f" ({self.skipped} skipped)" if self.skipped else ""
        return f"passed {self.passed}{extra}"


@dataclass
class BackendResult:
    """Every area's outcome for one backend (``error`` when the suite could not run)."""

    backend: str
    areas: dict[str, AreaResult] = field(default_factory=dict)
    error: str = ""
    exit_code: int = 0

    @property
    def ok(self) -> bool:
        """No test failed and the suite ran."""
        return not self.error and all(a.verdict != "failed" for a in self.areas.values())


def _area(nodeid: str) -> str:
    parts = nodeid.split("::")
    name = parts[1] if len(parts) > 2 else parts[-1]
    words = name.removeprefix("Test")
    return "".join(f" {c.lower()}" if c.isupper() else c for c in words).strip()


class _Collector:
    """pytest plugin: counts outcomes per area and reports progress."""

    def __init__(self, result: BackendResult, tick: Callable[[int | None], None],
                 only: frozenset[str] = frozenset()) -> None:
        self.result = result
        self.tick = tick
        self.only = only
        self.interrupted = False

    def pytest_collection_modifyitems(self, config: Any, items: list[Any]) -> None:
        if not self.only:
            return
        keep = [item for item in items if _area(item.nodeid) in self.only]
        dropped = [item for item in items if _area(item.nodeid) not in self.only]
        items[:] = keep
        config.hook.pytest_deselected(items=dropped)

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        self.interrupted = True

    def pytest_collection_finish(self, session: Any) -> None:
        self.tick(len(session.items))

    def pytest_runtest_logreport(self, report: Any) -> None:
        area = self.result.areas.setdefault(_area(report.nodeid), AreaResult())
        if report.when == "call" and report.passed:
            area.passed += 1
            self.tick(None)
        elif report.failed:
            area.failed += 1
            area.failures.append(f"{report.nodeid}: {str(report.longrepr)[-400:]}")
            if report.when == "call":
                self.tick(None)
        elif report.skipped:
            area.skipped += 1
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            reason = str(reason).removeprefix("Skipped: ")
            if reason and reason not in area.skip_reasons:
                area.skip_reasons.append(reason)
            self.tick(None)


@contextlib.contextmanager
def _noticing_sigint() -> Iterator[list[int]]:
    """Record every SIGINT while the block runs (and raise KeyboardInterrupt as usual): a
    Ctrl-C that lands where Python cannot raise it (a garbage-collection callback, a
    ``__del__``) or that a test swallows still stops the matrix."""
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def handler(signum: int, frame: Any) -> None:
        seen.append(signum)
        signal.default_int_handler(signum, frame)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


def run_backend(name: str, tick: Callable[[int | None], None] = lambda n: None,
                extra_args: Iterable[str] = (), only: Iterable[str] = ()) -> BackendResult:
    """Run the suite against backend ``name`` in this process: every area, or the areas named
    in ``only`` (see :func:`areas`). A Ctrl-C during the run raises :class:`KeyboardInterrupt`
    here (pytest itself only reports it)."""
    import pytest

    result = BackendResult(name)
    collector = _Collector(result, tick, frozenset(only))
    args = ["--pyargs", SUITE, f"--iommu-backend={name}", "-q", "-p", "no:cacheprovider",
            "-o", "addopts=", "-W", "ignore::pytest.PytestAssertRewriteWarning", *extra_args]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), \
            _noticing_sigint() as sigint:
        try:
            code = pytest.main(args, plugins=[collector])
        except Exception:
            if not sigint:
                raise
            code = pytest.ExitCode.INTERRUPTED  # pytest tripped over the interrupt itself
    result.exit_code = int(code)
    if collector.interrupted or sigint:
        raise KeyboardInterrupt  # Ctrl-C: pytest stopped the run; stop the matrix too
    if int(code) not in (0, 1):  # 1 = tests failed (reported per area); others: no run
        result.error = f"pytest exit {int(code)}: {out.getvalue().strip()[-600:]}"
    return result


def run_matrix(backends: Iterable[str], progress: bool = True,
               extra_args: Iterable[str] = (), only: Iterable[str] = ()) -> list[BackendResult]:
    """Run the suite (every area, or those in ``only``) against each backend, with a progress
    bar on standard error."""
    results: list[BackendResult] = []
    names = list(backends)
    only = tuple(only)
    if not progress:
        return [run_backend(n, extra_args=extra_args, only=only) for n in names]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  transient=True) as bar:
        for name in names:
            task = bar.add_task(f"{name}", total=None)

            def tick(total: int | None, task: Any = task) -> None:
                if total is not None:
                    bar.update(task, total=total)
                else:
                    bar.advance(task)

            results.append(run_backend(name, tick, extra_args, only))
    return results

"""Observers: watch or wrap the hook calls of one ``IOMMU`` (or, registered globally, of all).

An observer is either

* a plugin object with pluggy hook implementations (``@hookimpl(wrapper=True)`` around
  ``iommu_cache_invalidate``, say), registered on the instance's plugin manager, or
* an object with ``before(hook, kwargs)`` and/or ``after(hook, kwargs, result, error)`` methods,
  called around *every* hook call. ``before`` may raise :class:`~iommu_uapi.errors.UAPIError` to
  refuse the call before the backend sees it (fault injection).

:class:`CallCounter`, :class:`CallRecorder` and :class:`FaultInjector` are ready-made ones.
Observers added later wrap those added earlier (a counter added after a fault injector also
counts the refused calls). Observers run on the control path only: the data path calls no hook.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import pluggy

from .errors import UAPIError

__all__ = ["CallCounter", "CallRecorder", "FaultInjector", "add_observer"]


def add_observer(pm: pluggy.PluginManager, observer: object) -> None:
    """Register ``observer`` on the plugin manager ``pm`` (see the module docstring)."""
    before = getattr(observer, "before", None)
    after = getattr(observer, "after", None)
    if before is None and after is None:
        pm.register(observer)
        return

    def _before(hook_name: str, impls: Any, kwargs: Mapping[str, Any]) -> None:
        if before is not None:
            before(hook_name, kwargs)

    def _after(outcome: Any, hook_name: str, impls: Any, kwargs: Mapping[str, Any]) -> None:
        if after is not None:
            exc = outcome.exception
            after(hook_name, kwargs, None if exc is not None else outcome.get_result(), exc)

    pm.add_hookcall_monitoring(_before, _after)


class CallCounter:
    """Counts hook calls and refusals per hook name."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def before(self, hook: str, kwargs: Mapping[str, Any]) -> None:
        """Count the call."""
        self.calls[hook] += 1

    def after(self, hook: str, kwargs: Mapping[str, Any], result: object,
              error: BaseException | None) -> None:
        """Count a refusal."""
        if error is not None:
            self.errors[hook] += 1


class CallRecorder:
    """Keeps every hook call as ``(hook, kwargs, result, error)``: a trace for tests and tools."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], object, BaseException | None]] = []

    def after(self, hook: str, kwargs: Mapping[str, Any], result: object,
              error: BaseException | None) -> None:
        """Record the finished call."""
        self.calls.append((hook, dict(kwargs), result, error))


class FaultInjector:
    """Refuses the next ``times`` calls of ``hook`` with ``UAPIError(errno)`` before the backend
    runs them, so the backend's state is untouched (a host failure as a guest would see it)."""

    def __init__(self, hook: str, errno: int, times: int = 1) -> None:
        self.hook = hook
        self.errno = errno
        self.remaining = times
        self.injected = 0

    def before(self, hook: str, kwargs: Mapping[str, Any]) -> None:
        """Raise for the targeted hook while injections remain."""
        if hook == self.hook and self.remaining > 0:
            self.remaining -= 1
            self.injected += 1
            raise UAPIError(self.errno, f"{hook}: failure injected", rule="injected")

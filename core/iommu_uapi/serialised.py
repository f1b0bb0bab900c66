"""The façade's control calls, each holding the instance's lock (``docs/concurrency.md``).

:func:`serialised` turns a method into one that holds ``self.lock`` for the whole call;
:func:`forward` makes the façade's method for a UAPI operation of ``iommu.uapi``, holding the
lock the same way. The method is built with the wrapped call's own parameters (as
:mod:`dataclasses` builds ``__init__``), so a control call pays one frame and the lock, not the
re-packing of ``*args, **kwargs``; the lock is taken with ``acquire``/``release`` around a
``try``, which costs less than a ``with`` block for the same guarantee.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

__all__ = ["Lockable", "forward", "serialised"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S", bound="Lockable")
_KIND = inspect.Parameter


class Lockable(Protocol):
    """An object whose control calls are serialised by its ``lock``."""

    @property
    def lock(self) -> Any:
        """The re-entrant lock the calls hold."""
        ...


def _build(call: Callable[..., Any], target: str, name: str) -> Callable[..., Any]:
    """A function ``name(self, <call's parameters but the first>)`` that holds ``self.lock``
    while it returns ``call(<target>, <the same arguments>)``."""
    params = list(inspect.signature(call).parameters.values())[1:]
    spec: list[str] = []
    args: list[str] = []
    env: dict[str, Any] = {"_call": call}
    marker = False  # whether ``/`` or ``*`` is still to be written
    for p in params:
        default = ""
        if p.default is not _KIND.empty:
            env[f"_d_{p.name}"] = p.default
            default = f"=_d_{p.name}"
        if p.kind is _KIND.KEYWORD_ONLY and not marker:
            spec.append("*")
            marker = True
        if p.kind is _KIND.VAR_POSITIONAL:
            spec.append(f"*{p.name}")
            args.append(f"*{p.name}")
            marker = True
        elif p.kind is _KIND.VAR_KEYWORD:
            spec.append(f"**{p.name}")
            args.append(f"**{p.name}")
        elif p.kind is _KIND.KEYWORD_ONLY:
            spec.append(f"{p.name}{default}")
            args.append(f"{p.name}={p.name}")
        else:
            spec.append(f"{p.name}{default}")
            args.append(p.name)
    source = (f"def {name}(self, /, {', '.join(spec)}):\n"
              "    _lock = self.lock\n"
              "    _lock.acquire()\n"
              "    try:\n"
              f"        return _call({target}, {', '.join(args)})\n"
              "    finally:\n"
              "        _lock.release()\n")
    exec(source, env)  # the source is built above from a signature
    method: Callable[..., Any] = env[name]
    return method


def serialised(call: Callable[Concatenate[_S, _P], _R]) -> Callable[Concatenate[_S, _P], _R]:
    """``call`` holding the instance's lock (control calls on one IOMMU are serialised)."""
    method = _build(call, "self", call.__name__)
    return functools.wraps(call)(method)


def forward(op: Callable[Concatenate[Any, _P], _R], owner: str = "IOMMU"
            ) -> Callable[Concatenate[Any, _P], _R]:
    """The façade's method for the UAPI operation ``op``: the same call on ``self.uapi``,
    holding the instance's lock."""
    method = functools.wraps(op)(_build(op, "self.uapi", op.__name__))
    method.__qualname__ = f"{owner}.{op.__name__}"
    return method

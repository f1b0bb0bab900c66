"""The façade's control calls hold the instance's lock for the whole call (docs/concurrency.md),
through methods built with the wrapped call's own parameters."""

from __future__ import annotations

import inspect
import threading
from typing import Any

import pytest
from test_iommu import Rig

from iommu_uapi.iommu import IOMMU
from iommu_uapi.serialised import forward, serialised


class Ops:
    """Stands for ``iommu.uapi``: records each call and whether the lock was held."""

    def __init__(self, owner: Unit) -> None:
        self.owner = owner

    def op(self, /, a: int, b: int = 2, *rest: int, c: int, d: int = 4, **more: int
           ) -> tuple[Any, ...]:
        """An operation with every kind of parameter."""
        return (self.owner.lock._is_owned(), a, b, rest, c, d, more)  # type: ignore[attr-defined]

    def fails(self, /, why: str) -> None:
        """An operation that raises."""
        assert self.owner.lock._is_owned()  # type: ignore[attr-defined]
        raise ValueError(why)


class Unit:
    """Stands for the façade: a lock, ``uapi``, and methods of both kinds."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.uapi = Ops(self)

    op = forward(Ops.op, "Unit")
    fails = forward(Ops.fails, "Unit")

    @serialised
    def own(self, /, x: int, *, y: int = 1) -> tuple[bool, int, int]:
        """A method of the façade itself."""
        return self.lock._is_owned(), x, y  # type: ignore[attr-defined]


def test_a_forwarded_call_passes_every_kind_of_argument_holding_the_lock() -> None:
    u = Unit()
    assert u.op(1, c=3) == (True, 1, 2, (), 3, 4, {})
    assert u.op(1, 5, 6, 7, c=8, d=9, e=10) == (True, 1, 5, (6, 7), 8, 9, {"e": 10})
    assert u.op(a=1, b=0, c=0) == (True, 1, 0, (), 0, 4, {})
    assert u.own(5) == (True, 5, 1) and u.own(x=5, y=2) == (True, 5, 2)
    assert not u.lock._is_owned()  # type: ignore[attr-defined]


def test_the_lock_is_released_when_the_call_raises_or_is_called_wrongly() -> None:
    u = Unit()
    with pytest.raises(ValueError, match="no"):
        u.fails("no")
    with pytest.raises(TypeError):
        u.op(1)  # type: ignore[call-arg]
    assert not u.lock._is_owned()  # type: ignore[attr-defined]


def test_the_methods_keep_the_operations_name_doc_and_signature() -> None:
    assert Unit.op.__qualname__ == "Unit.op" and Unit.op.__doc__ == Ops.op.__doc__
    # the method itself takes the parameters (no re-packing of *args, **kwargs)
    assert Unit.own.__code__.co_varnames[:2] == ("self", "x")
    assert Unit.own.__kwdefaults__ == {"y": 1} and not Unit.own.__code__.co_flags & 0x0C
    assert IOMMU.uapi_cache_invalidate.__qualname__ == "IOMMU.uapi_cache_invalidate"
    params = inspect.signature(IOMMU.uapi_cache_invalidate).parameters
    assert list(params)[1:4] == ["domain", "dev", "ubuf"]
    assert params["profile"].kind is inspect.Parameter.KEYWORD_ONLY


def test_every_control_call_reaches_the_backend_holding_the_lock() -> None:
    """The backend's hooks run with the instance's lock held, whichever façade method made
    them (a control call never runs concurrently with another)."""
    rig = Rig()
    io = rig.iommu
    seen: list[tuple[str, bool]] = []

    class Watch:
        def before(self, hook: str, kwargs: dict[str, Any]) -> None:
            seen.append((hook, io.lock._is_owned()))  # type: ignore[attr-defined]

    io.add_observer(Watch())
    rig.bind(rig.vm.alloc())
    io.map(rig.domain, 0x4000_0000, 0x8000_0000, 0x1000, 3)
    io.unmap(rig.domain, 0x4000_0000, 0x1000)
    extra = io.add_device(0x0310)
    io.remove_device(extra)
    assert seen and all(held for _, held in seen), seen
    assert not io.lock._is_owned()  # type: ignore[attr-defined]

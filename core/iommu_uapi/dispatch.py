"""How one IOMMU reaches its backend: hook calls, the operation gate, observers.

Each :class:`~iommu_uapi.iommu.IOMMU` has one :class:`Dispatch`: a plugin manager holding its
backend instance and observers. A hook that nothing but the backend's plain implementation sees
is called directly (:func:`~iommu_uapi.plugins.direct_dispatch`, ~40 ns instead of pluggy's
~1.3 us) until anything starts monitoring hook calls.
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from .errors import UAPIError
from .features import Feature
from .hookspecs import instance_hook_names
from .observers import add_observer
from .plugins import direct_dispatch, instance_manager, tracing

__all__ = ["OP_FEATURE", "Dispatch"]

#: The feature each operation needs from the backend's capabilities (plain ints: the gate runs
#: on every control call, and Flag arithmetic costs a microsecond).
OP_FEATURE: dict[str, int] = {
    "iommu_sva_bind_gpasid": int(Feature.BIND_PGTBL),
    "iommu_sva_unbind_gpasid": int(Feature.BIND_PGTBL),
    "iommu_cache_invalidate": int(Feature.CACHE_INVLD),
    "iommu_attach_pasid_table": int(Feature.BIND_PASID_TABLE),
    "iommu_detach_pasid_table": int(Feature.BIND_PASID_TABLE),
    "iommu_page_request": int(Feature.PAGE_REQUEST),
    "iommu_page_response": int(Feature.PAGE_REQUEST),
}


class Dispatch:
    """The hook calls of one backend instance ``backend`` (registered as ``name``).

    ``ops`` is the set of instance hooks the backend implements; ``features`` the backend's
    declared features (set once its capabilities are known), which :meth:`gate` checks.
    ``hooks`` has one attribute per instance hook, the callable that :meth:`call` would reach
    (the backend's implementation itself while nothing monitors hook calls): a control path
    calls ``dispatch.hooks.iommu_x(...)`` for the cost of the implementation's own call.
    """

    def __init__(self, backend: object, name: str) -> None:
        self.backend = backend
        self.backend_name = name
        self.pm = instance_manager(backend, name)
        self.hook = self.pm.hook
        self._names = instance_hook_names()
        self.ops = frozenset(n for n in self._names if callable(getattr(backend, n, None)))
        self._features = 0
        self._provided: frozenset[str] = frozenset(n for n in self.ops if n not in OP_FEATURE)
        # hooks only the backend sees, called without pluggy's machinery; emptied for good
        # once anything monitors hook calls
        self._monitored = tracing()
        self._direct: dict[str, Callable[..., Any]] = {}
        #: the backend's ``iommu_map``/``iommu_unmap`` while nothing else sees hook calls
        #: (called with the hook's arguments in the spec's order), else None
        self.direct_map: Callable[..., Any] | None = None
        self.direct_unmap: Callable[..., Any] | None = None
        self._set_direct({} if self._monitored else direct_dispatch(self.pm, backend))

    def _set_direct(self, table: dict[str, Callable[..., Any]]) -> None:
        """Take ``table`` as the hooks called directly, and rebuild :attr:`hooks` from it."""
        self._direct = table
        self.direct_map = table.get("iommu_map")
        self.direct_unmap = table.get("iommu_unmap")
        self.hooks = self._hooks()

    def _hooks(self) -> SimpleNamespace:
        """Each instance hook as the one callable :meth:`call` reaches for it: the backend's own
        implementation (see ``_direct``), pluggy's hook caller, or ``op.missing``."""
        table: dict[str, Callable[..., Any]] = {}
        for name in self._names:
            direct = self._direct.get(name)
            if direct is not None:
                table[name] = direct
            elif name in self.ops:
                table[name] = getattr(self.hook, name)
            else:
                table[name] = functools.partial(self._missing, name)
        return SimpleNamespace(**table)

    def _missing(self, hook: str, **kwargs: Any) -> Any:
        raise UAPIError(errno.ENODEV, f"{hook.removeprefix('iommu_')}: backend "
                        f"{self.backend_name!r} does not implement it", rule="op.missing")

    def call(self, hook: str, **kwargs: Any) -> Any:
        """Call instance hook ``hook``; ``ENODEV`` (rule ``op.missing``) when the backend does
        not implement it."""
        direct = self._direct.get(hook)  # only ever holds the backend's own hooks
        if direct is not None:
            return direct(**kwargs)
        if hook not in self.ops:
            return self._missing(hook)
        return getattr(self.hook, hook)(**kwargs)

    @property
    def features(self) -> int:
        """The backend's declared features (``Feature`` bits as a plain int)."""
        return self._features

    @features.setter
    def features(self, features: int) -> None:
        self._features = features
        # the operations the gate lets through: implemented, and the feature they need declared
        self._provided = frozenset(
            n for n in self.ops
            if (feature := OP_FEATURE.get(n)) is None or features & feature)

    def gate(self, hook: str) -> None:
        """Refuse (``ENODEV``, before user memory is read) an operation the backend lacks: no
        implementation, or the feature it needs is not declared."""
        if hook not in self._provided:
            raise UAPIError(errno.ENODEV, f"{hook.removeprefix('iommu_')}: backend "
                            f"{self.backend_name!r} does not provide it", rule="op.missing")

    def add_observer(self, observer: object) -> None:
        """Watch or wrap every hook call (see :mod:`iommu_uapi.observers`)."""
        add_observer(self.pm, observer)
        if hasattr(observer, "before") or hasattr(observer, "after"):
            self._monitored = True
        self._set_direct({} if self._monitored else direct_dispatch(self.pm, self.backend))

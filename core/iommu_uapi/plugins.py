"""Backend discovery and per-instance dispatch.

Discovery: every entry point of the ``iommu_uapi.backends`` group is loaded into one process-wide
plugin manager (built lazily, cached), then each plugin's ``iommu_register_backends`` hook
registers :class:`BackendSpec` records into the registry by name. Environment:

* ``IOMMU_UAPI_DISABLE_PLUGINS`` — comma-separated entry-point names not to load;
* ``IOMMU_UAPI_TRACE_PLUGINS`` — when set (not ``0``), every hook call of every ``IOMMU`` is
  written to standard error with its arguments and outcome;
* ``IOMMU_UAPI_STRICT_PLUGINS`` — when set, a plugin that fails to load is an error instead of a
  logged warning.

Dispatch: :func:`instance_manager` builds the plugin manager of one ``IOMMU`` instance, holding
its one backend instance and its observers.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, cast

import pluggy
from pluggy import HookimplOpts, HookspecOpts

from . import hookspecs
from .errors import UAPIError

if TYPE_CHECKING:
    from .profiles import Profile
    from .ruletable import RuleTable

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendSpec",
    "InstanceManager",
    "LoadProblem",
    "Registry",
    "add_global_observer",
    "get_backend",
    "instance_manager",
    "registry",
    "remove_global_observer",
    "reset",
]

ENTRY_POINT_GROUP = "iommu_uapi.backends"
log = logging.getLogger("iommu_uapi.plugins")


@dataclass(frozen=True)
class BackendSpec:
    """A backend as its plugin registers it.

    ``factory(memory, **config)`` returns a new backend instance (the object implementing the
    instance hooks of :mod:`iommu_uapi.hookspecs`). ``rules`` is the backend's own rule table
    (:class:`~iommu_uapi.ruletable.RuleTable`: its refusals and the quirks its profiles select)
    and ``profiles`` the validation profiles it adds (:class:`~iommu_uapi.profiles.Profile`);
    the registry registers both when it registers the backend, so ``fail()`` knows the
    backend's rule ids, ``iommu-uapi rules --backend NAME`` prints them and the profiles take
    the rules and quirks that name them. ``distribution`` and ``version`` are filled in by the
    registry from the entry point's distribution.
    """

    name: str
    factory: Callable[..., object]
    description: str = ""
    distribution: str = ""
    version: str = ""
    entry_point: str = ""
    rules: RuleTable | None = None
    profiles: tuple[Profile, ...] = ()


@dataclass(frozen=True)
class LoadProblem:
    """A plugin that could not be loaded or registered, and why."""

    entry_point: str
    distribution: str
    error: str


@dataclass
class Registry:
    """The backends found, by name, plus the problems met while looking for them."""

    backends: dict[str, BackendSpec] = field(default_factory=dict)
    problems: list[LoadProblem] = field(default_factory=list)
    manager: pluggy.PluginManager | None = None


def _disabled() -> set[str]:
    raw = os.environ.get("IOMMU_UAPI_DISABLE_PLUGINS", "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def _strict() -> bool:
    return os.environ.get("IOMMU_UAPI_STRICT_PLUGINS", "") not in ("", "0")


def tracing() -> bool:
    """Whether ``IOMMU_UAPI_TRACE_PLUGINS`` asks for hook-call tracing."""
    return os.environ.get("IOMMU_UAPI_TRACE_PLUGINS", "") not in ("", "0")


def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = ep.dist
    if dist is None:
        return "", ""
    return dist.metadata["Name"] or "", dist.version or ""


def _entry_points() -> Iterable[metadata.EntryPoint]:
    return metadata.entry_points(group=ENTRY_POINT_GROUP)


def _constant(obj: object) -> Callable[[], object]:
    return lambda: obj


def build_registry(extra_plugins: Mapping[str, object] | None = None) -> Registry:
    """Load every entry point (and ``extra_plugins``, name -> plugin object) into a new registry.

    A plugin that fails to import, fails hook validation or registers a duplicate name is logged
    and skipped (raised under ``IOMMU_UAPI_STRICT_PLUGINS``); two backends with one name name both
    distributions in the problem (and the error, when strict).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    reg = Registry(manager=pm)
    disabled = _disabled()
    sources: list[tuple[str, str, str, Callable[[], object]]] = []
    for ep in _entry_points():
        dist, version = _dist_of(ep)
        sources.append((ep.name, dist, version, ep.load))
    for name, obj in (extra_plugins or {}).items():
        sources.append((name, "", "", _constant(obj)))
    for ep_name, dist, version, load in sources:
        if ep_name in disabled:
            log.info("plugin %s (%s) disabled by IOMMU_UAPI_DISABLE_PLUGINS", ep_name, dist)
            continue
        try:
            plugin = load()
            pm.register(plugin, name=ep_name)
        except Exception as exc:  # a broken plugin must not take the others down
            _problem(reg, LoadProblem(ep_name, dist, f"{type(exc).__name__}: {exc}"))
            continue
        specs: list[BackendSpec] = []
        impl = getattr(plugin, "iommu_register_backends", None)
        try:
            if impl is not None:
                impl(specs.append)
        except Exception as exc:
            pm.unregister(plugin)
            _problem(reg, LoadProblem(ep_name, dist, f"iommu_register_backends failed: "
                                                     f"{type(exc).__name__}: {exc}"))
            continue
        for spec in specs:
            spec = replace(spec, distribution=dist or spec.distribution,
                           version=version or spec.version, entry_point=ep_name)
            other = reg.backends.get(spec.name)
            if other is not None:
                _problem(reg, LoadProblem(ep_name, dist, (
                    f"backend name {spec.name!r} is registered by both "
                    f"{other.distribution or other.entry_point!r} and "
                    f"{spec.distribution or ep_name!r}; keeping the first")))
                continue
            try:
                _register_rules(spec)
            except UAPIError as exc:
                _problem(reg, LoadProblem(ep_name, dist, f"backend {spec.name!r}: {exc}"))
                continue
            reg.backends[spec.name] = spec
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        _problem(reg, LoadProblem(str(getattr(exc, "plugin", "?")), "", str(exc)))
    return reg


def _register_rules(spec: BackendSpec) -> None:
    """Register the rule table and profiles ``spec`` hands over (again after a rebuild: an
    equal table or profile is already there); EEXIST if they clash with registered ones, and
    then nothing of the spec's is registered."""
    if spec.rules is None and not spec.profiles:
        return
    from . import profiles, ruletable

    clash = [p.name for p in spec.profiles
             if profiles.definition(p.name) not in (None, p)]
    if clash:
        raise ruletable.fail("profile.exists", name=repr(clash[0]))
    new_table = spec.rules is not None and ruletable.get_table(spec.rules.name) is None
    if spec.rules is not None:
        ruletable.register_table(spec.rules)
    done: list[str] = []
    try:
        for p in spec.profiles:
            if profiles.definition(p.name) is None:
                profiles.register(p)
                done.append(p.name)
    except UAPIError:
        for name in done:
            profiles.unregister(name)
        if new_table and spec.rules is not None:
            ruletable.unregister_table(spec.rules.name)
        raise


def _problem(reg: Registry, problem: LoadProblem) -> None:
    if _strict():
        raise UAPIError(errno.ELIBBAD, f"plugin {problem.entry_point} "
                        f"({problem.distribution or 'no distribution'}): {problem.error}",
                        rule="plugin.broken")
    log.warning("iommu-uapi: skipping plugin %s (%s): %s", problem.entry_point,
                problem.distribution or "no distribution", problem.error)
    reg.problems.append(problem)


_REGISTRY: Registry | None = None
_EXTRA: dict[str, object] = {}


def registry(refresh: bool = False) -> Registry:
    """The process-wide registry, built on first use (``refresh=True`` rebuilds it)."""
    global _REGISTRY
    if _REGISTRY is None or refresh:
        _REGISTRY = build_registry(_EXTRA)
    return _REGISTRY


def register_plugin(name: str, plugin: object) -> None:
    """Add a plugin object by hand (tests, notebooks): as if an entry point named it."""
    _EXTRA[name] = plugin
    reset()


def unregister_plugin(name: str) -> None:
    """Remove a plugin added with :func:`register_plugin`."""
    _EXTRA.pop(name, None)
    reset()


def reset() -> None:
    """Forget the registry; the next use rebuilds it (after installing a plugin)."""
    global _REGISTRY
    _REGISTRY = None


def get_backend(name: str) -> BackendSpec:
    """The backend registered as ``name``; ``ENODEV`` naming the available ones otherwise, or
    the load error when ``name`` is an installed plugin that does not load."""
    reg = registry()
    spec = reg.backends.get(name)
    if spec is None:
        for problem in reg.problems:
            if problem.entry_point == name:
                raise UAPIError(errno.ENODEV, f"backend {name!r} is installed but its plugin "
                                f"does not load: {problem.error}", rule="backend.unknown")
        have = ", ".join(sorted(reg.backends)) or "none installed"
        raise UAPIError(errno.ENODEV, f"no backend named {name!r} (available: {have})",
                        rule="backend.unknown")
    return spec


# --- per-instance dispatch -----------------------------------------------------------------------

_GLOBAL_OBSERVERS: list[object] = []


def add_global_observer(observer: object) -> None:
    """Register ``observer`` on every ``IOMMU`` created from now on."""
    _GLOBAL_OBSERVERS.append(observer)


def remove_global_observer(observer: object) -> None:
    """Stop adding ``observer`` to new ``IOMMU`` instances."""
    if observer in _GLOBAL_OBSERVERS:
        _GLOBAL_OBSERVERS.remove(observer)


def global_observers() -> tuple[object, ...]:
    """The observers every new ``IOMMU`` gets."""
    return tuple(_GLOBAL_OBSERVERS)


def _trace_before(hook_name: str, impls: Any, kwargs: Mapping[str, Any]) -> None:
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    print(f"iommu-uapi trace: {hook_name}({args})", file=sys.stderr)


def _trace_after(outcome: Any, hook_name: str, impls: Any, kwargs: Mapping[str, Any]) -> None:
    exc = outcome.exception
    result = f"raised {exc!r}" if exc is not None else f"-> {outcome.get_result()!r}"
    print(f"iommu-uapi trace: {hook_name} {result}", file=sys.stderr)


def direct_dispatch(pm: pluggy.PluginManager, backend: object) -> dict[str, Callable[..., Any]]:
    """For each hook of ``pm`` that nothing but ``backend``'s plain implementation would see,
    that implementation: calling it with the hook's keyword arguments is what pluggy would do for a
    ``firstresult`` hook, without pluggy's ~1.2 us of machinery. A hook with a wrapper, a second
    implementation or an implementation taking fewer arguments than the spec is left out. The
    caller must not use the table while hook-call monitoring is on (tracing, ``before``/
    ``after`` observers) and must rebuild it whenever a plugin is registered."""
    table: dict[str, Callable[..., Any]] = {}
    for name in hookspecs.instance_hook_names():
        caller = getattr(pm.hook, name, None)
        if caller is None or caller.spec is None or not caller.spec.opts.get("firstresult"):
            continue
        impls = caller.get_hookimpls()
        if len(impls) == 1 and impls[0].plugin is backend and not impls[0].hookwrapper \
                and not impls[0].wrapper and impls[0].argnames == caller.spec.argnames:
            table[name] = impls[0].function
    return table


class InstanceManager(pluggy.PluginManager):
    """The plugin manager of one ``IOMMU``: pluggy's, with hook discovery remembered per class.

    pluggy finds hook implementations by looking every attribute of a plugin up statically
    (``inspect.getattr_static``), and specifications the same way, for every new manager: 85%
    of building an ``IOMMU``. What it finds depends only on the plugin's class (and on the
    hookspecs module), so this manager remembers it per (class, attribute): the second
    instance of a backend costs dict lookups. Modules, classes and attributes set on an
    instance itself are looked up afresh every time, as pluggy does.
    """

    _impl_opts: ClassVar[dict[tuple[type, str], HookimplOpts | None]] = {}
    _spec_opts: ClassVar[dict[tuple[Any, str], HookspecOpts | None]] = {}

    def parse_hookimpl_opts(self, plugin: object, name: str) -> HookimplOpts | None:
        """pluggy's answer for ``plugin.name``, remembered per class of ``plugin``."""
        if isinstance(plugin, type | ModuleType):
            return super().parse_hookimpl_opts(plugin, name)
        own = getattr(plugin, "__dict__", None)
        if own is not None and name in own:  # the instance's own attribute: its data, mostly
            return super().parse_hookimpl_opts(plugin, name) if callable(own[name]) else None
        key = (type(plugin), name)
        try:
            opts = self._impl_opts[key]
        except KeyError:
            opts = self._impl_opts[key] = super().parse_hookimpl_opts(plugin, name)
        return None if opts is None else cast(HookimplOpts, dict(opts))

    def parse_hookspec_opts(self, module_or_class: Any, name: str) -> HookspecOpts | None:
        """pluggy's answer for ``module_or_class.name``, remembered (specs do not change)."""
        key = (module_or_class, name)
        try:
            return self._spec_opts[key]
        except KeyError:
            opts = self._spec_opts[key] = super().parse_hookspec_opts(module_or_class, name)
            return opts


def instance_manager(backend: object, name: str) -> pluggy.PluginManager:
    """A plugin manager holding ``backend`` (registered as ``name``) and nothing else yet."""
    pm = InstanceManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(backend, name=name)
    pm.check_pending()
    if tracing():
        pm.add_hookcall_monitoring(_trace_before, _trace_after)
    return pm

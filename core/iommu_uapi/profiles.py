"""Validation profiles: which tabulated rules a call applies and which quirks it has.

``linux-5.10`` is what the v5.10 IOMMU core checked before calling the driver, quirks included
(cache == 0 accepted, format 0 passed on, page-response argsz ignored, unbind running the bind
checks, PASID-table padding unchecked, the pending fault dropped when the driver refuses a
response). ``strict`` adds what ``iommu.rst`` and the header promise. Backends may register more
(virtio-iommu: ``qemu``, ``spec``) with their :class:`~iommu_uapi.plugins.BackendSpec`.

A :class:`Profile` is asked, never compared by name: ``rule_id in profile.rules`` (or
:meth:`Profile.applies`) says whether a check runs, :meth:`Profile.quirk` which of two
behaviours the code takes. Its rules and quirks are collected from every registered rule table
(:mod:`iommu_uapi.ruletable`): a rule or quirk that names the profile belongs to it, so a
backend's table extends the built-in profiles without touching them. Public entry points keep
taking a profile by name (a string) or as a :class:`Profile`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import msgspec

from . import ruletable
from .rules import LINUX_5_10, STRICT, fail
from .ruletable import QuirkValue

__all__ = [
    "BUILTIN",
    "DEFAULT",
    "LINUX_5_10",
    "STRICT",
    "Profile",
    "ProfileLike",
    "definition",
    "get",
    "names",
    "on_change",
    "register",
    "render_markdown",
    "unregister",
]


class Profile(msgspec.Struct, frozen=True, gc=False):
    """A named choice of rules and quirks.

    ``rules`` are the ids of the profile-dependent rules it applies (a check runs only if its
    rule id is in ``rules``; rules a table marks for every profile always apply); ``quirks``
    sets named behaviours (:class:`~iommu_uapi.ruletable.Quirk`) to a value; ``base`` names a
    registered profile whose rules and quirks this one starts from. A registered profile's
    ``rules`` and ``quirks`` also hold every rule and quirk a registered table names it in,
    except of a table some of whose rules the given ``rules`` list: that table's rules the
    profile decides alone (``strict`` minus one rule stays without it).

    The readable-memory (EFAULT), ``argsz >= minsz`` and IOMMUFD tail rules of the size
    disciplines are part of the copy itself and apply under every built-in profile.
    """

    name: str
    description: str
    rules: frozenset[str] = frozenset()
    quirks: dict[str, QuirkValue] = msgspec.field(default_factory=dict)
    base: str = ""

    def applies(self, rule_id: str) -> bool:
        """Whether this profile applies the registered rule ``rule_id``."""
        return rule_id in self.rules or ruletable.lookup(rule_id).profiles is None

    def quirk(self, quirk_id: str) -> QuirkValue:
        """The value of the declared quirk ``quirk_id`` in this profile (the declaration's
        default when the profile does not set it); ``KeyError`` for an undeclared quirk."""
        found = self.quirks.get(quirk_id)
        if found is None:
            return ruletable.quirk_declaration(quirk_id).default
        return found


ProfileLike = str | Profile

DEFAULT = LINUX_5_10

_DEFINED: dict[str, Profile] = {}
_RESOLVED: dict[str, Profile] = {}
_RESOLVING: set[str] = set()
_LISTENERS: list[Callable[[], None]] = []


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener`` whenever what a profile name stands for may change (a profile
    registered or unregistered, a rule table registered or forgotten): a cache of what profiles
    decide, kept by name, is emptied there."""
    _LISTENERS.append(listener)


def _forget() -> None:
    _RESOLVED.clear()
    for listener in _LISTENERS:
        listener()


ruletable.on_change(_forget)


def _resolve(p: Profile) -> Profile:
    """``p`` with its base's and the registered tables' rules and quirks merged in.

    A table whose rules ``p.rules`` lists some of is decided by ``p`` alone (so a profile made
    as ``strict`` minus one rule stays without it); of every other table, ``p`` takes its
    base's rules and the rules that name ``p``. Quirks ``p`` sets win over its base's and the
    tables'."""
    if p.name in _RESOLVING:  # a base chain that loops (possible only through replace=True)
        raise fail("profile.unknown", name=repr(p.base), known="a base chain that ends")
    _RESOLVING.add(p.name)
    try:
        base = get(p.base) if p.base else None
        rules = set(p.rules)
        quirks: dict[str, QuirkValue] = dict(base.quirks) if base is not None else {}
        for table in ruletable.tables():
            if rules.isdisjoint(table.by_id):
                rules |= table.rules_of(p.name)
                if base is not None:
                    rules |= base.rules.intersection(table.by_id)
            quirks.update(table.quirks_of(p.name))
        quirks.update(p.quirks)
    finally:
        _RESOLVING.discard(p.name)
    return Profile(p.name, p.description, frozenset(rules), quirks, p.base)


def register(profile: Profile, *, replace: bool = False) -> Profile:
    """Make ``profile`` available by name; EEXIST if the name is taken and not ``replace``,
    EINVAL if its ``base`` is not registered. Returns the registered profile (with the rules
    and quirks the tables give it)."""
    if not replace and profile.name in _DEFINED:
        raise fail("profile.exists", name=repr(profile.name))
    if profile.base and profile.base not in _DEFINED:
        raise fail("profile.unknown", name=repr(profile.base), known=", ".join(names()))
    _DEFINED[profile.name] = profile
    _forget()
    return get(profile.name)


def unregister(name: str) -> None:
    """Forget the profile registered as ``name`` (a test's, or an unloaded backend's)."""
    _DEFINED.pop(name, None)
    _forget()


def definition(name: str) -> Profile | None:
    """The profile registered as ``name`` as it was given to :func:`register`, or None."""
    return _DEFINED.get(name)


def get(profile: ProfileLike) -> Profile:
    """The profile named ``profile``, or ``profile`` itself with the tables' rules and quirks
    merged in (a registered profile is returned as is); EINVAL if unknown."""
    if type(profile) is str:
        found = _RESOLVED.get(profile)
        if found is None:
            defined = _DEFINED.get(profile)
            if defined is None:
                raise fail("profile.unknown", name=repr(profile), known=", ".join(names()))
            found = _RESOLVED[profile] = _resolve(defined)
        return found
    if isinstance(profile, Profile):
        if _RESOLVED.get(profile.name) is profile:
            return profile
        return _resolve(profile)
    raise fail("profile.unknown", name=repr(profile), known=", ".join(names()))


def names() -> tuple[str, ...]:
    """Registered profile names, in registration order."""
    return tuple(_DEFINED)


def render_markdown(profile_names: Iterable[str],
                    tables: Iterable[ruletable.RuleTable] | None = None) -> str:
    """The profiles named, as a Markdown section: description, base, and the quirks of
    ``tables`` (default: every registered table) they turn on."""
    declared = [q for t in (ruletable.tables() if tables is None else tables) for q in t.quirks]
    out = ["## Profiles", "", "| profile | based on | quirks on | description |",
           "|---|---|---|---|"]
    for name in profile_names:
        p = get(name)
        on = [f"`{q.id}`" if p.quirk(q.id) is True else f"`{q.id}` = {p.quirk(q.id)!r}"
              for q in declared if p.quirk(q.id) != q.default]
        out.append(f"| `{p.name}` | {p.base or '-'} | {', '.join(on) or '-'} "
                   f"| {p.description.replace('|', chr(92) + '|')} |")
    return "\n".join(out) + "\n"


def _builtin(name: str, description: str) -> str:
    register(Profile(name, description))
    return name


#: The core's own profiles, in registration order.
BUILTIN: tuple[str, ...] = (
    _builtin(
        LINUX_5_10,
        "The checks of the v5.10 IOMMU core (drivers/iommu/iommu.c), in the kernel's order, "
        "quirks included.",
    ),
    _builtin(
        STRICT,
        "linux-5.10 plus what iommu.rst and the header promise: the cache x granularity "
        "table, cache != 0, a PASID or ARCHID for PASID invalidation, format != 0, VT-d vendor "
        "size and flags, page-response argsz and code, PASID-table padding; no quirks.",
    ),
)

"""Rule tables: every refusal the model makes, by id, with its errno, message and profiles.

One :class:`Rule` type serves every table: the core's UAPI checks (:mod:`iommu_uapi.rules`),
the model's own refusals (:mod:`iommu_uapi.model_rules`) and each backend's (VT-d:
``iommu_uapi_vtd.rules``). A :class:`RuleTable` groups a source's rules and the
:class:`Quirk` flags it declares; tables are registered process-wide (the core's on import, a
backend's with its :class:`~iommu_uapi.plugins.BackendSpec` or when its rules module is
imported), and :func:`fail` builds the :class:`~iommu_uapi.errors.UAPIError` of any registered
rule id: the rule's errno, its id in ``err.rule`` and its message template filled with the
offending values.

A rule's ``profiles`` name the validation profiles (:mod:`iommu_uapi.profiles`) that apply it;
``None`` means the rule is not a profile's choice and applies under every profile (a
hardware model's limits, a missing device). A quirk's ``profiles`` name the profiles that have
the behaviour it describes. Profiles collect both from every registered table.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

import msgspec

from .errors import UAPIError, errno_name

__all__ = [
    "ModelRule",
    "Quirk",
    "QuirkValue",
    "Rule",
    "RuleTable",
    "fail",
    "get_table",
    "lookup",
    "on_change",
    "quirk_declaration",
    "register_table",
    "render_markdown",
    "tables",
    "unregister_table",
    "write_markdown",
]

_T = TypeVar("_T")

#: A quirk's value in a profile: most are on/off, a few carry a number or a name.
QuirkValue = bool | int | str


class Rule(msgspec.Struct, frozen=True, gc=False):
    """One refusal.

    ``id`` is what ``UAPIError.rule`` carries; ``operation`` names the call in messages
    (``cache_invalidate: ...``; empty: no prefix); ``errno`` is what the refusal raises (None:
    chosen by the caller, as for an injected failure); ``text`` states the rule; ``message`` is
    a :meth:`str.format` template filled with the offending values (empty: ``text``);
    ``profiles`` are the profiles that apply it (None: every profile); ``source`` points into
    the kernel sources, documentation or specification the rule comes from; ``section`` is the
    heading it is listed under (the part of the model or of the driver that makes it).
    """

    id: str
    operation: str
    errno: int | None
    text: str
    message: str = ""
    profiles: tuple[str, ...] | None = None
    source: str = ""
    section: str = ""

    @property
    def where(self) -> str:
        """The part of the model that makes the refusal (``section``, or the operation)."""
        return self.section or self.operation

    def applies_in(self, profile: str) -> bool:
        """Whether the profile named ``profile`` applies this rule, as the rule declares it
        (a registered :class:`~iommu_uapi.profiles.Profile` may add rules of its own)."""
        return self.profiles is None or profile in self.profiles

    def error(self, op: str | None = None, /, **values: object) -> UAPIError:
        """The :class:`UAPIError` of this rule, its message filled from ``values``; ``op``
        overrides the operation the message names (unbind reports bind rules as ``unbind``)."""
        if self.errno is None:
            raise TypeError(f"rule {self.id} has no errno of its own; raise UAPIError directly")
        text = (self.message or self.text).format(**values)
        name = op or self.operation
        return UAPIError(self.errno, f"{name}: {text}" if name else text, rule=self.id)


class ModelRule(msgspec.Struct, frozen=True, gc=False):
    """The earlier spelling of a rule that is the same in every profile: ``id``, ``errno``,
    the part of the model that makes it (``where``) and what it refuses (``text``). Kept for
    tables written with it; :class:`RuleTable` takes it and holds :meth:`as_rule`."""

    id: str
    errno: int | None
    where: str
    text: str

    def as_rule(self) -> Rule:
        """The same refusal as a :class:`Rule` (operation: the id's first part)."""
        return Rule(self.id, self.id.split(".")[0], self.errno, self.text, section=self.where)


class Quirk(msgspec.Struct, frozen=True, gc=False):
    """A named behaviour a profile selects: ``profiles`` are those that have it (value
    ``True``); any other profile has ``default`` unless it sets the quirk itself."""

    id: str
    text: str
    profiles: tuple[str, ...] = ()
    default: QuirkValue = False
    source: str = ""


class RuleTable:
    """The rules (and quirks) of one source, in the order they are checked or listed.

    ``name`` identifies the table in the registry (``uapi``, ``model``, a backend's name);
    ``title`` and ``intro`` head its section of the generated documentation.
    """

    __slots__ = ("by_id", "intro", "name", "quirks", "rules", "title")

    def __init__(self, name: str, rules: Iterable[Rule | ModelRule], *, title: str,
                 intro: str = "", quirks: Iterable[Quirk] = ()) -> None:
        self.name = name
        self.title = title
        self.intro = intro
        self.rules: tuple[Rule, ...] = tuple(
            r if isinstance(r, Rule) else r.as_rule() for r in rules)
        self.quirks: tuple[Quirk, ...] = tuple(quirks)
        self.by_id: dict[str, Rule] = {r.id: r for r in self.rules}
        ids = [r.id for r in self.rules] + [q.id for q in self.quirks]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"rule table {name}: duplicate ids {dup}")

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self.by_id

    def __getitem__(self, rule_id: str) -> Rule:
        return self.by_id[rule_id]

    def __repr__(self) -> str:
        return f"RuleTable({self.name!r}, {len(self.rules)} rules, {len(self.quirks)} quirks)"

    def fail(self, rule_id: str, op: str | None = None, /, **values: object) -> UAPIError:
        """The :class:`UAPIError` for a refusal by this table's ``rule_id`` (see :func:`fail`)."""
        return self.by_id[rule_id].error(op, **values)

    def rules_of(self, profile: str) -> frozenset[str]:
        """Ids of the rules this table says ``profile`` applies."""
        return frozenset(r.id for r in self.rules if r.profiles is not None
                         and profile in r.profiles)

    def quirks_of(self, profile: str) -> dict[str, QuirkValue]:
        """The quirks this table turns on in ``profile``."""
        return {q.id: True for q in self.quirks if profile in q.profiles}

    def to_rows(self) -> list[dict[str, object]]:
        """Every rule as a plain dict (the ``iommu-uapi rules --json`` rows)."""
        return [{"table": self.name, "id": r.id, "operation": r.operation,
                 "errno": None if r.errno is None else errno_name(r.errno),
                 "profiles": None if r.profiles is None else list(r.profiles),
                 "section": r.section, "text": r.text, "source": r.source}
                for r in self.rules]

    def to_markdown(self, level: int = 2) -> str:
        """This table as a Markdown section: a heading, the intro, one row per rule, then the
        quirks it declares."""
        hashes = "#" * level
        out = [f"{hashes} {self.title}", ""]
        if self.intro:
            out += [self.intro, ""]
        out += ["| id | where | errno | profiles | rule | source |",
                "|---|---|---|---|---|---|"]
        for r in self.rules:
            err = "the caller's" if r.errno is None else errno_name(r.errno)
            prof = "every profile" if r.profiles is None else ", ".join(r.profiles)
            out.append(f"| `{r.id}` | {_cell(r.where)} | {err} | {prof} | {_cell(r.text)} "
                       f"| {_cell(r.source)} |")
        if self.quirks:
            out += ["", f"{hashes}# Quirks", "", "| quirk | on in | otherwise | behaviour | "
                    "source |", "|---|---|---|---|---|"]
            for q in self.quirks:
                out.append(f"| `{q.id}` | {', '.join(q.profiles) or '-'} | {q.default!r} "
                           f"| {_cell(q.text)} | {_cell(q.source)} |")
        return "\n".join(out) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


# ---- the registry ---------------------------------------------------------------------------

_TABLES: dict[str, RuleTable] = {}
_RULES: dict[str, Rule] = {}
_QUIRKS: dict[str, Quirk] = {}
#: rule or quirk id -> the name of the table holding it
_OWNER: dict[str, str] = {}
_LISTENERS: list[Callable[[], None]] = []


def register_table(table: RuleTable) -> RuleTable:
    """Make ``table``'s rules reachable by :func:`fail` and its rules and quirks part of the
    profiles that name them. Registering the same table (or an equal one) again returns the one
    registered; a table whose name
    or any of whose ids another registered table holds is refused (EEXIST, ``rules.exists``)
    and nothing is registered."""
    old = _TABLES.get(table.name)
    if old is not None and (old.rules, old.quirks) == (table.rules, table.quirks):
        return old
    clash = [i for i in (*table.by_id, *(q.id for q in table.quirks)) if i in _OWNER]
    if old is not None or clash:
        owner = table.name if old is not None else _OWNER[clash[0]]
        raise fail("rules.exists", table=table.name, owner=owner,
                   ids=", ".join(clash[:5]) or table.name)
    _TABLES[table.name] = table
    _RULES.update(table.by_id)
    _QUIRKS.update((q.id, q) for q in table.quirks)
    _OWNER.update((i, table.name) for i in (*table.by_id, *(q.id for q in table.quirks)))
    _changed()
    return table


def unregister_table(name: str) -> None:
    """Forget the table registered as ``name`` (a test's, or a backend being unloaded)."""
    table = _TABLES.pop(name, None)
    if table is None:
        return
    for r in table.rules:
        _RULES.pop(r.id, None)
        _OWNER.pop(r.id, None)
    for q in table.quirks:
        _QUIRKS.pop(q.id, None)
        _OWNER.pop(q.id, None)
    _changed()


def _changed() -> None:
    for listener in _LISTENERS:
        listener()


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener`` whenever a table is registered or forgotten (profiles rebuild)."""
    _LISTENERS.append(listener)


def _load_core() -> None:
    """Import (and so register) the core's tables: the UAPI checks first, then the model's."""
    for module in ("rules", "model_rules"):
        importlib.import_module(f"{__package__}.{module}")


def tables() -> tuple[RuleTable, ...]:
    """Every registered table, the core's first, then in registration order."""
    _load_core()
    return tuple(_TABLES.values())


def get_table(name: str) -> RuleTable | None:
    """The table registered as ``name``, or None."""
    _load_core()
    return _TABLES.get(name)


def _find(index: Mapping[str, _T], key: str, what: str) -> _T:
    found = index.get(key)
    if found is None:
        _load_core()
        found = index.get(key)
        if found is None:
            raise KeyError(f"no registered rule table holds {what} {key!r}")
    return found


def lookup(rule_id: str) -> Rule:
    """The registered rule ``rule_id``; ``KeyError`` naming it if no table holds it (a rule id
    is a name in the code, so a miss is a bug, not bad input)."""
    return _find(_RULES, rule_id, "rule")


def quirk_declaration(quirk_id: str) -> Quirk:
    """The registered declaration of ``quirk_id``; ``KeyError`` if no table declares it."""
    return _find(_QUIRKS, quirk_id, "quirk")


def fail(rule_id: str, op: str | None = None, /, **values: object) -> UAPIError:
    """The :class:`UAPIError` for a refusal by ``rule_id`` of any registered table: the rule's
    errno, ``rule=rule_id``, and the message ``"<operation>: <message filled from values>"``.
    ``op`` overrides the operation the message names. Use as ``raise fail(...)``."""
    rule = _RULES.get(rule_id) or lookup(rule_id)
    return rule.error(op, **values)


def render_markdown(title: str, preface: str, sections: Iterable[RuleTable | str]) -> str:
    """A generated rule document: ``# title``, the preface, then each table's section (a string
    in ``sections`` is inserted as is, e.g. the profiles' description)."""
    out = [f"# {title}", "", preface, ""]
    for section in sections:
        out.append(section if isinstance(section, str) else section.to_markdown())
    return "\n".join(out).rstrip("\n") + "\n"


def write_markdown(text: str, default: Path, argv: list[str] | None = None) -> int:
    """The ``python -m`` entry of a generated rule document: write ``text`` to the path given
    as the first argument (``sys.argv`` when ``argv`` is None), else to ``default``."""
    args = sys.argv[1:] if argv is None else argv
    (Path(args[0]) if args else default).write_text(text, encoding="utf-8")
    return 0

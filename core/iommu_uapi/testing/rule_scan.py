"""Which rule ids a package raises, and with which errno, read from its source.

A backend keeps a table of its refusals (a :class:`~iommu_uapi.ruletable.RuleTable`; the
core's are :mod:`iommu_uapi.rules` and :mod:`iommu_uapi.model_rules`, VT-d's
``iommu_uapi_vtd.rules``); :func:`raised_rules` lets a test hold the source to the table: every
``UAPIError(errno.EXXX, ..., rule="id")`` (or any call with a ``rule=`` keyword and an ``errno``
constant first), every ``fail("id", ...)`` (or ``table.fail("id", ...)``: its errno is the
registered rule's, None for an id no registered table holds), plus calls of the package's own
refusal helpers, found by parsing the package.
"""

from __future__ import annotations

import ast
import errno
import importlib.util
from collections.abc import Mapping
from pathlib import Path

from .. import ruletable

__all__ = ["raised_rules"]


def _errno_of(node: ast.expr | None, names: Mapping[str, int]) -> int | None:
    if isinstance(node, ast.Attribute):
        return getattr(errno, node.attr, None)
    if isinstance(node, ast.Name):
        return names.get(node.id)
    return None


def _registered_errno(node: ast.expr) -> int | None:
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        return None
    try:
        return ruletable.lookup(node.value).errno
    except KeyError:
        return None


def _package_dir(package: str | Path) -> Path:
    """The directory of ``package``: a path (``Path`` or text), or an importable package's
    name (``"iommu_uapi_vtd"``)."""
    path = Path(package)
    if path.is_dir() or not isinstance(package, str):
        return path
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{package!r} is neither a directory nor an importable package")
    return Path(next(iter(spec.submodule_search_locations)))


def raised_rules(package: str | Path, *, helpers: Mapping[str, tuple[int, int]] | None = None,
                 names: Mapping[str, int] | None = None,
                 skip: frozenset[str] = frozenset()) -> dict[str, set[int | None]]:
    """Rule id -> the errnos the Python sources below ``package`` raise it with (None where
    the errno is not a constant). ``package`` is a directory (``Path`` or text) or an
    importable package's name. ``helpers`` maps a refusal helper's name to (the position of
    its rule-id argument, the errno it raises); ``names`` maps errno constants imported by name
    (``ENOTSUPP``) to their values; directories named in ``skip`` are not read."""
    package = _package_dir(package)
    helpers = helpers or {}
    names = names or {}
    found: dict[str, set[int | None]] = {}
    for path in sorted(package.rglob("*.py")):
        if skip.intersection(path.relative_to(package).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            rule = next((k.value for k in node.keywords if k.arg == "rule"), None)
            err = _errno_of(node.args[0], names) if node.args and rule is not None else None
            func = node.func
            name = func.id if isinstance(func, ast.Name) else (
                func.attr if isinstance(func, ast.Attribute)
                and not (isinstance(func.value, ast.Name) and func.value.id == "pytest")
                else None)
            helper = helpers.get(name) if isinstance(func, ast.Name) and name else None
            if helper is not None and len(node.args) > helper[0]:
                rule, err = node.args[helper[0]], helper[1]
            elif name == "fail" and node.args:
                rule, err = node.args[0], _registered_errno(node.args[0])
            if isinstance(rule, ast.Constant) and isinstance(rule.value, str):
                found.setdefault(rule.value, set()).add(err)
    return found

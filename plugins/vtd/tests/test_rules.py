"""Every ``vtd.*`` rule id the backend raises is tabulated with the errno it raises, and
``plugins/vtd/RULES.md`` is the table."""

from __future__ import annotations

import ast
import errno
from pathlib import Path

import iommu_uapi_vtd
from iommu_uapi.errors import ENOTSUPP
from iommu_uapi_vtd.rules import VTD_RULES, VTD_RULES_BY_ID, render_markdown

PACKAGE = Path(iommu_uapi_vtd.__file__).parent
_NAMES = {"ENOTSUPP": ENOTSUPP}


def _errno_of(node: ast.expr | None) -> int | None:
    if isinstance(node, ast.Attribute):
        return getattr(errno, node.attr, None)
    if isinstance(node, ast.Name):
        return _NAMES.get(node.id)
    return None


def raised_rules() -> dict[str, set[int | None]]:
    """Rule id -> the errnos the backend's source raises it with."""
    found: dict[str, set[int | None]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            rule = next((k.value for k in node.keywords if k.arg == "rule"), None)
            err = _errno_of(node.args[0]) if node.args else None
            if isinstance(node.func, ast.Name) and node.func.id == "_einval":
                rule, err = node.args[1], errno.EINVAL
            if isinstance(rule, ast.Constant) and isinstance(rule.value, str):
                found.setdefault(rule.value, set()).add(err)
    return found


def test_every_rule_the_backend_raises_is_tabulated_with_its_errno() -> None:
    raised = raised_rules()
    assert len(raised) >= 50
    for rule, errnos in raised.items():
        assert rule in VTD_RULES_BY_ID, f"{rule} is raised but not in iommu_uapi_vtd.rules"
        assert errnos == {VTD_RULES_BY_ID[rule].errno}, rule
    assert [r.id for r in VTD_RULES if r.id not in raised] == []
    assert len(VTD_RULES_BY_ID) == len(VTD_RULES)


def test_rules_md_is_the_table() -> None:
    assert (Path(__file__).parents[1] / "RULES.md").read_text(encoding="utf-8") == \
        render_markdown()

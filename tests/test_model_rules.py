"""Every rule id the core raises is documented with the errno it raises: the UAPI checks in
``iommu_uapi.rules``, the model's own refusals in ``iommu_uapi.model_rules``."""

from __future__ import annotations

import ast
import errno
from pathlib import Path

import pytest

import iommu_uapi
from iommu_uapi import ruletable
from iommu_uapi.iommufd.rules import IOMMUFD_TABLE
from iommu_uapi.model_rules import MODEL_RULES, MODEL_RULES_BY_ID, MODEL_TABLE
from iommu_uapi.rules import RULES_BY_ID
from iommu_uapi.testing.rule_scan import raised_rules as scan

CORE = Path(iommu_uapi.__file__).parent


def raised_rules() -> dict[str, set[int | None]]:
    """Rule id -> the errnos the core's source raises it with (lpae's ``_refuse`` helper
    included; the conformance suite is not the model)."""
    return scan(CORE, helpers={"_refuse": (2, errno.EINVAL)}, skip=frozenset({"testing"}))


def test_every_rule_the_core_raises_is_tabulated_with_its_errno() -> None:
    raised = raised_rules()
    assert len(raised) >= 40
    for rule, errnos in raised.items():
        if rule in RULES_BY_ID or rule in IOMMUFD_TABLE:  # iommufd has its own table
            continue
        assert rule in MODEL_RULES_BY_ID, f"{rule} is raised but not in model_rules"
        want = MODEL_RULES_BY_ID[rule].errno
        assert errnos <= {want}, f"{rule}: raised with {errnos}, tabulated {want}"


def test_every_model_rule_is_raised_somewhere_and_ids_are_unique() -> None:
    raised = raised_rules()
    assert [r.id for r in MODEL_RULES if r.id not in raised] == []
    assert len(MODEL_RULES_BY_ID) == len(MODEL_RULES)
    assert not set(MODEL_RULES_BY_ID) & set(RULES_BY_ID)


def test_every_refusal_of_the_core_names_its_rule() -> None:
    """A ``UAPIError`` built anywhere in the model carries a rule id (``err.rule``)."""
    unnamed = []
    for path in sorted(CORE.rglob("*.py")):
        if "testing" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                    node.func.id == "UAPIError" and not any(k.arg == "rule" for k in node.keywords):
                unnamed.append(f"{path.name}:{node.lineno}")
    assert unnamed == []


def test_the_models_table_is_registered_and_fail_raises_its_rules() -> None:
    assert ruletable.get_table("model") is MODEL_TABLE
    assert all(ruletable.lookup(r.id) is r and r.profiles is None for r in MODEL_RULES)
    for rule in MODEL_RULES:
        if rule.errno is not None and not rule.message:  # a template wants its values
            err = ruletable.fail(rule.id)
            assert (err.errno, err.rule) == (rule.errno, rule.id)
            assert err.message == f"{rule.operation}: {rule.text}"


def test_rule_scan_takes_a_path_its_text_or_a_package_name() -> None:
    by_path = scan(CORE, skip=frozenset({"testing"}))
    assert scan(str(CORE), skip=frozenset({"testing"})) == by_path
    assert scan("iommu_uapi", skip=frozenset({"testing"})) == by_path
    assert "new_backend.not_dir" in by_path
    with pytest.raises(FileNotFoundError):
        scan("no_such_package_or_dir")

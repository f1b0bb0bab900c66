"""Every rule of the table is either driven through a backend's entry points by the suite's
RuleTests, or listed as record-only with the reason; and the test backend runs every driven
rule (it declares every capability the entry points need)."""

from __future__ import annotations

import inspect

import minibackend
import pytest

from iommu_uapi import plugins
from iommu_uapi.features import Feature
from iommu_uapi.iommu import IOMMU
from iommu_uapi.matrix import _area
from iommu_uapi.rules import RULES
from iommu_uapi.testing.conformance import PROFILES, RULE_ENTRY_POINTS
from iommu_uapi.testing.harness import Harness
from iommu_uapi.testing.rule_cases import DECODERS, RULE_CASES
from iommu_uapi.vfio import VfioContainer


@pytest.mark.parametrize("rule_id", [r.id for r in RULES])
def test_rule_is_driven_or_record_only_with_a_reason(rule_id: str) -> None:
    case = RULE_CASES[rule_id]
    assert case.decoder in DECODERS
    assert bool(case.via) != bool(case.record_only), (
        f"{rule_id}: either façade entry points or a record-only reason, not "
        f"{case.via!r} / {case.record_only!r}")
    for entry in case.via:
        assert entry in RULE_ENTRY_POINTS
        owner = VfioContainer if entry.startswith("vfio.") else IOMMU
        assert inspect.isfunction(getattr(owner, entry.removeprefix("vfio."))), (
            f"{owner.__name__} has no entry point {entry}")


def test_record_only_rules_are_the_ones_no_entry_point_reaches() -> None:
    record_only = {c.rule for c in RULE_CASES.values() if c.record_only}
    ops = {rule_id.split(".")[0] for rule_id in record_only}
    assert ops == {"abi", "profile", "nesting_info"}
    vfio = [c for c in RULE_CASES.values()
            if c.rule.split(".")[0] in ("nesting_op", "set_pasid_table", "vfio_cache_invalidate")]
    assert len(vfio) == 10 and all(c.via[0].startswith("vfio.") for c in vfio)
    assert {r for r in record_only if r.startswith("nesting_info.")} == {
        "nesting_info.copy_minsz", "nesting_info.argsz_minsz", "nesting_info.tail_nonzero"}


@pytest.mark.parametrize("operation", ["cache_invalidate", "bind", "page_response",
                                       "attach_pasid_table"])
def test_every_rule_of_an_operation_with_an_entry_point_is_driven(operation: str) -> None:
    rules = [r.id for r in RULES if r.operation == operation]
    assert len(rules) >= 7
    assert all(RULE_CASES[r].via for r in rules)


def test_the_test_backend_declares_every_capability_the_entry_points_need() -> None:
    plugins.register_plugin("mini", minibackend)
    try:
        h = Harness("mini")
    finally:
        plugins.unregister_plugin("mini")
    needed = Feature(0)
    for feature, _send in RULE_ENTRY_POINTS.values():
        needed |= feature or Feature(0)
    assert h.caps.features & needed == needed and h.nesting
    assert set(PROFILES) <= set(h.caps.profiles)


def test_rule_tests_are_a_matrix_area() -> None:
    nodeid = "test_conformance.py::TestRules::test_rule[bind.padding-strict]"
    assert _area(nodeid) == "rules"

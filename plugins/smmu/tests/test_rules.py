"""Every ``smmu.*`` rule id the model raises is tabulated with the errno it raises with."""

from __future__ import annotations

from pathlib import Path

import iommu_uapi_smmu
from iommu_uapi.testing.rule_scan import raised_rules
from iommu_uapi_smmu.rules import SMMU_RULES, SMMU_RULES_BY_ID


def test_every_rule_the_model_raises_is_tabulated_with_its_errno() -> None:
    raised = raised_rules(Path(iommu_uapi_smmu.__file__).parent)
    assert raised
    for rule, errnos in raised.items():
        assert rule in SMMU_RULES_BY_ID, f"{rule} is raised but not in iommu_uapi_smmu.rules"
        assert errnos == {SMMU_RULES_BY_ID[rule].errno}, rule
    assert [r.id for r in SMMU_RULES if r.id not in raised] == []
    assert len(SMMU_RULES_BY_ID) == len(SMMU_RULES)

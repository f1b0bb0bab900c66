"""Every ``vtd.*`` rule id the backend raises is tabulated with the errno it raises, and
``plugins/vtd/RULES.md`` is the table."""

from __future__ import annotations

import errno
from pathlib import Path

import iommu_uapi_vtd
from iommu_uapi.errors import ENOTSUPP
from iommu_uapi.testing.rule_scan import raised_rules as scan
from iommu_uapi_vtd.rules import VTD_RULES, VTD_RULES_BY_ID, render_markdown

PACKAGE = Path(iommu_uapi_vtd.__file__).parent


def raised_rules() -> dict[str, set[int | None]]:
    """Rule id -> the errnos the backend's source raises it with."""
    return scan(PACKAGE, helpers={"_einval": (1, errno.EINVAL)}, names={"ENOTSUPP": ENOTSUPP})


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

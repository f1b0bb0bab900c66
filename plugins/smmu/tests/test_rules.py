"""Every ``smmu.*`` rule id the model raises is tabulated with the errno it raises with;
``plugins/smmu/RULES.md`` is the table, which comes with the backend's spec, and the profiles
take v15's behaviours from the table's quirks."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

import iommu_uapi_smmu
from iommu_uapi import plugins, profiles, ruletable
from iommu_uapi.cli import main
from iommu_uapi.iommu import IOMMU
from iommu_uapi.iommufd.rules import IOMMUFD_TABLE
from iommu_uapi.profiles import Profile
from iommu_uapi.ruletable import Rule
from iommu_uapi.testing.rule_scan import raised_rules
from iommu_uapi.uapi import CacheInvalidateInfo, InvAddrInfo, InvGranu
from iommu_uapi_smmu.nested import GuestScope, guest_invalidation
from iommu_uapi_smmu.rules import (
    SMMU_QUIRKS,
    SMMU_RULES,
    SMMU_RULES_BY_ID,
    SMMU_TABLE,
    render_markdown,
)


def test_every_rule_the_model_raises_is_tabulated_with_its_errno() -> None:
    raised = raised_rules(Path(iommu_uapi_smmu.__file__).parent)
    assert raised
    for rule, errnos in raised.items():
        if rule in IOMMUFD_TABLE.by_id:  # the iommufd hooks raise the core's iommufd rules
            assert errnos <= {IOMMUFD_TABLE.by_id[rule].errno}, rule
            continue
        assert rule in SMMU_RULES_BY_ID, f"{rule} is raised but not in iommu_uapi_smmu.rules"
        assert errnos == {SMMU_RULES_BY_ID[rule].errno}, rule
    assert [r.id for r in SMMU_RULES if r.id not in raised] == []
    assert len(SMMU_RULES_BY_ID) == len(SMMU_RULES)
    assert all(isinstance(r, Rule) for r in SMMU_TABLE)


def test_rules_md_is_the_table() -> None:
    assert (Path(__file__).parents[1] / "RULES.md").read_text(encoding="utf-8") == \
        render_markdown()


def test_the_table_comes_with_the_backends_spec_and_the_rules_command(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert plugins.get_backend("smmuv3").rules is SMMU_TABLE
    assert ruletable.get_table("smmuv3") is SMMU_TABLE
    assert main(["rules", "--backend", "smmuv3", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["smmu.inv.cache"]["errno"] == "ENOENT"
    assert rows["smmu.inv.cache"]["profiles"] is None  # under smmu.quirk.iotlb_only
    assert rows["smmu.attach_table.base_ptr"]["profiles"] == ["strict"]
    assert rows["smmu.vmid-exhausted"]["profiles"] is None
    assert "bind.version" in rows  # the core's rules come first
    assert main(["rules", "--backend", "smmuv3"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line and line[0] != "#"}
    assert lines["smmu.attach_table.base_ptr"].split()[1:3] == ["EINVAL", "strict"]
    assert lines["smmu.quirk.single_cd"].split()[1:3] == ["quirk", "linux-5.10"]


def test_fail_raises_the_tables_rules() -> None:
    err = ruletable.fail("smmu.vmid-exhausted")
    assert (err.errno, err.rule) == (errno.ENOSPC, "smmu.vmid-exhausted")


def test_the_profiles_take_v15s_behaviours_from_the_tables_quirks() -> None:
    linux, strict = profiles.get("linux-5.10"), profiles.get("strict")
    assert len(SMMU_QUIRKS) == 5
    for quirk in SMMU_QUIRKS:
        assert linux.quirk(quirk.id) is True and strict.quirk(quirk.id) is False
    assert linux.applies("smmu.inv.pasid_flag") and "smmu.attach_table.s1dss" not in linux.rules
    assert "smmu.attach_table.s1dss" in strict.rules


def test_a_profile_turning_one_quirk_off_changes_that_behaviour_alone() -> None:
    """``linux-5.10`` without the global TLBI_NSNH_ALL fall-back keeps v15's refusals."""
    mine = profiles.register(Profile("test-v15-own-vmid", "", base="linux-5.10",
                                     quirks={"smmu.quirk.global_all_vmids": False}))
    try:
        info = CacheInvalidateInfo(argsz=CacheInvalidateInfo.SIZE, version=1, cache=1,
                                   granularity=2, granu=InvGranu(addr_info=InvAddrInfo(
                                       addr=0x1000, granule_size=4096, nb_granules=1)))
        scope = GuestScope(3, (), None, False, {})
        [v15] = guest_invalidation(info, scope, "linux-5.10")
        [own] = guest_invalidation(info, scope, mine.name)
        assert type(v15).__name__ == "TlbiNsnhAll"
        assert type(own).__name__ == "TlbiNhAll" and own.VMID == 3
        iommu = IOMMU("smmuv3", profile=mine.name)
        assert iommu.capabilities.cache_cells == IOMMU("smmuv3").capabilities.cache_cells
    finally:
        profiles.unregister("test-v15-own-vmid")

"""Every ``vtd.*`` rule id the backend raises is tabulated with the errno it raises, and
``plugins/vtd/RULES.md`` is the table; the table comes with the backend's spec, and the driver's
5.10 behaviours are quirks the profiles carry, asked of the profile rather than its name."""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import iommu_uapi_vtd
from iommu_uapi import plugins, profiles, ruletable
from iommu_uapi.cli import main
from iommu_uapi.errors import ENOTSUPP, UAPIError
from iommu_uapi.iommufd.rules import IOMMUFD_TABLE
from iommu_uapi.profiles import Profile
from iommu_uapi.testing.rule_scan import raised_rules as scan
from iommu_uapi.uapi import CacheInvalidateInfo, InvAddrInfo, InvGranu
from iommu_uapi.uapi.consts import CacheType, InvGranularity, PageResponseCode
from iommu_uapi_vtd.hazards import HAZARDS, has_hazard
from iommu_uapi_vtd.invalidate import guest_invalidation
from iommu_uapi_vtd.prq import PageRequestDesc, page_group_response, to_uapi_fault
from iommu_uapi_vtd.qi import IotlbInv, PasidIotlbInv
from iommu_uapi_vtd.rules import (
    VTD_QUIRKS,
    VTD_RULES,
    VTD_RULES_BY_ID,
    VTD_TABLE,
    fail,
    render_markdown,
)

PACKAGE = Path(iommu_uapi_vtd.__file__).parent


def raised_rules() -> dict[str, set[int | None]]:
    """Rule id -> the errnos the backend's source raises it with."""
    return scan(PACKAGE, helpers={"_einval": (1, errno.EINVAL)}, names={"ENOTSUPP": ENOTSUPP})


def test_every_rule_the_backend_raises_is_tabulated_with_its_errno() -> None:
    raised = raised_rules()
    assert len(raised) >= 50
    for rule, errnos in raised.items():
        if rule in IOMMUFD_TABLE:  # the iommufd hooks raise the core's iommufd rules
            continue
        assert rule in VTD_RULES_BY_ID, f"{rule} is raised but not in iommu_uapi_vtd.rules"
        assert errnos == {VTD_RULES_BY_ID[rule].errno}, rule
    assert [r.id for r in VTD_RULES if r.id not in raised] == []
    assert len(VTD_RULES_BY_ID) == len(VTD_RULES)


def test_rules_md_is_the_table() -> None:
    assert (Path(__file__).parents[1] / "RULES.md").read_text(encoding="utf-8") == \
        render_markdown()


def test_the_table_comes_with_the_backends_spec_and_the_rules_command(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert plugins.get_backend("vtd").rules is VTD_TABLE
    assert ruletable.get_table("vtd") is VTD_TABLE
    assert main(["rules", "--backend", "vtd", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["vtd.bind.not_pci"]["errno"] == "ENOTSUPP"
    assert rows["vtd.cache_invalidate.cell"]["profiles"] == ["strict"]
    assert "bind.version" in rows  # the core's rules come first


def test_fail_raises_the_tables_rules() -> None:
    err = fail("vtd.cache_invalidate.cell", cells="IOTLB x DOMAIN")
    assert (err.errno, err.rule) == (errno.EINVAL, "vtd.cache_invalidate.cell")
    assert err.message == "cache_invalidate: VT-d has no descriptor for IOTLB x DOMAIN"


def test_the_profiles_take_the_drivers_quirks_from_the_table() -> None:
    linux, strict = profiles.get("linux-5.10"), profiles.get("strict")
    for quirk in VTD_QUIRKS:
        assert linux.quirk(quirk.id) is True and strict.quirk(quirk.id) is False
    assert "vtd.cache_invalidate.cell" in strict.rules
    assert "vtd.cache_invalidate.cell" not in linux.rules


@pytest.fixture
def fixed_510() -> Iterator[Profile]:
    """linux-5.10 with the driver's quirks fixed (but not its rules): a profile the driver code
    knows nothing of by name."""
    yield profiles.register(Profile(
        "test-5.10-fixed-prq", "5.10 with the driver's quirks fixed", base="linux-5.10",
        quirks={quirk.id: False for quirk in VTD_QUIRKS}))
    profiles.unregister("test-5.10-fixed-prq")


def test_page_requests_follow_the_quirks_not_the_profiles_name(fixed_510: Profile) -> None:
    req = PageRequestDesc(PP=True, RID=0x310, PASID=5, RD=True, LPIG=True, PRGI=3,
                          ADDR=0x7FFF_F000)
    assert to_uapi_fault(req).prm.addr == 0x7FFFF
    prm = to_uapi_fault(req, mode="test-5.10-fixed-prq").prm
    assert prm.addr == 0x7FFF_F000
    resp = page_group_response(prm, 0x310, PageResponseCode.FAILURE, mode=fixed_510)
    assert resp is not None and resp.RC == 0xF
    with pytest.raises(UAPIError) as exc:
        page_group_response(prm, 0x310, 7, mode="test-5.10-fixed-prq")
    assert (exc.value.errno, exc.value.rule) == (errno.EINVAL, "vtd.prq-code")


def test_invalidation_follows_the_profiles_rules_and_quirks(fixed_510: Profile) -> None:
    """A range beyond MAMV: sent as is under linux-5.10, widened to a domain-selective
    invalidation by a profile without the quirk; an unexpressible cell still ends the list
    silently there, since that profile does not apply ``vtd.cache_invalidate.cell``."""
    big = CacheInvalidateInfo(argsz=56, version=1, cache=CacheType.IOTLB | CacheType.PASID,
                              granularity=InvGranularity.ADDR, granu=InvGranu(
                                  addr_info=InvAddrInfo(addr=0, granule_size=0x1000,
                                                        nb_granules=1 << 10)))
    lost = guest_invalidation(big, did=3, devtlb=None, mamv=4, profile="linux-5.10")
    wide = guest_invalidation(big, did=3, devtlb=None, mamv=4, profile=fixed_510)
    assert [type(d) for d in lost] == [PasidIotlbInv] and lost[0].AM == 10
    assert [type(d) for d in wide] == [IotlbInv] and wide[0].G == 2 and wide[0].DID == 3
    with pytest.raises(UAPIError) as exc:
        guest_invalidation(big, did=3, devtlb=None, mamv=4, profile="strict")
    assert exc.value.rule == "vtd.cache_invalidate.cell"


def test_the_invalidation_policy_kept_by_name_follows_a_profile_registered_again() -> None:
    """What a profile name decides for invalidation is kept per name (not asked on every call);
    registering the name again, or a rule table changing, makes the next call ask again."""
    big = CacheInvalidateInfo(argsz=56, version=1, cache=CacheType.IOTLB,
                              granularity=InvGranularity.ADDR, granu=InvGranu(
                                  addr_info=InvAddrInfo(addr=0, granule_size=0x1000,
                                                        nb_granules=1 << 10)))
    name = "test-mamv-policy"

    def kinds() -> list[type]:
        return [type(d) for d in guest_invalidation(big, did=3, devtlb=None, mamv=4,
                                                    profile=name)]

    quirk = {"vtd.cache_invalidate.psi_beyond_mamv": True}
    profiles.register(Profile(name, "sends as is", base="linux-5.10", quirks=quirk))
    try:
        assert kinds() == [PasidIotlbInv] and kinds() == [PasidIotlbInv]
        profiles.register(Profile(name, "widens", base="linux-5.10",
                                  quirks={"vtd.cache_invalidate.psi_beyond_mamv": False}),
                          replace=True)
        assert kinds() == [IotlbInv]
        profiles.register(Profile(name, "strict, sending as is", base="strict", quirks=quirk),
                          replace=True)
        assert kinds() == [PasidIotlbInv]
    finally:
        profiles.unregister(name)
    with pytest.raises(UAPIError) as exc:
        kinds()
    assert exc.value.errno == errno.EINVAL


def test_the_isolation_hazards_are_quirks_the_profiles_carry(fixed_510: Profile) -> None:
    for hazard in HAZARDS:
        assert hazard in {q.id for q in VTD_QUIRKS}
        assert has_hazard("linux-5.10", hazard) and not has_hazard("strict", hazard)
        assert not has_hazard(fixed_510, hazard)  # a profile, not a name, decides

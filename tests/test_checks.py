"""One test per tabulated rule, in both profiles: a concrete failing input with the rule's exact
errno, and a passing neighbour. Plus the typed in-kernel path, profiles and docs/rules.md."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from iommu_uapi import checks, profiles
from iommu_uapi.errors import UAPIError
from iommu_uapi.iommufd.rules import IOMMUFD_RULES
from iommu_uapi.model_rules import MODEL_RULES
from iommu_uapi.profiles import Profile
from iommu_uapi.rules import RULES, RULES_BY_ID, UAPI_QUIRKS, render_markdown
from iommu_uapi.testing.rule_cases import DECODERS, RULE_CASES
from iommu_uapi.testing.rule_cases import bind_bytes as bd
from iommu_uapi.testing.rule_cases import cache_invalidate_bytes as ci
from iommu_uapi.testing.rule_cases import page_response_bytes as pr
from iommu_uapi.testing.rule_cases import pasid_table_bytes as pt
from iommu_uapi.testing.rule_cases import vfio_header as vh
from iommu_uapi.uapi import (
    CacheInvalidateInfo,
    GpasidBindData,
    PageResponse,
    PasidTableConfig,
    VfioIommuType1CacheInvalidate,
    VfioIommuType1NestingOp,
    VfioIommuType1SetPasidTable,
)

PROFILES = ("linux-5.10", "strict")

CI = CacheInvalidateInfo.from_user
BD = GpasidBindData.from_user
PR = PageResponse.from_user
PT = PasidTableConfig.from_user


def test_every_rule_has_a_case() -> None:
    assert list(RULE_CASES) == [r.id for r in RULES]
    assert all(case.decoder in DECODERS for case in RULE_CASES.values())


def _applies(rule_id: str, profile: str) -> bool:
    return profile in RULES_BY_ID[rule_id].profiles


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("rule_id", [r.id for r in RULES])
def test_rule(rule_id: str, profile: str) -> None:
    case = RULE_CASES[rule_id]
    decode = DECODERS[case.decoder]
    for discipline in case.disciplines:
        decode(case.good, profile, discipline)
        if _applies(rule_id, profile):
            with pytest.raises(UAPIError) as exc:
                decode(case.bad, profile, discipline)
            assert exc.value.rule == rule_id
            assert exc.value.errno == RULES_BY_ID[rule_id].errno
            assert exc.value.message.startswith(RULES_BY_ID[rule_id].operation + ": ")
        else:  # the linux-5.10 quirk: the kernel let this through
            try:
                decode(case.bad, profile, discipline)
            except UAPIError as err:
                assert err.rule != rule_id, f"{rule_id} applied outside its profiles"


def test_strict_only_rules_are_linux_quirks() -> None:
    assert CI(ci(cache=0), "linux-5.10").cache == 0
    assert BD(bd(fmt=0), "linux-5.10").format == 0
    assert PR(pr(argsz=0), "linux-5.10").argsz == 0
    assert PT(pt(padding=b"\1\1"), "linux-5.10").padding == b"\1\1"
    assert CI(ci(granularity=1, pasid_flags=0), "linux-5.10").granu.pasid_info.flags == 0


def test_message_names_operation_rule_and_values() -> None:
    with pytest.raises(UAPIError) as exc:
        CI(ci(40)[:56])
    assert str(exc.value) == "[EINVAL] cache_invalidate: granularity ADDR needs argsz >= 56, got 40"


def test_unbind_runs_the_bind_validation_and_says_unbind() -> None:
    with pytest.raises(UAPIError) as exc:
        BD(bd(version=3), "linux-5.10", operation="unbind")
    assert exc.value.rule == "bind.version"
    assert exc.value.message.startswith("unbind: ")
    with pytest.raises(UAPIError) as short:
        BD(bd(40), "linux-5.10", operation="unbind")
    assert short.value.message.startswith("unbind: ")
    data = GpasidBindData.from_bytes(bd(flags=2))
    with pytest.raises(UAPIError) as typed:
        checks.check_unbind(data, "linux-5.10")
    assert typed.value.rule == "bind.flags" and typed.value.message.startswith("unbind: ")


# ---- the typed (in-kernel) path shares the rules -------------------------------------------


def test_typed_cache_invalidate_checks() -> None:
    info = CacheInvalidateInfo.from_bytes(ci(40, granularity=2))
    checks.check_cache_invalidate(info, "strict")  # the kernel copy: no size rules
    with pytest.raises(UAPIError) as exc:
        checks.check_cache_invalidate(info, "strict", argsz=40)
    assert exc.value.rule == "cache_invalidate.argsz_granularity"
    with pytest.raises(UAPIError) as exc:
        checks.check_cache_invalidate(CacheInvalidateInfo(version=1, cache=2), "linux-5.10")
    assert exc.value.rule == "cache_invalidate.cache_granularity"


def test_typed_bind_page_response_and_table_checks() -> None:
    with pytest.raises(UAPIError) as exc:
        checks.check_bind(GpasidBindData(version=1, format=1), "strict", argsz=60)
    assert exc.value.rule == "bind.argsz_vendor"
    checks.check_bind(GpasidBindData(version=1, format=1), "linux-5.10", argsz=60)
    with pytest.raises(UAPIError) as exc:
        checks.check_page_response(PageResponse(argsz=0, version=1), "strict")
    assert exc.value.rule == "page_response.argsz_minsz"
    checks.check_page_response(PageResponse(argsz=0, version=1), "linux-5.10")
    with pytest.raises(UAPIError) as exc:
        checks.check_attach_pasid_table(PasidTableConfig(version=1, format=1, config=1),
                                        "linux-5.10", argsz=24)
    assert exc.value.rule == "attach_pasid_table.argsz_format"
    with pytest.raises(UAPIError) as exc:
        checks.check_attach_pasid_table(PasidTableConfig(version=1, config=0))
    assert exc.value.rule == "attach_pasid_table.config_range"


def test_vfio_wrappers_return_the_inner_user_bytes() -> None:
    inner = ci()
    hdr, rest = VfioIommuType1NestingOp.from_user(vh(64, 2) + inner)
    assert hdr.op == 2 and bytes(rest) == inner
    assert CacheInvalidateInfo.from_user(rest, "strict").granularity == 2
    wrap, rest = VfioIommuType1CacheInvalidate.from_user(vh(64, 0) + inner)
    assert wrap.info == CacheInvalidateInfo.from_bytes(inner) and bytes(rest) == inner
    table = pt()
    wrap2, rest = VfioIommuType1SetPasidTable.from_user(vh(40, 1) + table[:10])
    assert wrap2.flags == 1 and wrap2.config.base_ptr == 0x8000 and len(rest) == 10
    with pytest.raises(UAPIError) as exc:
        PasidTableConfig.from_user(rest)
    assert exc.value.errno == errno.EFAULT


# ---- profiles ---------------------------------------------------------------------------------


def test_profiles_lookup_and_registration() -> None:
    assert profiles.names()[:2] == PROFILES
    strict = profiles.get("strict")
    linux = profiles.get("linux-5.10")
    assert linux.rules < strict.rules
    assert profiles.get(strict) is strict
    with pytest.raises(UAPIError) as exc:
        profiles.get("linux-9.9")
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(UAPIError) as exc:
        profiles.get(7)  # type: ignore[arg-type]
    assert exc.value.errno == errno.EINVAL
    lax = Profile("test-lax", "no version rule", linux.rules - {"cache_invalidate.version"})
    profiles.register(lax, replace=True)
    assert CI(ci(version=9), "test-lax").version == 9
    assert CI(ci(version=9), lax).version == 9
    with pytest.raises(UAPIError) as exc:
        profiles.register(lax)
    assert exc.value.errno == errno.EEXIST


# ---- docs/rules.md ----------------------------------------------------------------------------


def test_rules_doc_is_generated_from_the_table() -> None:
    path = Path(__file__).resolve().parents[1] / "docs" / "rules.md"
    assert path.read_text(encoding="utf-8") == render_markdown(), (
        "docs/rules.md is stale: run `python -m iommu_uapi.rules docs/rules.md`"
    )
    text = render_markdown()
    for item in (*RULES, *UAPI_QUIRKS, *MODEL_RULES, *IOMMUFD_RULES):
        assert f"| `{item.id}` |" in text
    for name in profiles.BUILTIN:
        assert f"| `{name}` |" in text


def test_rules_doc_lists_every_iommufd_rule_with_its_errno() -> None:
    """The successor API's refusals are in docs/rules.md like the others."""
    from iommu_uapi.errors import errno_name

    text = (Path(__file__).resolve().parents[1] / "docs" / "rules.md").read_text(
        encoding="utf-8")
    assert "\n## iommufd\n" in text
    section = text.split("\n## iommufd\n", 1)[1]
    for rule in IOMMUFD_RULES:
        row = next((line for line in section.splitlines() if f"| `{rule.id}` |" in line), None)
        assert row is not None, f"docs/rules.md lacks {rule.id}"
        assert errno_name(rule.errno or 0) in row

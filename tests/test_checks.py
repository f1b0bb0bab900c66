"""One test per tabulated rule, in both profiles: a concrete failing input with the rule's exact
errno, and a passing neighbour. Plus the typed in-kernel path, profiles and docs/rules.md."""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iommu_uapi import checks, profiles
from iommu_uapi.abi import SizeDiscipline
from iommu_uapi.errors import UAPIError
from iommu_uapi.profiles import Profile
from iommu_uapi.rules import RULES, RULES_BY_ID, render_markdown
from iommu_uapi.uapi import (
    CacheInvalidateInfo,
    GpasidBindData,
    GpasidBindDataVtd,
    GpasidBindVendor,
    InvAddrInfo,
    InvGranu,
    InvPasidInfo,
    NestingInfo,
    PageResponse,
    PasidSmmuv3,
    PasidTableConfig,
    PasidTableVendor,
    VfioIommuType1CacheInvalidate,
    VfioIommuType1NestingOp,
    VfioIommuType1SetPasidTable,
    nesting_info_probe,
)

IOMMUFD = SizeDiscipline.IOMMUFD
PROFILES = ("linux-5.10", "strict")


def ci(argsz: int = 56, version: int = 1, cache: int = 1, granularity: int = 2,
       padding: bytes = bytes(6), addr_flags: int = 0, pasid_flags: int = 1) -> bytes:
    granu = (InvGranu(pasid_info=InvPasidInfo(flags=pasid_flags, pasid=4))
             if granularity == 1 else InvGranu(addr_info=InvAddrInfo(flags=addr_flags)))
    return CacheInvalidateInfo(argsz, version, cache, granularity, padding, granu).to_bytes()


def bd(argsz: int = 72, version: int = 1, fmt: int = 1, flags: int = 0,
       padding: bytes = bytes(8), vtd_flags: int = 0) -> bytes:
    return GpasidBindData(
        argsz=argsz, version=version, format=fmt, addr_width=48, flags=flags, gpgd=0x1000,
        hpasid=2, padding=padding, vendor=GpasidBindVendor(vtd=GpasidBindDataVtd(vtd_flags)),
    ).to_bytes()


def pr(argsz: int = 24, version: int = 1, flags: int = 0, code: int = 0) -> bytes:
    return PageResponse(argsz, version, flags, 0, 1, code).to_bytes()


def pt(argsz: int = 32, version: int = 1, fmt: int = 1, config: int = 1,
       padding: bytes = bytes(2), vpad: bytes = bytes(2)) -> bytes:
    return PasidTableConfig(
        argsz=argsz, version=version, base_ptr=0x8000, format=fmt, config=config,
        padding=padding, vendor_data=PasidTableVendor(PasidSmmuv3(1, 0, 0, vpad)),
    ).to_bytes()


def ni(argsz: int = 64) -> bytes:
    return NestingInfo(argsz=argsz, format=1, features=3).to_bytes()


def vh(argsz: int = 8, flags: int = 0) -> bytes:
    return struct.pack("<II", argsz, flags)


def tail(raw: bytes, extra: bytes) -> bytes:
    return struct.pack("<I", len(raw) + len(extra)) + raw[4:] + extra


CI = CacheInvalidateInfo.from_user
BD = GpasidBindData.from_user
PR = PageResponse.from_user
PT = PasidTableConfig.from_user
NI = NestingInfo.from_user

Call = Callable[[str], Any]

# rule id -> (failing call, passing neighbour); each takes the profile name.
CASES: dict[str, tuple[Call, Call]] = {
    "abi.short_buffer": (lambda p: CacheInvalidateInfo.from_bytes(bytes(55)),
                         lambda p: CacheInvalidateInfo.from_bytes(bytes(56))),
    "abi.long_buffer": (lambda p: CacheInvalidateInfo.from_bytes(bytes(57)),
                        lambda p: CacheInvalidateInfo.from_bytes(bytes(56))),
    "abi.field_range": (lambda p: CacheInvalidateInfo(cache=256).to_bytes(),
                        lambda p: CacheInvalidateInfo(cache=255).to_bytes()),
    "abi.decode": (lambda p: CacheInvalidateInfo.from_json(b'{"granularity": 256}'),
                   lambda p: CacheInvalidateInfo.from_json(b'{"granularity": 255}')),
    "profile.unknown": (lambda p: profiles.get(p + "-typo"), lambda p: profiles.get(p)),
    "profile.exists": (lambda p: profiles.register(profiles.get(p)),
                       lambda p: profiles.register(profiles.get(p), replace=True)),
    # cache invalidation
    "cache_invalidate.copy_minsz": (lambda p: CI(ci()[:15], p), lambda p: CI(ci(), p)),
    "cache_invalidate.argsz_minsz": (lambda p: CI(ci(15, granularity=0), p),
                                     lambda p: CI(ci(16, granularity=0), p)),
    "cache_invalidate.copy_rest": (lambda p: CI(ci()[:55], p), lambda p: CI(ci(), p)),
    "cache_invalidate.tail_nonzero": (lambda p: CI(tail(ci(), b"\0\1"), p, IOMMUFD),
                                      lambda p: CI(tail(ci(), b"\0\0"), p, IOMMUFD)),
    "cache_invalidate.argsz_granularity": (lambda p: CI(ci(55), p), lambda p: CI(ci(56), p)),
    "cache_invalidate.version": (lambda p: CI(ci(version=2), p), lambda p: CI(ci(), p)),
    "cache_invalidate.cache_bits": (lambda p: CI(ci(cache=8 | 1, granularity=1), p),
                                    lambda p: CI(ci(cache=7, granularity=1), p)),
    "cache_invalidate.cache_nonzero": (lambda p: CI(ci(cache=0), p),
                                       lambda p: CI(ci(cache=1), p)),
    "cache_invalidate.granularity_range": (lambda p: CI(ci(granularity=3), p),
                                           lambda p: CI(ci(granularity=2), p)),
    "cache_invalidate.cache_granularity": (lambda p: CI(ci(cache=4, granularity=2), p),
                                           lambda p: CI(ci(cache=3, granularity=2), p)),
    "cache_invalidate.addr_flags": (lambda p: CI(ci(addr_flags=8), p),
                                    lambda p: CI(ci(addr_flags=7), p)),
    "cache_invalidate.pasid_flags": (lambda p: CI(ci(granularity=1, pasid_flags=5), p),
                                     lambda p: CI(ci(granularity=1, pasid_flags=3), p)),
    "cache_invalidate.pasid_needs_id": (lambda p: CI(ci(granularity=1, pasid_flags=0), p),
                                        lambda p: CI(ci(granularity=1, pasid_flags=2), p)),
    "cache_invalidate.padding": (lambda p: CI(ci(padding=b"\0\0\0\0\0\1"), p),
                                 lambda p: CI(ci(), p)),
    # guest PASID bind
    "bind.copy_minsz": (lambda p: BD(bd()[:55], p), lambda p: BD(bd(), p)),
    "bind.argsz_minsz": (lambda p: BD(bd(55, fmt=1), p), lambda p: BD(bd(72), p)),
    "bind.copy_rest": (lambda p: BD(bd()[:71], p), lambda p: BD(bd(), p)),
    "bind.tail_nonzero": (lambda p: BD(tail(bd(), b"\1"), p, IOMMUFD),
                          lambda p: BD(tail(bd(), b"\0"), p, IOMMUFD)),
    "bind.argsz_vendor": (lambda p: BD(bd(56)[:56], p), lambda p: BD(bd(72), p)),
    "bind.version": (lambda p: BD(bd(version=0), p), lambda p: BD(bd(), p)),
    "bind.format_range": (lambda p: BD(bd(fmt=2), p), lambda p: BD(bd(fmt=1), p)),
    "bind.format_nonzero": (lambda p: BD(bd(fmt=0), p), lambda p: BD(bd(fmt=1), p)),
    "bind.flags": (lambda p: BD(bd(flags=1 << 32), p), lambda p: BD(bd(flags=1), p)),
    "bind.padding": (lambda p: BD(bd(padding=b"\1" + bytes(7)), p), lambda p: BD(bd(), p)),
    "bind.vtd_flags": (lambda p: BD(bd(vtd_flags=0x40), p), lambda p: BD(bd(vtd_flags=0x3F), p)),
    # page response
    "page_response.copy_minsz": (lambda p: PR(pr()[:23], p), lambda p: PR(pr(), p)),
    "page_response.argsz_minsz": (lambda p: PR(pr(argsz=23), p), lambda p: PR(pr(24), p)),
    "page_response.copy_rest": (lambda p: PR(pr(argsz=32), p, IOMMUFD),
                                lambda p: PR(pr(argsz=32) + bytes(8), p, IOMMUFD)),
    "page_response.tail_nonzero": (lambda p: PR(tail(pr(), b"\1"), p, IOMMUFD),
                                   lambda p: PR(tail(pr(), b"\0"), p, IOMMUFD)),
    "page_response.version": (lambda p: PR(pr(version=2), p), lambda p: PR(pr(), p)),
    "page_response.flags": (lambda p: PR(pr(flags=2), p), lambda p: PR(pr(flags=1), p)),
    "page_response.code_range": (lambda p: PR(pr(code=3), p), lambda p: PR(pr(code=2), p)),
    # PASID table
    "attach_pasid_table.copy_minsz": (lambda p: PT(pt()[:23], p), lambda p: PT(pt(), p)),
    "attach_pasid_table.argsz_minsz": (lambda p: PT(pt(23, fmt=0)[:24], p),
                                       lambda p: PT(pt(24, fmt=0)[:24], p)),
    "attach_pasid_table.copy_rest": (lambda p: PT(pt()[:31], p), lambda p: PT(pt(), p)),
    "attach_pasid_table.tail_nonzero": (lambda p: PT(tail(pt(), b"\1"), p, IOMMUFD),
                                        lambda p: PT(tail(pt(), b"\0"), p, IOMMUFD)),
    "attach_pasid_table.version": (lambda p: PT(pt(version=2), p), lambda p: PT(pt(), p)),
    "attach_pasid_table.argsz_format": (lambda p: PT(pt(31), p), lambda p: PT(pt(32), p)),
    "attach_pasid_table.config_range": (lambda p: PT(pt(config=4), p),
                                        lambda p: PT(pt(config=3), p)),
    "attach_pasid_table.padding": (lambda p: PT(pt(vpad=b"\0\1"), p), lambda p: PT(pt(), p)),
    # nesting info
    "nesting_info.copy_minsz": (lambda p: NI(ni()[:31], p), lambda p: NI(ni(), p)),
    "nesting_info.argsz_minsz": (lambda p: NI(ni(31), p), lambda p: NI(ni(32), p)),
    "nesting_info.copy_rest": (lambda p: NI(ni()[:63], p), lambda p: NI(ni(), p)),
    "nesting_info.tail_nonzero": (lambda p: NI(tail(ni(), b"\1"), p, IOMMUFD),
                                  lambda p: NI(tail(ni(), b"\0"), p, IOMMUFD)),
    "nesting_info.copy_argsz": (lambda p: nesting_info_probe(bytearray(3)),
                                lambda p: nesting_info_probe(bytearray(4))),
    # VFIO wrappers
    "nesting_op.copy_minsz": (lambda p: VfioIommuType1NestingOp.from_user(vh()[:7], p),
                              lambda p: VfioIommuType1NestingOp.from_user(vh(), p)),
    "nesting_op.argsz_minsz": (lambda p: VfioIommuType1NestingOp.from_user(vh(7), p),
                               lambda p: VfioIommuType1NestingOp.from_user(vh(8), p)),
    "nesting_op.flags": (lambda p: VfioIommuType1NestingOp.from_user(vh(8, 0x10002), p),
                         lambda p: VfioIommuType1NestingOp.from_user(vh(8, 2), p)),
    "nesting_op.op": (lambda p: VfioIommuType1NestingOp.from_user(vh(8, 3), p),
                      lambda p: VfioIommuType1NestingOp.from_user(vh(8, 1), p)),
    "set_pasid_table.copy_minsz": (
        lambda p: VfioIommuType1SetPasidTable.from_user(vh(8, 1)[:4], p),
        lambda p: VfioIommuType1SetPasidTable.from_user(vh(8, 1), p)),
    "set_pasid_table.argsz_minsz": (
        lambda p: VfioIommuType1SetPasidTable.from_user(vh(0, 1), p),
        lambda p: VfioIommuType1SetPasidTable.from_user(vh(8, 1), p)),
    "set_pasid_table.flags": (
        lambda p: VfioIommuType1SetPasidTable.from_user(vh(8, 3), p),
        lambda p: VfioIommuType1SetPasidTable.from_user(vh(8, 2), p)),
    "vfio_cache_invalidate.copy_minsz": (
        lambda p: VfioIommuType1CacheInvalidate.from_user(b"", p),
        lambda p: VfioIommuType1CacheInvalidate.from_user(vh(), p)),
    "vfio_cache_invalidate.argsz_minsz": (
        lambda p: VfioIommuType1CacheInvalidate.from_user(vh(4), p),
        lambda p: VfioIommuType1CacheInvalidate.from_user(vh(8), p)),
    "vfio_cache_invalidate.flags": (
        lambda p: VfioIommuType1CacheInvalidate.from_user(vh(8, 1), p),
        lambda p: VfioIommuType1CacheInvalidate.from_user(vh(8, 0), p)),
}


def test_every_rule_has_a_case() -> None:
    assert set(CASES) == set(RULES_BY_ID)


def _applies(rule_id: str, profile: str) -> bool:
    return profile in RULES_BY_ID[rule_id].profiles


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("rule_id", [r.id for r in RULES])
def test_rule(rule_id: str, profile: str) -> None:
    bad, good = CASES[rule_id]
    good(profile)
    if _applies(rule_id, profile):
        with pytest.raises(UAPIError) as exc:
            bad(profile)
        assert exc.value.rule == rule_id
        assert exc.value.errno == RULES_BY_ID[rule_id].errno
        assert exc.value.message.startswith(RULES_BY_ID[rule_id].operation + ": ")
    else:  # the linux-5.10 quirk: the kernel let this through
        try:
            bad(profile)
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
    for rule in RULES:
        assert f"`{rule.id}`" in render_markdown()

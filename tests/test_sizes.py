"""The size disciplines: iommu.rst's four compatibility cases for every argsz record, and the
kernel's order of EFAULT, EINVAL and E2BIG."""

from __future__ import annotations

import errno
import struct

import pytest

from iommu_uapi.abi import SizeDiscipline
from iommu_uapi.errors import UAPIError
from iommu_uapi.uapi import (
    CacheInvalidateInfo,
    GpasidBindData,
    GpasidBindDataVtd,
    GpasidBindVendor,
    InvAddrInfo,
    InvGranu,
    InvPasidInfo,
    NestingInfo,
    NestingInfoVendor,
    NestingInfoVtd,
    PageResponse,
    PasidSmmuv3,
    PasidTableConfig,
    PasidTableVendor,
    nesting_info_probe,
)

ARGSZ = SizeDiscipline.ARGSZ
IOMMUFD = SizeDiscipline.IOMMUFD
BOTH = (ARGSZ, IOMMUFD)


def with_argsz(raw: bytes, argsz: int) -> bytes:
    return struct.pack("<I", argsz) + raw[4:]


def refused(call: object, *args: object, **kw: object) -> UAPIError:
    with pytest.raises(UAPIError) as exc:
        call(*args, **kw)  # type: ignore[operator]
    return exc.value


ADDR = CacheInvalidateInfo(
    argsz=56, version=1, cache=1, granularity=2,
    granu=InvGranu(addr_info=InvAddrInfo(flags=1, pasid=9, addr=0x4000, granule_size=4096,
                                         nb_granules=1)),
).to_bytes()
PASID = CacheInvalidateInfo(
    argsz=32, version=1, cache=1, granularity=1,
    granu=InvGranu(pasid_info=InvPasidInfo(flags=1, pasid=9)),
).to_bytes()
DOMAIN = CacheInvalidateInfo(argsz=16, version=1, cache=1, granularity=0).to_bytes()
BIND = GpasidBindData(
    argsz=72, version=1, format=1, addr_width=48, flags=0, gpgd=0x1000, hpasid=3,
    vendor=GpasidBindVendor(vtd=GpasidBindDataVtd(flags=1)),
).to_bytes()
TABLE = PasidTableConfig(
    argsz=32, version=1, base_ptr=0x8000, format=1, config=1,
    vendor_data=PasidTableVendor(smmuv3=PasidSmmuv3(version=1)),
).to_bytes()
RESPONSE = PageResponse(argsz=24, version=1, grpid=3).to_bytes()
NESTING = NestingInfo(
    argsz=64, format=1, features=3, addr_width=48, pasid_bits=20,
    vendor=NestingInfoVendor(vtd=NestingInfoVtd(cap_reg=0x1, ecap_reg=0x2)),
).to_bytes()


# ---- case 1: user and kernel sizes equal --------------------------------------------------


@pytest.mark.parametrize("disc", BOTH)
@pytest.mark.parametrize(
    ("cls", "raw", "profile"),
    [
        (CacheInvalidateInfo, ADDR, "strict"),
        (GpasidBindData, BIND, "strict"),
        (PasidTableConfig, TABLE, "strict"),
        (PageResponse, RESPONSE, "strict"),
        (NestingInfo, NESTING, "strict"),
    ],
    ids=lambda v: getattr(v, "__name__", None) if isinstance(v, type) else None,
)
def test_case1_exact_size(cls: type, raw: bytes, profile: str, disc: SizeDiscipline) -> None:
    rec = cls.from_user(raw, profile, disc)  # type: ignore[attr-defined]
    assert rec.to_bytes() == raw


# ---- case 2: an older user (smaller struct) -----------------------------------------------


@pytest.mark.parametrize("disc", BOTH)
def test_case2_domain_invalidation_with_argsz_16_zeroes_the_union(disc: SizeDiscipline) -> None:
    garbage = DOMAIN[:16] + b"\xee" * 40  # readable bytes past argsz are never copied
    for buf in (DOMAIN[:16], garbage):
        info = CacheInvalidateInfo.from_user(buf, "strict", disc)
        assert info.argsz == 16
        assert info.granu == InvGranu()


@pytest.mark.parametrize("disc", BOTH)
def test_case2_pasid_invalidation_with_argsz_32(disc: SizeDiscipline) -> None:
    info = CacheInvalidateInfo.from_user(PASID[:32] + b"\xff" * 24, "strict", disc)
    assert info.granu.pasid_info == InvPasidInfo(flags=1, pasid=9)
    assert info.granu.addr_info.addr == 0


@pytest.mark.parametrize("disc", BOTH)
def test_case2_bind_without_vendor_data(disc: SizeDiscipline) -> None:
    data = GpasidBindData.from_user(with_argsz(BIND, 56)[:56], "linux-5.10", disc)
    assert data.argsz == 56 and data.vendor == GpasidBindVendor()
    err = refused(GpasidBindData.from_user, with_argsz(BIND, 56)[:56], "strict", disc)
    assert (err.errno, err.rule) == (errno.EINVAL, "bind.argsz_vendor")


@pytest.mark.parametrize("disc", BOTH)
def test_case2_pasid_table_without_vendor_data(disc: SizeDiscipline) -> None:
    no_format = PasidTableConfig(argsz=24, version=1, format=0, config=2).to_bytes()[:24]
    cfg = PasidTableConfig.from_user(no_format, "linux-5.10", disc)
    assert cfg.vendor_data == PasidTableVendor()


@pytest.mark.parametrize("disc", BOTH)
def test_case2_nesting_info_header_only(disc: SizeDiscipline) -> None:
    info = NestingInfo.from_user(with_argsz(NESTING, 32)[:32], "linux-5.10", disc)
    assert info.features == 3 and info.vendor == NestingInfoVendor()


@pytest.mark.parametrize("disc", BOTH)
def test_case2_page_response_argsz_is_ignored_by_linux_but_checked_by_strict(
    disc: SizeDiscipline,
) -> None:
    small = with_argsz(RESPONSE, 0)
    assert PageResponse.from_user(small, "linux-5.10", disc).grpid == 3
    err = refused(PageResponse.from_user, small, "strict", disc)
    assert (err.errno, err.rule) == (errno.EINVAL, "page_response.argsz_minsz")


# ---- case 3: a newer user (larger struct) -------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "raw", "op"),
    [
        (CacheInvalidateInfo, ADDR, "cache_invalidate"),
        (GpasidBindData, BIND, "bind"),
        (PasidTableConfig, TABLE, "attach_pasid_table"),
        (PageResponse, RESPONSE, "page_response"),
        (NestingInfo, NESTING, "nesting_info"),
    ],
)
def test_case3_larger_struct(cls: type, raw: bytes, op: str) -> None:
    size = len(raw)
    dirty = with_argsz(raw, size + 8) + b"\0\0\0\x01\0\0\0\0"
    clean = with_argsz(raw, size + 8) + bytes(8)
    rec = cls.from_user(dirty, "strict", ARGSZ)  # type: ignore[attr-defined]
    assert rec.argsz == size + 8
    assert rec.to_bytes()[4:] == raw[4:]
    assert cls.from_user(clean, "strict", IOMMUFD).to_bytes()[4:] == raw[4:]  # type: ignore[attr-defined]
    err = refused(cls.from_user, dirty, "strict", IOMMUFD)  # type: ignore[attr-defined]
    assert (err.errno, err.rule) == (errno.E2BIG, f"{op}.tail_nonzero")
    assert f"tail byte {size + 3}" in err.message


# ---- case 4: a malicious or buggy in-range size with garbage ------------------------------


@pytest.mark.parametrize("disc", BOTH)
@pytest.mark.parametrize(
    ("call", "rule"),
    [
        (lambda d: CacheInvalidateInfo.from_user(with_argsz(ADDR, 40), "linux-5.10", d),
         "cache_invalidate.argsz_granularity"),
        (lambda d: CacheInvalidateInfo.from_user(with_argsz(PASID, 20), "linux-5.10", d),
         "cache_invalidate.argsz_granularity"),
        (lambda d: CacheInvalidateInfo.from_user(with_argsz(ADDR, 8), "linux-5.10", d),
         "cache_invalidate.argsz_minsz"),
        (lambda d: CacheInvalidateInfo.from_user(with_argsz(b"\xff" * 56, 56), "linux-5.10", d),
         "cache_invalidate.version"),
        (lambda d: GpasidBindData.from_user(with_argsz(b"\x07" * 72, 60), "linux-5.10", d),
         "bind.version"),
        (lambda d: GpasidBindData.from_user(with_argsz(BIND, 40), "linux-5.10", d),
         "bind.argsz_minsz"),
        (lambda d: PasidTableConfig.from_user(with_argsz(TABLE, 28), "linux-5.10", d),
         "attach_pasid_table.argsz_format"),
        (lambda d: PasidTableConfig.from_user(with_argsz(b"\x09" * 32, 30), "linux-5.10", d),
         "attach_pasid_table.version"),
        (lambda d: NestingInfo.from_user(with_argsz(NESTING, 31), "linux-5.10", d),
         "nesting_info.argsz_minsz"),
    ],
)
def test_case4_in_range_size_with_garbage(call: object, rule: str, disc: SizeDiscipline) -> None:
    err = refused(call, disc)
    assert (err.errno, err.rule) == (errno.EINVAL, rule)


# ---- EFAULT and the kernel's order ---------------------------------------------------------


@pytest.mark.parametrize("disc", BOTH)
def test_buffer_shorter_than_minsz_is_efault_before_argsz(disc: SizeDiscipline) -> None:
    err = refused(CacheInvalidateInfo.from_user, with_argsz(ADDR, 4)[:10], "strict", disc)
    assert (err.errno, err.rule) == (errno.EFAULT, "cache_invalidate.copy_minsz")


@pytest.mark.parametrize("disc", BOTH)
def test_buffer_shorter_than_argsz_claims_is_efault(disc: SizeDiscipline) -> None:
    for cls, raw, op in ((CacheInvalidateInfo, ADDR, "cache_invalidate"),
                         (GpasidBindData, BIND, "bind"),
                         (PasidTableConfig, TABLE, "attach_pasid_table"),
                         (NestingInfo, NESTING, "nesting_info")):
        err = refused(cls.from_user, raw[:-1], "strict", disc)
        assert (err.errno, err.rule) == (errno.EFAULT, f"{op}.copy_rest")


@pytest.mark.parametrize("disc", BOTH)
def test_granularity_minimum_is_checked_before_the_second_copy(disc: SizeDiscipline) -> None:
    # ADDR with argsz 40 and only 20 readable bytes: EINVAL wins over EFAULT (c.1 steps 5, 6).
    err = refused(CacheInvalidateInfo.from_user, with_argsz(ADDR, 40)[:20], "strict", disc)
    assert err.errno == errno.EINVAL


@pytest.mark.parametrize("disc", BOTH)
def test_second_copy_fault_wins_over_content(disc: SizeDiscipline) -> None:
    bad = CacheInvalidateInfo(argsz=56, version=7, granularity=2).to_bytes()
    err = refused(CacheInvalidateInfo.from_user, bad[:30], "strict", disc)
    assert err.errno == errno.EFAULT


@pytest.mark.parametrize("disc", BOTH)
def test_pasid_table_version_is_checked_before_the_second_copy(disc: SizeDiscipline) -> None:
    bad = PasidTableConfig(argsz=32, version=2, format=1, config=1).to_bytes()[:24]
    err = refused(PasidTableConfig.from_user, bad, "linux-5.10", disc)
    assert (err.errno, err.rule) == (errno.EINVAL, "attach_pasid_table.version")


def test_argsz_never_reads_past_the_known_size() -> None:
    # ARGSZ: argsz 64 but only 56 readable bytes: the kernel copies 56 and never faults.
    assert CacheInvalidateInfo.from_user(with_argsz(ADDR, 64), "strict", ARGSZ).argsz == 64
    err = refused(CacheInvalidateInfo.from_user, with_argsz(ADDR, 64), "strict", IOMMUFD)
    assert (err.errno, err.rule) == (errno.EFAULT, "cache_invalidate.copy_rest")


def test_iommufd_tail_is_read_before_content_checks() -> None:
    bad_config = PasidTableConfig(argsz=40, version=1, format=1, config=9).to_bytes()
    err = refused(PasidTableConfig.from_user, bad_config + b"\x01" + bytes(7), "linux-5.10",
                  IOMMUFD)
    assert err.errno == errno.E2BIG
    err = refused(PasidTableConfig.from_user, bad_config + bytes(8), "linux-5.10", IOMMUFD)
    assert (err.errno, err.rule) == (errno.EINVAL, "attach_pasid_table.config_range")


def test_page_response_linux_reads_24_bytes_whatever_argsz() -> None:
    err = refused(PageResponse.from_user, RESPONSE[:20], "linux-5.10")
    assert (err.errno, err.rule) == (errno.EFAULT, "page_response.copy_minsz")


def test_kernel_copy_keeps_the_user_argsz_and_accepts_memoryview() -> None:
    buf = bytearray(with_argsz(PASID, 40) + bytes(16))
    info = CacheInvalidateInfo.from_user(memoryview(buf), "strict")
    assert info.argsz == 40
    buf[16] = 3  # the decoded record is a copy, not a view
    assert info.granu.pasid_info.flags == 1


def test_unreadable_object_is_efault() -> None:
    err = refused(CacheInvalidateInfo.from_user, 12345)
    assert err.errno == errno.EFAULT


# ---- the nesting-info size probe ------------------------------------------------------------


def test_nesting_probe_writes_the_needed_size_back() -> None:
    buf = bytearray(with_argsz(bytes(8), 16))
    assert nesting_info_probe(buf) is False
    assert struct.unpack_from("<I", buf)[0] == 64
    full = bytearray(NESTING)
    assert nesting_info_probe(full) is True
    assert bytes(full) == NESTING


@pytest.mark.parametrize(
    ("buf", "rule"),
    [
        (bytes(with_argsz(bytes(8), 16)), "nesting_info.copy_argsz"),  # read-only memory
        (bytearray(2), "nesting_info.copy_argsz"),
        (bytearray(with_argsz(bytes(32), 64)), "nesting_info.copy_rest"),
    ],
)
def test_nesting_probe_bad_buffer_is_efault(buf: bytearray, rule: str) -> None:
    err = refused(nesting_info_probe, buf)
    assert (err.errno, err.rule) == (errno.EFAULT, rule)

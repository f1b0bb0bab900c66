"""Every iommufd struct: its C layout as reference kernel-uapi.md f gives it, and the size
cases of the iommufd discipline (exact, smaller, larger with a zero tail, larger with a
non-zero tail)."""

from __future__ import annotations

import errno

import pytest

from iommu_uapi.cli_records import record_types
from iommu_uapi.errors import UAPIError
from iommu_uapi.iommufd import (
    RECORDS,
    IommuFaultAlloc,
    IommuHwInfo,
    IommuHwInfoArmSmmuv3,
    IommuHwInfoVtd,
    IommuHwptAlloc,
    IommuHwptArmSmmuv3,
    IommuHwptInvalidate,
    IommuHwptPageResponse,
    IommuHwptPgfault,
    IommuHwptVtdS1,
    IommuHwptVtdS1Invalidate,
    IommuViommuArmSmmuv3Invalidate,
)
from iommu_uapi.iommufd.rules import IOMMUFD_TABLE

LAYOUTS = {
    IommuHwInfo: (40, {"size": (0, 4), "flags": (4, 4), "dev_id": (8, 4), "data_len": (12, 4),
                       "data_uptr": (16, 8), "out_data_type": (24, 4),
                       "out_max_pasid_log2": (28, 1), "reserved": (29, 3),
                       "out_capabilities": (32, 8)}),
    IommuHwInfoVtd: (24, {"flags": (0, 4), "reserved": (4, 4), "cap_reg": (8, 8),
                          "ecap_reg": (16, 8)}),
    IommuHwInfoArmSmmuv3: (40, {"flags": (0, 4), "reserved": (4, 4), "idr": (8, 24),
                                "iidr": (32, 4), "aidr": (36, 4)}),
    IommuHwptAlloc: (48, {"size": (0, 4), "flags": (4, 4), "dev_id": (8, 4), "pt_id": (12, 4),
                          "out_hwpt_id": (16, 4), "reserved": (20, 4), "data_type": (24, 4),
                          "data_len": (28, 4), "data_uptr": (32, 8), "fault_id": (40, 4),
                          "reserved2": (44, 4)}),
    IommuHwptVtdS1: (24, {"flags": (0, 8), "pgtbl_addr": (8, 8), "addr_width": (16, 4),
                          "reserved": (20, 4)}),
    IommuHwptArmSmmuv3: (16, {"ste": (0, 16)}),
    IommuHwptInvalidate: (32, {"size": (0, 4), "hwpt_id": (4, 4), "data_uptr": (8, 8),
                               "data_type": (16, 4), "entry_len": (20, 4),
                               "entry_num": (24, 4), "reserved": (28, 4)}),
    IommuHwptVtdS1Invalidate: (24, {"addr": (0, 8), "npages": (8, 8), "flags": (16, 4),
                                    "reserved": (20, 4)}),
    IommuViommuArmSmmuv3Invalidate: (16, {"cmd": (0, 16)}),
    IommuFaultAlloc: (16, {"size": (0, 4), "flags": (4, 4), "out_fault_id": (8, 4),
                           "out_fault_fd": (12, 4)}),
    IommuHwptPgfault: (40, {"flags": (0, 4), "dev_id": (4, 4), "pasid": (8, 4),
                            "grpid": (12, 4), "perm": (16, 4), "reserved": (20, 4),
                            "addr": (24, 8), "length": (32, 4), "cookie": (36, 4)}),
    IommuHwptPageResponse: (8, {"cookie": (0, 4), "code": (4, 4)}),
}

SIZED = [r for r in RECORDS if "size" in r.__struct_fields__]
DATA = [r for r in RECORDS if "size" not in r.__struct_fields__]


@pytest.mark.parametrize("cls", list(LAYOUTS), ids=lambda c: c.CNAME)
def test_layout_is_the_kernel_struct(cls: type) -> None:
    size, fields = LAYOUTS[cls]
    assert size == cls.SIZE
    assert cls.c_layout() == fields


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.CNAME)
def test_cli_lists_every_record(cls: type) -> None:
    assert record_types()[cls.CNAME] is cls


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.CNAME)
def test_every_size_rule_is_in_the_table(cls: type) -> None:
    kinds = ("copy_minsz", "argsz_minsz", "copy_rest", "tail_nonzero") if cls in SIZED else (
        "len_min", "tail_nonzero")
    for kind in kinds:
        assert f"iommufd.{cls.OP}.{kind}" in IOMMUFD_TABLE


def _sized(cls: type, size: int, total: int, tail: int = 0) -> bytearray:
    raw = bytearray(size.to_bytes(4, "little") + bytes(max(total, 4) - 4))
    if tail:
        raw[total - 1] = tail
    return raw


@pytest.mark.parametrize("cls", SIZED, ids=lambda c: c.CNAME)
def test_sized_struct_size_cases(cls: type) -> None:
    # exact
    assert cls.from_user(_sized(cls, cls.SIZE, cls.SIZE)).size == cls.SIZE
    # smaller but at least the minimum: zero-extended
    assert cls.from_user(_sized(cls, cls.MINSZ, cls.MINSZ)).size == cls.MINSZ
    # below the minimum: EINVAL
    with pytest.raises(UAPIError) as exc:
        cls.from_user(_sized(cls, cls.MINSZ - 1, cls.SIZE))
    assert (exc.value.errno, exc.value.rule) == (errno.EINVAL, f"iommufd.{cls.OP}.argsz_minsz")
    # larger with a zero tail: accepted
    assert cls.from_user(_sized(cls, cls.SIZE + 16, cls.SIZE + 16)).size == cls.SIZE + 16
    # larger with a non-zero tail: E2BIG
    with pytest.raises(UAPIError) as exc:
        cls.from_user(_sized(cls, cls.SIZE + 16, cls.SIZE + 16, tail=1))
    assert (exc.value.errno, exc.value.rule) == (errno.E2BIG, f"iommufd.{cls.OP}.tail_nonzero")
    # the size claims more than is readable: EFAULT
    with pytest.raises(UAPIError) as exc:
        cls.from_user(_sized(cls, cls.SIZE + 16, cls.SIZE + 8))
    assert exc.value.errno == errno.EFAULT
    # not even the minimum readable: EFAULT
    with pytest.raises(UAPIError) as exc:
        cls.from_user(bytearray(cls.MINSZ - 1))
    assert exc.value.errno == errno.EFAULT


@pytest.mark.parametrize("cls", DATA, ids=lambda c: c.CNAME)
def test_data_record_size_cases(cls: type) -> None:
    rec = cls.from_user(bytes(cls.SIZE))
    assert rec == cls()
    assert cls.from_user(bytes(cls.SIZE + 8)) == cls()
    with pytest.raises(UAPIError) as exc:
        cls.from_user(bytes(cls.SIZE + 7) + b"\x01")
    assert (exc.value.errno, exc.value.rule) == (errno.E2BIG, f"iommufd.{cls.OP}.tail_nonzero")
    with pytest.raises(UAPIError) as exc:
        cls.from_user(bytes(cls.MINSZ - 1))
    assert (exc.value.errno, exc.value.rule) == (errno.EINVAL, f"iommufd.{cls.OP}.len_min")


def test_larger_struct_keeps_the_known_fields() -> None:
    cmd = IommuHwptInvalidate(size=48, hwpt_id=7, data_uptr=0x1000, entry_len=24, entry_num=2)
    assert IommuHwptInvalidate.from_user(cmd.to_bytes() + bytes(16)) == cmd


def test_hw_info_minimum_is_before_out_capabilities() -> None:
    """A 32-byte iommu_hw_info (older user space) is accepted, out_capabilities zero."""
    raw = IommuHwInfo(size=32, dev_id=3, data_len=24, data_uptr=0x2000).to_bytes()[:32]
    assert IommuHwInfo.from_user(raw).out_capabilities == 0


def test_docs_page_lists_every_iommufd_rule() -> None:
    from pathlib import Path

    from iommu_uapi.iommufd.rules import render_markdown

    page = (Path(__file__).parents[2] / "docs" / "iommufd.md").read_text()
    assert render_markdown() in page, "docs/iommufd.md: regenerate the rule table"

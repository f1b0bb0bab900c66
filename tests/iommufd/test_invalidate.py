"""``IOMMU_HWPT_INVALIDATE``: the array contract, both copy helpers, partial completion, and the
descriptors and cache contents each entry produces on VT-d."""

from __future__ import annotations

import errno

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.iommufd import (
    Cmd,
    HwptInvalidateDataType,
    IommuHwptInvalidate,
    IommuHwptVtdS1Invalidate,
    IommuViommuArmSmmuv3Invalidate,
    UserMemory,
)
from iommu_uapi.iommufd.invalidate import copy_entries
from iommu_uapi.testing.iommufd_rig import U64_MAX, IommufdRig

VA = 0x7000_0000_0000
GOOD = IommuHwptVtdS1Invalidate(addr=VA, npages=1)
BAD_ADDR = IommuHwptVtdS1Invalidate(addr=VA + 1, npages=1)
BAD_FLAGS = IommuHwptVtdS1Invalidate(addr=VA, npages=1, flags=2)
BAD_RESERVED = IommuHwptVtdS1Invalidate(addr=VA, npages=1, reserved=1)
WHOLE_AT_ADDR = IommuHwptVtdS1Invalidate(addr=VA, npages=U64_MAX)


def _stale(rig: IommufdRig, pasid: int = 5) -> tuple[int, int]:
    """A nested HWPT at ``pasid`` of dev2 whose translation of VA is cached, then changed in
    the guest's tables without invalidation; returns (hwpt id, the new page's HPA)."""
    rig.gmap(VA)
    hwpt = rig.enter(pasid, rig.dev2)
    rig.translate(VA, pasid, dev=rig.dev2)
    rig.gunmap(VA)
    new = rig.gmap(VA)
    return hwpt, rig.hpa(new)


# -- partial completion ---------------------------------------------------------------------


@pytest.mark.parametrize("bad", [BAD_ADDR, BAD_FLAGS, BAD_RESERVED, WHOLE_AT_ADDR],
                         ids=["addr", "flags", "reserved", "whole-at-addr"])
def test_first_entry_bad_handles_none(rig: IommufdRig, bad: IommuHwptVtdS1Invalidate) -> None:
    hwpt, new = _stale(rig)
    handled, error = rig.invalidate(hwpt, [bad, GOOD])
    assert handled == 0 and error is not None
    want = errno.EINVAL if bad in (BAD_ADDR, WHOLE_AT_ADDR) else errno.EOPNOTSUPP
    assert error.errno == want
    assert rig.translate(VA, 5, dev=rig.dev2).paddr != new   # still the stale entry


@pytest.mark.parametrize("k", [2, 3, 5])
def test_kth_entry_bad_handles_k_minus_one(rig: IommufdRig, k: int) -> None:
    hwpt, new = _stale(rig)
    entries = [GOOD] * (k - 1) + [BAD_ADDR] + [GOOD] * 2
    handled, error = rig.invalidate(hwpt, entries)
    assert handled == k - 1
    assert error is not None and error.errno == errno.EINVAL
    assert error.rule == "iommufd.vtd_s1_invalidate.addr"
    assert rig.translate(VA, 5, dev=rig.dev2).paddr == new   # the handled entries took effect


def test_all_good_handles_all(rig: IommufdRig) -> None:
    hwpt, new = _stale(rig)
    assert rig.invalidate(hwpt, [GOOD] * 4) == (4, None)
    assert rig.translate(VA, 5, dev=rig.dev2).paddr == new


def test_zero_entries_is_the_support_probe(rig: IommufdRig) -> None:
    hwpt, _ = _stale(rig)
    before = rig.snapshot()
    assert rig.invalidate(hwpt, []) == (0, None)
    assert rig.snapshot() == before
    handled, error = rig.client.invalidate(hwpt, [], data_type=1)
    assert handled == 0 and error is not None and error.errno == errno.EINVAL


def test_unreadable_kth_entry_is_efault_after_k_minus_one(rig: IommufdRig) -> None:
    hwpt, new = _stale(rig)
    base = 0x6000_0000_0000
    rig.fd.user.mmap(base, 0x1000)
    rig.fd.user.write(base + 0x1000 - 48, GOOD.to_bytes() * 2)  # entries 0, 1; 2 unmapped
    buf = bytearray(IommuHwptInvalidate(size=32, hwpt_id=hwpt, data_uptr=base + 0x1000 - 48,
                                        entry_len=24, entry_num=3).to_bytes())
    with pytest.raises(UAPIError) as exc:
        rig.fd.ioctl(Cmd.HWPT_INVALIDATE, buf)
    assert exc.value.errno == errno.EFAULT
    assert IommuHwptInvalidate.from_bytes(buf).entry_num == 2
    assert rig.translate(VA, 5, dev=rig.dev2).paddr == new


def test_entry_num_is_written_back_even_when_the_object_is_unknown(rig: IommufdRig) -> None:
    handled, error = rig.invalidate(999, [GOOD])
    assert handled == 0 and error is not None and error.errno == errno.ENOENT


def test_write_back_efault_takes_priority(rig: IommufdRig) -> None:
    hwpt, _ = _stale(rig)
    va = rig.client.put(BAD_ADDR.to_bytes())
    cmd = IommuHwptInvalidate(size=32, hwpt_id=hwpt, data_uptr=va, entry_len=24, entry_num=1)
    readonly = memoryview(bytes(cmd.to_bytes()))
    with pytest.raises(UAPIError) as exc:
        rig.fd.ioctl(Cmd.HWPT_INVALIDATE, readonly)  # type: ignore[arg-type]
    assert exc.value.errno == errno.EFAULT and exc.value.rule == "iommufd.user.write"


def test_readonly_struct_still_reports_efault_after_the_work(rig: IommufdRig) -> None:
    """The entries handled before the write-back stay handled (the kernel cannot undo them)."""
    hwpt, new = _stale(rig)
    va = rig.client.put(GOOD.to_bytes())
    cmd = IommuHwptInvalidate(size=32, hwpt_id=hwpt, data_uptr=va, entry_len=24, entry_num=1)
    with pytest.raises(UAPIError) as exc:
        rig.fd.ioctl(Cmd.HWPT_INVALIDATE, memoryview(cmd.to_bytes()))  # type: ignore[arg-type]
    assert exc.value.errno == errno.EFAULT
    assert rig.translate(VA, 5, dev=rig.dev2).paddr == new


# -- the command's own fields ---------------------------------------------------------------


@pytest.mark.parametrize(("fields", "err", "rule"), [
    ({"reserved": 1}, errno.EOPNOTSUPP, "reserved"),
    ({"data_uptr": 0}, errno.EINVAL, "array"),
    ({"entry_len": 0}, errno.EINVAL, "array"),
])
def test_command_fields(rig: IommufdRig, fields: dict[str, int], err: int, rule: str) -> None:
    hwpt, _ = _stale(rig)
    va = rig.client.put(GOOD.to_bytes())
    args = {"size": 32, "hwpt_id": hwpt, "data_uptr": va, "entry_len": 24, "entry_num": 1,
            **fields}
    buf = bytearray(IommuHwptInvalidate(**args).to_bytes())
    before = rig.snapshot()
    with pytest.raises(UAPIError) as exc:
        rig.fd.ioctl(Cmd.HWPT_INVALIDATE, buf)
    assert (exc.value.errno, exc.value.rule) == (err, f"iommufd.hwpt_invalidate.{rule}")
    assert IommuHwptInvalidate.from_bytes(buf).entry_num == 0
    assert rig.snapshot() == before


def test_null_pointer_with_zero_entries_is_the_probe(rig: IommufdRig) -> None:
    hwpt, _ = _stale(rig)
    buf = bytearray(IommuHwptInvalidate(size=32, hwpt_id=hwpt).to_bytes())
    rig.fd.ioctl(Cmd.HWPT_INVALIDATE, buf)
    assert IommuHwptInvalidate.from_bytes(buf).entry_num == 0


def test_paging_hwpt_is_einval(rig: IommufdRig) -> None:
    handled, error = rig.invalidate(rig.parent, [GOOD])
    assert handled == 0 and error is not None
    assert (error.errno, error.rule) == (errno.EINVAL, "iommufd.hwpt_invalidate.object")


def test_ioas_is_enoent(rig: IommufdRig) -> None:
    handled, error = rig.invalidate(rig.ioas, [GOOD])
    assert handled == 0 and error is not None and error.errno == errno.ENOENT


# -- entry_len per copy helper --------------------------------------------------------------


@pytest.mark.parametrize("entry_len", [16, 23, 25, 32])
def test_per_entry_helper_refuses_other_lengths(rig: IommufdRig, entry_len: int) -> None:
    hwpt, _ = _stale(rig)
    raw = GOOD.to_bytes().ljust(entry_len, b"\0")[:entry_len]
    va = rig.client.put(raw)
    buf = bytearray(IommuHwptInvalidate(size=32, hwpt_id=hwpt, data_uptr=va,
                                        entry_len=entry_len, entry_num=1).to_bytes())
    with pytest.raises(UAPIError) as exc:
        rig.fd.ioctl(Cmd.HWPT_INVALIDATE, buf)
    assert (exc.value.errno, exc.value.rule) == (errno.EINVAL,
                                                 "iommufd.hwpt_invalidate.entry_len")
    assert IommuHwptInvalidate.from_bytes(buf).entry_num == 0


def _full(entries: bytes, entry_len: int, num: int, mapped: bool = True
          ) -> tuple[UserMemory, IommuHwptInvalidate]:
    user = UserMemory()
    if mapped:
        user.mmap(0x1000, 0x1000)
        user.write(0x1000, entries)
    return user, IommuHwptInvalidate(size=32, hwpt_id=1, data_uptr=0x1000,
                                     data_type=HwptInvalidateDataType.VIOMMU_ARM_SMMUV3,
                                     entry_len=entry_len, entry_num=num)


CMD = IommuViommuArmSmmuv3Invalidate(cmd=(0x12, 0x34))
_SMMU = int(HwptInvalidateDataType.VIOMMU_ARM_SMMUV3)


def test_full_array_helper_equal_length() -> None:
    user, cmd = _full(CMD.to_bytes() * 3, 16, 3)
    assert copy_entries(user, cmd, _SMMU) == ([CMD] * 3, None)


def test_full_array_helper_shorter_entries_are_zero_extended() -> None:
    user, cmd = _full(CMD.to_bytes()[:8] * 2, 8, 2)
    entries, error = copy_entries(user, cmd, _SMMU)
    assert error is None
    assert entries == [IommuViommuArmSmmuv3Invalidate(cmd=(0x12, 0))] * 2


def test_full_array_helper_longer_entries_need_a_zero_tail() -> None:
    user, cmd = _full((CMD.to_bytes() + bytes(8)) * 2, 24, 2)
    assert copy_entries(user, cmd, _SMMU) == ([CMD] * 2, None)
    user, cmd = _full(CMD.to_bytes() + bytes(8) + CMD.to_bytes() + b"\1" + bytes(7), 24, 2)
    with pytest.raises(UAPIError) as exc:
        copy_entries(user, cmd, _SMMU)
    assert exc.value.errno == errno.E2BIG


def test_full_array_helper_refuses_zero_entries_and_copies_all_first() -> None:
    user, cmd = _full(b"", 16, 0)
    with pytest.raises(UAPIError) as exc:
        copy_entries(user, cmd, _SMMU)
    assert (exc.value.errno, exc.value.rule) == (errno.EINVAL,
                                                 "iommufd.hwpt_invalidate.entry_num")
    user, cmd = _full(CMD.to_bytes(), 16, 300)  # runs past the mapped page: nothing handled
    with pytest.raises(UAPIError) as exc:
        copy_entries(user, cmd, _SMMU)
    assert exc.value.errno == errno.EFAULT


def test_wrong_data_type_for_the_helper_is_einval() -> None:
    user, cmd = _full(CMD.to_bytes(), 16, 1)
    with pytest.raises(UAPIError) as exc:
        copy_entries(user, cmd, int(HwptInvalidateDataType.VTD_S1))
    assert exc.value.errno == errno.EINVAL


# -- what the hardware sees -----------------------------------------------------------------


def test_entry_flushes_only_its_range(rig: IommufdRig) -> None:
    rig.gmap(VA)
    rig.gmap(VA + 0x10_0000)
    hwpt = rig.enter(5, rig.dev2)
    rig.translate(VA, 5, dev=rig.dev2)
    rig.translate(VA + 0x10_0000, 5, dev=rig.dev2)
    assert rig.invalidate(hwpt, [IommuHwptVtdS1Invalidate(addr=VA, npages=1)]) == (1, None)
    assert rig.translate(VA + 0x10_0000, 5, dev=rig.dev2).table_reads == 0
    assert rig.translate(VA, 5, dev=rig.dev2).table_reads > 0


def test_whole_flush_drops_every_entry_of_the_pasid_only(rig: IommufdRig) -> None:
    rig.gmap(VA)
    rig.gmap(VA + 0x10_0000)
    a = rig.enter(5, rig.dev2)
    rig.enter(6, rig.dev2)
    for pasid in (5, 6):
        rig.translate(VA, pasid, dev=rig.dev2)
        rig.translate(VA + 0x10_0000, pasid, dev=rig.dev2)
    assert rig.invalidate(a, [rig.vtd_entry()]) == (1, None)
    assert rig.translate(VA, 6, dev=rig.dev2).table_reads == 0
    assert rig.translate(VA + 0x10_0000, 6, dev=rig.dev2).table_reads == 0
    assert rig.translate(VA, 5, dev=rig.dev2).table_reads > 0
    assert rig.translate(VA + 0x10_0000, 5, dev=rig.dev2).table_reads > 0


def test_device_tlb_is_flushed_when_ats_is_on(rig: IommufdRig) -> None:
    assert rig.dev.atc is not None
    rig.gmap(VA)
    hwpt = rig.enter(7, rig.dev)
    rig.translate(VA, 7)
    assert rig.dev.atc.entries
    rig.gunmap(VA)
    new = rig.gmap(VA)
    assert rig.invalidate(hwpt, [IommuHwptVtdS1Invalidate(addr=VA, npages=1)]) == (1, None)
    assert not rig.dev.atc.entries
    assert rig.translate(VA, 7).paddr == rig.hpa(new)

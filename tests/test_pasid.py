"""The PASID space: allocation, quotas, exhaustion, ownership and free notification."""

from __future__ import annotations

import errno

import pytest

from iommu_uapi import UAPIError
from iommu_uapi.pasid import PasidSpace


def err(call: object, *args: object) -> int:
    with pytest.raises(UAPIError) as info:
        call(*args)  # type: ignore[operator]
    return info.value.errno


def test_alloc_lowest_free_and_never_zero() -> None:
    space = PasidSpace()
    vm = space.create_set("vm0", quota=8)
    assert [vm.alloc() for _ in range(3)] == [1, 2, 3]
    vm.free(2)
    assert vm.alloc() == 2


def test_quota_is_edquot() -> None:
    vm = PasidSpace().create_set("vm0", quota=2)
    vm.alloc()
    vm.alloc()
    assert err(vm.alloc) == errno.EDQUOT


def test_exhaustion_is_enospc() -> None:
    space = PasidSpace(bits=2)
    vm = space.create_set("vm0", quota=3)
    assert [vm.alloc() for _ in range(3)] == [1, 2, 3]
    other = space.create_set("vm1", quota=1)
    assert err(other.alloc) == errno.ENOSPC


def test_free_rules() -> None:
    space = PasidSpace()
    a, b = space.create_set("a", 4), space.create_set("b", 4)
    pasid = a.alloc()
    assert err(space.free, 0) == errno.EINVAL
    assert err(space.free, 1 << 20) == errno.EINVAL
    assert err(space.free, 77) == errno.ENOENT
    assert err(b.free, pasid) == errno.EPERM
    seen: list[int] = []
    space.free_notifiers.append(seen.append)
    a.free(pasid)
    assert seen == [pasid] and pasid not in space


def test_set_rules() -> None:
    space = PasidSpace()
    space.create_set("a", 1)
    assert err(space.create_set, "a", 1) == errno.EEXIST
    assert err(space.create_set, "b", 0) == errno.EINVAL

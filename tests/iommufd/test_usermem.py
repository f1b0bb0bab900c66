"""UserMemory: the VMM's sparse address space, with EFAULT at every hole."""

from __future__ import annotations

import errno

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.iommufd import UserMemory
from iommu_uapi.memory import PhysicalMemory


def test_readable_stops_at_the_first_hole() -> None:
    user = UserMemory()
    user.mmap(0x1000, 0x1000)
    user.write(0x1FF8, b"abcdefgh")
    assert user.readable(0x1FF8, 16) == b"abcdefgh"
    assert user.readable(0x1FFC, 4) == b"efgh"
    with pytest.raises(UAPIError) as exc:
        user.read(0x1FF8, 9)
    assert (exc.value.errno, exc.value.rule) == (errno.EFAULT, "iommufd.user.read")


def test_host_backed_pages_are_guest_ram() -> None:
    host = PhysicalMemory()
    user = UserMemory(host)
    user.mmap_host(0x10_0000, 0x2000, 0x8000_0000)
    user.write(0x10_0FFC, b"12345678")  # across the two host pages
    assert host.read(0x8000_0FFC, 8) == b"12345678"
    assert user.host_page(0x10_1000) == 0x8000_1000
    assert user.host_page(0x20_0000) is None


def test_read_only_pages_refuse_writes_and_nothing_is_written() -> None:
    user = UserMemory()
    user.mmap(0, 0x2000)
    user.protect(0x1000, 0x1000, writable=False)
    with pytest.raises(UAPIError) as exc:
        user.write(0xFFC, b"xxxxxxxx")
    assert exc.value.errno == errno.EFAULT
    assert user.read(0xFFC, 8) == bytes(8)
    user.protect(0x1000, 0x1000, writable=True)
    user.write(0xFFC, b"xxxxxxxx")
    assert user.read(0xFFC, 8) == b"xxxxxxxx"


def test_munmap_makes_a_hole() -> None:
    user = UserMemory()
    user.mmap(0, 0x3000)
    user.munmap(0x1000, 0x1000)
    assert user.readable(0, 0x3000) == bytes(0x1000)
    assert not user.writable(0x800, 0x1000)

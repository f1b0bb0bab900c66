"""PhysicalMemory and GuestMemory: sparse backing, 64-bit access, allocation, guest views."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iommu_uapi import GuestMemory, MemoryAccessError, PhysicalMemory, UAPIError
from iommu_uapi.memory import ZERO_QUADS


def test_unbacked_memory_reads_zero_without_allocating() -> None:
    mem = PhysicalMemory()
    assert mem.read64(0x1234_5000) == 0
    assert mem.read(0x7000, 16) == bytes(16)
    assert mem.backed_pages == 0


def test_read64_is_little_endian_and_matches_bytes() -> None:
    mem = PhysicalMemory()
    mem.write(0x1000, bytes(range(1, 9)))
    assert mem.read64(0x1000) == 0x0807060504030201
    mem.write64(0x2008, 0x1122334455667788)
    assert mem.read(0x2008, 8) == bytes.fromhex("8877665544332211")


def test_unaligned_and_page_crossing_accesses() -> None:
    mem = PhysicalMemory()
    mem.write64(0x1FFC, 0xAABBCCDD_11223344)
    assert mem.read64(0x1FFC) == 0xAABBCCDD_11223344
    assert mem.read32(0x2000) == 0xAABBCCDD
    assert mem.backed_pages == 2


def test_access_beyond_the_address_space_is_efault() -> None:
    mem = PhysicalMemory(addr_bits=39)
    with pytest.raises(MemoryAccessError) as err:
        mem.read64(1 << 39)
    assert err.value.errno == errno.EFAULT
    with pytest.raises(MemoryAccessError):
        mem.write(-8, b"x")


def test_value_out_of_range_is_einval_and_writes_nothing() -> None:
    mem = PhysicalMemory()
    with pytest.raises(UAPIError) as err:
        mem.write64(0x1000, 1 << 64)
    assert err.value.errno == errno.EINVAL
    assert mem.backed_pages == 0


def test_alloc_is_aligned_zeroed_and_reused_after_free() -> None:
    mem = PhysicalMemory()
    a = mem.alloc()
    b = mem.alloc(0x4000)
    assert a % 0x1000 == 0 and b % 0x4000 == 0 and a != b
    mem.write64(a, 0xFFFF)
    mem.free(a)
    assert mem.read64(a) == 0 and not mem.is_allocated(a)
    assert mem.alloc() == a
    with pytest.raises(UAPIError) as err:
        mem.free(0x1234_0000)
    assert err.value.errno == errno.EINVAL


def test_alloc_exhaustion_is_enomem() -> None:
    mem = PhysicalMemory(alloc_base=0x10000, alloc_limit=0x12000)
    mem.alloc()
    mem.alloc()
    with pytest.raises(UAPIError) as err:
        mem.alloc()
    assert err.value.errno == errno.ENOMEM


def test_read_counter_counts_read64() -> None:
    mem = PhysicalMemory(count_reads=True)
    for addr in range(0, 0x40, 8):
        mem.read64(addr)
    assert mem.reads == 8


@given(st.lists(st.tuples(st.integers(0, (1 << 24) - 1), st.binary(min_size=1, max_size=64)),
                max_size=20))
def test_writes_read_back_like_a_flat_bytearray(writes: list[tuple[int, bytes]]) -> None:
    mem = PhysicalMemory(addr_bits=25)
    model = bytearray(1 << 25 >> 3 << 3)
    for addr, data in writes:
        mem.write(addr, data)
        model[addr : addr + len(data)] = data
    for addr, data in writes:
        assert mem.read(addr, len(data)) == bytes(model[addr : addr + len(data)])
        aligned = addr & ~7
        assert mem.read64(aligned) == int.from_bytes(model[aligned : aligned + 8], "little")


def test_guest_memory_maps_gpa_to_host_pages() -> None:
    host = PhysicalMemory()
    guest = GuestMemory(host)
    hpa = guest.add_ram(0x10_0000, 0x4000)
    guest.write64(0x10_2008, 0xCAFE)
    assert host.read64(hpa + 0x2008) == 0xCAFE
    assert guest.gpa_to_hpa(0x10_3FFF) == hpa + 0x3FFF
    with pytest.raises(MemoryAccessError):
        guest.read64(0x10_4000)
    page = guest.alloc()
    assert 0x10_0000 <= page < 0x10_4000 and guest.read64(page) == 0


def test_guest_free_releases_the_whole_allocation() -> None:
    guest = GuestMemory(PhysicalMemory())
    guest.add_ram(0, 0x10_0000)
    table = guest.alloc(0x4000)
    guest.write64(table + 0x3000, 7)
    guest.free(table)
    assert guest.read64(table + 0x3000) == 0
    assert sorted(guest.alloc() for _ in range(4)) == [table + i * 0x1000 for i in range(4)]


def test_page_quads_is_a_live_read_only_view_keyed_by_page_address() -> None:
    mem = PhysicalMemory()
    pages = mem.page_quads()
    assert pages is not None and len(pages) == 0
    mem.write64(0x1_2345_6008, 0xDEAD_BEEF_0000_0001)
    assert list(pages) == [0x1_2345_6000]
    assert pages[0x1_2345_6000][1] == 0xDEAD_BEEF_0000_0001
    mem.write(0x1_2345_6010, (7).to_bytes(8, "little"))
    assert pages[0x1_2345_6000][2] == 7
    with pytest.raises(TypeError):
        pages[0x1_2345_6000][1] = 0  # type: ignore[index]
    with pytest.raises(TypeError):
        pages[0x5000] = ZERO_QUADS  # type: ignore[index]
    mem.fill(0x1_2345_6000, 4096, 0)
    assert 0x1_2345_6000 not in pages and mem.read64(0x1_2345_6008) == 0
    assert pages.get(0x9000, ZERO_QUADS)[5] == 0


def test_page_quads_is_withheld_when_reads_are_counted() -> None:
    assert PhysicalMemory(count_reads=True).page_quads() is None


def test_page_quads_writable_writes_what_write64_writes() -> None:
    mem = PhysicalMemory()
    writable = mem.page_quads_writable()
    assert writable is not None and len(writable) == 0
    mem.write64(0x1_2345_6008, 1)  # backs the page
    assert list(writable) == [0x1_2345_6000]
    writable[0x1_2345_6000][3] = 0xFEED_0000_0000_0003
    assert mem.read64(0x1_2345_6018) == 0xFEED_0000_0000_0003
    assert mem.read(0x1_2345_6018, 8) == (0xFEED_0000_0000_0003).to_bytes(8, "little")
    assert mem.page_quads()[0x1_2345_6000][3] == 0xFEED_0000_0000_0003  # type: ignore[index]
    with pytest.raises((OverflowError, ValueError)):
        writable[0x1_2345_6000][3] = 1 << 64
    with pytest.raises(TypeError):
        writable[0x5000] = ZERO_QUADS  # type: ignore[index]
    mem.fill(0x1_2345_6000, 4096, 0)
    assert 0x1_2345_6000 not in writable and mem.read64(0x1_2345_6018) == 0


def test_page_quads_writable_is_withheld_when_writes_or_reads_go_their_own_way() -> None:
    class Logged(PhysicalMemory):
        def write64(self, addr: int, value: int) -> None:
            super().write64(addr, value)

    assert PhysicalMemory(count_reads=True).page_quads_writable() is None
    assert Logged().page_quads_writable() is None

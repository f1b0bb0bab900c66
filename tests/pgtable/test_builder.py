"""The shared io-pgtable machinery: one leaf per map, block splitting, table freeing, refusals."""

from __future__ import annotations

import errno

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import GuestMemory, PhysicalMemory
from iommu_uapi.pgtable import lpae, vtd_sl, x86
from iommu_uapi.pgtable.common import Access, Prot

RW = Prot.READ | Prot.WRITE
M2, G1 = 1 << 21, 1 << 30


def snapshot(mem: PhysicalMemory) -> tuple[int, dict[int, bytes]]:
    return mem.allocated_bytes, {p: mem.read(p << 12, 4096) for p in mem.backed_page_numbers()}


@pytest.fixture
def mem() -> PhysicalMemory:
    return PhysicalMemory()


def test_map_installs_exactly_one_leaf_of_the_size(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map(G1, 0x8000_0000, G1, RW)
    assert pt.table_count() == 2  # root + PDPT: the 1 GiB leaf sits in the PDPT
    assert pt.walk(G1 + 5, Access.READ).page_size == G1


@pytest.mark.parametrize(("iova", "paddr", "size", "code"), [
    (0x1000, 0x2000, 0x3000, errno.EINVAL),  # not a page/block size
    (0x1000, 0x2000, M2, errno.EINVAL),  # misaligned for 2 MiB
    (0, 0x1800, 4096, errno.EINVAL),  # misaligned paddr
    (1 << 47, 0, 4096, errno.ERANGE),  # non-canonical iova
    (0, 1 << 48, 4096, errno.ERANGE),  # paddr beyond HAW
])
def test_refused_map_changes_nothing(mem: PhysicalMemory, iova: int, paddr: int, size: int,
                                     code: int) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map(0x4000_0000, 0, 4096, RW)
    before = snapshot(mem)
    with pytest.raises(UAPIError) as info:
        pt.map(iova, paddr, size, RW)
    assert info.value.errno == code
    assert snapshot(mem) == before


def test_map_without_read_or_write_is_refused(mem: PhysicalMemory) -> None:
    pt = vtd_sl.SLPageTable(vtd_sl.SLConfig(), mem)
    with pytest.raises(UAPIError) as info:
        pt.map(0, 0, 4096, Prot.CACHE)
    assert info.value.errno == errno.EINVAL


@pytest.mark.parametrize(("first", "second"), [
    ((0, M2), (0x1000, 4096)),  # a page inside an existing block
    ((0x1000, 4096), (0, M2)),  # a block over an existing page
    ((0, 4096), (0, 4096)),  # the same page twice
])
def test_overlap_is_eexist_and_changes_nothing(mem: PhysicalMemory, first: tuple[int, int],
                                               second: tuple[int, int]) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map(first[0], 0x10_0000_0000, first[1], RW)
    before = snapshot(mem)
    with pytest.raises(UAPIError) as info:
        pt.map(second[0], 0x20_0000_0000, second[1], RW)
    assert info.value.errno == errno.EEXIST
    assert snapshot(mem) == before


def test_unmap_of_nothing_returns_zero(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    assert pt.unmap(0x1000, 4096) == 0
    pt.map(0, 0, 4096, RW)
    assert pt.unmap(0x1000, 4096) == 0
    assert pt.unmap(0, 4096) == 4096
    assert mem.allocated_bytes == 4096


def test_unmap_page_inside_1g_block_splits_twice(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map(G1, 0x40_0000_0000, G1, RW)
    assert pt.unmap(G1 + M2 + 0x3000, 4096) == 4096
    assert pt.iova_to_phys(G1 + M2 + 0x3000) == 0
    assert pt.iova_to_phys(G1 + M2 + 0x4000) == 0x40_0000_0000 + M2 + 0x4000
    assert pt.iova_to_phys(G1 + 5 * M2 + 7) == 0x40_0000_0000 + 5 * M2 + 7
    assert pt.walk(G1 + 5 * M2, Access.READ).page_size == M2
    assert pt.walk(G1 + M2 + 0x4000, Access.READ).page_size == 4096
    assert pt.table_count() == 4


def test_unmap_block_sized_range_drops_the_table_beneath(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    for i in range(3):
        pt.map(i * 4096, i * 4096, 4096, RW)
    assert pt.unmap(0, M2) == M2
    assert pt.iova_to_phys(0x1000) == 0
    assert mem.allocated_bytes == 4096


def test_empty_tables_are_freed_as_their_last_entry_goes(mem: PhysicalMemory) -> None:
    pt = vtd_sl.SLPageTable(vtd_sl.SLConfig(), mem)
    pt.map(0, 0, 4096, RW)
    pt.map(0x1000, 0x1000, 4096, RW)
    assert pt.table_count() == 4
    pt.unmap(0, 4096)
    assert pt.table_count() == 4
    pt.unmap(0x1000, 4096)
    assert pt.table_count() == 1 and mem.allocated_bytes == 4096


def test_map_range_uses_the_largest_leaves(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map_range(G1 - 0x1000, 0x40_0000_0000 - 0x1000, G1 + M2 + 0x2000, RW)
    assert pt.walk(G1 - 0x1000, Access.READ).page_size == 4096
    assert pt.walk(G1, Access.READ).page_size == G1
    assert pt.walk(2 * G1, Access.READ).page_size == M2
    assert pt.walk(2 * G1 + M2, Access.READ).page_size == 4096
    assert pt.iova_to_phys(2 * G1 + M2 + 0xFFF) == 0x40_0000_0000 + G1 + M2 + 0xFFF
    assert pt.iova_to_phys(2 * G1 + M2 + 0x1000) == 0


def test_map_range_is_all_or_nothing(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map(0x5000, 0, 4096, RW)
    before = snapshot(mem)
    with pytest.raises(UAPIError) as info:
        pt.map_range(0, 0, 0x10000, RW)
    assert info.value.errno == errno.EEXIST
    assert snapshot(mem) == before
    with pytest.raises(UAPIError):
        pt.map_range(0, 0, 0x1800, RW)


def test_out_of_table_memory_is_enomem_and_changes_nothing() -> None:
    mem = PhysicalMemory(alloc_base=0x8000_0000, alloc_limit=0x8000_3000)  # 3 tables
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map(0, 0, M2, RW)  # root + PDPT + PD
    before = snapshot(mem)
    with pytest.raises(UAPIError) as info:
        pt.map(1 << 40, 0, 4096, RW)
    assert info.value.errno == errno.ENOMEM
    assert snapshot(mem) == before
    with pytest.raises(UAPIError) as info:
        pt.unmap(0x1000, 4096)  # splitting the 2 MiB block needs a table
    assert info.value.errno == errno.ENOMEM
    assert snapshot(mem) == before
    assert pt.iova_to_phys(0x1234) == 0x1234


def test_tables_in_guest_memory(mem: PhysicalMemory) -> None:
    guest = GuestMemory(mem)
    hpa = guest.add_ram(0x10_0000, 1 << 20)
    pt = lpae.LPAEPageTable(lpae.LPAEConfig(), guest)
    assert 0x10_0000 <= pt.root < 0x20_0000  # a GPA
    pt.map(0x4000, 0x9000, 4096, RW)
    assert pt.iova_to_phys(0x4010) == 0x9010
    assert mem.read64(hpa + (pt.root - 0x10_0000)) & 3 == 3  # the root's entry, seen by the host


@pytest.mark.parametrize("access", [16, -1, 1 << 40])
def test_walk_refuses_an_access_outside_the_four_bits(mem: PhysicalMemory, access: int) -> None:
    for pt in (x86.X86PageTable(x86.X86Config(), mem), vtd_sl.SLPageTable(vtd_sl.SLConfig(), mem),
               lpae.LPAEPageTable(lpae.LPAEConfig(), mem)):
        with pytest.raises(UAPIError) as info:
            pt.walk(0, access)
        assert info.value.errno == errno.EINVAL

"""The shared io-pgtable machinery: map/unmap of pages and ranges, block splitting, table freeing,
flush callbacks, refusals."""

from __future__ import annotations

import errno
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import GuestMemory, PhysicalMemory
from iommu_uapi.pgtable import lpae, vtd_sl, x86
from iommu_uapi.pgtable.builder import PageTableBuilder, page_chunks
from iommu_uapi.pgtable.common import Access, FlushOps, Prot
from iommu_uapi.testing.walks import PlainMemory

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
    (0x1000, 0x2000, 0x1800, errno.EINVAL),  # not a multiple of the smallest page
    (0x1000, 0x2000, 0, errno.EINVAL),  # empty
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
    assert mem.allocated_bytes == 4 * 4096  # the tables stay for the next map
    assert pt.unmap(0, 4096) == 0


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
    assert mem.allocated_bytes == 3 * 4096  # the PT went; the PD and PDPT are only partly covered


def test_a_partial_unmap_keeps_the_tables_it_empties(mem: PhysicalMemory) -> None:
    """As Linux's io-pgtable-arm and intel-iommu: a table goes only with an unmap covering it."""
    pt = vtd_sl.SLPageTable(vtd_sl.SLConfig(), mem)
    leaves: list[tuple[int, int]] = []
    freed: list[tuple[int, int]] = []
    pt.flush = FlushOps(lambda a, n: leaves.append((a, n)), lambda a, n: freed.append((a, n)))
    pt.map(0, 0, 4096, RW)
    pt.map(0x1000, 0x1000, 4096, RW)
    assert pt.table_count() == 4
    assert pt.unmap(0, 4096) == 4096 and pt.unmap(0x1000, 4096) == 4096
    assert pt.table_count() == 4 and not freed
    assert leaves == [(0, 4096), (0x1000, 4096)]
    pt.map(0x3000, 0x3000, 4096, RW)  # reuses them
    assert pt.table_count() == 4 and pt.iova_to_phys(0x3000) == 0x3000
    assert pt.unmap_pages(0x3000, 4096, 1) == 4096
    leaves.clear()
    assert pt.unmap(0, M2) == 0  # nothing mapped, but the range covers the table: freed
    assert leaves == [] and freed == [(0, M2)]
    assert pt.table_count() == 3 and mem.allocated_bytes == 3 * 4096


def test_free_tables_frees_every_table_left(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map(0x5000, 0, 4096, RW)
    pt.map(G1, 0, M2, RW)
    pt.unmap(0x5000, 4096)  # its tables stay
    assert mem.allocated_bytes == 5 * 4096
    pt.free_tables()
    assert mem.allocated_bytes == 0


def test_unmap_pages_covering_a_table_frees_it(mem: PhysicalMemory) -> None:
    pt = vtd_sl.SLPageTable(vtd_sl.SLConfig(), mem)
    freed: list[tuple[int, int]] = []
    pt.flush = FlushOps(lambda a, n: None, lambda a, n: freed.append((a, n)))
    pt.map_pages(M2 - 0x1000, 0, 4096, 513, RW)
    assert pt.table_count() == 5
    assert pt.unmap_pages(M2 - 0x1000, 4096, 513) == M2 + 0x1000
    assert freed == [(M2, M2)] and pt.table_count() == 4  # the first table is only partly covered


def test_a_block_map_replaces_an_empty_table(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    leaves: list[tuple[int, int]] = []
    freed: list[tuple[int, int]] = []
    pt.flush = FlushOps(lambda a, n: leaves.append((a, n)), lambda a, n: freed.append((a, n)))
    pt.map(G1 + 0x5000, 0, 4096, RW)
    pt.unmap(G1 + 0x5000, 4096)
    pt.map(G1, 0x40_0000_0000, M2, RW)
    assert freed == [(G1, M2)] and not leaves[1:]
    assert pt.walk(G1 + 0x5000, Access.READ).page_size == M2 and pt.table_count() == 3
    pt.map(0x3000, 0, 4096, RW)
    pt.unmap(0x3000, 4096)
    freed.clear()
    pt.map(0, 0x40_0000_0000, G1, RW)  # over a directory holding only an empty table
    assert freed == [(0, G1)] and pt.table_count() == 3
    assert pt.walk(0x3000, Access.READ).page_size == G1


def test_a_refused_block_map_keeps_the_empty_table(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    freed: list[tuple[int, int]] = []
    pt.flush = FlushOps(lambda a, n: None, lambda a, n: freed.append((a, n)))
    pt.map(0x5000, 0, 4096, RW)
    pt.unmap(0x5000, 4096)
    pt.map(M2 + 0x1000, 0, 4096, RW)
    before = snapshot(mem)
    for call in (lambda: pt.map_pages(0, 0, M2, 2, RW), lambda: pt.map(0, 0, 2 * M2, RW)):
        with pytest.raises(UAPIError) as info:
            call()
        assert info.value.errno == errno.EEXIST
        assert snapshot(mem) == before and not freed


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


class Flushes:
    """The flush callbacks a driver would give, recording each call."""

    def __init__(self) -> None:
        self.leaf: list[tuple[int, int]] = []
        self.table: list[tuple[int, int]] = []
        self.ops = FlushOps(lambda a, n: self.leaf.append((a, n)),
                            lambda a, n: self.table.append((a, n)))


G512 = 1 << 39


def test_unmapping_the_last_page_keeps_its_tables_and_says_so(mem: PhysicalMemory) -> None:
    fl = Flushes()
    pt = x86.X86PageTable(x86.X86Config(), mem, fl.ops)
    pt.map(0x1000, 0x9000, 4096, RW)
    pt.map(0x2000, 0xA000, 4096, RW)
    assert (fl.leaf, fl.table) == ([], [])  # a map fills entries that were not present
    assert pt.unmap(0x2000, 4096) == 4096
    assert (fl.leaf, fl.table) == ([(0x2000, 0x1000)], [])  # leaf only: no table went
    assert pt.unmap(0x1000, 4096) == 4096
    # the PT, PD and PDPT are empty but stay: no unmap covered their spans
    assert (fl.leaf, fl.table) == ([(0x2000, 0x1000), (0x1000, 0x1000)], [])
    assert pt.table_count() == 4
    assert pt.unmap_pages(0, G1, 512) == 0  # covers the PML4 entry: all three go
    assert fl.table == [(0, G512)] and pt.table_count() == 1


def test_splitting_a_block_flushes_only_the_page_unmapped(mem: PhysicalMemory) -> None:
    fl = Flushes()
    pt = x86.X86PageTable(x86.X86Config(), mem, fl.ops)
    pt.map(G1, 0x40_0000_0000, G1, RW)
    assert pt.unmap(G1 + M2 + 0x3000, 4096) == 4096
    assert (fl.leaf, fl.table) == ([(G1 + M2 + 0x3000, 0x1000)], [])


def test_dropping_a_table_span_flushes_leaves_and_walks(mem: PhysicalMemory) -> None:
    fl = Flushes()
    pt = x86.X86PageTable(x86.X86Config(), mem, fl.ops)
    for i in range(3):
        pt.map(i * 4096, i * 4096, 4096, RW)
    pt.map(G1, 0, 4096, RW)  # keeps the PDPT alive
    assert pt.unmap(0, M2) == M2
    # the PT under the PDE went; the PD, left empty, stays (the range does not cover it)
    assert (fl.leaf, fl.table) == ([(0, M2)], [(0, M2)])
    assert pt.table_count() == 5  # root, PDPT, the empty PD, and the PD and PT over 1 GiB


def test_unmap_pages_over_blocks_and_tables_reports_merged_ranges(mem: PhysicalMemory) -> None:
    fl = Flushes()
    pt = vtd_sl.SLPageTable(vtd_sl.SLConfig(), mem, fl.ops)
    pt.map(0, 0x4000_0000, M2, RW)  # a block
    pt.map_pages(M2, 0x5000_0000, 4096, 512, RW)  # a full table of pages
    pt.map(2 * M2, 0x6000_0000, 4096, RW)  # one page, left mapped
    assert pt.unmap_pages(0, M2, 2) == 2 * M2
    assert fl.leaf == [(0, 2 * M2)]
    assert fl.table == [(M2, M2)]  # the page table under the second PDE
    assert pt.iova_to_phys(2 * M2) == 0x6000_0000 and pt.iova_to_phys(M2) == 0


def test_map_pages_and_unmap_pages_round_trip(mem: PhysicalMemory) -> None:
    for pt in (x86.X86PageTable(x86.X86Config(), mem), vtd_sl.SLPageTable(vtd_sl.SLConfig(), mem),
               lpae.LPAEPageTable(lpae.LPAEConfig(granule=16384, t0sz=17), mem),
               lpae.LPAEPageTable(lpae.LPAEConfig(granule=65536, t0sz=12, oas=52), mem)):
        page = pt.page_sizes[0]
        base = G1 - 7 * page  # the run crosses a table boundary
        assert pt.map_pages(base, 0xF_FFF0_0000, page, 1000, RW) == 1000 * page
        tables = pt.table_count()
        for i in (0, 6, 7, 999):
            assert pt.iova_to_phys(base + i * page + 5) == 0xF_FFF0_0000 + i * page + 5
            assert pt.walk(base + i * page, Access.WRITE).page_size == page
        assert pt.iova_to_phys(base + 1000 * page) == 0
        fl = Flushes()
        pt.flush = fl.ops
        assert pt.unmap_pages(base, page, 1000) == 1000 * page
        assert pt.iova_to_phys(base) == 0
        # only a leaf table the run covers whole goes (with 4 KiB pages: [1 GiB, +2 MiB))
        span = page * (page // 8)
        assert fl.table == ([(G1, span)] if page // 8 <= 1000 - 7 else [])
        assert pt.table_count() == tables - len(fl.table)


def test_unmap_pages_stops_at_the_first_hole(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map_pages(0, 0, 4096, 10, RW)
    pt.unmap(0x5000, 4096)
    assert pt.unmap_pages(0x3000, 4096, 5) == 0x2000
    assert pt.iova_to_phys(0x6000) == 0x6000 and pt.iova_to_phys(0x4000) == 0
    assert pt.unmap(0x5000, 0x3000) == 0  # nothing at the start: nothing done
    assert pt.iova_to_phys(0x6000) == 0x6000


def test_map_pages_is_all_or_nothing(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map(M2 + 0x5000, 0, 4096, RW)  # in the second of three page tables the run needs
    before = snapshot(mem)
    with pytest.raises(UAPIError) as info:
        pt.map_pages(M2 - 0x3000, 0, 4096, 1024, RW)
    assert (info.value.errno, info.value.rule) == (errno.EEXIST, "pgtable.overlap")
    assert snapshot(mem) == before
    with pytest.raises(UAPIError) as info:
        pt.map_pages(0, 0, 0x3000, 2, RW)
    assert (info.value.errno, info.value.rule) == (errno.EINVAL, "pgtable.size")
    with pytest.raises(UAPIError) as info:
        pt.map_pages(0, 0, 4096, 0, RW)
    assert info.value.errno == errno.EINVAL
    with pytest.raises(UAPIError) as info:  # the run would leave the lower canonical half
        pt.map_pages((1 << 47) - 0x1000, 0, 4096, 2, RW)
    assert info.value.errno == errno.ERANGE
    assert snapshot(mem) == before


def test_map_pages_out_of_table_memory_changes_nothing() -> None:
    mem = PhysicalMemory(alloc_base=0x8000_0000, alloc_limit=0x8000_4000)  # 4 tables
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map(0, 0, 4096, RW)  # root, PDPT, PD, PT
    before = snapshot(mem)
    with pytest.raises(UAPIError) as info:  # the last page of the PT, then a second PT
        pt.map_pages(M2 - 0x1000, 0, 4096, 2, RW)
    assert info.value.errno == errno.ENOMEM
    assert snapshot(mem) == before


def test_unmap_pages_splits_both_edges_before_changing_anything() -> None:
    mem = PhysicalMemory(alloc_base=0x8000_0000, alloc_limit=0x8000_4000)  # 4 tables
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map(0, 0, 2 * M2, RW)  # root, PDPT, PD: two 2 MiB blocks
    before = snapshot(mem)
    with pytest.raises(UAPIError) as info:  # both blocks must be split: two tables, one left
        pt.unmap_pages(M2 - 0x1000, 4096, 2)
    assert info.value.errno == errno.ENOMEM
    assert snapshot(mem) == before
    assert pt.unmap_pages(M2 - 0x1000, 4096, 1) == 4096  # one split fits
    assert pt.iova_to_phys(M2 - 0x2000) == M2 - 0x2000 and pt.iova_to_phys(M2) == M2


def test_unmap_pages_of_whole_blocks_clears_them_without_splitting(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map(0, 0, 2 * M2, RW)
    tables = pt.table_count()
    assert pt.unmap_pages(0, 4096, 512) == M2
    assert pt.table_count() == tables and pt.iova_to_phys(M2) == M2


@pytest.mark.parametrize(("iova", "paddr", "size", "chunks"), [
    (0, 0, 3 * 4096, [(0, 0, 4096, 3)]),
    (M2 - 0x1000, 0x40_0000_0000 - 0x1000, M2 + 0x2000,  # up to the 2 MiB boundary, then 2 MiB
     [(M2 - 0x1000, 0x40_0000_0000 - 0x1000, 4096, 1), (M2, 0x40_0000_0000, M2, 1),
      (2 * M2, 0x40_0000_0000 + M2, 4096, 1)]),
    (G1, 2 * G1, G1 + 3 * M2, [(G1, 2 * G1, G1, 1), (2 * G1, 3 * G1, M2, 3)]),
    (G1 - M2, 0, 2 * G1,  # iova and paddr never both 1 GiB-aligned: 2 MiB pages only
     [(G1 - M2, 0, M2, 1), (G1, M2, M2, 511), (2 * G1 - M2, G1, M2, 512)]),
])
def test_page_chunks_pick_the_largest_sizes_like_iommu_pgsize(
        iova: int, paddr: int, size: int, chunks: list[tuple[int, int, int, int]]) -> None:
    assert page_chunks(iova, paddr, size, (4096, M2, G1)) == chunks


def test_page_chunks_follow_the_paddr_alignment_too() -> None:
    chunks = page_chunks(0, 0x1000, 4 * M2, (4096, M2, G1))  # paddr only page-aligned
    assert {pgsize for _, _, pgsize, _ in chunks} == {4096}
    assert sum(count for *_, count in chunks) == 2048
    assert [(va, pa) for va, pa, _, _ in chunks][:2] == [(0, 0x1000), (M2 - 0x1000, M2)]


def test_map_of_any_size_uses_the_chunks(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map(G1, 2 * G1, G1 + 3 * M2, RW)
    assert pt.walk(G1 + 5, Access.READ).page_size == G1
    assert pt.walk(2 * G1 + 2 * M2, Access.READ).page_size == M2
    assert pt.iova_to_phys(2 * G1 + 3 * M2) == 0
    assert pt.unmap(G1, G1 + 3 * M2) == G1 + 3 * M2
    assert mem.allocated_bytes == 3 * 4096  # the directories: their spans were not covered


def test_builders_work_over_a_memory_without_bulk_access(mem: PhysicalMemory) -> None:
    class Plain:  # read64/write64/alloc/free only
        def read64(self, addr: int) -> int:
            return mem.read64(addr)

        def write64(self, addr: int, value: int) -> None:
            mem.write64(addr, value)

        def alloc(self, size: int = 4096, align: int | None = None) -> int:
            return mem.alloc(size, align)

        def free(self, addr: int) -> None:
            mem.free(addr)

    pt = vtd_sl.SLPageTable(vtd_sl.SLConfig(), Plain())
    pt.map_pages(M2 - 0x2000, 0x3000_0000, 4096, 4, RW)
    assert pt.iova_to_phys(M2 + 0x1234) == 0x3000_3234
    tables = pt.table_count()
    assert pt.unmap_pages(M2 - 0x2000, 4096, 4) == 0x4000
    assert pt.table_count() == tables and pt.iova_to_phys(M2) == 0
    assert pt.unmap(0, G1) == 0 and mem.allocated_bytes == 2 * 4096  # the 1 GiB span freed


def outcome(call: Callable[[], object]) -> object:
    try:
        return call()
    except UAPIError as e:
        return (e.errno, e.rule)


@pytest.mark.parametrize("make", [
    lambda m: x86.X86PageTable(x86.X86Config(), m),
    lambda m: vtd_sl.SLPageTable(vtd_sl.SLConfig(aw=1, haw=39), m),
    lambda m: lpae.LPAEPageTable(lpae.LPAEConfig(t0sz=25), m),
], ids=["x86", "sl-aw1", "lpae-39"])
@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 40), st.sampled_from([1, 2, 3]),
                              st.sampled_from([Prot.READ, RW, RW | Prot.NOEXEC, Prot.CACHE])),
                    max_size=40))
def test_compiled_single_page_paths_match_the_general_ones(
        make: Callable[[object], PageTableBuilder],
        ops: list[tuple[bool, int, int, int]]) -> None:
    """The same single-page maps and unmaps (4 KiB, 2 MiB, a size that is none) through a
    builder with its compiled paths and one without: the same results, refusals, flushes and
    table bytes."""
    fast_mem, plain_mem = PhysicalMemory(), PhysicalMemory()
    fast, plain = make(fast_mem), make(PlainMemory(plain_mem))
    assert fast.map is not PageTableBuilder.map.__get__(fast)  # compiled for this builder
    calls: dict[int, list[tuple[str, int, int]]] = {id(fast): [], id(plain): []}
    for pt in (fast, plain):
        log = calls[id(pt)]
        pt.flush = FlushOps(lambda a, n, log=log: log.append(("leaf", a, n)),
                            lambda a, n, log=log: log.append(("table", a, n)))
    for is_map, slot, kind, prot in ops:
        size = {1: 4096, 2: M2, 3: 3 * 4096}[kind]
        iova = (M2 - 4 * 4096 + slot * 4096) if kind != 2 else slot % 3 * M2
        results = []
        for pt in (fast, plain):
            if is_map:
                results.append(outcome(partial(pt.map, iova, 0x40_0000 + iova, size, prot)))
            else:
                results.append(outcome(partial(pt.unmap, iova, size)))
        assert results[0] == results[1]
    assert calls[id(fast)] == calls[id(plain)]
    assert snapshot(fast_mem) == snapshot(plain_mem)

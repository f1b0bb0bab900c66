"""The compiled single-page paths remember the leaf's table they last reached; a table the
builder frees (a covering unmap, a block over a leafless table, a map rolled back) is forgotten,
so a later map never writes into it once its address holds another table."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable import lpae, vtd_sl, x86
from iommu_uapi.pgtable.builder import PageTableBuilder
from iommu_uapi.pgtable.common import Prot

RW = Prot.READ | Prot.WRITE
K4, M2 = 1 << 12, 1 << 21
A, B = 4 * M2, 9 * M2  # two 2 MiB regions under one level-2 table
PA = 0x4000_0000

MAKERS = pytest.mark.parametrize("make", [
    lambda m: x86.X86PageTable(x86.X86Config(), m),
    lambda m: vtd_sl.SLPageTable(vtd_sl.SLConfig(aw=2, haw=48), m),
    lambda m: lpae.LPAEPageTable(lpae.LPAEConfig(t0sz=25), m),
], ids=["x86", "sl-aw2", "lpae-39"])


def _leaf_table(pt: PageTableBuilder, iova: int) -> int:
    """The address of the 4 KiB leaf's table for ``iova``, read from the tables."""
    table = pt.root
    for lv in pt.levels[:-1]:
        desc = pt.mem.read64(table + (((iova >> lv.shift) & lv.index_mask) << 3))
        assert desc & lv.table_mask == lv.table_value
        table = pt._table_addr(desc)
    return table


def _cached(pt: PageTableBuilder, make: Callable[[PhysicalMemory], PageTableBuilder]) -> int:
    """Map two pages of region A (the second through the compiled path, which keeps A's leaf
    table); the address of that table."""
    assert pt.map is not PageTableBuilder.map.__get__(pt)  # compiled for this builder
    pt.map(A, PA, K4, RW)
    pt.map(A + K4, PA + K4, K4, RW)
    return _leaf_table(pt, A)


@MAKERS
def test_a_covering_unmap_frees_the_table_and_a_later_map_does_not_write_into_it(
        make: Callable[[PhysicalMemory], PageTableBuilder]) -> None:
    mem = PhysicalMemory()
    pt = make(mem)
    old = _cached(pt, make)
    pt.unmap(A, M2)  # covers A's leaf table: freed
    pt.map(B, PA + M2, K4, RW)  # B's new leaf table takes the freed address
    assert _leaf_table(pt, B) == old
    pt.map(A + 2 * K4, PA + 2 * K4, K4, RW)
    assert _leaf_table(pt, A) != old
    assert pt.iova_to_phys(A + 2 * K4) == PA + 2 * K4
    assert pt.iova_to_phys(B + 2 * K4) == 0  # nothing written into B's table
    assert mem.read64(old + 16) == 0
    assert pt.unmap(A + 2 * K4, K4) == K4  # the unmap path reaches A's new table too
    assert pt.iova_to_phys(A + 2 * K4) == 0
    assert pt.iova_to_phys(B) == PA + M2


@MAKERS
def test_a_block_over_a_leafless_table_frees_it_and_a_later_map_is_refused(
        make: Callable[[PhysicalMemory], PageTableBuilder]) -> None:
    mem = PhysicalMemory()
    pt = make(mem)
    old = _cached(pt, make)
    assert pt.unmap(A, K4) == K4 and pt.unmap(A + K4, K4) == K4  # the table stays, leafless
    assert _leaf_table(pt, A) == old
    pt.map(A, PA, M2, RW)  # a block replaces the leafless table, which is freed
    pt.map(B, PA + M2, K4, RW)
    assert _leaf_table(pt, B) == old
    with pytest.raises(UAPIError) as err:
        pt.map(A + 3 * K4, PA + 3 * K4, K4, RW)
    assert err.value.errno == errno.EEXIST
    assert pt.iova_to_phys(B + 3 * K4) == 0
    assert pt.iova_to_phys(A + 3 * K4) == PA + 3 * K4  # the block's
    assert pt.unmap(A + 3 * K4, K4) == K4  # splits the block into a new table
    assert pt.iova_to_phys(A + 3 * K4) == 0 and pt.iova_to_phys(A) == PA
    assert pt.iova_to_phys(B) == PA + M2


@MAKERS
def test_a_rolled_back_map_frees_its_tables_and_a_later_map_does_not_write_into_them(
        make: Callable[[PhysicalMemory], PageTableBuilder]) -> None:
    mem = PhysicalMemory()
    pt = make(mem)
    old = _cached(pt, make)
    pt.unmap(A, M2)  # A's leaf table freed
    # a range from B onto a mapped page: B's new table (the freed address) is created, then
    # the map is refused and rolled back, freeing it again
    pt.map(B + 4 * K4, PA, K4, RW)
    with pytest.raises(UAPIError):
        pt.map(B - 2 * K4, PA, 8 * K4, RW)
    pt.map(A + 5 * K4, PA + 5 * K4, K4, RW)
    assert pt.iova_to_phys(A + 5 * K4) == PA + 5 * K4
    assert pt.iova_to_phys(B + 5 * K4) == 0
    assert pt.iova_to_phys(B - K4) == 0
    assert old in {_leaf_table(pt, A), _leaf_table(pt, B)}


class LoggedMemory(PhysicalMemory):
    """Writes its own way (logged): no writable page view, so the compiled paths read entries
    through the read-only view and store them with ``write64``."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[int, int]] = []

    def write64(self, addr: int, value: int) -> None:
        self.log.append((addr, value))
        super().write64(addr, value)


@MAKERS
def test_a_memory_without_a_writable_view_gets_every_leaf_through_write64(
        make: Callable[[PhysicalMemory], PageTableBuilder]) -> None:
    mem = LoggedMemory()
    assert mem.page_quads() is not None and mem.page_quads_writable() is None
    pt = make(mem)
    _cached(pt, make)
    table = _leaf_table(pt, A)
    mem.log.clear()
    pt.map(A + 2 * K4, PA + 2 * K4, K4, RW)
    assert [a for a, _ in mem.log] == [table + 16]
    with pytest.raises(UAPIError) as err:  # the entry read through the read-only view
        pt.map(A + 2 * K4, PA, K4, RW)
    assert err.value.errno == errno.EEXIST
    assert pt.unmap(A + 2 * K4, K4) == K4
    assert mem.log[1:] == [(table + 16, 0)]
    assert pt.iova_to_phys(A + 2 * K4) == 0 and pt.iova_to_phys(A + K4) == PA + K4

"""First-level walks that start below the root, as a paging-structure-cache hit lets them: from
every table entry a walk used, the rest of the walk gives the same translation (or the same
fault) with the reads of the levels walked."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import GuestMemory, PhysicalMemory
from iommu_uapi.pgtable import vtd_sl, x86
from iommu_uapi.pgtable.common import Access, Prot, WalkFault

PAGE = {4096: 1, 1 << 21: 2, 1 << 30: 3}


@given(size=st.sampled_from(sorted(PAGE)), slot=st.integers(0, 500),
       prot=st.sampled_from([Prot.READ, Prot.READ | Prot.WRITE,
                             Prot.READ | Prot.NOEXEC | Prot.PRIV]),
       access=st.sampled_from([Access.READ, Access.WRITE, Access.EXEC,
                               Access.READ | Access.PRIV]),
       levels=st.sampled_from([4, 5]))
def test_every_continuation_agrees_with_the_full_walk(size: int, slot: int, prot: int,
                                                      access: int, levels: int) -> None:
    mem = PhysicalMemory()
    pt = x86.X86PageTable(x86.X86Config(levels=levels), mem)
    iova = (slot * size) | 0x123
    pt.map(slot * size, 0x2_0000_0000 + slot * size, size, prot)
    walker = pt.walker
    path: list[tuple[int, int, int]] = []
    try:
        full = walker.walk(pt.root, iova, access)
    except WalkFault as fault:
        full_fault = (fault.reason, fault.code, fault.level, fault.reads)
        full = None
    try:  # from the root, the same walk, recording the table entries it used
        assert walker.walk_partial(pt.root, levels, iova, access, path=path) == full
    except WalkFault as fault:
        assert full is None and (fault.reason, fault.code, fault.level, fault.reads) == full_fault
    assert [lv for lv, _, _ in path] == list(range(levels, PAGE[size], -1))
    for level, table, inherited in path:
        try:
            part = walker.walk_partial(table, level - 1, iova, access, inherited=inherited)
        except WalkFault as fault:
            assert full is None
            assert (fault.reason, fault.code, fault.level) == full_fault[:3]
            assert fault.reads == full_fault[3] - (levels - level + 1)
            continue
        assert full is not None
        assert (part.oa, part.page_size, part.perm, part.level, part.global_) == (
            full.oa, full.page_size, full.perm, full.level, full.global_)
        assert part.reads == full.reads - (levels - level + 1)


def test_nested_continuation_counts_the_stage_2_reads_of_the_levels_walked() -> None:
    host = PhysicalMemory()
    guest = GuestMemory(host)
    ram = guest.add_ram(0x10_0000, 1 << 20)
    s2 = vtd_sl.SLPageTable(vtd_sl.SLConfig(sllps=0), host)
    for off in range(0, 1 << 20, 4096):
        s2.map(0x10_0000 + off, ram + off, 4096, Prot.READ | Prot.WRITE)
    s2.map(0x4000_0000, 0x7_0000_0000, 4096, Prot.READ | Prot.WRITE)
    s1 = x86.X86PageTable(x86.X86Config(), guest)
    s1.map(0x7F12_3456_7000, 0x4000_0000, 4096, Prot.READ | Prot.WRITE)
    walker = x86.X86Walker(host, s1.cfg)
    path: list[tuple[int, int, int]] = []
    full = walker.walk_partial(s1.root, 4, 0x7F12_3456_7000, Access.READ, s2.stage2(), path=path)
    assert (full.reads, full.s2_reads) == (4, 20)
    level, table, inherited = path[-1]  # the level-2 entry: the walk resumes at level 1
    part = walker.walk_partial(table, level - 1, 0x7F12_3456_7000, Access.READ, s2.stage2(),
                               inherited=inherited)
    assert (part.oa, part.reads, part.s2_reads) == (0x7_0000_0000, 1, 8)
    assert (part.perm, part.page_size) == (full.perm, full.page_size)
    assert full == walker.walk(s1.root, 0x7F12_3456_7000, Access.READ, s2.stage2())


@pytest.mark.parametrize(("table", "level"), [(0x1000, 0), (0x1000, 5), (0x1008, 2)])
def test_a_continuation_needs_a_level_and_an_aligned_table(table: int, level: int) -> None:
    walker = x86.X86Walker(PhysicalMemory(), x86.X86Config())
    with pytest.raises(UAPIError) as exc:
        walker.walk_partial(table, level, 0, Access.READ)
    assert (exc.value.errno, exc.value.rule) == (errno.EINVAL, "pgtable.start")

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
from iommu_uapi.pgtable import lpae, vtd_sl, x86
from iommu_uapi.pgtable.common import Access, Prot, WalkFault, WalkResult

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
        full_fault = (fault.kind, fault.denied, fault.level, fault.reads)
        full = None
    try:  # from the root, the same walk, recording the table entries it used
        assert walker.walk_partial(pt.root, levels, iova, access, path=path) == full
    except WalkFault as fault:
        assert full is None and (fault.kind, fault.denied, fault.level, fault.reads) == full_fault
    assert [lv for lv, _, _ in path] == list(range(levels, PAGE[size], -1))
    for level, table, inherited in path:
        try:
            part = walker.walk_partial(table, level - 1, iova, access, inherited=inherited)
        except WalkFault as fault:
            assert full is None
            assert (fault.kind, fault.denied, fault.level) == full_fault[:3]
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


FORMATS = {
    "sl-aw2": lambda m: vtd_sl.SLPageTable(vtd_sl.SLConfig(), m),
    "sl-aw3-slee": lambda m: vtd_sl.SLPageTable(vtd_sl.SLConfig(aw=3, haw=52, slee=True), m),
    "sl-aw1-2m": lambda m: vtd_sl.SLPageTable(vtd_sl.SLConfig(aw=1, haw=39, sllps=1), m),
    "s1-4k": lambda m: lpae.LPAEPageTable(lpae.LPAEConfig(), m),
    "s1-4k-39": lambda m: lpae.LPAEPageTable(lpae.LPAEConfig(t0sz=25), m),
    "s1-16k": lambda m: lpae.LPAEPageTable(lpae.LPAEConfig(granule=16384, t0sz=17), m),
    "s1-64k": lambda m: lpae.LPAEPageTable(lpae.LPAEConfig(granule=65536, t0sz=22), m),
    "s1-64k-52": lambda m: lpae.LPAEPageTable(lpae.LPAEConfig(granule=65536, t0sz=12, oas=52), m),
    "s1-4k-hpd": lambda m: lpae.LPAEPageTable(lpae.LPAEConfig(hpd=True), m),
    "s2-4k-concat": lambda m: lpae.LPAEPageTable(lpae.LPAEConfig(stage=2, t0sz=22, sl0=1), m),
    "s2-16k": lambda m: lpae.LPAEPageTable(
        lpae.LPAEConfig(stage=2, granule=16384, t0sz=24, sl0=1), m),
    "s2-64k": lambda m: lpae.LPAEPageTable(
        lpae.LPAEConfig(stage=2, granule=65536, t0sz=18, sl0=1), m),
}
# stage-1 hierarchical controls a table descriptor may carry (PXNTable..APTable[1])
CONTROLS = [0, 1 << 59, 1 << 60, 1 << 61, 1 << 62, (1 << 61) | (1 << 62)]


@pytest.mark.parametrize("name", sorted(FORMATS))
@given(data=st.data(), access=st.sampled_from([Access.READ, Access.WRITE, Access.EXEC,
                                               Access.READ | Access.PRIV,
                                               Access.WRITE | Access.PRIV]))
def test_every_format_continues_like_its_full_walk(name: str, data: st.DataObject,
                                                   access: int) -> None:
    """VT-d second level and LPAE (every granule, both stages, concatenated roots): from every
    table entry a walk used, the continuation agrees with the full walk, its reads counting
    from the level it starts at; stage-1 table controls are carried in ``inherited``."""
    mem = PhysicalMemory()
    pt = FORMATS[name](mem)
    size = data.draw(st.sampled_from(pt.page_sizes))
    top = pt.levels[0]
    span = top.size * (top.index_mask + 1)
    iova = data.draw(st.integers(0, span // size - 1)) * size
    prot = data.draw(st.sampled_from([Prot.READ, Prot.READ | Prot.WRITE,
                                      Prot.READ | Prot.NOEXEC | Prot.PRIV]))
    pt.map(iova, (0x4000_0000 + iova) & ((1 << 38) - 1) & -size, size, prot)
    if name.startswith("s1"):  # hierarchical controls on the table descriptors of the path
        table = pt.root
        for lv in pt.levels:
            ptr = table + (((iova >> lv.shift) & lv.index_mask) << 3)
            desc = mem.read64(ptr)
            if desc & lv.table_mask != lv.table_value:
                break
            mem.write64(ptr, desc | data.draw(st.sampled_from(CONTROLS)))
            table = pt._table_addr(desc)
    iova |= data.draw(st.integers(0, size - 1))
    walker = pt.walker
    levels = walker.walk_levels
    try:
        full: WalkResult | tuple[object, ...] = walker.walk(pt.root, iova, access)
    except WalkFault as f:
        full = (f.kind, f.denied, f.level, f.reads)
    path: list[tuple[int, int, int]] = []
    try:
        assert walker.walk_partial(pt.root, levels[0], iova, access, path=path) == full
    except WalkFault as f:
        assert (f.kind, f.denied, f.level, f.reads) == full
    for level, table, inherited in path:
        skipped = levels.index(level) + 1
        try:
            part = walker.walk_partial(table, levels[skipped], iova, access, inherited=inherited)
        except WalkFault as f:
            assert isinstance(full, tuple)
            assert (f.kind, f.denied, f.level, f.reads + skipped) == full
            continue
        assert isinstance(full, WalkResult)
        assert part == WalkResult(full.oa, full.page_size, full.perm, full.level,
                                  full.reads - skipped, 0, full.global_)


def test_lpae_nested_continuation_counts_the_stage_2_reads_of_the_levels_walked() -> None:
    host = PhysicalMemory()
    guest = GuestMemory(host)
    ram = guest.add_ram(0x10_0000, 1 << 20)
    s2 = lpae.LPAEPageTable(lpae.LPAEConfig(stage=2, t0sz=16, sl0=2), host)
    s2.map(0x10_0000, ram, 1 << 20, Prot.READ | Prot.WRITE)
    s2.map(0x4000_0000, 0x7_0000_0000, 4096, Prot.READ | Prot.WRITE)
    s1 = lpae.LPAEPageTable(lpae.LPAEConfig(t0sz=25), guest)
    s1.map(0x12_3456_7000, 0x4000_0000, 4096, Prot.READ | Prot.WRITE)
    walker = lpae.LPAEWalker(host, s1.cfg)
    path: list[tuple[int, int, int]] = []
    full = walker.walk_partial(s1.root, 1, 0x12_3456_7000, Access.READ, s2.stage2(), path=path)
    assert (full.reads, full.s2_reads) == (3, 16)
    assert [lv for lv, _, _ in path] == [1, 2]
    level, table, inherited = path[-1]  # the level-2 descriptor: the walk resumes at level 3
    part = walker.walk_partial(table, level + 1, 0x12_3456_7000, Access.READ, s2.stage2(),
                               inherited=inherited)
    assert (part.oa, part.reads, part.s2_reads) == (0x7_0000_0000, 1, 8)
    assert full == walker.walk(s1.root, 0x12_3456_7000, Access.READ, s2.stage2())


@pytest.mark.parametrize(("walker", "table", "level"), [
    (vtd_sl.SLWalker(PhysicalMemory(), vtd_sl.SLConfig()), 0x1000, 5),
    (vtd_sl.SLWalker(PhysicalMemory(), vtd_sl.SLConfig()), 0x1008, 2),
    (lpae.LPAEWalker(PhysicalMemory(), lpae.LPAEConfig()), 0x1000, 4),
    (lpae.LPAEWalker(PhysicalMemory(), lpae.LPAEConfig(t0sz=25)), 0x1000, 0),
    (lpae.LPAEWalker(PhysicalMemory(), lpae.LPAEConfig(granule=65536, t0sz=22)), 0x1000, 3),
], ids=str)
def test_every_walker_needs_a_level_and_an_aligned_table(walker: object, table: int,
                                                         level: int) -> None:
    with pytest.raises(UAPIError) as exc:
        walker.walk_partial(table, level, 0, Access.READ)  # type: ignore[attr-defined]
    assert (exc.value.errno, exc.value.rule) == (errno.EINVAL, "pgtable.start")


def test_a_continuation_from_the_root_reports_a_root_fault_as_the_full_walk_does() -> None:
    host = PhysicalMemory()
    guest = GuestMemory(host)
    guest.add_ram(0x10_0000, 1 << 20)
    s2 = vtd_sl.SLPageTable(vtd_sl.SLConfig(sllps=0), host)  # maps nothing: every read fails
    s1 = x86.X86PageTable(x86.X86Config(), guest)
    walker = x86.X86Walker(host, s1.cfg)
    faults = []
    for call in (lambda: walker.walk(s1.root, 0x1000, Access.READ, s2.stage2()),
                 lambda: walker.walk_partial(s1.root, 4, 0x1000, Access.READ, s2.stage2())):
        with pytest.raises(WalkFault) as info:
            call()
        faults.append((info.value.stage, info.value.s2_class, info.value.addr))
    assert faults == [(2, "ROOT", s1.root), (2, "ROOT", s1.root)]

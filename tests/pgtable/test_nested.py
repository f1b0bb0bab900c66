"""Nested walks: stage-1 tables in guest memory, every table pointer and the output translated
through stage 2, with exact descriptor-read counts per stage and stage-2 faults on stage-1
table pointers (reference 1.8 for VT-d, 2.5.4 for SMMU)."""

from __future__ import annotations

import pytest

from iommu_uapi.memory import GuestMemory, PhysicalMemory
from iommu_uapi.pgtable import lpae, vtd_sl, x86
from iommu_uapi.pgtable.common import Access, FaultKind, Prot, WalkFault
from iommu_uapi.uapi.consts import FaultReason

R, W = Access.READ, Access.WRITE
RAM_GPA, RAM_SIZE = 0x10_0000, 1 << 20
DATA_GPA = 0x4000_0000  # the guest page the stage-1 leaf points at (outside guest RAM)
DATA_HPA = 0x7_0000_0000


class Nest:
    """A guest with stage-1 tables in its RAM and a host stage 2 mapping that RAM 4 KiB-wise."""

    def __init__(self, s1_factory: object, s2_pt: object, *, s2_page: int = 4096) -> None:
        self.host = PhysicalMemory(count_reads=True)
        self.guest = GuestMemory(self.host)
        self.ram_hpa = self.guest.add_ram(RAM_GPA, RAM_SIZE)
        self.s2 = s2_pt(self.host)  # type: ignore[operator]
        for off in range(0, RAM_SIZE, s2_page):
            self.s2.map(RAM_GPA + off, self.ram_hpa + off, s2_page, Prot.READ | Prot.WRITE)
        self.s2.map(DATA_GPA, DATA_HPA, 4096, Prot.READ | Prot.WRITE)
        self.s1 = s1_factory(self.guest)  # type: ignore[operator]

    def table_gpas(self, iova: int) -> list[int]:
        """The GPA of every stage-1 descriptor a walk of ``iova`` reads, top level first."""
        out = []
        table = self.s1.root
        for lv in self.s1.levels:
            ptr = table + (((iova >> lv.shift) & lv.index_mask) << 3)
            out.append(ptr)
            desc = self.guest.read64(ptr)
            if desc & lv.table_mask != lv.table_value:
                break
            table = self.s1._table_addr(desc)
        return out


def x86_over_sl(levels: int) -> Nest:
    aw = levels - 2
    return Nest(lambda g: x86.X86PageTable(x86.X86Config(levels=levels), g),
                lambda h: vtd_sl.SLPageTable(vtd_sl.SLConfig(aw=aw, sllps=0), h))


IOVA = 0x0000_7F12_3456_7000


@pytest.mark.parametrize(("levels", "total"), [(4, 24), (5, 35)])
def test_cold_x86_over_second_level_read_count(levels: int, total: int) -> None:
    n = x86_over_sl(levels)
    n.s1.map(IOVA, DATA_GPA, 4096, Prot.READ | Prot.WRITE)
    walker = x86.X86Walker(n.host, n.s1.cfg)
    n.host.reads = 0
    r = walker.walk(n.s1.root, IOVA | 0x123, W, s2=n.s2.stage2())
    assert (r.oa, r.page_size, r.level) == (DATA_HPA | 0x123, 4096, 1)
    assert (r.reads, r.s2_reads) == (levels, levels * (levels + 1))
    assert r.reads + r.s2_reads == total == n.host.reads
    assert r.perm == R | W | Access.EXEC


def test_nested_permission_is_the_and_of_both_stages() -> None:
    n = x86_over_sl(4)
    n.s1.map(IOVA, DATA_GPA, 4096, Prot.READ | Prot.WRITE)
    n.s2.unmap(DATA_GPA, 4096)
    n.s2.map(DATA_GPA, DATA_HPA, 4096, Prot.READ)
    r = x86.walk(n.host, n.s1.root, IOVA, R, cfg=n.s1.cfg, s2=n.s2.stage2())
    assert r.perm == R | Access.EXEC
    with pytest.raises(WalkFault) as info:
        x86.walk(n.host, n.s1.root, IOVA, W, cfg=n.s1.cfg, s2=n.s2.stage2())
    f = info.value
    assert (f.stage, f.s2_class, f.kind, f.denied, f.addr, f.reason) == (
        2, "IN", FaultKind.PERMISSION, W, DATA_GPA, FaultReason.PERMISSION)
    assert (f.reads, f.s2_reads) == (4, 20)


@pytest.mark.parametrize(("level_index", "s2_class"),
                         [(0, "ROOT"), (1, "TT"), (2, "TT"), (3, "TT")])
def test_stage2_fault_on_a_stage1_table_is_reported_as_stage2(level_index: int,
                                                              s2_class: str) -> None:
    n = x86_over_sl(4)
    n.s1.map(IOVA, DATA_GPA, 4096, Prot.READ | Prot.WRITE)
    ptr = n.table_gpas(IOVA)[level_index]
    n.s2.unmap(ptr & ~0xFFF, 4096)
    with pytest.raises(WalkFault) as info:
        x86.walk(n.host, n.s1.root, IOVA, R, cfg=n.s1.cfg, s2=n.s2.stage2())
    f = info.value
    assert (f.stage, f.s2_class, f.kind, f.denied, f.addr) == (2, s2_class,
                                                               FaultKind.PERMISSION, R, ptr)
    assert f.reason == FaultReason.PERMISSION  # stage 2 has no present bit: a denied read
    assert f.level == 1  # the stage-2 level that stopped
    assert f.reads == level_index  # stage-1 descriptors read before the failing one


def test_stage2_table_pointer_beyond_aw_is_an_input_range_fault() -> None:
    n = x86_over_sl(4)
    n.s1.map(IOVA, DATA_GPA, 4096, Prot.READ)
    pdpt_ptr = n.table_gpas(IOVA)[0]
    desc = n.guest.read64(pdpt_ptr)
    n.guest.write64(pdpt_ptr, (desc & 0xFFF) | (1 << 50))  # a GPA stage 2 cannot translate
    with pytest.raises(WalkFault) as info:
        x86.walk(n.host, n.s1.root, IOVA, R, cfg=x86.X86Config(haw=52), s2=n.s2.stage2())
    f = info.value
    assert (f.stage, f.s2_class, f.kind, f.reason) == (2, "TT", FaultKind.INPUT_RANGE,
                                                       FaultReason.OOR_ADDRESS)


def test_ad_update_needs_stage2_write_on_the_table_page() -> None:
    n = x86_over_sl(4)
    n.s1.map(IOVA, DATA_GPA, 4096, Prot.READ | Prot.WRITE)
    pd_ptr = n.table_gpas(IOVA)[2]
    page = pd_ptr & ~0xFFF
    n.s2.unmap(page, 4096)
    n.s2.map(page, n.guest.gpa_to_hpa(page), 4096, Prot.READ)
    s2 = n.s2.stage2()
    r = x86.walk(n.host, n.s1.root, IOVA, R, cfg=n.s1.cfg, s2=s2)  # no update: fine
    assert r.oa == DATA_HPA
    with pytest.raises(WalkFault) as info:
        x86.walk(n.host, n.s1.root, IOVA, R, cfg=n.s1.cfg, s2=s2, update_ad=True)
    f = info.value
    assert (f.stage, f.s2_class, f.kind, f.denied, f.addr) == (2, "AD", FaultKind.PERMISSION,
                                                               W, pd_ptr)
    # the levels above got their A bit through stage 2; the read-only page did not change
    assert n.guest.read64(n.table_gpas(IOVA)[0]) & 0x20
    assert not n.guest.read64(pd_ptr) & 0x20


def test_ad_update_through_stage2_writes_the_guest_entry() -> None:
    n = x86_over_sl(4)
    n.s1.map(IOVA, DATA_GPA, 4096, Prot.READ | Prot.WRITE)
    x86.walk(n.host, n.s1.root, IOVA, W, cfg=n.s1.cfg, s2=n.s2.stage2(), update_ad=True)
    leaf = n.guest.read64(n.table_gpas(IOVA)[3])
    assert leaf & 0x60 == 0x60  # A and D


def lpae_nest(s1_t0sz: int) -> Nest:
    s2cfg = lpae.LPAEConfig(stage=2, granule=4096, t0sz=16, sl0=2, oas=48)
    return Nest(lambda g: lpae.LPAEPageTable(lpae.LPAEConfig(t0sz=s1_t0sz), g),
                lambda h: lpae.LPAEPageTable(s2cfg, h))


@pytest.mark.parametrize(("t0sz", "levels", "total"), [(25, 3, 19), (16, 4, 24)])
def test_cold_lpae_over_lpae_read_count(t0sz: int, levels: int, total: int) -> None:
    """3-level stage 1 (4 KiB granule, T0SZ 25: 39-bit VA, start level 1) over a 4-level
    stage 2 (T0SZ 16, SL0 2: start level 0) is the meaningful 3-over-4 case: 3 + 4 * 4 = 19."""
    n = lpae_nest(t0sz)
    iova = 0x12_3456_7000
    n.s1.map(iova, DATA_GPA, 4096, Prot.READ | Prot.WRITE)
    n.host.reads = 0
    r = n.s1.walk(iova | 0x45, R, s2=n.s2.stage2())
    assert (r.oa, r.reads, r.s2_reads) == (DATA_HPA | 0x45, levels, (levels + 1) * 4)
    assert r.reads + r.s2_reads == total == n.host.reads


def test_lpae_stage2_fault_on_stage1_table_is_class_tt() -> None:
    n = lpae_nest(25)
    iova = 0x12_3456_7000
    n.s1.map(iova, DATA_GPA, 4096, Prot.READ)
    ptr = n.table_gpas(iova)[1]
    n.s2.unmap(ptr & ~0xFFF, 4096)
    with pytest.raises(WalkFault) as info:
        n.s1.walk(iova, R, s2=n.s2.stage2())
    f = info.value
    assert (f.stage, f.s2_class, f.kind, f.addr, f.reads) == (2, "TT", FaultKind.NOT_PRESENT,
                                                              ptr, 1)
    assert f.reason == FaultReason.PTE_FETCH

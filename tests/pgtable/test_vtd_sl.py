"""Golden tests: VT-d second-level entries written by hand (reference 1.7) and how they walk."""

from __future__ import annotations

import errno

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable import vtd_sl
from iommu_uapi.pgtable.common import Access, FaultKind, Prot, WalkFault, WalkResult
from iommu_uapi.uapi.consts import FaultReason

R, W, X = Access.READ, Access.WRITE, Access.EXEC
# what the walker reports (kind, denied): VT-d records 0x83, 0x86, 0x85, 0x79, 0x7A, 0x78
BEYOND, EABT, RSVD = ((FaultKind.INPUT_RANGE, 0), (FaultKind.WALK_EABT, 0),
                      (FaultKind.RESERVED, 0))
NO_READ, NO_WRITE, NO_EXEC = ((FaultKind.PERMISSION, R), (FaultKind.PERMISSION, W),
                              (FaultKind.PERMISSION, X))


def why(f: WalkFault) -> tuple[FaultKind, int]:
    """What the walker reports of a fault: its kind and the access bits it refused."""
    return (f.kind, f.denied)

SR, SW, SX, PS, A, D, SNP, TM = 1, 2, 4, 0x80, 0x100, 0x200, 0x800, 1 << 62
RWX = SR | SW | SX

T5, T4, T3, T2, T1 = 0x20_0000, 0x20_1000, 0x20_2000, 0x20_3000, 0x20_4000
GPA = 0x0000_7F12_3456_7ABC
IDX = {lv: (GPA >> (12 + 9 * (lv - 1))) & 511 for lv in range(1, 6)}
PAGE = 0x1234_5000


def build(mem: PhysicalMemory, *, l5: int = RWX, l4: int = RWX, l3: int = RWX, l2: int = RWX,
          l1: int = RWX) -> None:
    """Chains for GPA at 5, 4 and 3 levels: T5 -> T4 -> T3 -> T2 -> T1 -> PAGE."""
    mem.write64(T5 + 8 * IDX[5], T4 | l5)
    mem.write64(T4 + 8 * IDX[4], T3 | l4)
    mem.write64(T3 + 8 * IDX[3], T2 | l3)
    mem.write64(T2 + 8 * IDX[2], T1 | l2)
    mem.write64(T1 + 8 * IDX[1], PAGE | l1)


def walk(mem: PhysicalMemory, gpa: int, access: int, cfg: vtd_sl.SLConfig | None = None,
         root: int = T4, update_ad: bool = False) -> WalkResult:
    return vtd_sl.walk(mem, root, gpa, access, cfg=cfg or vtd_sl.SLConfig(), update_ad=update_ad)


def fault(mem: PhysicalMemory, gpa: int, access: int, cfg: vtd_sl.SLConfig | None = None,
          root: int = T4) -> WalkFault:
    with pytest.raises(WalkFault) as info:
        walk(mem, gpa, access, cfg, root)
    assert info.value.stage == 2
    return info.value


@pytest.fixture
def mem() -> PhysicalMemory:
    return PhysicalMemory()


@pytest.mark.parametrize(("aw", "root", "reads"), [(1, T3, 3), (2, T4, 4), (3, T5, 5)])
def test_levels_follow_aw(mem: PhysicalMemory, aw: int, root: int, reads: int) -> None:
    build(mem)
    gpa = GPA & ((1 << 39) - 1) if aw == 1 else GPA
    if aw == 1:
        mem.write64(T3 + 8 * IDX[3], T2 | RWX)
    r = walk(mem, gpa, R | W, vtd_sl.SLConfig(aw=aw), root)
    assert (r.oa, r.page_size, r.level, r.reads) == (PAGE | 0xABC, 4096, 1, reads)
    assert r.perm == R | W | X  # X is not checked without SLEE


@pytest.mark.parametrize(("aw", "gpa"), [(1, 1 << 39), (2, 1 << 48), (3, 1 << 57), (2, -4096)])
def test_input_beyond_aw(mem: PhysicalMemory, aw: int, gpa: int) -> None:
    f = fault(mem, gpa, R, vtd_sl.SLConfig(aw=aw))
    assert (f.reason, why(f), f.reads) == (FaultReason.OOR_ADDRESS, BEYOND, 0)


@pytest.mark.parametrize("level", [4, 3, 2, 1])
def test_read_needs_r_at_every_level(mem: PhysicalMemory, level: int) -> None:
    build(mem, **{f"l{level}": SW})
    f = fault(mem, GPA, R)
    assert (f.reason, why(f), f.level, f.reads) == (FaultReason.PERMISSION, NO_READ, level,
                                                    5 - level)
    assert walk(mem, GPA, W).perm == W | X


@pytest.mark.parametrize("level", [4, 3, 2, 1])
def test_write_needs_w_at_every_level(mem: PhysicalMemory, level: int) -> None:
    build(mem, **{f"l{level}": SR})
    f = fault(mem, GPA, W)
    assert (f.reason, why(f), f.level) == (FaultReason.PERMISSION, NO_WRITE, level)
    assert walk(mem, GPA, R).perm == R | X


@pytest.mark.parametrize("level", [4, 3, 2, 1])
@pytest.mark.parametrize(("access", "code"), [(R, NO_READ), (W, (FaultKind.PERMISSION, R | W))])
def test_r_and_w_clear_is_a_permission_failure(mem: PhysicalMemory, level: int, access: int,
                                               code: tuple[FaultKind, int]) -> None:
    build(mem, **{f"l{level}": SX})
    f = fault(mem, GPA, access)
    assert (f.reason, why(f), f.level) == (FaultReason.PERMISSION, code, level)


@pytest.mark.parametrize("level", [4, 3, 2, 1])
def test_execute_needs_x_only_with_slee(mem: PhysicalMemory, level: int) -> None:
    build(mem, **{f"l{level}": SR | SW})
    f = fault(mem, GPA, R | X, vtd_sl.SLConfig(slee=True))
    assert (f.reason, why(f), f.level) == (FaultReason.PERMISSION, NO_EXEC, level)
    assert walk(mem, GPA, R, vtd_sl.SLConfig(slee=True)).perm == R | W
    assert walk(mem, GPA, R | X).perm == R | W | X


def test_2m_and_1g_leaves_with_sllps(mem: PhysicalMemory) -> None:
    build(mem)
    mem.write64(T2 + 8 * IDX[2], 0x4060_0000 | SR | PS)
    r = walk(mem, GPA, R)
    assert (r.oa, r.page_size, r.level, r.reads, r.perm) == (
        0x4060_0000 | (GPA & 0x1F_FFFF), 1 << 21, 2, 3, R | X)
    mem.write64(T3 + 8 * IDX[3], 0x80_4000_0000 | SR | SW | PS)
    r = walk(mem, GPA, W)
    assert (r.oa, r.page_size, r.level, r.reads) == (0x80_4000_0000 | (GPA & 0x3FFF_FFFF),
                                                     1 << 30, 3, 2)


@pytest.mark.parametrize(("sllps", "level", "ok"), [(0, 2, False), (1, 2, True), (1, 3, False),
                                                     (2, 3, True), (2, 2, False), (3, 3, True)])
def test_ps_is_reserved_without_the_sllps_size(mem: PhysicalMemory, sllps: int, level: int,
                                               ok: bool) -> None:
    build(mem)
    table = {2: T2, 3: T3}[level]
    mem.write64(table + 8 * IDX[level], 0x80_0000_0000 | SR | PS)
    cfg = vtd_sl.SLConfig(sllps=sllps)
    if ok:
        assert walk(mem, GPA, R, cfg).level == level
    else:
        f = fault(mem, GPA, R, cfg)
        assert (f.reason, why(f), f.level) == (FaultReason.PTE_FETCH, RSVD, level)


@pytest.mark.parametrize(("level", "root", "aw"), [(4, T4, 2), (5, T5, 3)])
def test_ps_is_reserved_at_levels_4_and_5(mem: PhysicalMemory, level: int, root: int,
                                          aw: int) -> None:
    build(mem, **{f"l{level}": RWX | PS})
    f = fault(mem, GPA, R, vtd_sl.SLConfig(aw=aw), root)
    assert (why(f), f.level) == (RSVD, level)


@pytest.mark.parametrize("level", [4, 3, 2, 1])
@pytest.mark.parametrize("bit", [40, 46, 51])
def test_address_bits_above_haw_are_reserved(mem: PhysicalMemory, level: int, bit: int) -> None:
    build(mem, **{f"l{level}": RWX | (1 << bit)})
    f = fault(mem, GPA, R, vtd_sl.SLConfig(haw=40))
    assert (f.reason, why(f), f.level) == (FaultReason.PTE_FETCH, RSVD, level)


def test_snp_in_leaf_needs_snoop_control(mem: PhysicalMemory) -> None:
    build(mem, l1=RWX | SNP)
    assert why(fault(mem, GPA, R)) == RSVD
    assert walk(mem, GPA, R, vtd_sl.SLConfig(sc=True)).oa == PAGE | 0xABC


@pytest.mark.parametrize("level", [4, 3, 2])
def test_snp_in_non_leaf_is_always_reserved(mem: PhysicalMemory, level: int) -> None:
    build(mem, **{f"l{level}": RWX | SNP})
    f = fault(mem, GPA, R, vtd_sl.SLConfig(sc=True, dt=True))
    assert (why(f), f.level) == (RSVD, level)


def test_tm_in_leaf_needs_device_tlb(mem: PhysicalMemory) -> None:
    build(mem, l1=RWX | TM)
    assert why(fault(mem, GPA, R)) == RSVD
    assert walk(mem, GPA, R, vtd_sl.SLConfig(dt=True)).oa == PAGE | 0xABC


def test_tm_in_non_leaf_is_reserved(mem: PhysicalMemory) -> None:
    build(mem, l3=RWX | TM)
    assert fault(mem, GPA, R, vtd_sl.SLConfig(dt=True)).level == 3


@pytest.mark.parametrize("bit", [12, 16, 20])
def test_2m_leaf_low_address_bits_are_reserved(mem: PhysicalMemory, bit: int) -> None:
    build(mem)
    mem.write64(T2 + 8 * IDX[2], 0x4060_0000 | (1 << bit) | SR | PS)
    assert (why(fault(mem, GPA, R)), fault(mem, GPA, R).level) == (RSVD, 2)


@pytest.mark.parametrize("bit", [12, 21, 29])
def test_1g_leaf_low_address_bits_are_reserved(mem: PhysicalMemory, bit: int) -> None:
    build(mem)
    mem.write64(T3 + 8 * IDX[3], 0x80_4000_0000 | (1 << bit) | SR | PS)
    assert (why(fault(mem, GPA, R)), fault(mem, GPA, R).level) == (RSVD, 3)


def test_ignored_bits_do_not_fault(mem: PhysicalMemory) -> None:
    build(mem, l1=RWX | (0x3FF << 52) | (1 << 63) | 0x400 | 0x78)  # ign, EMT, IPAT
    assert walk(mem, GPA, R).oa == PAGE | 0xABC


def test_table_outside_memory_is_walk_eabt() -> None:
    mem = PhysicalMemory(addr_bits=36)
    mem.write64(T4 + 8 * IDX[4], (1 << 40) | RWX)
    f = fault(mem, GPA, R)
    assert (f.reason, why(f), f.level) == (FaultReason.WALK_EABT, EABT, 3)


def test_slade_update_sets_a_and_d(mem: PhysicalMemory) -> None:
    build(mem)
    cfg = vtd_sl.SLConfig(slade=True)
    walk(mem, GPA, R, cfg, update_ad=True)
    assert mem.read64(T4 + 8 * IDX[4]) == T3 | RWX | A
    assert mem.read64(T1 + 8 * IDX[1]) == PAGE | RWX | A
    walk(mem, GPA, W, cfg, update_ad=True)
    assert mem.read64(T1 + 8 * IDX[1]) == PAGE | RWX | A | D
    build(mem)
    walk(mem, GPA, W, vtd_sl.SLConfig(), update_ad=True)  # no SLADE: nothing written
    assert mem.read64(T1 + 8 * IDX[1]) == PAGE | RWX


@pytest.mark.parametrize(("kw", "rule"), [({"aw": 0}, "vtd_sl.aw"), ({"aw": 4}, "vtd_sl.aw"),
                                          ({"haw": 31}, "vtd_sl.haw"),
                                          ({"sllps": 4}, "vtd_sl.sllps")])
def test_config_refuses_bad_values(kw: dict[str, int], rule: str) -> None:
    with pytest.raises(UAPIError) as info:
        vtd_sl.SLConfig(**kw)
    assert (info.value.errno, info.value.rule) == (errno.EINVAL, rule)


def test_builder_writes_the_second_level_layout(mem: PhysicalMemory) -> None:
    cfg = vtd_sl.SLConfig(sc=True, slee=True)
    pt = vtd_sl.SLPageTable(cfg, mem)
    pt.map(0x20_0000, 0x4000_0000, 1 << 21, Prot.READ | Prot.CACHE)
    pt.map(0x1000, 0x5000, 4096, Prot.WRITE | Prot.NOEXEC)
    l3 = mem.read64(pt.root)
    assert l3 & 0xFFF == SR | SW | SX
    l2 = mem.read64(l3 & ~0xFFF)
    pd = l2 & ~0xFFF
    assert mem.read64(pd + 8) == 0x4000_0000 | SR | SX | SNP | PS
    pt_ = mem.read64(pd) & ~0xFFF
    assert mem.read64(pt_ + 8) == 0x5000 | SW
    assert pt.walk(0x20_1234, R).oa == 0x4000_1234
    with pytest.raises(WalkFault) as info:
        pt.walk(0x1000, R)
    assert why(info.value) == NO_READ


def test_builder_sizes_follow_sllps(mem: PhysicalMemory) -> None:
    assert vtd_sl.SLPageTable(vtd_sl.SLConfig(sllps=0), mem).page_sizes == (4096,)
    assert vtd_sl.SLPageTable(vtd_sl.SLConfig(sllps=2), mem).page_sizes == (4096, 1 << 30)
    pt = vtd_sl.SLPageTable(vtd_sl.SLConfig(aw=1, sllps=1), mem)
    with pytest.raises(UAPIError) as info:
        pt.map(1 << 39, 0, 4096, Prot.READ)
    assert info.value.errno == errno.ERANGE
    with pytest.raises(UAPIError) as info:
        pt.map_pages(0, 0, 1 << 30, 1, Prot.READ)
    assert (info.value.errno, info.value.rule) == (errno.EINVAL, "pgtable.size")
    pt.map(0, 0, 1 << 30, Prot.READ)  # any aligned size: 512 leaves of 2 MiB
    assert pt.walk(0x4000_0000 - 1, R).page_size == 1 << 21


def test_walker_refuses_a_stage2_for_second_level(mem: PhysicalMemory) -> None:
    with pytest.raises(UAPIError):
        vtd_sl.walk(mem, T4, 0, R, cfg=vtd_sl.SLConfig(), s2=lambda a, b: walk(mem, a, b))


def _entry_of(walker: vtd_sl.SLWalker, gpa: int, access: int, *, fields: bool) -> object:
    """What a walk from T4 gives: the IOTLB entry's fields and reads (``walk_fields``, or
    ``walk``'s result turned into them), or the fault's kind, denied bits, level and reads."""
    try:
        if fields:
            return walker.walk_fields(T4, gpa, access)
        r = walker.walk(T4, gpa, access)
    except WalkFault as f:
        return (f.kind, f.denied, f.level, f.reads)
    size = r.page_size
    return (gpa & -size, size, r.oa & -size, r.perm, r.global_), r.reads


@pytest.mark.parametrize("case", [
    {}, {"l1": SR}, {"l2": SW}, {"l4": 0}, {"l1": SR | SW | SNP}, {"l3": RWX | TM},
    {"l2": 0x4060_0000 | SR | PS}, {"l3": 0x80_4000_0000 | SR | SW | PS},
    {"l2": 0x4060_1000 | SR | PS}, {"l1": SR | SW | (1 << 46)},
], ids=repr)
@pytest.mark.parametrize("slee", [False, True], ids=["", "slee"])
def test_walk_fields_is_the_walk_as_an_iotlb_entry(mem: PhysicalMemory, case: dict[str, int],
                                                   slee: bool) -> None:
    """An IOTLB miss's walk (``walk_fields``) gives the entry ``walk`` gives, as the IOTLB's
    fields, and the same faults, for leaves of every size, missing bits and reserved bits."""
    build(mem)
    leaves = {"l2": (T2, 2), "l3": (T3, 3)}
    for name, value in case.items():
        if value & PS:  # a large leaf in place of the table entry
            table, level = leaves[name]
            mem.write64(table + 8 * IDX[level], value)
        else:
            build(mem, **{name: value})
    walker = vtd_sl.SLWalker(mem, vtd_sl.SLConfig(sllps=3, slee=slee))
    for gpa in (GPA, GPA ^ (1 << 30), 1 << 48, -4096):
        for access in (R, W, X, R | W):
            assert _entry_of(walker, gpa, access, fields=True) == \
                _entry_of(walker, gpa, access, fields=False), (hex(gpa), access)

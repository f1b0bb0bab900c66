"""Golden tests: IA-32e first-level entries written by hand (reference 1.6) and how they walk."""

from __future__ import annotations

import errno

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable import x86
from iommu_uapi.pgtable.common import Access, FaultKind, Prot, WalkFault
from iommu_uapi.uapi.consts import FaultReason

R, W, X, PRIV = Access.READ, Access.WRITE, Access.EXEC, Access.PRIV
P, RW, US, PWT, PCD, A, D, PS, G = 1, 2, 4, 8, 0x10, 0x20, 0x40, 0x80, 0x100
XD = 1 << 63
TABLE = P | RW | US
# what the walker reports (kind, denied): VT-d records 0x71, 0x72, 0x81, 0x85, 0x82, 0x80, 0x70
ABSENT, RSVD = (FaultKind.NOT_PRESENT, 0), (FaultKind.RESERVED, 0)
USER, NO_WRITE, XD_EXEC = ((FaultKind.PERMISSION, PRIV), (FaultKind.PERMISSION, W),
                           (FaultKind.PERMISSION, X))
NONCANON, EABT = (FaultKind.INPUT_RANGE, 0), (FaultKind.WALK_EABT, 0)


def why(f: WalkFault) -> tuple[FaultKind, int]:
    """What the walker reports of a fault: its kind and the access bits it refused."""
    return (f.kind, f.denied)


# hand-placed tables: one 4 KiB page per level, top level first
T5, T4, T3, T2, T1 = 0x10_0000, 0x10_1000, 0x10_2000, 0x10_3000, 0x10_4000
IOVA = 0x0000_7F12_3456_7ABC  # PML4 index 254, PDPT 0x48, PD 0x1A2, PT 0x167, offset 0xABC
IDX = {4: (IOVA >> 39) & 511, 3: (IOVA >> 30) & 511, 2: (IOVA >> 21) & 511, 1: (IOVA >> 12) & 511}
PAGE = 0x1234_5000


def build4(mem: PhysicalMemory, *, l4: int = TABLE, l3: int = TABLE, l2: int = TABLE,
           l1: int = TABLE) -> int:
    """A 4-level chain for IOVA: every entry's flag bits given, addresses filled in."""
    mem.write64(T4 + 8 * IDX[4], T3 | l4)
    mem.write64(T3 + 8 * IDX[3], T2 | l3)
    mem.write64(T2 + 8 * IDX[2], T1 | l2)
    mem.write64(T1 + 8 * IDX[1], PAGE | l1)
    return T4


def walk(mem: PhysicalMemory, iova: int, access: int, cfg: x86.X86Config | None = None,
         root: int = T4, **kw: object) -> x86.WalkResult:
    return x86.walk(mem, root, iova, access, cfg=cfg or x86.X86Config(), **kw)  # type: ignore[arg-type]


def fault(mem: PhysicalMemory, iova: int, access: int, cfg: x86.X86Config | None = None,
          root: int = T4) -> WalkFault:
    with pytest.raises(WalkFault) as info:
        walk(mem, iova, access, cfg, root)
    return info.value


@pytest.fixture
def mem() -> PhysicalMemory:
    return PhysicalMemory()


def test_4k_page_translates_with_offset_and_counts_four_reads(mem: PhysicalMemory) -> None:
    build4(mem)
    r = walk(mem, IOVA, R | W)
    assert (r.oa, r.page_size, r.level, r.reads) == (PAGE | 0xABC, 4096, 1, 4)
    assert r.perm == R | W | X
    assert not r.global_


def test_2m_page_ps_at_pde(mem: PhysicalMemory) -> None:
    build4(mem)
    mem.write64(T2 + 8 * IDX[2], 0x4060_0000 | TABLE | PS)
    r = walk(mem, IOVA, R)
    assert (r.oa, r.page_size, r.level, r.reads) == (0x4060_0000 | (IOVA & 0x1F_FFFF), 1 << 21,
                                                     2, 3)


def test_2m_page_bit12_is_pat_not_address(mem: PhysicalMemory) -> None:
    build4(mem)
    mem.write64(T2 + 8 * IDX[2], 0x4060_0000 | 0x1000 | TABLE | PS)
    assert walk(mem, IOVA, R).oa == 0x4060_0000 | (IOVA & 0x1F_FFFF)


def test_1g_page_with_fl1gp(mem: PhysicalMemory) -> None:
    build4(mem)
    mem.write64(T3 + 8 * IDX[3], 0x80_4000_0000 | TABLE | PS)
    r = walk(mem, IOVA, R)
    assert (r.oa, r.page_size, r.level, r.reads) == (0x80_4000_0000 | (IOVA & 0x3FFF_FFFF),
                                                     1 << 30, 3, 2)


def test_1g_page_without_fl1gp_is_reserved_ps(mem: PhysicalMemory) -> None:
    build4(mem)
    mem.write64(T3 + 8 * IDX[3], 0x80_4000_0000 | TABLE | PS)
    f = fault(mem, IOVA, R, x86.X86Config(fl1gp=False))
    assert (f.reason, why(f), f.level, f.stage) == (FaultReason.PTE_FETCH, RSVD, 3, 1)


def test_5_level_walk_reads_five_entries(mem: PhysicalMemory) -> None:
    iova = 0x00AB_7F12_3456_7ABC  # PML5 index 0xAB
    mem.write64(T5 + 8 * 0xAB, T4 | TABLE)
    build4(mem)
    r = walk(mem, iova, R, x86.X86Config(levels=5), root=T5)
    assert (r.oa, r.reads, r.level) == (PAGE | 0xABC, 5, 1)


@pytest.mark.parametrize("level", [4, 3, 2, 1])
def test_not_present_at_each_level(mem: PhysicalMemory, level: int) -> None:
    build4(mem, **{f"l{level}": TABLE & ~P})
    f = fault(mem, IOVA, R)
    assert (f.reason, why(f), f.level, f.reads, f.addr) == (FaultReason.PTE_FETCH, ABSENT, level,
                                                            5 - level, IOVA)


@pytest.mark.parametrize("level", [4, 3, 2, 1])
def test_user_request_needs_us_at_every_level(mem: PhysicalMemory, level: int) -> None:
    build4(mem, **{f"l{level}": TABLE & ~US})
    f = fault(mem, IOVA, R)
    assert (f.reason, why(f), f.level) == (FaultReason.PERMISSION, USER, level)
    r = walk(mem, IOVA, R | PRIV)  # a supervisor request passes and sees a privileged page
    assert r.perm == R | W | X | PRIV


@pytest.mark.parametrize("level", [4, 3, 2, 1])
def test_write_needs_rw_at_every_level(mem: PhysicalMemory, level: int) -> None:
    build4(mem, **{f"l{level}": TABLE & ~RW})
    f = fault(mem, IOVA, W)
    assert (f.reason, why(f), f.level) == (FaultReason.PERMISSION, NO_WRITE, level)
    assert walk(mem, IOVA, R).perm == R | X


def test_supervisor_write_ignores_rw_without_wpe(mem: PhysicalMemory) -> None:
    build4(mem, l2=TABLE & ~RW)
    assert why(fault(mem, IOVA, W | PRIV)) == NO_WRITE
    r = walk(mem, IOVA, W | PRIV, x86.X86Config(wpe=False))
    assert r.perm & W


@pytest.mark.parametrize("level", [4, 3, 2, 1])
def test_execute_faults_on_xd_at_any_level(mem: PhysicalMemory, level: int) -> None:
    build4(mem, **{f"l{level}": TABLE | XD})
    f = fault(mem, IOVA, R | X)
    assert (f.reason, why(f), f.level) == (FaultReason.PERMISSION, XD_EXEC, level)
    assert walk(mem, IOVA, R).perm == R | W  # XD is not reserved: reads pass, no EXEC


@pytest.mark.parametrize("level", [4, 3, 2, 1])
@pytest.mark.parametrize("bit", [39, 45, 51])
def test_address_bits_at_or_above_haw_are_reserved(mem: PhysicalMemory, level: int,
                                                    bit: int) -> None:
    build4(mem, **{f"l{level}": TABLE | (1 << bit)})
    f = fault(mem, IOVA, R, x86.X86Config(haw=39))
    assert (f.reason, why(f), f.level) == (FaultReason.PTE_FETCH, RSVD, level)


def test_bits_52_to_62_are_ignored(mem: PhysicalMemory) -> None:
    build4(mem, l1=TABLE | (0x7FF << 52))
    assert walk(mem, IOVA, R).oa == PAGE | 0xABC


def test_address_below_haw_is_not_reserved(mem: PhysicalMemory) -> None:
    mem.write64(T4 + 8 * IDX[4], T3 | TABLE)
    mem.write64(T3 + 8 * IDX[3], T2 | TABLE)
    mem.write64(T2 + 8 * IDX[2], T1 | TABLE)
    mem.write64(T1 + 8 * IDX[1], (1 << 38) | TABLE)
    assert walk(mem, IOVA, R, x86.X86Config(haw=39)).oa == (1 << 38) | 0xABC


def test_ps_is_reserved_in_pml4e(mem: PhysicalMemory) -> None:
    build4(mem, l4=TABLE | PS)
    f = fault(mem, IOVA, R)
    assert (why(f), f.level) == (RSVD, 4)


def test_ps_is_reserved_in_pml5e(mem: PhysicalMemory) -> None:
    mem.write64(T5, T4 | TABLE | PS)
    build4(mem)
    f = fault(mem, IOVA, R, x86.X86Config(levels=5), root=T5)
    assert (why(f), f.level) == (RSVD, 5)


@pytest.mark.parametrize("bit", [13, 16, 20])
def test_2m_leaf_low_address_bits_are_reserved(mem: PhysicalMemory, bit: int) -> None:
    build4(mem)
    mem.write64(T2 + 8 * IDX[2], 0x4060_0000 | (1 << bit) | TABLE | PS)
    f = fault(mem, IOVA, R)
    assert (why(f), f.level) == (RSVD, 2)


@pytest.mark.parametrize("bit", [13, 21, 29])
def test_1g_leaf_low_address_bits_are_reserved(mem: PhysicalMemory, bit: int) -> None:
    build4(mem)
    mem.write64(T3 + 8 * IDX[3], 0x80_4000_0000 | (1 << bit) | TABLE | PS)
    f = fault(mem, IOVA, R)
    assert (why(f), f.level) == (RSVD, 3)


def test_4k_pte_bit7_is_pat_not_ps(mem: PhysicalMemory) -> None:
    build4(mem, l1=TABLE | PS)
    r = walk(mem, IOVA, R)
    assert (r.level, r.page_size) == (1, 4096)


@pytest.mark.parametrize("iova", [1 << 47, 0x0001_0000_0000_0000, 0xFFFF_0000_0000_0000,
                                  1 << 64, -1])
def test_non_canonical_input_4_level(mem: PhysicalMemory, iova: int) -> None:
    build4(mem)
    f = fault(mem, iova, R)
    assert (f.reason, why(f), f.reads, f.addr) == (FaultReason.OOR_ADDRESS, NONCANON, 0, iova)


def test_canonical_upper_half_walks_its_index(mem: PhysicalMemory) -> None:
    iova = 0xFFFF_8000_0000_0000 | (IOVA & ((1 << 39) - 1))  # PML4 index 256
    mem.write64(T4 + 8 * 256, T3 | TABLE)
    build4(mem)
    assert walk(mem, iova, R).oa == PAGE | 0xABC


def test_non_canonical_input_5_level(mem: PhysicalMemory) -> None:
    cfg = x86.X86Config(levels=5)
    f = fault(mem, 1 << 56, R, cfg, root=T5)
    assert why(f) == NONCANON
    g = fault(mem, (1 << 47), R, cfg, root=T5)  # canonical with 57 bits: walks, not present
    assert why(g) == ABSENT


def test_global_bit_is_reported(mem: PhysicalMemory) -> None:
    build4(mem, l1=TABLE | G)
    assert walk(mem, IOVA, R).global_


def test_table_outside_memory_is_walk_eabt() -> None:
    mem = PhysicalMemory(addr_bits=36)
    mem.write64(T4 + 8 * IDX[4], (1 << 40) | TABLE)
    f = fault(mem, IOVA, R)
    assert (f.reason, why(f), f.level, f.fetch_addr) == (FaultReason.WALK_EABT, EABT, 3,
                                                         (1 << 40) + 8 * IDX[3])


def test_update_ad_sets_a_everywhere_and_d_in_leaf_on_write(mem: PhysicalMemory) -> None:
    build4(mem)
    walk(mem, IOVA, R, update_ad=True)
    assert mem.read64(T4 + 8 * IDX[4]) == T3 | TABLE | A
    assert mem.read64(T1 + 8 * IDX[1]) == PAGE | TABLE | A
    walk(mem, IOVA, W, update_ad=True)
    assert mem.read64(T2 + 8 * IDX[2]) == T1 | TABLE | A  # D only in the leaf
    assert mem.read64(T1 + 8 * IDX[1]) == PAGE | TABLE | A | D


def test_update_ad_sets_ea_with_eafe(mem: PhysicalMemory) -> None:
    build4(mem)
    walk(mem, IOVA, R, x86.X86Config(eafe=True), update_ad=True)
    assert mem.read64(T3 + 8 * IDX[3]) == T2 | TABLE | A | 0x400


def test_no_update_without_update_ad(mem: PhysicalMemory) -> None:
    build4(mem)
    walk(mem, IOVA, W)
    assert mem.read64(T1 + 8 * IDX[1]) == PAGE | TABLE


def test_faulting_walk_does_not_set_d(mem: PhysicalMemory) -> None:
    build4(mem, l1=TABLE & ~RW)
    with pytest.raises(WalkFault):
        walk(mem, IOVA, W, update_ad=True)
    assert mem.read64(T1 + 8 * IDX[1]) == PAGE | P | US


@pytest.mark.parametrize(("kw", "rule"), [({"levels": 3}, "x86.levels"), ({"haw": 60}, "x86.haw")])
def test_config_refuses_bad_values(kw: dict[str, int], rule: str) -> None:
    with pytest.raises(UAPIError) as info:
        x86.X86Config(**kw)
    assert (info.value.errno, info.value.rule) == (errno.EINVAL, rule)


# -- builder: descriptors it writes, and refusals ------------------------------------------


def test_builder_writes_the_ia32e_layout(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map(IOVA & ~0xFFF, PAGE, 4096, Prot.READ | Prot.WRITE)
    l3 = mem.read64(pt.root + 8 * IDX[4])
    assert l3 & 0xFFF == TABLE
    l2 = mem.read64((l3 & ~0xFFF) + 8 * IDX[3])
    l1 = mem.read64((l2 & ~0xFFF) + 8 * IDX[2])
    assert mem.read64((l1 & ~0xFFF) + 8 * IDX[1]) == PAGE | P | RW | US
    pt.map(0x4000_0000, 0x8000_0000, 1 << 21, Prot.READ | Prot.NOEXEC | Prot.PRIV | Prot.GLOBAL)
    pdpt = mem.read64(pt.root) & ~0xFFF
    pd = mem.read64(pdpt + 8) & ~0xFFF
    assert mem.read64(pd) == 0x8000_0000 | P | PS | G | XD
    assert pt.iova_to_phys(0x4000_1234) == 0x8000_1234


def test_builder_1g_needs_fl1gp(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(fl1gp=False), mem)
    assert pt.page_sizes == (4096, 1 << 21)
    with pytest.raises(UAPIError) as info:
        pt.map_pages(0, 0, 1 << 30, 1, Prot.READ)
    assert (info.value.errno, info.value.rule) == (errno.EINVAL, "pgtable.size")
    pt.map(0, 0, 1 << 30, Prot.READ)  # any aligned size: 512 leaves of 2 MiB
    assert pt.walk(0x4000_0000 - 1, R).page_size == 1 << 21


def test_builder_refuses_non_canonical_iova(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    with pytest.raises(UAPIError) as info:
        pt.map(1 << 47, 0, 4096, Prot.READ)
    assert info.value.errno == errno.ERANGE
    pt.map(0xFFFF_8000_0000_0000, 0x5000, 4096, Prot.READ)
    assert pt.iova_to_phys(0xFFFF_8000_0000_0123) == 0x5123
    assert pt.walk(0xFFFF_8000_0000_0123, R).oa == 0x5123


def test_builder_refuses_paddr_beyond_haw(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(haw=39), mem)
    with pytest.raises(UAPIError) as info:
        pt.map(0, 1 << 39, 4096, Prot.READ)
    assert info.value.errno == errno.ERANGE


def test_builder_split_moves_pat_to_bit7(mem: PhysicalMemory) -> None:
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map(0, 0x20_0000, 1 << 21, Prot.READ | Prot.WRITE)
    pd = mem.read64(mem.read64(pt.root) & ~0xFFF) & ~0xFFF
    mem.write64(pd, mem.read64(pd) | 0x1000)  # PAT in the 2 MiB leaf
    assert pt.unmap(0x1000, 4096) == 4096
    pt_table = mem.read64(pd) & ~0xFFF
    assert mem.read64(pt_table) == 0x20_0000 | P | RW | US | PS  # PAT now bit 7
    assert mem.read64(pt_table + 8) == 0
    assert mem.read64(pt_table + 16) == 0x20_2000 | P | RW | US | PS

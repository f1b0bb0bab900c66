"""Golden tests: VMSAv8-64 descriptors written by hand (reference 2.5) and how they walk."""

from __future__ import annotations

import errno

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable import lpae
from iommu_uapi.pgtable.common import Access, FaultKind, Prot, WalkFault, WalkResult
from iommu_uapi.uapi.consts import FaultReason

R, W, X, PRIV = Access.READ, Access.WRITE, Access.EXEC, Access.PRIV
TABLE, BLOCK, PAGE = 3, 1, 3
AF, NG, AP_EL0, AP_RO, DBM, PXN, UXN = 0x400, 0x800, 0x40, 0x80, 1 << 51, 1 << 53, 1 << 54
S2R, S2W, S2XN = 0x40, 0x80, 1 << 54
PXNT, UXNT, APT_NO_EL0, APT_RO = 1 << 59, 1 << 60, 1 << 61, 1 << 62
# the generic kinds an SMMU model turns into F_TRANSLATION (three kinds), F_ADDR_SIZE,
# F_ACCESS, F_PERMISSION and F_WALK_EABT
INVALID, RESERVED, BEYOND = FaultKind.NOT_PRESENT, FaultKind.RESERVED, FaultKind.INPUT_RANGE
ADDR_SIZE, ACCESS, PERMISSION, EABT = (FaultKind.ADDR_SIZE, FaultKind.ACCESS,
                                       FaultKind.PERMISSION, FaultKind.WALK_EABT)

ROOT = 0x100_0000
OUT = 0x7_4560_0000_0000 & ((1 << 48) - 1)  # a 4 TiB-aligned output for any leaf size


def geo(cfg: lpae.LPAEConfig) -> tuple[int, int, int]:
    """(g, s, start level) of a configuration, from the reference's formulas."""
    g = {4096: 12, 16384: 14, 65536: 16}[cfg.granule]
    s = g - 3
    levels = lpae.LPAEPageTable(cfg, PhysicalMemory()).levels
    return g, s, levels[0].level


def chain(mem: PhysicalMemory, cfg: lpae.LPAEConfig, iova: int, leaf_level: int = 3, *,
          leaf: int = PAGE | AF | AP_EL0, tables: dict[int, int] | None = None,
          out: int = OUT) -> None:
    """Write table descriptors from the start level down to ``leaf_level`` for ``iova``, then
    the leaf (``leaf`` flag bits | ``out``); ``tables`` adds bits to a level's table entry."""
    g, s, start = geo(cfg)
    table = ROOT
    for level in range(start, leaf_level + 1):
        shift = g + s * (3 - level)
        index = iova >> shift if level == start else (iova >> shift) & ((1 << s) - 1)
        ptr = table + 8 * index
        if level == leaf_level:
            mem.write64(ptr, out | leaf)
        else:
            nxt = 0x800_0000 + level * 0x10_0000
            mem.write64(ptr, nxt | TABLE | (tables or {}).get(level, 0))
            table = nxt


def walk(mem: PhysicalMemory, cfg: lpae.LPAEConfig, iova: int, access: int,
         update_ad: bool = False) -> WalkResult:
    return lpae.walk(mem, ROOT, iova, access, cfg=cfg, update_ad=update_ad)


def fault(mem: PhysicalMemory, cfg: lpae.LPAEConfig, iova: int, access: int) -> WalkFault:
    with pytest.raises(WalkFault) as info:
        walk(mem, cfg, iova, access)
    assert info.value.stage == cfg.stage
    return info.value


S1 = lpae.LPAEConfig()
IOVA = 0x0000_7F12_3456_7ABC


@pytest.fixture
def mem() -> PhysicalMemory:
    return PhysicalMemory()


@pytest.mark.parametrize(("granule", "t0sz", "start", "entries"), [
    (4096, 16, 0, 512), (4096, 20, 0, 32), (4096, 24, 0, 2), (4096, 25, 1, 512),
    (4096, 33, 1, 2), (4096, 34, 2, 512), (4096, 39, 2, 16),
    (16384, 16, 0, 2), (16384, 17, 1, 2048), (16384, 27, 1, 2), (16384, 28, 2, 2048),
    (16384, 38, 2, 2), (16384, 39, 3, 2048),
    (65536, 12, 1, 1024), (65536, 16, 1, 64), (65536, 21, 1, 2), (65536, 22, 2, 8192),
    (65536, 34, 2, 2), (65536, 35, 3, 8192), (65536, 39, 3, 512),
])
def test_stage1_start_level_from_t0sz(mem: PhysicalMemory, granule: int, t0sz: int, start: int,
                                      entries: int) -> None:
    cfg = lpae.LPAEConfig(granule=granule, t0sz=t0sz, oas=52 if t0sz < 16 else 48)
    levels = lpae.LPAEPageTable(cfg, PhysicalMemory()).levels
    assert (levels[0].level, levels[0].index_mask + 1) == (start, entries)
    iova = ((1 << (64 - t0sz)) - 1) & ~0xFFF & -granule | 0x123  # the last page: top indices
    chain(mem, cfg, iova, out=0x4_0000_0000)
    r = walk(mem, cfg, iova, R)
    assert (r.oa, r.page_size, r.level, r.reads) == (0x4_0000_0000 | (iova & (granule - 1)),
                                                     granule, 3, 4 - start)


@pytest.mark.parametrize(("granule", "level", "size"), [
    (4096, 1, 1 << 30), (4096, 2, 1 << 21), (16384, 2, 1 << 25), (65536, 2, 1 << 29)])
def test_block_descriptors(mem: PhysicalMemory, granule: int, level: int, size: int) -> None:
    cfg = lpae.LPAEConfig(granule=granule)
    chain(mem, cfg, IOVA, level, leaf=BLOCK | AF | AP_EL0)
    r = walk(mem, cfg, IOVA, R)
    assert (r.oa, r.page_size, r.level) == (OUT | (IOVA & (size - 1)), size, level)


def test_block_low_address_bits_are_not_address(mem: PhysicalMemory) -> None:
    chain(mem, S1, IOVA, 2, leaf=BLOCK | AF | AP_EL0 | 0x1F_F000)
    assert walk(mem, S1, IOVA, R).oa == OUT | (IOVA & 0x1F_FFFF)


@pytest.mark.parametrize(("granule", "level"), [(4096, 0), (16384, 1), (65536, 1)])
def test_block_where_not_allowed_is_translation_fault(mem: PhysicalMemory, granule: int,
                                                      level: int) -> None:
    cfg = lpae.LPAEConfig(granule=granule)
    chain(mem, cfg, IOVA, level, leaf=BLOCK | AF | AP_EL0)
    f = fault(mem, cfg, IOVA, R)
    assert (f.reason, f.kind, f.level) == (FaultReason.PTE_FETCH, RESERVED, level)


def test_64k_level1_block_with_52bit_oa(mem: PhysicalMemory) -> None:
    cfg = lpae.LPAEConfig(granule=65536, oas=52)
    chain(mem, cfg, IOVA, 1, leaf=BLOCK | AF | AP_EL0 | (0x5 << 12), out=3 << 42)
    r = walk(mem, cfg, IOVA, R)
    assert (r.page_size, r.level) == (1 << 42, 1)
    assert r.oa == (0x5 << 48) | (3 << 42) | (IOVA & ((1 << 42) - 1))  # OA[51:48]: bits 15:12


def test_level3_block_encoding_is_reserved(mem: PhysicalMemory) -> None:
    chain(mem, S1, IOVA, leaf=BLOCK | AF | AP_EL0)
    f = fault(mem, S1, IOVA, R)
    assert (f.kind, f.level, f.reason) == (RESERVED, 3, FaultReason.PTE_FETCH)


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_invalid_descriptor_at_each_level(mem: PhysicalMemory, level: int) -> None:
    chain(mem, S1, IOVA)
    g, s, _ = geo(S1)
    table = ROOT if level == 0 else 0x800_0000 + (level - 1) * 0x10_0000
    ptr = table + 8 * ((IOVA >> (g + s * (3 - level))) & 511)
    mem.write64(ptr, mem.read64(ptr) & ~1)
    f = fault(mem, S1, IOVA, R)
    assert (f.reason, f.kind, f.level, f.reads, f.fetch_addr) == (
        FaultReason.PTE_FETCH, INVALID, level, level + 1, ptr)


def test_input_beyond_t0sz_is_translation_fault(mem: PhysicalMemory) -> None:
    cfg = lpae.LPAEConfig(t0sz=25)
    f = fault(mem, cfg, 1 << 39, R)
    assert (f.reason, f.kind, f.level, f.reads) == (FaultReason.OOR_ADDRESS, BEYOND, 1, 0)


# -- stage-1 permissions ------------------------------------------------------------------

@pytest.mark.parametrize(("ap", "access", "ok"), [
    (0, R | PRIV, True), (0, W | PRIV, True), (0, R, False),
    (AP_EL0, R, True), (AP_EL0, W, True),
    (AP_RO, R | PRIV, True), (AP_RO, W | PRIV, False), (AP_RO, R, False),
    (AP_RO | AP_EL0, R, True), (AP_RO | AP_EL0, W, False), (AP_RO | AP_EL0, W | PRIV, False),
])
def test_ap_bits(mem: PhysicalMemory, ap: int, access: int, ok: bool) -> None:
    chain(mem, S1, IOVA, leaf=PAGE | AF | ap)
    if ok:
        assert walk(mem, S1, IOVA, access).perm & access & ~PRIV == access & ~PRIV
    else:
        f = fault(mem, S1, IOVA, access)
        assert (f.reason, f.kind, f.level) == (FaultReason.PERMISSION, PERMISSION, 3)


def test_privileged_only_page_reports_priv(mem: PhysicalMemory) -> None:
    chain(mem, S1, IOVA, leaf=PAGE | AF)
    assert walk(mem, S1, IOVA, R | PRIV).perm == R | W | X | PRIV


@pytest.mark.parametrize(("bits", "access", "ok"), [
    (AP_RO | UXN, X, False), (AP_RO | UXN, X | PRIV, True), (AP_RO | PXN, X | PRIV, False),
    (AP_RO | PXN, X, True),
    (0, X | PRIV, False),  # AP = 01 (writable at EL0): never executable at EL1
])
def test_execute_never(mem: PhysicalMemory, bits: int, access: int, ok: bool) -> None:
    chain(mem, S1, IOVA, leaf=PAGE | AF | AP_EL0 | bits)
    if ok:
        assert walk(mem, S1, IOVA, access).perm & X
    else:
        assert fault(mem, S1, IOVA, access).kind == PERMISSION


@pytest.mark.parametrize(("tbits", "access"), [
    (APT_NO_EL0, R), (APT_RO, W), (APT_RO, W | PRIV), (UXNT, X), (PXNT, X | PRIV)])
@pytest.mark.parametrize("level", [0, 1, 2])
def test_hierarchical_table_controls(mem: PhysicalMemory, tbits: int, access: int,
                                     level: int) -> None:
    chain(mem, S1, IOVA, leaf=PAGE | AF | AP_EL0 | AP_RO * (access & W == 0),
          tables={level: tbits})
    f = fault(mem, S1, IOVA, access)
    assert (f.kind, f.level) == (PERMISSION, 3)
    hpd = lpae.LPAEConfig(hpd=True)
    if access != X | PRIV:  # AP = 01 pages never execute at EL1, HPD or not
        assert walk(mem, hpd, IOVA, access).perm & access & ~PRIV


def test_ap_table_no_el0_leaves_privileged_access(mem: PhysicalMemory) -> None:
    chain(mem, S1, IOVA, tables={1: APT_NO_EL0})  # the leaf is AP = 01: no EL1 execute
    assert walk(mem, S1, IOVA, R | PRIV).perm == R | W | PRIV


def test_af_zero_is_access_fault_before_permission(mem: PhysicalMemory) -> None:
    chain(mem, S1, IOVA, leaf=PAGE | AP_RO)  # AF=0 and no EL0 access
    f = fault(mem, S1, IOVA, W)
    assert (f.reason, f.kind, f.level) == (FaultReason.ACCESS, ACCESS, 3)


def test_ha_sets_af_on_update(mem: PhysicalMemory) -> None:
    cfg = lpae.LPAEConfig(ha=True)
    chain(mem, cfg, IOVA, leaf=PAGE | AP_EL0)
    assert fault(mem, cfg, IOVA, R).kind == ACCESS  # no update asked: still a fault
    r = walk(mem, cfg, IOVA, R, update_ad=True)
    assert r.oa == OUT | 0xABC
    leaf_ptr = 0x800_0000 + 2 * 0x10_0000 + 8 * ((IOVA >> 12) & 511)
    assert mem.read64(leaf_ptr) == OUT | PAGE | AP_EL0 | AF


def test_hd_makes_a_dbm_page_writable_on_write(mem: PhysicalMemory) -> None:
    cfg = lpae.LPAEConfig(ha=True, hd=True)
    chain(mem, cfg, IOVA, leaf=PAGE | AF | AP_EL0 | AP_RO | DBM)
    assert fault(mem, cfg, IOVA, W).kind == PERMISSION  # without update
    r = walk(mem, cfg, IOVA, W, update_ad=True)
    assert r.perm & W
    leaf_ptr = 0x800_0000 + 2 * 0x10_0000 + 8 * ((IOVA >> 12) & 511)
    assert mem.read64(leaf_ptr) == OUT | PAGE | AF | AP_EL0 | DBM


def test_ng_bit_is_not_global(mem: PhysicalMemory) -> None:
    chain(mem, S1, IOVA, leaf=PAGE | AF | AP_EL0 | NG)
    assert not walk(mem, S1, IOVA, R).global_
    chain(mem, S1, IOVA)
    assert walk(mem, S1, IOVA, R).global_


# -- address size -------------------------------------------------------------------------

def test_table_address_beyond_oas(mem: PhysicalMemory) -> None:
    cfg = lpae.LPAEConfig(oas=40)
    chain(mem, cfg, IOVA)
    mem.write64(ROOT + 8 * (IOVA >> 39), (1 << 40) | TABLE)
    f = fault(mem, cfg, IOVA, R)
    assert (f.reason, f.kind, f.level) == (FaultReason.OOR_ADDRESS, ADDR_SIZE, 0)


def test_output_address_beyond_oas(mem: PhysicalMemory) -> None:
    cfg = lpae.LPAEConfig(oas=44)
    chain(mem, cfg, IOVA, out=1 << 45)
    f = fault(mem, cfg, IOVA, R)
    assert (f.reason, f.kind, f.level) == (FaultReason.OOR_ADDRESS, ADDR_SIZE, 3)


def test_descriptor_bits_49_48_count_against_a_48bit_oas(mem: PhysicalMemory) -> None:
    chain(mem, S1, IOVA, out=1 << 48)
    assert fault(mem, S1, IOVA, R).kind == ADDR_SIZE


def test_52bit_output_with_64k_granule(mem: PhysicalMemory) -> None:
    cfg = lpae.LPAEConfig(granule=65536, oas=52)
    chain(mem, cfg, IOVA, leaf=PAGE | AF | AP_EL0 | (0xA << 12), out=0x1234_5678_0000)
    assert walk(mem, cfg, IOVA, R).oa == (0xA << 48) | 0x1234_5678_0000 | (IOVA & 0xFFFF)
    narrow = lpae.LPAEConfig(granule=65536, oas=48)  # bits 15:12 are not address bits here
    assert walk(mem, narrow, IOVA, R).oa == 0x1234_5678_0000 | (IOVA & 0xFFFF)


def test_52bit_table_address_with_64k_granule() -> None:
    mem = PhysicalMemory(addr_bits=52)
    cfg = lpae.LPAEConfig(granule=65536, oas=52)
    chain(mem, cfg, IOVA)
    high = (0x3 << 48) | 0x9_0000
    mem.write64(ROOT + 8 * (IOVA >> 42), 0x9_0000 | (0x3 << 12) | TABLE)
    mem.write64(high + 8 * ((IOVA >> 29) & 8191), 0x2_0000 | TABLE)
    mem.write64(0x2_0000 + 8 * ((IOVA >> 16) & 8191), 0x5_0000 | PAGE | AF | AP_EL0)
    assert walk(mem, cfg, IOVA, R).oa == 0x5_0000 | (IOVA & 0xFFFF)


def test_table_outside_memory_is_walk_eabt() -> None:
    mem = PhysicalMemory(addr_bits=36)
    chain(mem, S1, IOVA)
    mem.write64(ROOT + 8 * (IOVA >> 39), (1 << 40) | TABLE)
    f = fault(mem, S1, IOVA, R)
    assert (f.reason, f.kind, f.level) == (FaultReason.WALK_EABT, EABT, 1)


# -- stage 2 ------------------------------------------------------------------------------

S2 = lpae.LPAEConfig(stage=2, t0sz=16, sl0=2)


@pytest.mark.parametrize(("s2ap", "access", "ok"), [
    (0, R, False), (S2R, R, True), (S2R, W, False), (S2W, W, True), (S2W, R, False),
    (S2R | S2W, R | W, True)])
def test_s2ap(mem: PhysicalMemory, s2ap: int, access: int, ok: bool) -> None:
    chain(mem, S2, IOVA, leaf=PAGE | AF | s2ap)
    if ok:
        assert walk(mem, S2, IOVA, access).perm & ~X == s2ap >> 6
    else:
        f = fault(mem, S2, IOVA, access)
        assert (f.reason, f.kind, f.stage) == (FaultReason.PERMISSION, PERMISSION, 2)


def test_s2_xn(mem: PhysicalMemory) -> None:
    chain(mem, S2, IOVA, leaf=PAGE | AF | S2R | S2XN)
    assert fault(mem, S2, IOVA, R | X).kind == PERMISSION
    assert walk(mem, S2, IOVA, R).perm == R


def test_s2_af_zero(mem: PhysicalMemory) -> None:
    chain(mem, S2, IOVA, leaf=PAGE | S2R)
    f = fault(mem, S2, IOVA, R)
    assert (f.kind, f.stage, f.reason) == (ACCESS, 2, FaultReason.ACCESS)


def test_s2_hd_sets_s2ap_write_on_dbm(mem: PhysicalMemory) -> None:
    cfg = lpae.LPAEConfig(stage=2, t0sz=16, sl0=2, ha=True, hd=True)
    chain(mem, cfg, IOVA, leaf=PAGE | AF | S2R | DBM)
    assert walk(mem, cfg, IOVA, W, update_ad=True).perm & W
    leaf_ptr = 0x800_0000 + 2 * 0x10_0000 + 8 * ((IOVA >> 12) & 511)
    assert mem.read64(leaf_ptr) & S2W


@pytest.mark.parametrize(("granule", "sl0", "t0sz", "start", "entries"), [
    (4096, 1, 25, 1, 512), (4096, 1, 24, 1, 2 * 512), (4096, 1, 22, 1, 8 * 512),
    (4096, 1, 21, 1, 16 * 512), (4096, 0, 30, 2, 16 * 512), (4096, 2, 16, 0, 512),
    (16384, 2, 16, 1, 2 * 2048), (16384, 1, 24, 2, 16 * 2048), (16384, 0, 35, 3, 16 * 2048),
    (65536, 1, 18, 2, 16 * 8192), (65536, 0, 31, 3, 16 * 8192), (65536, 2, 16, 1, 64),
])
def test_stage2_concatenated_root(mem: PhysicalMemory, granule: int, sl0: int, t0sz: int,
                                  start: int, entries: int) -> None:
    cfg = lpae.LPAEConfig(stage=2, granule=granule, t0sz=t0sz, sl0=sl0)
    pt = lpae.LPAEPageTable(cfg, mem)
    root = pt.levels[0]
    assert (root.level, root.index_mask + 1) == (start, entries)
    assert mem.allocated_bytes == max(entries * 8, 4096)  # one aligned allocation
    iova = ((1 << (64 - t0sz)) - 1) & -granule  # the last entry of the last concatenated table
    chain(mem, cfg, iova, leaf=PAGE | AF | S2R, out=0x4_0000_0000)
    r = walk(mem, cfg, iova, R)
    assert (r.oa, r.reads) == (0x4_0000_0000, 4 - start)


@pytest.mark.parametrize(("granule", "sl0", "t0sz"), [
    (4096, 0, 16), (4096, 1, 20), (4096, 2, 33), (4096, 0, 29), (4096, 3, 39),
    (16384, 2, 28), (16384, 3, 16), (65536, 3, 30), (65536, 1, 35),
])
def test_inconsistent_sl0_t0sz_is_refused(granule: int, sl0: int, t0sz: int) -> None:
    with pytest.raises(UAPIError) as info:
        lpae.LPAEConfig(stage=2, granule=granule, t0sz=t0sz, sl0=sl0)
    assert info.value.errno == errno.EINVAL
    assert f"T0SZ {t0sz}" in info.value.message and f"SL0 {sl0}" in info.value.message


@pytest.mark.parametrize("kw", [
    {"granule": 8192}, {"oas": 52}, {"oas": 46}, {"t0sz": 15}, {"t0sz": 40}, {"sl0": 1},
    {"stage": 2}, {"stage": 3}, {"hd": True}])
def test_config_refuses_bad_values(kw: dict[str, int]) -> None:
    with pytest.raises(UAPIError) as info:
        lpae.LPAEConfig(**kw)
    assert info.value.errno == errno.EINVAL


def test_stt_allows_small_tables(mem: PhysicalMemory) -> None:
    cfg = lpae.LPAEConfig(t0sz=44, stt=True)
    assert geo(cfg)[2] == 3
    s2 = lpae.LPAEConfig(stage=2, t0sz=44, sl0=3, stt=True)
    assert lpae.LPAEPageTable(s2, mem).levels[0].level == 3


@pytest.mark.parametrize(("granule", "ias", "sl0"), [
    (4096, 40, 1), (4096, 48, 2), (4096, 44, 2), (4096, 32, 1), (4096, 30, 0), (16384, 48, 2),
    (16384, 47, 2), (65536, 48, 2), (65536, 42, 1)])
def test_s2_sl0_picks_concatenation_like_linux(granule: int, ias: int, sl0: int) -> None:
    assert lpae.s2_sl0(granule, ias) == sl0
    lpae.LPAEConfig(stage=2, granule=granule, t0sz=64 - ias, sl0=sl0)


# -- builder ------------------------------------------------------------------------------

def test_builder_stage1_descriptors(mem: PhysicalMemory) -> None:
    pt = lpae.LPAEPageTable(S1, mem)
    pt.map(0x1000, 0x5000, 4096, Prot.READ | Prot.CACHE)
    l1 = mem.read64(pt.root) & ~0xFFF
    l2 = mem.read64(l1) & ~0xFFF
    l3 = mem.read64(l2) & ~0xFFF
    assert mem.read64(l3 + 8) == 0x5000 | PAGE | AF | AP_EL0 | AP_RO | NG | (1 << 2) | (3 << 8)
    pt.map(0x20_0000, 0x4000_0000, 1 << 21, Prot.WRITE | Prot.PRIV | Prot.NOEXEC | Prot.GLOBAL)
    assert mem.read64(l2 + 8) == 0x4000_0000 | BLOCK | AF | PXN | UXN | (2 << 8)
    assert pt.walk(0x20_0010, W | PRIV).oa == 0x4000_0010


def test_builder_stage2_descriptors_and_concatenated_root(mem: PhysicalMemory) -> None:
    cfg = lpae.LPAEConfig(stage=2, t0sz=24, sl0=1)  # 40-bit IPA: 2 concatenated L1 tables
    pt = lpae.LPAEPageTable(cfg, mem)
    assert mem.allocated_bytes == 8192 and pt.root % 8192 == 0
    pt.map(1 << 39, 0x8000, 4096, Prot.READ | Prot.WRITE | Prot.MMIO)
    assert mem.read64(pt.root + 8 * 512) & 3 == TABLE  # second table of the root
    assert pt.iova_to_phys((1 << 39) + 0x10) == 0x8010
    r = pt.walk((1 << 39) + 0x10, R | W)
    assert (r.oa, r.reads) == (0x8010, 3)


def test_builder_52bit_output(mem: PhysicalMemory) -> None:
    pt = lpae.LPAEPageTable(lpae.LPAEConfig(granule=65536, oas=52), mem)
    pt.map(0x10000, (0xB << 48) | 0x30000, 65536, Prot.READ)
    assert pt.iova_to_phys(0x10123) == (0xB << 48) | 0x30123
    assert pt.walk(0x10123, R).oa == (0xB << 48) | 0x30123
    pt.map(1 << 42, 0xC << 48, 1 << 42, Prot.READ)  # a 4 TiB level-1 block
    assert pt.unmap((1 << 42) + (1 << 29), 1 << 29) == 1 << 29  # split into 512 MiB blocks
    assert pt.iova_to_phys((1 << 42) + (3 << 29) + 5) == (0xC << 48) + (3 << 29) + 5
    assert pt.iova_to_phys((1 << 42) + (1 << 29)) == 0

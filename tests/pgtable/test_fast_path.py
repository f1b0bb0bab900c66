"""The walkers' inline fast path agrees with the full walk on every table, however corrupt.

A walker over a plain :class:`PhysicalMemory` reads descriptors through ``page_quads`` and runs
its common case without the full checks; anything unusual must fall back to the full walk. Here
random descriptors (every permission, reserved and large-page bit in play) are walked twice:
through the fast path and through a memory that hides ``page_quads`` (full walk only). Results
must be equal, and faults equal in every field.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iommu_uapi.memory import GuestMemory, PhysicalMemory
from iommu_uapi.pgtable import lpae, vtd_sl, x86
from iommu_uapi.pgtable.common import Access, Prot, WalkResult, bind_stage2, inline_pages
from iommu_uapi.pgtable.lpae.config import geometry
from iommu_uapi.testing.walks import PlainMemory, lpae_path, walk_outcome

RW = Prot.READ | Prot.WRITE


# Bits each level's descriptor may carry besides its table address: the format's flags, a low
# address bit of a large page (13), bits above a 39-bit host width (40, 47), bits 51:48, the
# ignored bits 62:52 and bit 63 (XD / ignored).
FLAG_BITS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 40, 47, 48, 51, 52, 62, 63]
flags = st.lists(st.sampled_from(FLAG_BITS), min_size=1, max_size=3).map(lambda bits: sum(
    {1 << b for b in bits}))


def corrupt_tables(mem: PhysicalMemory, levels: int, data: st.DataObject,
                   grant: int) -> tuple[int, int]:
    """A chain of tables for one input address whose entries grant ``grant``, with one or two
    entries' bits flipped at random. Returns (root, iova)."""
    iova = data.draw(st.integers(0, (1 << 47) - 1)) & ~0xFFF
    flips = dict(data.draw(st.lists(st.tuples(st.integers(1, levels), flags), min_size=1,
                                    max_size=2)))
    root = mem.alloc()
    table = root
    for level in range(levels, 0, -1):
        shift = 12 + 9 * (level - 1)
        nxt = mem.alloc() if level > 1 else data.draw(st.integers(1, 1 << 20)) << 12
        mem.write64(table + (((iova >> shift) & 0x1FF) << 3), nxt | grant ^ flips.get(level, 0))
        table = nxt
    return root, iova | data.draw(st.integers(0, 0xFFF))


@pytest.mark.parametrize("cfg", [x86.X86Config(), x86.X86Config(haw=39, fl1gp=False),
                                 x86.X86Config(levels=5, wpe=False)], ids=str)
@settings(max_examples=400)  # cheap (~1 ms each), and rare corruptions must be met
@given(data=st.data(), access=st.integers(0, 15))
def test_first_level_fast_and_full_walks_agree(cfg: x86.X86Config, data: st.DataObject,
                                               access: int) -> None:
    mem = PhysicalMemory()
    root, iova = corrupt_tables(mem, cfg.levels, data, grant=0x7)
    if data.draw(st.booleans()):
        iova |= -1 << 48 if cfg.levels == 4 else 0  # sometimes the upper canonical half
    fast, full = x86.X86Walker(mem, cfg), x86.X86Walker(PlainMemory(mem), cfg)
    assert inline_pages(fast.mem) is not None and inline_pages(full.mem) is None
    assert walk_outcome(lambda: fast.walk(root, iova, access)) == \
        walk_outcome(lambda: full.walk(root, iova, access))
    # continuations from every table entry used, as a paging-structure cache would start them
    path: list[tuple[int, int, int]] = []
    walk_outcome(lambda: full.walk_partial(root, cfg.levels, iova, access, path=path))
    for level, table, inherited in path:
        args = (table, level - 1, iova, access)
        assert walk_outcome(partial(fast.walk_partial, *args, inherited=inherited)) == \
            walk_outcome(partial(full.walk_partial, *args, inherited=inherited))


@pytest.mark.parametrize("cfg", [vtd_sl.SLConfig(), vtd_sl.SLConfig(aw=1, haw=39, sllps=1),
                                 vtd_sl.SLConfig(aw=3, sc=True, dt=True, slee=True)], ids=str)
@settings(max_examples=400)  # cheap (~1 ms each), and rare corruptions must be met
@given(data=st.data(), access=st.integers(0, 15))
def test_second_level_fast_and_full_walks_agree(cfg: vtd_sl.SLConfig, data: st.DataObject,
                                                access: int) -> None:
    mem = PhysicalMemory()
    root, iova = corrupt_tables(mem, cfg.levels, data, grant=0x7)
    iova &= (1 << cfg.input_bits) - 1
    fast, full = vtd_sl.SLWalker(mem, cfg), vtd_sl.SLWalker(PlainMemory(mem), cfg)
    assert walk_outcome(lambda: fast.walk(root, iova, access)) == \
        walk_outcome(lambda: full.walk(root, iova, access))
    assert_continuations_agree(fast, full, root, iova, access)


def assert_continuations_agree(fast: Any, full: Any, root: int, iova: int, access: int) -> None:
    """From every table entry the full walk used, the fast and the full continuation agree
    (as a walk cache would start them)."""
    levels = full.walk_levels
    path: list[tuple[int, int, int]] = []
    walk_outcome(lambda: full.walk_partial(root, levels[0], iova, access, path=path))
    for level, table, inherited in path:
        args = (table, levels[levels.index(level) + 1], iova, access)
        assert walk_outcome(partial(fast.walk_partial, *args, inherited=inherited)) == \
            walk_outcome(partial(full.walk_partial, *args, inherited=inherited))


@settings(max_examples=400)  # cheap (~1 ms each), and rare corruptions must be met
@given(data=st.data(), access=st.integers(0, 15))
def test_nested_fast_and_full_walks_agree(data: st.DataObject, access: int) -> None:
    """Stage-1 tables in guest RAM, corrupted; stage 2 maps that RAM but sometimes loses a
    page or its write permission."""
    host = PhysicalMemory()
    guest = GuestMemory(host)
    ram = guest.add_ram(0x10_0000, 0x8_0000)
    s2 = vtd_sl.SLPageTable(vtd_sl.SLConfig(sllps=0), host)
    for off in range(0, 0x8_0000, 4096):
        s2.map(0x10_0000 + off, ram + off, 4096, RW)
    s2.map(0x1000, 0x7_0000_0000, 4096, RW)  # the data page every leaf may land on
    s1 = x86.X86PageTable(x86.X86Config(), guest)
    iova = data.draw(st.integers(0, (1 << 47) - 1)) & ~0xFFF
    s1.map(iova, 0x1000, 4096, RW)
    # corrupt one stage-1 descriptor on the path, or one stage-2 leaf
    table = s1.root
    for level in range(4, 0, -1):
        ptr = table + (((iova >> (12 + 9 * (level - 1))) & 0x1FF) << 3)
        desc = guest.read64(ptr)
        if data.draw(st.booleans()):
            guest.write64(ptr, desc ^ data.draw(flags))
            break
        table = desc & x86.ADDR_MASK
    if data.draw(st.booleans()):
        gpa = data.draw(st.sampled_from([0x1000, s1.root & ~0xFFF]))
        s2.unmap(gpa, 4096)
        if data.draw(st.booleans()):
            s2.map(gpa, guest.gpa_to_hpa(gpa) if gpa != 0x1000 else 0x7_0000_0000, 4096,
                   Prot.READ)
    fast = x86.X86Walker(host, s1.cfg)
    full = x86.X86Walker(PlainMemory(host), s1.cfg)
    s2_fast = s2.stage2()
    s2_full = bind_stage2(vtd_sl.SLWalker(PlainMemory(host), s2.cfg), s2.root)
    assert walk_outcome(lambda: fast.walk(s1.root, iova, access, s2_fast)) == \
        walk_outcome(lambda: full.walk(s1.root, iova, access, s2_full))


def test_a_builder_mapping_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the builders write is the common case: no full walk is needed to translate it."""
    mem = PhysicalMemory()
    pt = x86.X86PageTable(x86.X86Config(), mem)
    sl = vtd_sl.SLPageTable(vtd_sl.SLConfig(), mem)
    for size in (4096, 1 << 21, 1 << 30):
        pt.map(size * 3, 0x1_0000_0000 + size * 4, size, RW | Prot.NOEXEC)
        sl.map(size * 3, 0x1_0000_0000 + size * 4, size, RW)

    def refuse(*args: object) -> WalkResult:
        raise AssertionError("the full walk was taken")

    monkeypatch.setattr(x86.X86Walker, "_walk", refuse)
    monkeypatch.setattr(vtd_sl.SLWalker, "_walk", refuse)
    for size in (4096, 1 << 21, 1 << 30):
        r = x86.X86Walker(mem, pt.cfg).walk(pt.root, size * 3 + 0x123, Access.WRITE)
        assert (r.oa, r.page_size, r.perm) == (0x1_0000_0000 + size * 4 + 0x123, size, 0b011)
        r = vtd_sl.SLWalker(mem, sl.cfg).walk(sl.root, size * 3 + 0x123, Access.READ)
        assert (r.oa, r.page_size, r.perm) == (0x1_0000_0000 + size * 4 + 0x123, size, 0b111)


LPAE_BITS = [0, 1, 2, 6, 7, 10, 11, 13, 16, 40, 47, 48, 51, 53, 54, 55, 59, 60, 61, 62, 63]
lpae_flags = st.lists(st.sampled_from(LPAE_BITS), min_size=1, max_size=3).map(
    lambda bits: sum({1 << b for b in bits}))


def corrupt_path(mem: Any, cfg: lpae.LPAEConfig, root: int, iova: int, data: st.DataObject,
                 *, least: int = 0) -> None:
    """Flip bits of ``least`` to two descriptors on the path of ``iova`` (the table bits
    included, so the walk may go astray, meet a block or a table control)."""
    levels = len(geometry(cfg).levels)
    flips = dict(data.draw(st.lists(st.tuples(st.integers(0, levels - 1), lpae_flags),
                                    min_size=least, max_size=2)))
    for i, (ptr, desc) in enumerate(lpae_path(mem, cfg, root, iova)):
        mem.write64(ptr, desc ^ flips.get(i, 0))


def corrupted_mapping(cfg: lpae.LPAEConfig, data: st.DataObject, *, least: int = 0
                      ) -> tuple[PhysicalMemory, lpae.LPAEPageTable, int]:
    """A builder's mapping of one page of a random leaf size, :func:`corrupt_path` on its
    path, and an address inside that page."""
    mem = PhysicalMemory()
    pt = lpae.LPAEPageTable(cfg, mem)
    geo = geometry(cfg)
    size = data.draw(st.sampled_from([lv.size for lv in geo.levels if lv.leaf_need != -1]))
    iova = data.draw(st.integers(0, (1 << cfg.ias) - 1)) & -size
    pt.map(iova, (0x4000_0000 + iova) & ((1 << 40) - 1) & -size, size,
           data.draw(st.sampled_from([Prot.READ, RW, RW | Prot.NOEXEC | Prot.PRIV])))
    corrupt_path(mem, cfg, pt.root, iova, data, least=least)
    return mem, pt, iova | data.draw(st.integers(0, size - 1))


@pytest.mark.parametrize("cfg", [
    lpae.LPAEConfig(), lpae.LPAEConfig(oas=40, hpd=True),
    lpae.LPAEConfig(stage=2, t0sz=24, sl0=1),          # 40-bit IPA: level 1, 2 concatenated
    lpae.LPAEConfig(stage=2, t0sz=16, sl0=2),
    lpae.LPAEConfig(granule=16384, t0sz=17), lpae.LPAEConfig(granule=65536, t0sz=22),
    lpae.LPAEConfig(stage=2, granule=16384, t0sz=24, sl0=1),
    lpae.LPAEConfig(stage=2, granule=65536, t0sz=18, sl0=1),
], ids=str)
@settings(max_examples=300)
@given(data=st.data(), access=st.integers(0, 15))
def test_lpae_fast_and_full_walks_agree(cfg: lpae.LPAEConfig, data: st.DataObject,
                                        access: int) -> None:
    """A builder mapping with one or two descriptors on its path flipped at random."""
    mem, pt, iova = corrupted_mapping(cfg, data, least=1)
    fast = lpae.LPAEWalker(mem, cfg)
    full = lpae.LPAEWalker(PlainMemory(mem), cfg)
    assert walk_outcome(lambda: fast.walk(pt.root, iova, access)) == \
        walk_outcome(lambda: full.walk(pt.root, iova, access))
    assert_continuations_agree(fast, full, pt.root, iova, access)

"""The compiled fields walk (``compile_fields_walk``) is its fast plan's loop, straight-line.

Two properties: for any plan (masks drawn at random, tables of random entries, pages missing)
the compiled function returns exactly what the plan's loop returns, None where the loop leaves
for the full walk; and on VT-d second-level tables built by the builder and then corrupted
(reserved bits, R/W/X cleared, entries zeroed, PS where it is reserved, tables outside memory),
``SLWalker.walk_fields`` with its compiled common case gives the entry, the reads and the fault
the full walk gives, for every access value, at the top of AW and beyond it.
"""

from __future__ import annotations

import errno
import operator
from array import array
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import ZERO_QUADS, PhysicalMemory
from iommu_uapi.pgtable import vtd_sl
from iommu_uapi.pgtable.common import (
    FastLeaf,
    FastPlan,
    PageGet,
    Prot,
    WalkResult,
    inline_pages,
    page_getter,
)
from iommu_uapi.pgtable.compiled import _compiled, compile_fields_walk, compile_result_walk
from iommu_uapi.pgtable.vtd_sl.bits import ADDR_MASK, SLEntry, fast_plans
from iommu_uapi.testing.walks import PlainMemory, walk_outcome

Fields = tuple[tuple[int, int, int, int, bool], int]


def loop_fields(plan: FastPlan, get: PageGet, root: int, iova: int, *, addr_mask: int,
                key: int, input_bits: int, result: bool = False) -> object:
    """The plan's loop, as :data:`~iommu_uapi.pgtable.common.FastPlan` defines it (None: the
    loop would leave for the full walk): the entry's fields and reads, or (``result``) the
    walk's result."""
    if not 0 <= iova < 1 << input_bits:
        return None
    table = root
    for shift, leaf_test, tmask, want, leaf in plan:
        desc = get(table, ZERO_QUADS)[(iova >> shift) & 0x1FF]
        if desc & leaf_test:
            lmask, lwant, oa_mask, offset, size, level, reads, perm = leaf
            if desc & lmask != lwant:
                return None
            if result:
                return WalkResult((desc & oa_mask) | (iova & offset), size, perm[desc & key],
                                  level, reads, 0, False)
            return (iova & ~offset, size, desc & oa_mask, perm[desc & key], False), reads
        if desc & tmask != want:
            return None
        table = desc & addr_mask
    return None


# -- any plan -------------------------------------------------------------------------------------

#: Tables of the synthetic plans live at pages 1..4 (page 0 and 5..7 are missing: read as zeros).
_ADDR = 0x7000
_BIT62 = 1 << 62
_masks = st.integers(0, 255) | st.integers(0, 255).map(lambda m: m | _BIT62)


@st.composite
def _plan(draw: st.DrawFn) -> tuple[FastPlan, int]:
    levels = draw(st.integers(1, 4))
    steps = []
    for i in range(levels):
        shift = 12 + 9 * (levels - 1 - i)
        size = 1 << shift
        tmask = draw(_masks)
        # mostly wants a table entry can meet; sometimes one no entry meets
        want = draw(st.one_of(st.builds(operator.and_, _masks, st.just(tmask)), _masks))
        leaf_test = draw(st.sampled_from([0, 1, 3, 0x80, 0x81]))
        leaf: FastLeaf = (0, 1, 0, 0, 0, 0, 0, ())
        if leaf_test:
            lmask = draw(_masks)
            lwant = draw(st.one_of(st.builds(operator.and_, _masks, st.just(lmask)), _masks))
            perm = tuple(draw(st.lists(st.integers(0, 15), min_size=8, max_size=8)))
            leaf = (lmask, lwant, _ADDR & -size, size - 1, size, levels - i, i + 1, perm)
        steps.append((shift, leaf_test, tmask, want, leaf))
    return tuple(steps), 12 + 9 * levels


def _page(number: int) -> int:
    return number << 12


@st.composite
def _pages(draw: st.DrawFn) -> dict[int, memoryview]:
    """Pages 1..4, each entry one of four values (a next table among pages 0..7, low bits,
    sometimes bit 62)."""
    pages = {}
    for page in range(1, 5):
        values = draw(st.lists(st.builds(operator.or_, st.integers(0, 7).map(_page), _masks),
                               min_size=4, max_size=4))
        pages[page << 12] = memoryview(array("Q", values * 128))
    return pages


@given(_plan(), _pages(), st.integers(0, 7),
       st.lists(st.integers(-3, (1 << 48) + 3), min_size=1, max_size=8))
def test_the_compiled_walk_is_the_plans_loop(planned: tuple[FastPlan, int],
                                             pages: dict[int, memoryview], root_page: int,
                                             iovas: list[int]) -> None:
    plan, input_bits = planned
    get = pages.get
    fields = compile_fields_walk(plan, addr_mask=_ADDR, key=7, input_bits=input_bits)(
        get, ZERO_QUADS)
    walk = compile_result_walk(plan, addr_mask=_ADDR, key=7, input_bits=input_bits)(
        get, ZERO_QUADS)
    top = 1 << input_bits
    within = [iova if iova < top + 4 else iova % (top + 4) for iova in iovas]
    for iova in [*within, 0, top - 1, top, -1, top + 0x1234, 1 << 64]:
        assert fields(root_page << 12, iova) == loop_fields(
            plan, get, root_page << 12, iova, addr_mask=_ADDR, key=7,
            input_bits=input_bits), (hex(iova), plan)
        assert walk(root_page << 12, iova) == loop_fields(
            plan, get, root_page << 12, iova, addr_mask=_ADDR, key=7, input_bits=input_bits,
            result=True), (hex(iova), plan)


def test_only_ints_reach_the_source() -> None:
    """A plan value that is not an int (a string, a bool, a float) is refused before any source
    is compiled."""
    good: FastLeaf = (3, 1, ADDR_MASK, 0xFFF, 4096, 1, 1, (0,) * 8)
    bad: Any
    for bad in ("__import__('os')", True, 1.0):
        with pytest.raises(TypeError):
            compile_fields_walk(((12, 3, 3, 3, (bad, *good[1:])),), addr_mask=ADDR_MASK, key=7,
                                input_bits=21)
        with pytest.raises(TypeError):
            compile_result_walk(((bad, 3, 3, 3, good),), addr_mask=ADDR_MASK, key=7,
                                input_bits=21)
        with pytest.raises(TypeError):
            compile_fields_walk(((12, 3, 3, 3, good),), addr_mask=bad, key=7, input_bits=21)
    with pytest.raises(TypeError):  # permissions a leaf key cannot index
        compile_fields_walk(((12, 3, 3, 3, (*good[:7], (1, 2))),), addr_mask=ADDR_MASK, key=7,
                            input_bits=21)


def test_a_geometry_is_compiled_once() -> None:
    """Walkers of one configuration share the compiled code (building another, or binding its
    walks, runs no exec); each binds its own memory's page view, once per access."""
    cfg = vtd_sl.SLConfig(aw=3, haw=46, sllps=1, slee=True)
    mem_a, mem_b = PhysicalMemory(), PhysicalMemory()
    a, b = vtd_sl.SLWalker(mem_a, cfg), vtd_sl.SLWalker(mem_b, cfg)
    a.fields_walk(1)
    misses = _compiled.cache_info().misses
    c = vtd_sl.SLWalker(PhysicalMemory(), cfg)
    for access in fast_plans(cfg):
        fields = a.fields_walk(access)
        assert fields is a.fields_walk(access) is not b.fields_walk(access)
        assert fields.__code__ is b.fields_walk(access).__code__ \
            is c.fields_walk(access).__code__
    assert _compiled.cache_info().misses == misses
    pt = vtd_sl.SLPageTable(cfg, mem_a)
    pt.map(0x20_0000, 0x4000_0000, 0x20_0000, Prot.READ)
    assert a.fields_walk(1)(pt.root, 0x20_1234) == ((0x20_0000, 0x20_0000, 0x4000_0000, 5,
                                                     False), 4)
    assert b.fields_walk(1)(pt.root, 0x20_1234) is None  # another memory: zeros there
    # a memory that counts reads has no page view, and an exec-only access no plan: the full
    # walk decides
    counted = vtd_sl.SLWalker(PhysicalMemory(count_reads=True), cfg)
    assert counted.fields_walk(1)(pt.root, 0x20_1234) is None
    assert 4 not in fast_plans(cfg) and a.fields_walk(4)(pt.root, 0x20_1234) is None


# -- VT-d second level, corrupted -----------------------------------------------------------------

R, W, X, PS, SNP, TM = SLEntry.R, SLEntry.W, SLEntry.X, SLEntry.PS, SLEntry.SNP, SLEntry.TM
#: (iova, size) of the leaves mapped (the 2 MiB and 1 GiB ones where SLLPS allows them).
_LEAVES = ((0x1_2345_6000, 0x1000), (0x4060_0000, 0x20_0000), (0x7F_C000_0000, 0x4000_0000))
#: What a corruption does to one entry: (clear, set); "haw" sets the first bit above HAW,
#: "outside" points the entry past the end of memory, "low" sets address bit 12.
_EDITS: dict[str, tuple[int, int | str]] = {
    "zero": (~0, 0), "no R": (R, 0), "no W": (W, 0), "no X": (X, 0), "no RW": (R | W, 0),
    "PS": (0, PS), "no PS": (PS, 0), "SNP": (0, SNP), "TM": (0, TM), "haw": (0, "haw"),
    "low": (0, 1 << 12), "outside": (ADDR_MASK, "outside"), "A/D": (0, 0x300),
}
_MEM_BITS = 40


def _entry_ptrs(mem: PhysicalMemory, pt: vtd_sl.SLPageTable, iova: int) -> list[int]:
    """The entries a walk of ``iova`` reads in the tables as built, root level first."""
    ptrs, table = [], pt.root
    for lv in pt.levels:
        ptr = table + (((iova >> lv.shift) & 0x1FF) << 3)
        ptrs.append(ptr)
        desc = mem.read64(ptr)
        if lv.level == 1 or desc & PS or not desc & (R | W):
            break
        table = desc & ADDR_MASK
    return ptrs


def _outcome(walk: Callable[[int, int, int], object], root: int, iova: int,
             access: int) -> object:
    return walk_outcome(partial(walk, root, iova, access))


def _as_fields(walker: vtd_sl.SLWalker) -> Callable[[int, int, int], Fields]:
    """``walker.walk``'s result as the IOTLB entry's fields and the reads."""
    def walk(root: int, iova: int, access: int) -> Fields:
        r = walker.walk(root, iova, access)
        size = r.page_size
        return (iova & -size, size, r.oa & -size, r.perm, r.global_), r.reads
    return walk


_configs = st.builds(vtd_sl.SLConfig, aw=st.sampled_from([1, 2, 3]), haw=st.sampled_from(
    [39, 46, 52]), sllps=st.integers(0, 3), sc=st.booleans(), dt=st.booleans(),
    slee=st.booleans())


@given(_configs, st.sampled_from([Prot.READ, Prot.WRITE, Prot.READ | Prot.WRITE,
                                  Prot.READ | Prot.WRITE | Prot.NOEXEC | Prot.CACHE]),
       st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4), st.sampled_from(list(_EDITS))),
                max_size=3),
       st.integers(0, (1 << 57) - 1))
def test_walk_and_walk_fields_are_the_full_walk_on_corrupted_tables(
        cfg: vtd_sl.SLConfig, prot: Prot, edits: list[tuple[int, int, str]], anywhere: int
) -> None:
    mem = PhysicalMemory(_MEM_BITS)
    pt = vtd_sl.SLPageTable(cfg, mem)
    top = 1 << cfg.input_bits
    leaves = [(iova, size) for iova, size in _LEAVES
              if size == 0x1000 or cfg.sllps & (1 if size == 0x20_0000 else 2)]
    for iova, size in leaves:
        pt.map(iova % top & -size, 0x8_0000_0000 % (1 << cfg.haw) & -size | size, size, prot)
    walker = vtd_sl.SLWalker(mem, cfg)
    full = vtd_sl.SLWalker(PlainMemory(mem), cfg)
    assert full.fields_walk(1)(pt.root, leaves[0][0] % top) is None
    clean_iova = leaves[0][0] % top
    assert walker.fields_walk(1 if prot & Prot.READ else 2)(pt.root, clean_iova) is not None
    paths = [_entry_ptrs(mem, pt, iova % top) for iova, _ in leaves]
    for which, level, name in edits:  # corrupt the entries of the leaves' walks
        ptrs = paths[which % len(paths)]
        ptr = ptrs[min(level, len(ptrs) - 1)]
        clear, set_ = _EDITS[name]
        bits = ((1 << cfg.haw) if cfg.haw < 52 else 0) if set_ == "haw" else (
            1 << (_MEM_BITS + 1) if set_ == "outside" else set_)
        assert isinstance(bits, int)
        mem.write64(ptr, (mem.read64(ptr) & ~clear) | bits)
    get = page_getter(inline_pages(mem))
    iovas = {0, top - 1, top, -1, anywhere % top, anywhere, 1 << 64}
    for iova, size in leaves:
        iova %= top
        iovas |= {iova, iova + size - 1, iova + 0x1000 * 3 + 8}
    for iova in sorted(iovas):
        for access in [*range(16), 16, -1]:
            got = _outcome(walker.walk_fields, pt.root, iova, access)
            assert got == _outcome(walker.full_fields, pt.root, iova, access) \
                == _outcome(full.walk_fields, pt.root, iova, access) \
                == _outcome(_as_fields(walker), pt.root, iova, access), (hex(iova), access)
            assert _outcome(walker.walk, pt.root, iova, access) == \
                _outcome(full.walk, pt.root, iova, access), (hex(iova), access)
            fast = walker.fields_walk(access)(pt.root, iova)
            plan = fast_plans(cfg).get(access)
            if plan is None:  # only the full walk can tell
                assert fast is None and (not access & 3 or not 0 <= access < 16)
                continue
            assert fast == loop_fields(plan, get, pt.root, iova, addr_mask=ADDR_MASK, key=7,
                                       input_bits=cfg.input_bits)
            assert fast is None or fast == got


def test_bad_access_is_refused_as_before() -> None:
    walker = vtd_sl.SLWalker(PhysicalMemory(), vtd_sl.SLConfig())
    with pytest.raises(UAPIError) as info:
        walker.walk_fields(0x1000, 0, 16)
    assert (info.value.errno, info.value.rule) == (errno.EINVAL, "pgtable.access")

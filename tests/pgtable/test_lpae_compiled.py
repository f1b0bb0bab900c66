"""The LPAE walker's compiled walks agree with the full walk, paths and stage-2 calls included.

Random builder mappings under stage-1 and stage-2 regimes of the 4 KiB, 16 KiB and 64 KiB
granules, with descriptors on the path flipped at random (and, nested, a stage-2 page lost or
made read-only), are walked by a walker over the page view (the compiled walks) and by one over
a memory that hides it (the full walk only): results, faults in every field, the table path a
walk cache is filled from and the stage-2 translations made (each once, in the same order) must
be equal, from the root and from every table the full walk passed. The generated source holds
nothing but the plan's integers.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iommu_uapi.memory import GuestMemory, PhysicalMemory
from iommu_uapi.pgtable import lpae
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.pgtable.lpae.compiled import INTO, NESTED, PLAIN, compile_walk
from iommu_uapi.pgtable.lpae.config import fast_plans, geometry
from iommu_uapi.pgtable.lpae.fast import walk_into
from iommu_uapi.testing.walks import PlainMemory, walk_outcome

from .test_fast_path import corrupt_path, corrupted_mapping
from .test_lpae_nested_fast import assert_nested_walks_agree, assert_walk_into_agrees

RW = Prot.READ | Prot.WRITE
PROTS = [Prot.READ, RW, RW | Prot.NOEXEC | Prot.PRIV]

PLAIN_CFGS = [
    lpae.LPAEConfig(), lpae.LPAEConfig(oas=40, hpd=True), lpae.LPAEConfig(t0sz=25),
    lpae.LPAEConfig(stage=2, t0sz=24, sl0=1),          # 40-bit IPA: level 1, 2 concatenated
    lpae.LPAEConfig(stage=2, t0sz=16, sl0=2),
    lpae.LPAEConfig(granule=16384, t0sz=17), lpae.LPAEConfig(granule=65536, t0sz=22),
    lpae.LPAEConfig(granule=65536, t0sz=16, hpd=True),
    lpae.LPAEConfig(stage=2, granule=16384, t0sz=24, sl0=1),
    lpae.LPAEConfig(stage=2, granule=65536, t0sz=18, sl0=1),
]


def _starts(full: lpae.LPAEWalker, root: int, iova: int, access: int, s2: Any = None
            ) -> list[tuple[int, int, int]]:
    """Where a walk cache may resume: the root, then below every table the full walk used, as
    ``(level, table, inherited controls)``."""
    path: list[tuple[int, int, int]] = []
    walk_outcome(lambda: full.walk_partial(root, full.walk_levels[0], iova, access, s2, path=path))
    return [(full.walk_levels[0], root, 0), *((lv + 1, t, c) for lv, t, c in path)]


@pytest.mark.parametrize("cfg", PLAIN_CFGS, ids=str)
@settings(max_examples=60)
@given(data=st.data(), access=st.integers(0, 15))
def test_compiled_plain_walks_agree_with_the_full_walk(cfg: lpae.LPAEConfig,
                                                       data: st.DataObject,
                                                       access: int) -> None:
    mem, pt, iova = corrupted_mapping(cfg, data)
    fast = lpae.LPAEWalker(mem, cfg)
    full = lpae.LPAEWalker(PlainMemory(mem), cfg)
    assert walk_outcome(lambda: fast.walk(pt.root, iova, access)) == \
        walk_outcome(lambda: full.walk(pt.root, iova, access))
    for level, table, inherited in _starts(full, pt.root, iova, access):
        # a path that already holds an entry: what the walk appends (or drops) is its own
        got_path: list[tuple[int, int, int]] = [(9, 9, 9)]
        want_path: list[tuple[int, int, int]] = [(9, 9, 9)]
        got = walk_outcome(partial(fast.walk_partial, table, level, iova, access,
                              inherited=inherited, path=got_path))
        want = walk_outcome(partial(full.walk_partial, table, level, iova, access,
                               inherited=inherited, path=want_path))
        assert (got, got_path) == (want, want_path)
        assert walk_outcome(partial(fast.walk_partial, table, level, iova, access,
                               inherited=inherited)) == want


RAM_IPA, RAM_SIZE, RAM_PA, DATA_IPA = 0x40_0000, 0x40_0000, 0x4000_0000, 0x1_0000
NESTS = [
    (lpae.LPAEConfig(), lpae.LPAEConfig(stage=2, t0sz=24, sl0=1)),
    (lpae.LPAEConfig(oas=40, hpd=True), lpae.LPAEConfig(stage=2, t0sz=16, sl0=2)),
    (lpae.LPAEConfig(granule=65536, t0sz=22), lpae.LPAEConfig(stage=2, t0sz=24, sl0=1)),
    (lpae.LPAEConfig(granule=65536, t0sz=16, hpd=True),
     lpae.LPAEConfig(stage=2, granule=65536, t0sz=18, sl0=1)),
    (lpae.LPAEConfig(granule=16384, t0sz=17),
     lpae.LPAEConfig(stage=2, granule=16384, t0sz=24, sl0=1)),
]


@pytest.mark.parametrize(("s1_cfg", "s2_cfg"), NESTS, ids=str)
@settings(max_examples=50)
@given(data=st.data(), access=st.integers(0, 15))
def test_compiled_nested_walks_agree_with_the_full_walk(s1_cfg: lpae.LPAEConfig,
                                                        s2_cfg: lpae.LPAEConfig,
                                                        data: st.DataObject,
                                                        access: int) -> None:
    host = PhysicalMemory()
    guest = GuestMemory(host)
    guest.add_ram(RAM_IPA, RAM_SIZE, RAM_PA)
    s2 = lpae.LPAEPageTable(s2_cfg, host)
    step = 0x20_0000 if s2_cfg.granule == 4096 else s2_cfg.granule
    for off in range(0, RAM_SIZE, step):
        s2.map(RAM_IPA + off, RAM_PA + off, step, RW)
    s2.map(DATA_IPA, 0x7_0000_0000, s2_cfg.granule, RW)
    s1 = lpae.LPAEPageTable(s1_cfg, guest)
    iova = data.draw(st.integers(0, (1 << s1_cfg.ias) - 1)) & -s1_cfg.granule
    s1.map(iova, DATA_IPA, s1_cfg.granule, data.draw(st.sampled_from(PROTS)))
    corrupt_path(guest, s1_cfg, s1.root, iova, data)
    if data.draw(st.booleans()):  # lose the data page at stage 2, or its write permission
        s2.unmap(DATA_IPA, s2_cfg.granule)
        if data.draw(st.booleans()):
            s2.map(DATA_IPA, 0x7_0000_0000, s2_cfg.granule, Prot.READ)
    iova |= data.draw(st.integers(0, s1_cfg.granule - 1))
    assert_nested_walks_agree(
        host, s1_cfg, s1.root, s2, s2_cfg, iova, access,
        lambda full, s2_full: [(lv, t, {"inherited": c})
                               for lv, t, c in _starts(full, s1.root, iova, access, s2_full)])


@pytest.mark.parametrize("cfg", [c for c in PLAIN_CFGS if c.stage == 2], ids=str)
@settings(max_examples=50)
@given(data=st.data(), access=st.integers(0, 15))
def test_compiled_walk_into_stores_the_full_walks_path(cfg: lpae.LPAEConfig,
                                                       data: st.DataObject,
                                                       access: int) -> None:
    """What ``walk_into`` returns is the full walk's result and last table, what it stores
    the full walk's path under its keys; where it leaves (None) it stored a part of it."""
    mem = PhysicalMemory()
    pt = lpae.LPAEPageTable(cfg, mem)
    geo = geometry(cfg)
    size = data.draw(st.sampled_from([lv.size for lv in geo.levels if lv.leaf_need != -1]))
    ipa = data.draw(st.integers(0, (1 << cfg.ias) - 1)) & -size
    pt.map(ipa, 0x4000_0000 & -size, size, data.draw(st.sampled_from(PROTS)))
    corrupt_path(mem, cfg, pt.root, ipa, data)
    ipa = data.draw(st.sampled_from([ipa | data.draw(st.integers(0, size - 1)), 1 << cfg.ias]))
    fast = lpae.LPAEWalker(mem, cfg)
    full = lpae.LPAEWalker(PlainMemory(mem), cfg)
    keys = {lv.level: (4 - lv.level, lv.shift) for lv in geo.levels[:-1]}
    starts = [(lv, t) for lv, t, _ in _starts(full, pt.root, ipa, access)]
    assert_walk_into_agrees(fast, full, starts, ipa, access, keys)
    for level, table in starts:  # from a misaligned table: no walk, nothing stored
        out: dict[tuple[int, int], int] = {}
        assert walk_into(fast, table | 8, level, ipa, access, keys, out) is None
        assert out == {}


def test_walkers_bind_their_compiled_walks_on_first_use_and_share_the_compiled_code() -> None:
    mem = PhysicalMemory()
    cfg = lpae.LPAEConfig(stage=2, t0sz=24, sl0=1)
    pt = lpae.LPAEPageTable(cfg, mem)
    pt.map(0x20_0000, 0x4000_0000, 4096, RW)
    walker = lpae.LPAEWalker(mem, cfg)
    assert all(not d for d in walker._plain_c.values())  # building binds nothing
    assert walker.walk(pt.root, 0x20_0123, 1).oa == 0x4000_0123
    assert list(walker._plain_c[1]) == [1]
    other = lpae.LPAEWalker(mem, cfg)
    plan = fast_plans(cfg)[1]
    factory = compile_walk(plan, PLAIN, stage=2, start=1, level=1, access=1,
                           addr_mask=geometry(cfg).addr_mask)
    assert compile_walk(plan, PLAIN, stage=2, start=1, level=1, access=1,
                        addr_mask=geometry(cfg).addr_mask) is factory
    assert other.walk(pt.root, 0x20_0123, 1) == walker.walk(pt.root, 0x20_0123, 1)
    assert other._plain_c[1][1] is not walker._plain_c[1][1]  # bound to each walker's view


@pytest.mark.parametrize("bad", [True, "1", 1.0, None])
def test_only_the_plans_integers_reach_the_source(bad: object) -> None:
    cfg = lpae.LPAEConfig()
    plan = fast_plans(cfg)[1]
    shift, imask, tmask, lmask, lwant, leaf = plan[-1]
    for broken in [((bad, imask, tmask, lmask, lwant, leaf),),
                   ((shift, imask, tmask, lmask, lwant, (*leaf[:5], (bad,) * 16)),)]:
        with pytest.raises(TypeError):
            compile_walk(broken, PLAIN, stage=1, start=3, level=3, access=1,  # type: ignore[arg-type]
                         addr_mask=geometry(cfg).addr_mask)
    with pytest.raises(TypeError):
        compile_walk(plan, NESTED, stage=1, start=0, level=0, access=1,
                     addr_mask=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        compile_walk(plan, INTO, stage=2, start=0, level=0, access=1, addr_mask=0)  # no keys
    with pytest.raises(ValueError):
        compile_walk(plan, 7, stage=1, start=0, level=0, access=1, addr_mask=0)

"""The SMMU's walk caches: a miss under warm walk caches reads only below the deepest cached
table descriptor, and each TLBI drops exactly the walk-cache entries hw-formats 2.6.2 names (a
table replaced under a leaf-only invalidation stays in use; after the right one, never)."""

from __future__ import annotations

import pytest
from backend_rig import RAM_HPA, RW, VA, Rig

from iommu_uapi.pgtable.lpae import LPAEConfig, LPAEWalker
from iommu_uapi.uapi.consts import FaultPerm
from iommu_uapi_smmu.cmds import (
    Command,
    TlbiNhAll,
    TlbiNhAsid,
    TlbiNhVa,
    TlbiNhVaa,
    TlbiNsnhAll,
    TlbiS2Ipa,
    TlbiS12Vmall,
)
from iommu_uapi_smmu.walkcache import SmmuWalkCaches

READ = int(FaultPerm.READ)


def _levels(granule: int, ias: int) -> int:
    g = granule.bit_length() - 1
    return -(-(ias - g) // (g - 3))


def _walks(rig: Rig) -> SmmuWalkCaches:
    return rig.backend.smmu.walks


def _replace_last_table(mem: object, walker: LPAEWalker, root: int, addr: int,
                        new_oa: int) -> int:
    """Copy the last-level table translating ``addr`` to a fresh page whose entry for ``addr``
    maps ``new_oa``, and point the parent descriptor at the copy (no invalidation). Returns the
    old table's address."""
    path: list[tuple[int, int, int]] = []
    walker.walk_partial(root, walker.walk_levels[0], addr, READ, path=path)
    granule = walker.cfg.granule
    g = granule.bit_length() - 1
    entries = granule // 8
    parent_level, old_table, _ = path[-1]
    parent = path[-2][1]
    slot = parent + ((addr >> (g + (g - 3) * (3 - parent_level))) & (entries - 1)) * 8
    new_table = mem.alloc(granule)  # type: ignore[attr-defined]
    for i in range(entries):
        mem.write64(new_table + 8 * i, mem.read64(old_table + 8 * i))  # type: ignore[attr-defined]
    leaf = new_table + ((addr >> g) & (entries - 1)) * 8
    oa_bits = ((1 << 48) - 1) & -granule
    mem.write64(leaf, (mem.read64(leaf) & ~oa_bits) | new_oa)  # type: ignore[attr-defined]
    mem.write64(slot, (mem.read64(slot) & ~oa_bits) | new_table)  # type: ignore[attr-defined]
    return old_table


# -- reads --------------------------------------------------------------------------------------


def test_nested_4k_cold_miss_reads_24_and_a_warm_miss_in_the_same_2m_region_reads_3() -> None:
    rig = Rig("linux-5.10")
    gpa = rig.gmap()
    gpa2 = rig.gmap(VA + 0x1000)
    assert gpa >> 21 == gpa2 >> 21  # both pages in one 2 MiB region of guest RAM
    rig.enter(0)
    walks = _walks(rig)
    walks.flush()
    cold = rig.iommu.translate(rig.dev2, VA + 0x123)
    assert cold.paddr == rig.hpa(gpa) + 0x123
    assert cold.table_reads == 4 + 4 * 4 + 4  # nothing cached: 24 reads
    vmid = rig.domain.data.vmid
    s1, s2 = walks.s1[4096], walks.s2[4096]
    # stage 1: the level-0, -1 and -2 table descriptors of VA under (VMID, ASID 0)
    assert sorted((tag, level) for tag, level, _ in s1) == [((vmid, 0), 2), ((vmid, 0), 3),
                                                           ((vmid, 0), 4)]
    assert {tag for tag, _, _ in s2} == {(vmid,)}
    warm = rig.iommu.translate(rig.dev2, VA + 0x1456)  # a TLB miss, another 4 KiB page
    assert warm.paddr == rig.hpa(gpa2) + 0x456
    # stage 1 resumes at the level-3 table: its IPA through stage 2 from the cached level-2
    # entry (1 read), the level-3 descriptor (1), its output IPA likewise (1)
    assert warm.table_reads == 3
    assert rig.iommu.translate(rig.dev2, VA + 0x1789).table_reads == 0  # TLB hit, untouched


def test_nested_miss_counts_one_lookup_per_walk_and_one_fill_per_descriptor() -> None:
    rig = Rig("linux-5.10")
    rig.gmap()
    rig.enter(0)
    walks = _walks(rig)
    rig.iommu.translate(rig.dev2, VA)  # the caches of the 4 KiB granule exist
    rig.iommu.iotlb.flush()
    walks.flush()
    s1, s2 = walks.s1[4096], walks.s2[4096]
    for c in (s1, s2):
        c.reset_counters()
    assert rig.iommu.translate(rig.dev2, VA).table_reads == 24
    # one lookup per walk: stage 1 once, stage 2 for four table IPAs and the output; the
    # stage-2 walks of one translation share three table descriptors, filled once each
    assert (s1.misses, s1.hits, s1.fills, len(s1)) == (1, 0, 3, 3)
    assert (s2.misses, s2.hits, s2.fills, len(s2)) == (5, 0, 3, 3)
    walks.stage1((rig.domain.data.vmid,))  # stage 1 cold again, stage 2 warm
    rig.iommu.iotlb.flush()
    # stage 1 reads its 4 descriptors, each of the 5 stage-2 walks its leaf alone
    assert rig.iommu.translate(rig.dev2, VA).table_reads == 4 + 5
    assert (s1.misses, s1.hits, s1.fills) == (2, 0, 6)
    assert (s2.misses, s2.hits, s2.fills) == (5, 5, 3)


@pytest.mark.parametrize("granule", [16384, 65536])
def test_16k_and_64k_granules_cache_per_granule(granule: int) -> None:
    rig = Rig("strict", granule=granule, s2_granule=granule, s2_ias=48)
    s1 = _levels(granule, 48)
    s2 = rig.backend.geometry.levels
    gpa = rig.gmap()
    gpa2 = rig.gmap(VA + granule)
    rig.enter(5)
    walks = _walks(rig)
    walks.flush()
    cold = rig.iommu.translate(rig.dev2, VA + 0x10, pasid=5)
    assert cold.paddr == rig.hpa(gpa) + 0x10
    assert cold.table_reads == s1 + s1 * s2 + s2
    assert set(walks.s1) == {granule} and set(walks.s2) == {granule}
    assert walks.s1[granule].granule == walks.s2[granule].granule == granule
    # s1 - 1 stage-1 table descriptors, one per level above the leaf
    assert sorted(level for _, level, _ in walks.s1[granule]) == list(range(2, s1 + 1))
    warm = rig.iommu.translate(rig.dev2, VA + granule + 0x20, pasid=5)
    assert warm.paddr == rig.hpa(gpa2) + 0x20
    assert (gpa >> (2 * granule.bit_length() - 5)) == (gpa2 >> (2 * granule.bit_length() - 5))
    assert warm.table_reads == 3


def test_a_stage_2_stream_walks_from_its_cached_level_2_entry() -> None:
    rig = Rig("linux-5.10", attach=False)
    _walks(rig).flush()
    assert rig.iommu.translate(rig.dev2, 0x5000).table_reads == 4
    assert rig.iommu.translate(rig.dev2, 0x6000).table_reads == 1
    rig.iommu.map(rig.domain, 0x20_7000, RAM_HPA + 0x7000, 4096, RW)  # the next 2 MiB
    # from the cached level-1 entry: the new level-2 descriptor and the leaf
    assert rig.iommu.translate(rig.dev2, 0x20_7000).table_reads == 2


# -- stale walks, stage 1 -----------------------------------------------------------------------


def _stage1_rig() -> tuple[Rig, int, int, int]:
    """A guest whose level-3 table for VA was replaced (VA now maps ``new``) after a walk
    cached it; the TLB entry is gone (leaf-only TLBI), the walk cache still holds the table."""
    rig = Rig("linux-5.10")
    old = rig.gmap()
    rig.enter(0)
    assert rig.iommu.translate(rig.dev2, VA).paddr == rig.hpa(old)
    new = rig.guest.alloc(4096)
    walker = LPAEWalker(rig.guest, LPAEConfig(stage=1, granule=4096, t0sz=16, oas=48))
    _replace_last_table(rig.guest, walker, rig.gpt.root, VA, new)
    vmid = rig.domain.data.vmid
    rig.backend.issue([TlbiNhVa(VMID=vmid, ASID=0, Addr=VA, Leaf=True)])
    return rig, vmid, rig.hpa(old), rig.hpa(new)


_S1_DROPS = {
    "NH_VA Leaf=0": lambda vmid: TlbiNhVa(VMID=vmid, ASID=0, Addr=VA, Leaf=False),
    "NH_VAA Leaf=0": lambda vmid: TlbiNhVaa(VMID=vmid, Addr=VA, Leaf=False),
    "NH_ASID": lambda vmid: TlbiNhAsid(VMID=vmid, ASID=0),
    "NH_ALL": lambda vmid: TlbiNhAll(VMID=vmid),
    "S12_VMALL": lambda vmid: TlbiS12Vmall(VMID=vmid),
    "NSNH_ALL": lambda vmid: TlbiNsnhAll(),
}

_S1_KEEPS = {
    "NH_VA Leaf=1": lambda vmid: TlbiNhVa(VMID=vmid, ASID=0, Addr=VA, Leaf=True),
    "NH_VAA Leaf=1": lambda vmid: TlbiNhVaa(VMID=vmid, Addr=VA, Leaf=True),
    "NH_VA Leaf=0 elsewhere": lambda vmid: TlbiNhVa(VMID=vmid, ASID=0, Addr=VA + 0x20_0000,
                                                    Leaf=False),
    "NH_VA Leaf=0 other ASID": lambda vmid: TlbiNhVa(VMID=vmid, ASID=1, Addr=VA, Leaf=False),
    "NH_ASID other ASID": lambda vmid: TlbiNhAsid(VMID=vmid, ASID=1),
    "NH_ALL other VMID": lambda vmid: TlbiNhAll(VMID=vmid + 1),
    "S2_IPA Leaf=0": lambda vmid: TlbiS2Ipa(VMID=vmid, IPA=0, Leaf=False),
}


@pytest.mark.parametrize("make", list(_S1_KEEPS.values()), ids=list(_S1_KEEPS))
def test_a_replaced_stage_1_table_stays_in_use_without_a_walk_invalidation(make: object) -> None:
    rig, vmid, old, _ = _stage1_rig()
    cmd: Command = make(vmid)  # type: ignore[operator]
    rig.backend.issue([cmd])
    for _ in range(2):
        t = rig.iommu.translate(rig.dev2, VA)
        assert t.paddr == old  # the old table, through the walk cache
        rig.backend.issue([TlbiNhVa(VMID=vmid, ASID=0, Addr=VA, Leaf=True)])


@pytest.mark.parametrize("make", list(_S1_DROPS.values()), ids=list(_S1_DROPS))
def test_a_stage_1_walk_invalidation_ends_the_replaced_table(make: object) -> None:
    rig, vmid, old, new = _stage1_rig()
    assert rig.iommu.translate(rig.dev2, VA).paddr == old  # stale until the command
    rig.backend.issue([TlbiNhVa(VMID=vmid, ASID=0, Addr=VA, Leaf=True)])
    cmd: Command = make(vmid)  # type: ignore[operator]
    rig.backend.issue([cmd])
    assert rig.iommu.translate(rig.dev2, VA).paddr == new
    assert rig.iommu.translate(rig.dev2, VA + 0x800).paddr == new + 0x800


# -- stale walks, stage 2 -----------------------------------------------------------------------


def _stage2_rig() -> tuple[Rig, int, int]:
    """A stage-2 stream whose level-3 table for IPA 0x5000 was replaced (0x5000 now maps
    ``new``) after a walk cached it, the TLB entry dropped by a leaf-only TLBI_S2_IPA."""
    rig = Rig("linux-5.10", attach=False)
    assert rig.iommu.translate(rig.dev2, 0x5000).paddr == RAM_HPA + 0x5000
    stream, _ = rig.backend.smmu.stream_config(rig.dev2.sid)
    assert stream.s2_cfg is not None
    walker = LPAEWalker(rig.memory, stream.s2_cfg)
    new = RAM_HPA + 0x10_0000
    _replace_last_table(rig.memory, walker, stream.ste.S2TTB, 0x5000, new)
    vmid = rig.domain.data.vmid
    rig.backend.issue([TlbiS2Ipa(VMID=vmid, IPA=0x5000, Leaf=True)])
    return rig, vmid, new


@pytest.mark.parametrize("make", [
    lambda vmid: TlbiS2Ipa(VMID=vmid, IPA=0x5000, Leaf=True),
    lambda vmid: TlbiS2Ipa(VMID=vmid, IPA=0x40_0000, Leaf=False),
    lambda vmid: TlbiNhAll(VMID=vmid),
    lambda vmid: TlbiNhVaa(VMID=vmid, Addr=0x5000, Leaf=False),
], ids=["S2_IPA Leaf=1", "S2_IPA Leaf=0 elsewhere", "NH_ALL", "NH_VAA Leaf=0"])
def test_a_replaced_stage_2_table_stays_in_use_without_a_walk_invalidation(
        make: object) -> None:
    rig, vmid, _ = _stage2_rig()
    rig.backend.issue([make(vmid)])  # type: ignore[operator]
    assert rig.iommu.translate(rig.dev2, 0x5000).paddr == RAM_HPA + 0x5000


@pytest.mark.parametrize("make", [
    lambda vmid: TlbiS2Ipa(VMID=vmid, IPA=0x5000, Leaf=False),
    lambda vmid: TlbiS12Vmall(VMID=vmid),
    lambda vmid: TlbiNsnhAll(),
], ids=["S2_IPA Leaf=0", "S12_VMALL", "NSNH_ALL"])
def test_a_stage_2_walk_invalidation_ends_the_replaced_table(make: object) -> None:
    rig, vmid, new = _stage2_rig()
    assert rig.iommu.translate(rig.dev2, 0x5000).paddr == RAM_HPA + 0x5000  # stale
    rig.backend.issue([TlbiS2Ipa(VMID=vmid, IPA=0x5000, Leaf=True)])
    rig.backend.issue([make(vmid)])  # type: ignore[operator]
    assert rig.iommu.translate(rig.dev2, 0x5000).paddr == new
    assert rig.iommu.translate(rig.dev2, 0x6000).paddr == RAM_HPA + 0x6000


def test_a_host_unmap_and_map_after_a_walk_translate_the_new_page() -> None:
    rig = Rig("linux-5.10", attach=False)
    assert rig.iommu.translate(rig.dev2, 0x5000).paddr == RAM_HPA + 0x5000
    rig.iommu.unmap(rig.domain, 0x6000, 4096)
    rig.iommu.map(rig.domain, 0x6000, RAM_HPA + 0x30_0000, 4096, RW)
    assert rig.iommu.translate(rig.dev2, 0x6000).paddr == RAM_HPA + 0x30_0000

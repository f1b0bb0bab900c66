"""The walk caches' nested translation agrees whether the walkers read inline or not.

Stage-1 tables in guest RAM over LPAE stage 2, every table and the data page under one
last-level stage-2 table (so the stage-2 walks after the first of a translation resume at its
last level, read inline), with a descriptor of either stage corrupted or a page lost at stage 2.
Walked through :meth:`SmmuWalkCaches.walk_stage1` twice (cold, then warm) with walkers over the
page view and with walkers over a memory that hides it (the full walks only): results, faults in
every field, the cached entries with their values and the counters must be equal.
"""

from __future__ import annotations

from functools import partial

from hypothesis import given, settings
from hypothesis import strategies as st

from iommu_uapi.caches import WalkCache
from iommu_uapi.memory import GuestMemory, PhysicalMemory
from iommu_uapi.pgtable import lpae
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.pgtable.lpae.config import geometry
from iommu_uapi.testing.walks import PlainMemory, lpae_path, walk_outcome
from iommu_uapi_smmu.walkcache import SmmuWalkCaches

RW = Prot.READ | Prot.WRITE
S1 = lpae.LPAEConfig(stage=1, granule=4096, t0sz=16, oas=48)
S2 = {"4 levels": lpae.LPAEConfig(stage=2, granule=4096, t0sz=16, sl0=2, oas=48),
      "concatenated": lpae.LPAEConfig(stage=2, granule=4096, t0sz=24, sl0=1, oas=48)}
DATA_IPA, RAM_IPA = 0x1000, 0x10_0000
TAG = (1, 7)
# descriptor bits a corruption flips: valid, table/page, AP, AF, nG, a low address bit,
# bits above the OAS, XN/PXN, the table controls
BITS = [0, 1, 6, 7, 10, 11, 13, 48, 53, 54, 59, 61, 62]
flips = st.lists(st.sampled_from(BITS), min_size=1, max_size=3).map(
    lambda bits: sum({1 << b for b in bits}))


def _contents(cache: WalkCache | None) -> object:
    if cache is None:
        return None
    held = sorted(cache)
    return (held, [cache.lookup(t, lv, p << cache.shifts[lv]) for t, lv, p in held],
            cache.hits, cache.misses, cache.fills)


@settings(max_examples=200)
@given(data=st.data(), s2_name=st.sampled_from(sorted(S2)), access=st.integers(0, 15))
def test_inline_and_full_walks_through_the_walk_caches_agree(data: st.DataObject, s2_name: str,
                                                             access: int) -> None:
    s2_cfg = S2[s2_name]
    host = PhysicalMemory()
    guest = GuestMemory(host)
    ram = guest.add_ram(RAM_IPA, 0x8_0000)
    s2 = lpae.LPAEPageTable(s2_cfg, host)
    for off in range(0, 0x8_0000, 4096):
        s2.map(RAM_IPA + off, ram + off, 4096, RW)
    s2.map(DATA_IPA, 0x7_0000_0000, 4096, RW)
    s1 = lpae.LPAEPageTable(S1, guest)
    iova = data.draw(st.integers(0, (1 << 48) - 1)) & ~0xFFF
    s1.map(iova, DATA_IPA, 4096, data.draw(st.sampled_from([RW, Prot.READ, RW | Prot.PRIV])))
    if data.draw(st.booleans()):  # corrupt one stage-1 descriptor on the path
        for ptr, desc in lpae_path(guest, S1, s1.root, iova):
            if data.draw(st.booleans()):
                guest.write64(ptr, desc ^ data.draw(flips))
                break
    if data.draw(st.booleans()):  # corrupt the last-level stage-2 descriptor of a page
        ipa = data.draw(st.sampled_from([DATA_IPA, s1.root & ~0xFFF, RAM_IPA + 0x7_F000]))
        geo2, table = geometry(s2_cfg), s2.root
        for lv in geo2.levels[:-1]:
            table = host.read64(table + (((ipa >> lv.shift) & lv.index_mask) << 3)) \
                & geo2.addr_mask
        ptr = table + (((ipa >> 12) & 0x1FF) << 3)
        host.write64(ptr, host.read64(ptr) ^ data.draw(flips))
    iova |= data.draw(st.integers(0, 0xFFF))
    got: list[object] = []
    for mem in (host, PlainMemory(host)):
        caches = SmmuWalkCaches()
        walker = lpae.LPAEWalker(mem, S1)  # type: ignore[arg-type]
        s2c = caches.stage2(lpae.LPAEWalker(mem, s2_cfg), s2.root, 1)  # type: ignore[arg-type]
        walk = partial(caches.walk_stage1, walker, s1.root, TAG, iova, iova, access, s2c)
        runs = [walk_outcome(walk) for _ in range(2)]
        got.append((runs, _contents(caches.s1.get(4096)), _contents(caches.s2.get(4096))))
    assert got[0] == got[1]

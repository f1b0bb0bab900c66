"""The VT-d caches as built from the core's: a PASID-cache invalidation makes the core forget the
translation contexts of that PASID alone, a device-selective context-cache invalidation drops
the source ids its function mask covers, and a finite preset bounds every cache."""

from __future__ import annotations

from vtd_rig import GVA, Rig

from iommu_uapi.caches import preset
from iommu_uapi_vtd.caches import ContextCache, VtdCaches
from iommu_uapi_vtd.qi import PasidCacheInv


def test_a_pasid_cache_invalidation_forgets_that_pasids_contexts_only() -> None:
    rig = Rig()
    p, q = rig.bind(), rig.bind()
    for pasid in (p, q):
        rig.iommu.translate(rig.dev, GVA, pasid=pasid)
    rig.b.run([PasidCacheInv(G=1, DID=rig.domain.data.did, PASID=p)])
    rig.iommu.iotlb.flush()
    pc = rig.b.caches.pasid
    # p's context is rebuilt: its PASID entry is read from memory again (2 reads, a miss) ...
    misses, hits = pc.misses, pc.hits
    assert rig.iommu.translate(rig.dev, GVA, pasid=p).config_reads == 2
    assert (pc.misses, pc.hits) == (misses + 1, hits)
    # ... while q's context was kept: not even the PASID cache is consulted
    assert rig.iommu.translate(rig.dev, GVA, pasid=q).config_reads == 0
    assert (pc.misses, pc.hits) == (misses + 1, hits)


def test_function_mask_selects_the_source_ids_it_ignores_bits_of() -> None:
    cc = ContextCache()
    for sid in range(0x300, 0x310):
        cc.fill(sid, None)
    assert cc.invalidate_device(0x305, 0) == 1 and 0x305 not in cc
    assert cc.invalidate_device(0x302, 1) == 2 and not {0x302, 0x306} & set(cc)  # bit 2
    assert cc.invalidate_device(0x30A, 3) == 8 and not {0x308, 0x30F} & set(cc)  # bits 2:0
    assert sorted(cc) == [0x300, 0x301, 0x303, 0x304, 0x307]


def test_the_gem5_preset_bounds_every_cache() -> None:
    caches = VtdCaches(preset=preset("gem5-smmuv3"))
    for sid in range(100):
        caches.context.fill(sid, None)
        caches.pasid.fill(sid, 1, None, False)
        caches.fl_psc.fill((1, sid), 4, sid << 39, 0)
    # 64 entries in 4-way sets: at most 64 stay, and a set never holds more than 4
    assert len(caches.context) == 64 and caches.context.evictions == 36
    assert len(caches.pasid) <= 64 and caches.pasid.evictions == 100 - len(caches.pasid)
    assert len(caches.fl_psc) == 4          # gem5's walk_S1L0: 4 entries for the top level
    assert caches.iotlb.capacity == 2048

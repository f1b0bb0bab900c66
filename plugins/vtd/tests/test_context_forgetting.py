"""Invalidations of the configuration caches forget exactly the core's translation contexts built
from the entries they drop: a PASID-cache invalidation of (DID, PASID) those of that PASID entry,
a device-selective context-cache invalidation those of that device; unbind only the unbound
PASID's."""

from __future__ import annotations

from vtd_rig import Rig, bind_data

from iommu_uapi.device import Device
from iommu_uapi_vtd.qi import ContextCacheInv, PasidCacheInv

GVA = 0x7000_0000


def used(rig: Rig, n: int, dev: Device | None = None) -> list[int]:
    """``n`` PASIDs bound on ``dev`` and translated once; plus a DMA without PASID."""
    dev = dev or rig.dev
    pasids = [rig.bind(dev=dev) for _ in range(n)]
    for pasid in pasids:
        rig.iommu.translate(dev, GVA, pasid=pasid)
    rig.iommu.translate(dev, 0x1000)
    return pasids


def test_pasid_cache_invalidation_forgets_that_pasid_entrys_contexts_only() -> None:
    rig = Rig()
    dev2 = rig.iommu.add_device(0x0308)
    rig.iommu.attach_device(rig.domain, dev2)
    pasids = used(rig, 3)
    shared = pasids[1]
    rig.iommu.uapi_sva_bind_gpasid(rig.domain, dev2, bind_data(shared, rig.gpt.root).to_bytes())
    rig.iommu.translate(dev2, GVA, pasid=shared)
    did = rig.domain.data.did
    rig.b.run([PasidCacheInv(G=1, DID=did, PASID=shared)])
    assert set(rig.iommu.contexts_of(rig.dev.sid)) == {None, pasids[0], pasids[2]}
    assert set(rig.iommu.contexts_of(dev2.sid)) == set()
    rig.b.run([PasidCacheInv(G=1, DID=did + 1, PASID=pasids[0])])  # another domain's entry
    assert pasids[0] in rig.iommu.contexts_of(rig.dev.sid)


def test_the_rid_pasid_entry_carries_the_context_of_requests_without_pasid() -> None:
    rig = Rig()
    pasids = used(rig, 2)
    rig.b.run([PasidCacheInv(G=1, DID=rig.domain.data.did, PASID=0)])  # RID_PASID
    assert set(rig.iommu.contexts_of(rig.dev.sid)) == set(pasids)


def test_device_selective_context_invalidation_forgets_that_device_only() -> None:
    rig = Rig()
    dev2 = rig.iommu.add_device(0x0308)
    rig.iommu.attach_device(rig.domain, dev2)
    used(rig, 2)
    rig.iommu.translate(dev2, 0x1000)
    rig.b.run([ContextCacheInv(G=3, DID=rig.domain.data.did, SID=dev2.sid)])
    assert rig.iommu.contexts_of(dev2.sid) == {}
    assert len(rig.iommu.contexts_of(rig.dev.sid)) == 3


def test_unbind_forgets_only_the_unbound_pasid() -> None:
    rig = Rig()
    pasids = used(rig, 4)
    rig.iommu.sva_unbind_gpasid(rig.domain, rig.dev, pasids[2])
    assert set(rig.iommu.contexts_of(rig.dev.sid)) == {None, *pasids[:2], pasids[3]}
    assert rig.iommu.translate(rig.dev, GVA, pasid=pasids[3]).table_reads == 0


"""A finite IOTLB behind the façade: an LRU cache sees the hits of ``IOMMU.translate`` (its hot
bucket is withheld), so a cyclic DMA walk over K pages that fits hits (T - K) of T times, one
that does not fit never hits, and a strict ring buffer never hits."""

from __future__ import annotations

import pytest
from minibackend import MiniBackend

from iommu_uapi.caches import TLB
from iommu_uapi.device import Device, Domain
from iommu_uapi.iommu import IOMMU
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable.common import Prot

K, T = 16, 160
RW = Prot.READ | Prot.WRITE


def host(tlb: TLB) -> tuple[IOMMU, Device, Domain]:
    mem = PhysicalMemory()
    iommu = IOMMU(MiniBackend(mem), memory=mem, iotlb=tlb)
    dev = iommu.add_device(0x0300)
    domain = iommu.domain_alloc()
    iommu.attach_device(domain, dev)
    return iommu, dev, domain


def cyclic(tlb: TLB) -> int:
    iommu, dev, domain = host(tlb)
    for vpn in range(K):
        iommu.map(domain, vpn << 12, 0x10_0000 + (vpn << 12), 0x1000, RW)
    for i in range(T):
        iommu.translate(dev, (i % K) << 12)
    return tlb.hits


@pytest.mark.parametrize(("n", "hits"), [(K - 1, 0), (K, T - K), (4 * K, T - K)])
def test_lru_iotlb_sees_the_datapaths_hits(n: int, hits: int) -> None:
    assert cyclic(TLB(n, policy="lru")) == hits


def test_without_lru_hits_stay_on_the_hot_bucket() -> None:
    assert cyclic(TLB()) == T - K
    assert cyclic(TLB(K - 1, policy="fifo")) == 0


@pytest.mark.parametrize("n", [None, 1, 64])
def test_a_ring_buffer_of_single_dmas_never_hits(n: int | None) -> None:
    tlb = TLB(n, policy="lru")
    iommu, dev, domain = host(tlb)
    for i in range(64):
        iova = (i % 8) << 12
        iommu.map(domain, iova, 0x20_0000 + (i << 12), 0x1000, RW)
        iommu.translate(dev, iova)
        iommu.unmap(domain, iova, 0x1000)
    assert tlb.hits == 0 and tlb.misses == 64


@pytest.mark.parametrize(("policy", "last_hits"), [("lru", True), ("fifo", False)])
def test_a_hit_through_translate_keeps_the_page_young_under_lru(policy: str,
                                                               last_hits: bool) -> None:
    tlb = TLB(2, policy=policy)
    iommu, dev, domain = host(tlb)
    for vpn in range(3):
        iommu.map(domain, vpn << 12, 0x10_0000 + (vpn << 12), 0x1000, RW)
    for vpn in (0, 1, 0):
        iommu.translate(dev, vpn << 12)
    assert tlb.hits == 1
    iommu.translate(dev, 2 << 12)   # evicts 1 (LRU) or 0 (FIFO)
    iommu.translate(dev, 0)
    assert tlb.hits == 1 + last_hits

"""Range map and unmap on VT-d: the façade cuts a range into the largest pages that fit, and an
unmapped range is flushed with one page-selective invalidation of the smallest aligned block
that holds it (domain-selective beyond MAMV), not one per page."""

from __future__ import annotations

import errno

import pytest
from vtd_rig import Rig, errno_of

from iommu_uapi.iommu import IOMMU
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.translation import TranslationFault
from iommu_uapi_vtd.qi import DevTlbInv, IotlbGranularity, IotlbInv

RW = 3
IOVA = 0x4000_0000
PA = 0x2_0000_0000
M2 = 0x20_0000


def iotlb_flushes(rig: Rig, since: int) -> list[IotlbInv]:
    return [d for d in rig.submitted(since) if isinstance(d, IotlbInv)]


def test_map_cuts_a_range_into_the_largest_pages_that_fit() -> None:
    rig = Rig()
    iommu, dev = rig.iommu, rig.dev
    # 4 KiB below the 2 MiB boundary, one 2 MiB page, then 8 KiB
    start = IOVA + M2 - 0x1000
    iommu.map(rig.domain, start, PA + M2 - 0x1000, 0x1000 + M2 + 0x2000, RW)
    sizes = [iommu.translate(dev, a).page_size for a in (start, IOVA + M2, IOVA + 2 * M2 + 0x1000)]
    assert sizes == [0x1000, M2, 0x1000]
    assert iommu.translate(dev, IOVA + M2 + 0x12_3456).paddr == PA + M2 + 0x12_3456
    assert iommu.iova_to_phys(rig.domain, IOVA + 2 * M2 + 0x1008) == PA + 2 * M2 + 0x1008


def test_map_pages_and_unmap_pages_with_one_range_flush() -> None:
    rig = Rig()
    iommu = rig.iommu
    assert iommu.map_pages(rig.domain, IOVA, PA, 0x1000, 16, RW) == 0x1_0000
    for off in range(0, 0x1_0000, 0x1000):
        assert iommu.translate(rig.dev, IOVA + off).paddr == PA + off
    n = rig.b.queue.executed
    assert iommu.unmap_pages(rig.domain, IOVA + 0x8000, 0x1000, 8) == 0x8000
    assert iotlb_flushes(rig, n) == [IotlbInv(G=IotlbGranularity.PAGE, DID=rig.domain.data.did,
                                              DW=rig.b.cfg.dwd, DR=rig.b.cfg.drd, AM=3,
                                              ADDR=IOVA + 0x8000)]
    for off in range(0x8000, 0x1_0000, 0x1000):
        with pytest.raises(TranslationFault):
            iommu.translate(rig.dev, IOVA + off)
    assert iommu.translate(rig.dev, IOVA + 0x7000).paddr == PA + 0x7000


def test_an_unaligned_range_is_flushed_by_the_block_that_holds_both_ends() -> None:
    rig = Rig()
    iommu = rig.iommu
    iommu.map(rig.domain, IOVA, PA, 0x8000, RW)
    n = rig.b.queue.executed
    # pages 3 and 4 straddle a 4-page boundary: the smallest aligned block holding both is 8
    assert iommu.unmap(rig.domain, IOVA + 0x3000, 0x2000) == 0x2000
    (flush,) = iotlb_flushes(rig, n)
    assert (flush.G, flush.AM, flush.ADDR) == (IotlbGranularity.PAGE, 3, IOVA)


def test_a_range_beyond_mamv_is_flushed_domain_selectively() -> None:
    rig = Rig()
    iommu, mamv = rig.iommu, rig.b.cfg.mamv
    pages = 2 << mamv
    iommu.map_pages(rig.domain, IOVA, PA, 0x1000, pages, RW)
    iommu.translate(rig.dev, IOVA)
    n = rig.b.queue.executed
    assert iommu.unmap(rig.domain, IOVA, pages << 12) == pages << 12
    assert [f.G for f in iotlb_flushes(rig, n)] == [IotlbGranularity.DOMAIN]
    assert len(iommu.iotlb) == 0


def test_ats_devices_get_one_device_tlb_flush_per_range() -> None:
    rig = Rig(ats=True)
    iommu = rig.iommu
    iommu.map_pages(rig.domain, IOVA, PA, 0x1000, 64, RW)
    n = rig.b.queue.executed
    iommu.unmap_pages(rig.domain, IOVA, 0x1000, 64)
    assert len([d for d in rig.submitted(n) if isinstance(d, DevTlbInv)]) == 1
    assert len(iotlb_flushes(rig, n)) == 1


def test_a_refused_range_map_changes_nothing() -> None:
    rig = Rig()
    iommu = rig.iommu
    iommu.map(rig.domain, IOVA + M2 + 0x5000, PA, 0x1000, RW)
    before = rig.mem.allocated_bytes
    # the range would need a 2 MiB page, then 4 KiB pages up to the one already mapped
    assert errno_of(lambda: iommu.map(rig.domain, IOVA, PA, M2 + 0x8000, RW)).errno == (
        errno.EEXIST)
    assert iommu.iova_to_phys(rig.domain, IOVA) == 0
    assert iommu.iova_to_phys(rig.domain, IOVA + M2) == 0
    assert rig.mem.allocated_bytes == before


@pytest.mark.parametrize(("call", "rule"), [
    (lambda i, d: i.map(d, IOVA + 0x800, PA, 0x1000, RW), "map.align"),
    (lambda i, d: i.map(d, IOVA, PA, 0, RW), "map.align"),
    (lambda i, d: i.unmap(d, IOVA, 0x1800), "unmap.align"),
    (lambda i, d: i.map_pages(d, IOVA, PA, 0x3000, 1, RW), "map.pages"),
    (lambda i, d: i.map_pages(d, IOVA, PA + 0x1000, M2, 1, RW), "map.pages"),
    (lambda i, d: i.map_pages(d, IOVA, PA, 0x1000, 0, RW), "map.pages"),
    (lambda i, d: i.unmap_pages(d, IOVA + 0x1000, M2, 1), "unmap.pages"),
    (lambda i, d: i.map_pages(d, IOVA, PA, 0x1000, -1, RW), "map.u64"),
])
def test_range_calls_refuse_what_the_page_sizes_do_not_allow(call: object, rule: str) -> None:
    iommu = IOMMU("vtd", memory=PhysicalMemory())
    domain = iommu.domain_alloc()
    err = errno_of(lambda: call(iommu, domain))  # type: ignore[operator]
    assert (err.errno, err.rule) == (errno.EINVAL, rule)

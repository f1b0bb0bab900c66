"""The host's single-page map and unmap and the unmap's flush as the façade and the queue run
them in the common case: what they leave in the tables, the caches and the invalidation queue is
what the general paths leave (the same queue memory, IQH/IQT and log as the general queue
executing the same descriptors), and after an unmap returns nothing it removed is reachable."""

from __future__ import annotations

import errno

import pytest
from vtd_rig import GUEST_RAM, GVA, Rig

from iommu_uapi import PhysicalMemory, UAPIError
from iommu_uapi.iommu import IOMMU
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.translation import TranslationFault
from iommu_uapi_vtd.backend import VtdBackend
from iommu_uapi_vtd.caches import VtdCaches
from iommu_uapi_vtd.iq import InvalidationQueue
from iommu_uapi_vtd.qi import DevTlbInv, IotlbInv

RW = int(Prot.READ | Prot.WRITE)
BASE = 0x1_0000_0000
PA = 0x8_0000_0000


class Seen:
    """An observer that records the hooks called (its ``before`` turns the direct calls off)."""

    def __init__(self) -> None:
        self.hooks: list[str] = []

    def before(self, hook: str, kwargs: dict[str, object]) -> None:
        self.hooks.append(hook)


def host(*, ats: bool, observed: bool = False) -> tuple[IOMMU, object, object, Seen]:
    seen = Seen()
    iommu = IOMMU("vtd", memory=PhysicalMemory(), observers=[seen] if observed else [])
    dev = iommu.add_device(0x0300, ats=ats)
    domain = iommu.domain_alloc()
    iommu.attach_device(domain, dev)
    return iommu, dev, domain, seen


def ring_cycles(iommu: IOMMU, dev: object, domain: object, count: int) -> None:
    """The NIC ring: map one page, one DMA (IOTLB and device-TLB fill), unmap; a new IOVA each
    cycle. After each unmap no cache holds the page and a DMA to it faults."""
    for i in range(count):
        iova = BASE + (i << 12)
        iommu.map(domain, iova, PA + (i << 12), 0x1000, RW)  # type: ignore[arg-type]
        assert iommu.translate(dev, iova + 0x10).paddr == PA + (i << 12) + 0x10  # type: ignore[arg-type]
        assert len(iommu.iotlb) == 1
        assert iommu.unmap(domain, iova, 0x1000) == 0x1000  # type: ignore[arg-type]
        assert len(iommu.iotlb) == 0
        atc = dev.atc  # type: ignore[attr-defined]
        assert atc is None or len(atc) == 0
        assert iommu.iova_to_phys(domain, iova) == 0  # type: ignore[arg-type]
        with pytest.raises(TranslationFault):
            iommu.translate(dev, iova)  # type: ignore[arg-type]


def general_replay(backend: VtdBackend) -> InvalidationQueue:
    """The general queue (submit, then the hardware's fetch, decode and execute of each image)
    run on the descriptors ``backend``'s queue executed, one batch each, in order."""
    q = backend.queue
    general = InvalidationQueue(PhysicalMemory(), backend.cfg, VtdCaches())
    assert general.size == q.size and general.stride == q.stride
    for record in q.log:
        general.submit([record.descriptor])
        assert general.process() == 1
    return general


@pytest.mark.parametrize("ats", [False, True])
def test_ring_cycles_leave_the_queue_as_the_general_queue_does(ats: bool) -> None:
    iommu, dev, domain, _ = host(ats=ats)
    backend = iommu.backend
    assert isinstance(backend, VtdBackend)
    q = backend.queue
    count = q.size // q.stride + 5  # around the ring more than once
    ring_cycles(iommu, dev, domain, count)
    flushes = [r.descriptor for r in q.log if isinstance(r.descriptor, IotlbInv)
               and r.descriptor.G == 3]
    assert [d.ADDR for d in flushes[-count:]] == [BASE + (i << 12) for i in range(count)]
    assert all(d.AM == 0 and not d.IH for d in flushes)
    if ats:
        assert sum(isinstance(r.descriptor, DevTlbInv) for r in q.log) >= count
    assert not q.lost and q.executed == len(q.log)
    general = general_replay(backend)
    assert (q.head, q.tail, q.iqt) == (general.head, general.tail, general.iqt)
    assert backend.memory.read(q.base, q.size) == general.mem.read(general.base, general.size)
    assert [(r.offset, r.descriptor) for r in q.log] == \
        [(r.offset, r.descriptor) for r in general.log]
    # each page flush removed the one IOTLB entry the DMA filled
    assert all(r.dropped == 1 for r in q.log if r.descriptor in flushes)


def test_observed_map_and_unmap_take_the_hooks_and_do_the_same() -> None:
    """With an observer watching hook calls the façade calls the hooks through the plugin
    manager; the tables, caches and queue end up as without it."""
    fast, fdev, fdomain, _ = host(ats=True)
    slow, sdev, sdomain, seen = host(ats=True, observed=True)
    ring_cycles(fast, fdev, fdomain, 20)
    ring_cycles(slow, sdev, sdomain, 20)
    assert seen.hooks.count("iommu_map") == 20 and seen.hooks.count("iommu_unmap") == 20
    # unobserved, the façade took the domain's own one-page paths
    assert fdomain.map_one is not None and fdomain.unmap_one is not None  # type: ignore[attr-defined]
    # the driver's max_addr followed each unmap of the highest page alike
    assert fdomain.data.max_addr == sdomain.data.max_addr == BASE + (19 << 12)  # type: ignore[attr-defined]
    fq, sq = fast.backend.queue, slow.backend.queue  # type: ignore[attr-defined]
    assert [r.descriptor for r in fq.log] == [r.descriptor for r in sq.log]
    assert (fq.head, fq.tail) == (sq.head, sq.tail)


def test_one_page_refusals_change_nothing() -> None:
    iommu, _, domain, _ = host(ats=False)
    iommu.map(domain, BASE, PA, 0x1000, RW)  # type: ignore[arg-type]
    backend = iommu.backend
    assert isinstance(backend, VtdBackend)
    executed = backend.queue.executed
    cases = [
        lambda: iommu.map(domain, BASE, PA, 0x1000, RW),               # overlap
        lambda: iommu.map(domain, BASE + 0x800, PA, 0x1000, RW),       # misaligned
        lambda: iommu.map(domain, -0x1000, PA, 0x1000, RW),            # not a u64
        lambda: iommu.map(domain, 1 << 60, PA, 0x1000, RW),            # beyond the width
        lambda: iommu.unmap(domain, BASE + 0x800, 0x1000),             # misaligned
    ]
    refused = []
    for case in cases:
        with pytest.raises(UAPIError) as info:
            case()
        refused.append(info.value.errno)
    assert refused == [errno.EEXIST, errno.EINVAL, errno.EINVAL, errno.EINVAL, errno.EINVAL]
    assert iommu.iova_to_phys(domain, BASE) == PA  # type: ignore[arg-type]
    assert backend.queue.executed == executed


def test_host_unmap_flush_drops_the_first_level_paging_structures() -> None:
    """The page-selective flush of a host unmap (IH clear) drops the domain's first-level
    paging-structure cache: a stage-2 change may move any guest table."""
    rig = Rig()
    p = rig.bind()
    rig.iommu.translate(rig.dev, GVA, pasid=p)
    assert len(rig.b.caches.fl_psc) == 3
    since = rig.b.queue.executed
    spare = 0x1F_F000  # the last page of guest RAM: no guest table lives there
    assert rig.iommu.unmap(rig.domain, spare, 0x1000) == 0x1000
    sent = rig.submitted(since)
    cfg = rig.b.cfg
    assert sent == [IotlbInv(G=3, DID=rig.domain.data.did, DW=cfg.dwd, DR=cfg.drd, AM=0,
                             IH=False, ADDR=spare)]
    assert len(rig.b.caches.fl_psc) == 0 and len(rig.iommu.iotlb) == 0
    assert rig.iommu.translate(rig.dev, GVA, pasid=p).table_reads == 24
    rig.iommu.map(rig.domain, spare, GUEST_RAM + spare, 0x1000, RW)


def test_an_ats_device_attached_after_unmaps_began_gets_its_device_tlb_flushed() -> None:
    """The unmap's flush follows the domain's devices: an ATS device attached once unmaps have
    run has its device TLB invalidated by every later unmap (nothing unmapped stays reachable
    through its ATC); once it is detached the flush is the IOTLB invalidation alone again. The
    queue ends as the general queue leaves it."""
    iommu, plain, domain, _ = host(ats=False)
    backend = iommu.backend
    assert isinstance(backend, VtdBackend)
    q = backend.queue
    ring_cycles(iommu, plain, domain, 3)
    assert not any(isinstance(r.descriptor, DevTlbInv) for r in q.log)
    ats = iommu.add_device(0x0308, ats=True)
    iommu.attach_device(domain, ats)  # type: ignore[arg-type]
    iova = BASE + (64 << 12)
    iommu.map(domain, iova, PA, 0x1000, RW)  # type: ignore[arg-type]
    assert iommu.translate(ats, iova).paddr == PA  # type: ignore[arg-type]
    assert ats.atc is not None and len(ats.atc) == 1
    before = len(q.log)
    assert iommu.unmap(domain, iova, 0x1000) == 0x1000  # type: ignore[arg-type]
    assert len(ats.atc) == 0 and len(iommu.iotlb) == 0
    assert [r.descriptor.SID for r in list(q.log)[before:]
            if isinstance(r.descriptor, DevTlbInv)] == [0x0308]
    with pytest.raises(TranslationFault):
        iommu.translate(ats, iova)  # type: ignore[arg-type]
    ring_cycles(iommu, ats, domain, 2)
    iommu.detach_device(domain, ats)  # type: ignore[arg-type]
    before = len(q.log)
    ring_cycles(iommu, plain, domain, 2)
    assert [type(r.descriptor) for r in list(q.log)[before:]] == [IotlbInv, IotlbInv]
    general = general_replay(backend)
    assert (q.head, q.tail, q.iqt) == (general.head, general.tail, general.iqt)
    assert backend.memory.read(q.base, q.size) == general.mem.read(general.base, general.size)
    assert [(r.offset, r.descriptor) for r in q.log] == \
        [(r.offset, r.descriptor) for r in general.log]


def test_an_ats_device_hits_its_device_tlb_first_and_counts_there() -> None:
    """A DMA of an ATS device is answered by its device TLB, counted there and not in the
    IOTLB; once the page left the device TLB (a device-TLB invalidation) the IOTLB answers and
    refills it; once unmapped, neither does."""
    iommu, dev, domain, _ = host(ats=True)
    atc = dev.atc  # type: ignore[attr-defined]
    iova = BASE + (7 << 12)
    iommu.map(domain, iova, PA, 0x1000, RW)  # type: ignore[arg-type]
    first = iommu.translate(dev, iova)  # type: ignore[arg-type]
    assert (atc.misses, atc.fills, iommu.iotlb.misses) == (1, 1, 1)
    for n in range(1, 4):
        hit = iommu.translate(dev, iova + 0x10 * n, access=2)  # type: ignore[arg-type]
        assert hit.paddr == PA + 0x10 * n and hit.table_reads == 0
        assert (atc.hits, iommu.iotlb.hits) == (n, 0)
    assert first.paddr == PA
    assert atc.invalidate((None,), iova, 0x1000) == 1  # the entries requested without PASID
    assert iommu.translate(dev, iova).paddr == PA  # type: ignore[arg-type]
    assert (atc.hits, atc.misses, iommu.iotlb.hits, len(atc)) == (3, 2, 1, 1)
    assert iommu.unmap(domain, iova, 0x1000) == 0x1000  # type: ignore[arg-type]
    with pytest.raises(TranslationFault):
        iommu.translate(dev, iova)  # type: ignore[arg-type]
    assert (atc.hits, iommu.iotlb.hits) == (3, 1)

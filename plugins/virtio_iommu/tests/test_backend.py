"""The façade's operations on virtio-iommu: requests as bytes, statuses as errnos and rules,
translations through the core's IOTLB, and failure reporting by status."""

from __future__ import annotations

import errno

import pytest

from iommu_uapi.errors import FeatureError, UAPIError
from iommu_uapi.features import UNREPORTABLE_OPERATIONS, FailureReport
from iommu_uapi.iommu import IOMMU
from iommu_uapi.translation import TranslationFault
from iommu_uapi_virtio_iommu.backend import VirtioBackend
from iommu_uapi_virtio_iommu.layouts import RequestType
from iommu_uapi_virtio_iommu.probe import ReservedRegion, ResvSubtype

RW = 3


@pytest.fixture(params=["spec", "qemu"])
def iommu(request: pytest.FixtureRequest) -> IOMMU:
    return IOMMU("virtio-iommu", device_profile=request.param)


def _backend(iommu: IOMMU) -> VirtioBackend:
    backend = iommu.backend
    assert isinstance(backend, VirtioBackend)
    return backend


def test_attach_map_unmap_send_requests_and_translate(iommu: IOMMU) -> None:
    dev = iommu.add_device(0x10)
    dom = iommu.domain_alloc()
    iommu.attach_device(dom, dev)
    iommu.map(dom, 0x4000_0000, 0x8_0000_0000, 0x2000, RW)
    backend = _backend(iommu)
    assert backend.queue.sent[RequestType.ATTACH] == 1
    assert backend.queue.sent[RequestType.MAP] == 1
    vid = dom.data.id
    assert [(m.virt_start, m.virt_end, m.phys_start) for m in backend.device.mappings(vid)] \
        == [(0x4000_0000, 0x4000_1FFF, 0x8_0000_0000)]
    tr = iommu.translate(dev, 0x4000_1234, access=2)
    assert tr.paddr == 0x8_0000_1234 and tr.page_size == 0x2000
    hits = iommu.iotlb.hits
    assert iommu.translate(dev, 0x4000_1010).paddr == 0x8_0000_1010
    assert iommu.iotlb.hits == hits + 1                 # served by the core's IOTLB
    assert iommu.unmap(dom, 0x4000_0000, 0x2000) == 0x2000
    assert backend.queue.sent[RequestType.UNMAP] == 1
    with pytest.raises(TranslationFault) as info:
        iommu.translate(dev, 0x4000_0010)
    assert info.value.reason.startswith("[virtio.dma.unmapped]")
    iommu.detach_device(dom, dev)
    assert backend.device.domain_of(0x10) is None


def test_a_status_becomes_the_linux_errno_and_the_rule(iommu: IOMMU) -> None:
    dev = iommu.add_device(0x10)
    dom = iommu.domain_alloc()
    iommu.attach_device(dom, dev)
    iommu.map(dom, 0x1000, 0x9000, 0x1000, RW)
    with pytest.raises(UAPIError) as info:                       # S_INVAL
        iommu.map(dom, 0x1000, 0xA000, 0x1000, RW)
    assert (info.value.errno, info.value.rule) == (errno.EINVAL, "virtio.map.overlap")
    with pytest.raises(UAPIError) as info:                       # S_RANGE
        iommu.unmap(dom, 0x1000, 0x800)
    assert (info.value.errno, info.value.rule) == (errno.ERANGE, "virtio.unmap.split")
    assert iommu.iova_to_phys(dom, 0x1000) == 0x9000             # refused: nothing changed


def test_misalignment_is_the_spec_profiles_s_range() -> None:
    iommu = IOMMU("virtio-iommu", device_profile="spec")
    dev = iommu.add_device(0x10)
    dom = iommu.domain_alloc()
    iommu.attach_device(dom, dev)
    with pytest.raises(UAPIError) as info:
        iommu.map(dom, 0x1800, 0x9000, 0x1000, RW)
    assert (info.value.errno, info.value.rule) == (errno.ERANGE, "virtio.map.align")


def test_mappings_before_the_first_attach_are_replayed(iommu: IOMMU) -> None:
    dom = iommu.domain_alloc()
    iommu.map(dom, 0x10_0000, 0x20_0000, 0x1000, RW)
    with pytest.raises(UAPIError) as info:
        iommu.map(dom, 0x10_0000, 0x30_0000, 0x1000, RW)
    assert (info.value.errno, info.value.rule) == (errno.EINVAL, "virtio.map.overlap")
    backend = _backend(iommu)
    assert backend.queue.sent[RequestType.MAP] == 0
    dev = iommu.add_device(0x20)
    iommu.attach_device(dom, dev)
    assert backend.queue.sent[RequestType.MAP] == 1
    assert iommu.translate(dev, 0x10_0040).paddr == 0x20_0040
    iommu.detach_device(dom, dev)                       # the device forgets the domain ...
    iommu.attach_device(dom, dev)                       # ... and the driver replays it
    assert iommu.translate(dev, 0x10_0040).paddr == 0x20_0040


def test_unattached_and_pasid_requests_fault_with_the_device_rule(iommu: IOMMU) -> None:
    dev = iommu.add_device(0x10)
    with pytest.raises(TranslationFault) as info:
        iommu.translate(dev, 0x1000)
    rule = "unknown_endpoint" if _backend(iommu).device.endpoint_records else "unattached"
    assert info.value.reason.startswith(f"[virtio.dma.{rule}]")
    dom = iommu.domain_alloc()
    iommu.attach_device(dom, dev)
    iommu.map(dom, 0x1000, 0x9000, 0x1000, RW)
    with pytest.raises(TranslationFault) as info:
        iommu.translate(dev, 0x1000, pasid=3)
    assert info.value.reason.startswith("[" + "virtio.dma.pasid" + "]")


def test_write_to_a_read_only_mapping_faults_and_reaches_the_event_queue(iommu: IOMMU) -> None:
    dev = iommu.add_device(0x10)
    dom = iommu.domain_alloc()
    iommu.attach_device(dom, dev)
    iommu.map(dom, 0x1000, 0x9000, 0x1000, 1)
    seen: list[object] = []
    iommu.register_fault_handler(dev, seen.append)
    events = _backend(iommu).device.events
    events.post(24)
    assert iommu.translate(dev, 0x1000).paddr == 0x9000
    with pytest.raises(TranslationFault):
        iommu.translate(dev, 0x1000, access=2)
    assert len(seen) == 1 and len(events.used) == 1
    record = events.used[0].written
    assert record[0] == 2 and int.from_bytes(record[4:8], "little") == 0x102  # R_MAPPING,
    # F_WRITE | F_ADDRESS


def test_reserved_regions_apply_through_the_facade() -> None:
    msi = ReservedRegion(0xFEE0_0000, 0xFEEF_FFFF, ResvSubtype.MSI)
    hole = ReservedRegion(0x8000_0000, 0x8000_FFFF, ResvSubtype.RESERVED)
    iommu = IOMMU("virtio-iommu", reserved_regions=(msi, hole))
    dev = iommu.add_device(0x10)
    dom = iommu.domain_alloc()
    iommu.attach_device(dom, dev)
    assert iommu.translate(dev, 0xFEE0_0040, access=2).paddr == 0xFEE0_0040
    with pytest.raises(TranslationFault) as info:
        iommu.translate(dev, 0x8000_0000)
    assert info.value.reason.startswith("[virtio.dma.reserved]")
    with pytest.raises(UAPIError) as err:
        iommu.map(dom, 0x8000_0000, 0x1000, 0x1000, RW)
    assert (err.value.errno, err.value.rule) == (errno.EINVAL, "virtio.map.resv_mem")


def test_every_failure_is_reported_by_status() -> None:
    caps = IOMMU("virtio-iommu").capabilities
    for op in (*UNREPORTABLE_OPERATIONS, "attach_device", "detach_device", "map", "unmap"):
        assert caps.failure_reporting[op] is FailureReport.STATUS
    vtd = IOMMU("vtd").capabilities
    assert vtd.failure_reporting["cache_invalidate"] is FailureReport.NONE


def test_unknown_configuration_is_refused() -> None:
    with pytest.raises(UAPIError) as info:
        IOMMU("virtio-iommu", colour="blue")
    assert (info.value.errno, info.value.rule) == (errno.EINVAL, "virtio.backend.config")
    with pytest.raises(FeatureError):
        IOMMU("virtio-iommu").negotiate(1 << 1)


def test_backend_refusals_name_their_rules() -> None:
    iommu = IOMMU("virtio-iommu", domain_range=(1, 2))
    doms = [iommu.domain_alloc(), iommu.domain_alloc()]
    assert sorted(d.data.id for d in doms) == [1, 2]
    with pytest.raises(UAPIError) as info:
        iommu.domain_alloc()
    assert (info.value.errno, info.value.rule) == (errno.ENOSPC, "virtio.backend.domains")
    iommu.domain_free(doms[0])
    assert iommu.domain_alloc().data.id == 1                   # ids are reused
    with pytest.raises(UAPIError) as info:
        iommu.map(doms[1], (1 << 64) - 0x1000, 0, 0x2000, RW)
    assert (info.value.errno, info.value.rule) == (errno.ERANGE, "virtio.backend.range")
    with pytest.raises(UAPIError) as info:
        iommu.nesting_info(doms[1])
    assert (info.value.errno, info.value.rule) == (errno.ENODEV, "virtio.backend.not_nesting")
    dev = iommu.add_device(0x10)
    iommu.attach_device(doms[1], dev)
    with pytest.raises(UAPIError) as info:
        iommu.set_nesting(doms[1])
    assert (info.value.errno, info.value.rule) == (errno.ENODEV,
                                                   "virtio.backend.nesting_attached")


def test_an_unattached_endpoint_keeps_its_msi_window_and_faults_elsewhere() -> None:
    msi = ReservedRegion(0xFEE0_0000, 0xFEEF_FFFF, ResvSubtype.MSI)
    hole = ReservedRegion(0x8000_0000, 0x8000_FFFF, ResvSubtype.RESERVED)
    iommu = IOMMU("virtio-iommu", reserved_regions=(msi, hole))
    dev = iommu.add_device(0x10)
    assert iommu.translate(dev, 0xFEE0_0040, access=2).paddr == 0xFEE0_0040
    for iova, rule in ((0x8000_0000, "virtio.dma.reserved"), (0x1000, "virtio.dma.unattached")):
        with pytest.raises(TranslationFault) as info:
            iommu.translate(dev, iova)
        assert info.value.reason.startswith(f"[{rule}]")


def test_a_device_reset_drops_the_facades_contexts(iommu: IOMMU) -> None:
    dev = iommu.add_device(0x10)
    dom = iommu.domain_alloc()
    iommu.attach_device(dom, dev)
    iommu.map(dom, 0x1000, 0x9000, 0x1000, RW)
    assert iommu.translate(dev, 0x1000).paddr == 0x9000
    device = _backend(iommu).device
    device.reset()
    device.negotiate_features(device.offered)
    assert iommu.context_of(0x10, None) is None
    with pytest.raises(TranslationFault):
        iommu.translate(dev, 0x1000)


def test_turning_bypass_off_leaves_no_identity_translation_behind() -> None:
    iommu = IOMMU("virtio-iommu", device_profile="spec")
    device = _backend(iommu).device
    dev = iommu.add_device(0x10)
    assert device.write_config(36, b"\1") is None                 # BYPASS_CONFIG negotiated
    assert iommu.translate(dev, 0x5000).paddr == 0x5000
    assert iommu.translate(dev, 0x5000).table_reads == 0          # cached in the IOTLB
    assert device.write_config(36, b"\0") is None
    with pytest.raises(TranslationFault) as info:
        iommu.translate(dev, 0x5000)
    assert info.value.reason.startswith("[virtio.dma.unattached]")

"""Fault records on the event queue, the data path, the IOTLB and the generic fault record."""

from __future__ import annotations

import pytest
from virtio_rig import G, attach, detach, device, map_, ok, unmap

from iommu_uapi.errors import UAPIError
from iommu_uapi.translation import TranslationFault
from iommu_uapi.uapi import Fault
from iommu_uapi.uapi.consts import FaultReason as Generic
from iommu_uapi.uapi.consts import FaultType, UnrecoverableFlags
from iommu_uapi_virtio_iommu import (
    AttachFlags,
    EventQueue,
    FaultFlags,
    FaultReason,
    FaultRecord,
    Feature,
    MapFlags,
    ReservedRegion,
    ResvSubtype,
    VirtioIommuDevice,
)

R, W, X = 1, 2, 4


def test_fault_record_bytes() -> None:
    rec = FaultRecord(FaultReason.MAPPING, FaultFlags.WRITE | FaultFlags.ADDRESS, 0x0810,
                      0x1122334455667788)
    raw = rec.to_bytes()
    assert raw == (b"\x02\0\0\0" + b"\x02\x01\0\0" + b"\x10\x08\0\0" + bytes(4)
                   + bytes.fromhex("8877665544332211"))
    assert FaultRecord.from_bytes(raw) == rec


def _fault(dev: VirtioIommuDevice, ep: int, iova: int, access: int, rule: str
           ) -> TranslationFault:
    with pytest.raises(TranslationFault) as e:
        dev.translate(ep, iova, access)
    assert e.value.reason.startswith(f"[{rule}]"), e.value.reason
    return e.value


def _events(dev: VirtioIommuDevice) -> list[FaultRecord]:
    return [FaultRecord.from_bytes(u.written) for u in dev.events.take()]


def test_unattached_endpoint_with_bypass_0_faults_r_domain(profile: str) -> None:
    dev = device(profile, bypass=0)
    dev.events.post(count=4)
    if profile == "qemu":
        ok(attach(dev, 7, 1))
        ok(detach(dev, 7, 1))
    _fault(dev, 1, 0x1234, R, "virtio.dma.unattached")
    assert _events(dev) == [FaultRecord(FaultReason.DOMAIN, FaultFlags.ADDRESS, 1, 0x1234)]


def test_never_attached_endpoint_faults_r_unknown_in_qemu() -> None:
    dev = device("qemu", bypass=0)
    dev.events.post()
    _fault(dev, 2, 0x5000, W, "virtio.dma.unknown_endpoint")
    assert _events(dev) == [FaultRecord(FaultReason.UNKNOWN, FaultFlags.ADDRESS, 2, 0x5000)]


def test_unmapped_address_faults_r_mapping(profile: str) -> None:
    dev = device(profile)
    ok(attach(dev, 7, 1))
    dev.events.post()
    _fault(dev, 1, 0x9000, R, "virtio.dma.unmapped")
    assert _events(dev) == [FaultRecord(FaultReason.MAPPING, FaultFlags.ADDRESS, 1, 0x9000)]


@pytest.mark.parametrize(("flags", "access", "lacking"), [
    (MapFlags.READ, W, FaultFlags.WRITE),
    (MapFlags.WRITE, R, FaultFlags.READ),
    (MapFlags.WRITE, R | W, FaultFlags.READ),
    (MapFlags.WRITE, X, FaultFlags.READ),  # F_EXEC is no flag of the spec
    (0, R | W, FaultFlags.READ | FaultFlags.WRITE),
])
def test_permission_mismatch_faults_with_the_access_flags(profile: str, flags: int, access: int,
                                                          lacking: FaultFlags) -> None:
    dev = device(profile)
    ok(attach(dev, 7, 1))
    ok(map_(dev, 7, 0, G - 1, 0x10000, flags))
    dev.events.post()
    err = _fault(dev, 1, 0x10, access, "virtio.dma.permission")
    assert _events(dev) == [FaultRecord(FaultReason.MAPPING, lacking | FaultFlags.ADDRESS, 1,
                                        0x10)]
    assert isinstance(err.fault, Fault)
    assert err.fault.event.reason == Generic.PERMISSION


def test_reserved_regions_on_the_data_path(profile: str) -> None:
    regions = [ReservedRegion(0xFEE00000, 0xFEEFFFFF, ResvSubtype.MSI),
               ReservedRegion(0x1000, 0x1FFF)]
    dev = device(profile, reserved_regions=regions, bypass=0)
    ok(attach(dev, 7, 1))
    assert dev.translate(1, 0xFEE00040, W).paddr == 0xFEE00040
    dev.events.post()
    _fault(dev, 1, 0x1800, R, "virtio.dma.reserved")
    assert _events(dev) == [FaultRecord(FaultReason.MAPPING, FaultFlags.ADDRESS, 1, 0x1800)]


def test_bypass_domain_is_identity(profile: str) -> None:
    dev = device(profile, bypass=0)
    ok(attach(dev, 7, 1, AttachFlags.BYPASS))
    t = dev.translate(1, 0xDEAD_B000, W)
    assert (t.paddr, t.perm & 3) == (0xDEAD_B000, 3)


def test_legacy_bypass_feature_bypasses_unattached_endpoints() -> None:
    feats = int(Feature.MAP_UNMAP | Feature.BYPASS)
    dev = VirtioIommuDevice([1], features=feats)
    dev.events.post()
    _fault(dev, 1, 0x1000, R, "virtio.dma.unattached")  # not negotiated yet
    dev.negotiate_features(feats)
    assert dev.translate(1, 0x1000, R).paddr == 0x1000


def test_translation_and_iotlb(profile: str) -> None:
    dev = device(profile)
    ok(attach(dev, 7, 1))
    ok(attach(dev, 7, 2))
    ok(map_(dev, 7, 0x10000, 0x1FFFF, 0x800000, MapFlags.READ | MapFlags.WRITE))
    t = dev.translate(1, 0x12345, W)
    assert (t.paddr, t.page_size) == (0x802345, 0x10000)
    assert dev.translate(2, 0x12345, R).paddr == 0x802345
    assert (dev.tlb.hits, dev.tlb.misses) == (1, 1)
    ok(unmap(dev, 7, 0x10000, 0x1FFFF))
    assert len(dev.tlb) == 0
    dev.events.post()
    _fault(dev, 1, 0x12345, R, "virtio.dma.unmapped")


def test_destroyed_domain_leaves_no_iotlb_entry_for_a_reused_id(profile: str) -> None:
    dev = device(profile)
    ok(attach(dev, 7, 1))
    ok(map_(dev, 7, 0, G - 1, 0x5000))
    dev.translate(1, 0x10, R)
    ok(detach(dev, 7, 1))
    ok(attach(dev, 7, 1))
    dev.events.post()
    _fault(dev, 1, 0x10, R, "virtio.dma.unmapped")


def test_byte_granular_mappings_sharing_a_page() -> None:
    dev = device("spec", page_size_mask=1)
    ok(attach(dev, 7, 1))
    ok(map_(dev, 7, 0x0, 0x7FF, 0x10000))
    ok(map_(dev, 7, 0x800, 0xFFF, 0x20000))
    assert dev.translate(1, 0x10, R).paddr == 0x10010
    assert dev.translate(1, 0x810, R).paddr == 0x20010
    assert dev.translate(1, 0x20, R).paddr == 0x10020


def test_generic_fault_reaches_the_consumer(profile: str) -> None:
    dev = device(profile, bypass=0)
    got: list[Fault] = []
    dev.fault_param(3).register(got.append)
    with pytest.raises(TranslationFault):
        dev.translate(3, 0x4000, W)
    assert len(got) == 1
    fault = got[0]
    assert fault.type == FaultType.DMA_UNRECOV
    assert fault.event.flags == UnrecoverableFlags.ADDR_VALID
    assert (fault.event.addr, fault.event.perm, fault.event.reason) == (0x4000, W, Generic.UNKNOWN)


def test_translate_refuses_unknown_endpoints_and_bad_access(profile: str) -> None:
    dev = device(profile)
    for args in ((99, 0, R), (1, -1, R), (1, 1 << 64, R), (1, 0, 0), (1, 0, 0x10)):
        with pytest.raises(UAPIError) as e:
            dev.translate(*args)
        assert e.value.rule in ("virtio.translate.endpoint", "virtio.translate.input")


# ---- the event queue ---------------------------------------------------------------------------

def test_no_buffer_drops_the_event(profile: str) -> None:
    dev = device(profile, bypass=0)
    with pytest.raises(TranslationFault):
        dev.translate(1, 0, R)
    assert dev.events.dropped == 1 and dev.events.take() == []
    assert dev.events.push(b"x" * 24, break_on_small=False) == "virtio.event.no_buffer"


def test_queue_is_bounded() -> None:
    q = EventQueue(size=2)
    q.post(count=2)
    with pytest.raises(UAPIError) as e:
        q.post()
    assert e.value.rule == "virtio.event.queue_full" and q.available == 2
    with pytest.raises(UAPIError) as e:
        q.post(1 << 32)
    assert e.value.rule == "virtio.event.buffer_size"


def test_small_buffer_is_never_split() -> None:
    dev = device("spec", bypass=0)
    dev.events.post(16)
    dev.events.post(32)
    with pytest.raises(TranslationFault):
        dev.translate(1, 0x40, R)
    used = dev.events.take()
    assert [(len(u.written), u.size) for u in used] == [(0, 16), (24, 32)]
    assert dev.broken is None
    qdev = device("qemu", bypass=0)
    qdev.events.post(16)
    qdev.events.post(32)
    with pytest.raises(TranslationFault):
        qdev.translate(1, 0x40, R)
    assert [(len(u.written), u.size) for u in qdev.events.take()] == [(0, 16)]
    assert qdev.broken == "virtio.event.small_buffer"


def test_detached_endpoint_cannot_use_the_domain_any_more(profile: str) -> None:
    dev = device(profile, bypass=0)
    ok(attach(dev, 7, 1))
    ok(attach(dev, 7, 2))
    ok(map_(dev, 7, 0, G - 1, 0x5000))
    assert dev.translate(1, 0x10, R).paddr == 0x5010  # cached in the IOTLB
    ok(detach(dev, 7, 1))
    _fault(dev, 1, 0x10, R, "virtio.dma.unattached")
    assert dev.translate(2, 0x10, R).paddr == 0x5010

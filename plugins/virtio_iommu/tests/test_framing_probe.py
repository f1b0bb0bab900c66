"""Request framing (short requests, unknown types, short bodies, tail placement, used length)
and PROBE."""

from __future__ import annotations

import pytest
from virtio_rig import attach, device, ok, refused, send, state

from iommu_uapi_virtio_iommu import Feature, ReservedRegion, ResvSubtype, Status
from iommu_uapi_virtio_iommu import layouts as L
from iommu_uapi_virtio_iommu.probe import (
    PropertyType,
    decode_properties,
    encode_properties,
    resv_mem_region,
)


@pytest.mark.parametrize(("readable", "writable"), [
    (b"", 4), (b"\x01\0\0", 4), (L.encode_attach(7, 1), 3), (L.encode_attach(7, 1), 0)])
def test_request_too_short_is_returned_unwritten(profile: str, readable: bytes,
                                                 writable: int) -> None:
    dev = device(profile)
    refused(send(dev, readable, writable), "virtio.request.short", None)
    assert dev.domains == {}


def test_qemu_needs_a_reset_after_a_short_request() -> None:
    dev = device("qemu")
    send(dev, b"\x01", 4)
    refused(send(dev, L.encode_attach(7, 1)), "virtio.request.broken", None)
    dev.reset()
    dev.negotiate_features(dev.offered)
    ok(send(dev, L.encode_attach(7, 1)))
    sdev = device("spec")
    send(sdev, b"\x01", 4)
    ok(send(sdev, L.encode_attach(7, 1)))


@pytest.mark.parametrize("rtype", [0, 6, 7, 8, 0xFF])
def test_unknown_type(rtype: int) -> None:
    readable = bytes([rtype]) + bytes(63)
    refused(send(device("spec"), readable), "virtio.request.unknown_type", None)
    reply = send(device("qemu"), readable)
    refused(reply, "virtio.request.unknown_type_unsupp", Status.UNSUPP)
    assert reply.written == b"\x02\0\0\0"


@pytest.mark.parametrize(("encoded", "name"), [
    (L.encode_attach(7, 1), "ATTACH"), (L.encode_detach(7, 1), "DETACH"),
    (L.encode_map(7, 0, 0xFFF, 0, 1), "MAP"), (L.encode_unmap(7, 0, 0xFFF), "UNMAP"),
    (L.encode_probe(1), "PROBE")])
def test_body_shorter_than_the_layout_is_inval(profile: str, encoded: bytes, name: str) -> None:
    dev = device(profile)
    ok(attach(dev, 7, 1))
    before = state(dev)
    writable = 4 if name != "PROBE" else dev.probe_size + 4
    reply = send(dev, encoded[:-1], writable)
    refused(reply, "virtio.request.short_body", Status.INVAL)
    assert name in reply.message and state(dev) == before


def test_readable_bytes_past_the_layout_are_ignored(profile: str) -> None:
    dev = device(profile)
    ok(send(dev, L.encode_attach(7, 1) + b"\xff" * 12))


def test_tail_placement_and_used_length() -> None:
    # spec: the tail ends the device-writable part; QEMU writes it at the start
    reply = send(device("spec"), L.encode_attach(7, 1), 12)
    assert reply.written == bytes(8) + b"\0\0\0\0"
    reply = send(device("spec"), L.encode_attach(7, 99), 8)
    assert reply.written == bytes(4) + b"\x06\0\0\0"
    reply = send(device("qemu"), L.encode_attach(7, 99), 8)
    assert reply.written == b"\x06\0\0\0"


def test_tail_reserved_bytes_are_zero(profile: str) -> None:
    for readable in (L.encode_attach(7, 1), L.encode_attach(7, 99), L.encode_map(9, 0, 1, 0, 1)):
        written = send(device(profile), readable).written
        assert written[1:4] == b"\0\0\0"


# ---- PROBE -------------------------------------------------------------------------------------

REGIONS = (ReservedRegion(0x8000000, 0x80FFFFF, ResvSubtype.MSI),
           ReservedRegion(0, 0xFFF, ResvSubtype.RESERVED))


def test_probe_properties_bytes(profile: str) -> None:
    dev = device(profile, reserved_regions=REGIONS, probe_size=64)
    reply = send(dev, L.encode_probe(1), 68)
    ok(reply)
    area = reply.written[:64]
    assert area[:24] == (b"\x01\x00\x14\x00" + b"\x01\0\0\0" + (0x8000000).to_bytes(8, "little")
                         + (0x80FFFFF).to_bytes(8, "little"))
    assert area[24:48] == b"\x01\x00\x14\x00" + bytes(4) + bytes(8) + (0xFFF).to_bytes(8, "little")
    assert area[48:] == bytes(16)  # terminator and zero fill
    assert [resv_mem_region(p.value) for p in decode_properties(area)] == list(REGIONS)


def test_probe_page_size_mask_property() -> None:
    dev = device("spec", probe_page_size_mask=True, page_size_mask=0x201000)
    area = send(dev, L.encode_probe(1), 516).written[:512]
    props = decode_properties(area)
    assert [(p.type, p.reserved, p.value) for p in props] == \
        [(PropertyType.PAGE_SIZE_MASK, 0, bytes(4) + (0x201000).to_bytes(8, "little"))]


def test_probe_endpoint_own_regions_follow_the_device_ones(profile: str) -> None:
    own = ReservedRegion(0x10000, 0x1FFFF)
    dev = device(profile, endpoints={1: (own,), 2: ()}, reserved_regions=REGIONS[:1])
    area = send(dev, L.encode_probe(1), 516).written[:512]
    assert [resv_mem_region(p.value) for p in decode_properties(area)] == [REGIONS[0], own]
    area = send(dev, L.encode_probe(2), 516).written[:512]
    assert [resv_mem_region(p.value) for p in decode_properties(area)] == [REGIONS[0]]


def test_probe_reserved_is_ignored(profile: str) -> None:
    ok(send(device(profile), L.encode_probe(1, reserved=b"\xff" * 64), 516))


def test_probe_unknown_endpoint_is_noent(profile: str) -> None:
    reply = send(device(profile), L.encode_probe(99), 516)
    refused(reply, "virtio.probe.endpoint", Status.NOENT)
    assert reply.written[:512] == bytes(512)


def test_probe_without_f_probe_is_unwritten_in_spec() -> None:
    feats = int(Feature.MAP_UNMAP | Feature.BYPASS_CONFIG)
    refused(send(device("spec", features=feats), L.encode_probe(1), 4),
            "virtio.probe.not_offered", None)
    ok(send(device("qemu", features=feats, probe_size=0), L.encode_probe(1), 4))


def test_probe_buffer_smaller_than_probe_size() -> None:
    dev = device("spec", reserved_regions=REGIONS)
    reply = send(dev, L.encode_probe(1), 100)
    refused(reply, "virtio.probe.buffer", Status.INVAL)
    assert reply.written == bytes(96) + b"\x04\0\0\0"  # no property written
    qdev = device("qemu", reserved_regions=REGIONS)
    refused(send(qdev, L.encode_probe(1), 100), "virtio.probe.buffer_abort", None)
    assert qdev.broken == "virtio.probe.buffer_abort"


def test_probe_qemu_writes_probe_size_plus_tail() -> None:
    dev = device("qemu", reserved_regions=REGIONS, probe_size=64)
    reply = send(dev, L.encode_probe(1), 200)
    assert len(reply.written) == 68 and reply.written[64:] == b"\0\0\0\0"
    assert reply.written[:64] == encode_properties(REGIONS).ljust(64, b"\0")


def test_probe_properties_that_do_not_fit_are_inval(profile: str) -> None:
    dev = device(profile, reserved_regions=REGIONS, probe_size=30)
    reply = send(dev, L.encode_probe(1), 34)
    refused(reply, "virtio.probe.overflow", Status.INVAL)
    assert reply.written[:30] == bytes(30)


@pytest.mark.parametrize("readable", [None, "ATTACH", 7, [1, 0, 0, 0], memoryview(bytes(40))[::2]])
def test_a_readable_part_that_is_not_bytes_like_is_refused_unchanged(profile: str,
                                                                     readable: object) -> None:
    """virtio.request.buffer: a misuse of the Python API, not a request: EFAULT, no reply."""
    from iommu_uapi.errors import UAPIError

    dev = device(profile)
    ok(send(dev, L.encode_attach(7, 1)))
    before = state(dev)
    with pytest.raises(UAPIError) as err:
        dev.request(readable, 4)  # type: ignore[arg-type]
    assert (err.value.errno, err.value.rule) == (14, "virtio.request.buffer")
    assert state(dev) == before
    assert dev.request(bytearray(L.encode_attach(7, 2)), 4)[-4:] == dev.request(
        memoryview(L.encode_attach(7, 2)), 4)[-4:]


@pytest.mark.parametrize("writable", ["4", 4.0, True, -1, (1 << 20) + 1, 1 << 64])
def test_a_writable_size_that_is_not_a_bounded_int_is_refused_unchanged(profile: str,
                                                                      writable: object) -> None:
    """virtio.request.writable_len: the model returns the writable part whole, so its size is
    an int from 0 to MAX_WRITABLE; anything else is EINVAL and changes nothing."""
    from iommu_uapi.errors import UAPIError
    from iommu_uapi_virtio_iommu.device import MAX_WRITABLE

    dev = device(profile)
    before = state(dev)
    with pytest.raises(UAPIError) as err:
        dev.request(L.encode_attach(7, 1), writable)  # type: ignore[arg-type]
    assert (err.value.errno, err.value.rule) == (22, "virtio.request.writable_len")
    assert state(dev) == before
    ok(send(dev, L.encode_attach(7, 1), MAX_WRITABLE))  # the bound itself is a request

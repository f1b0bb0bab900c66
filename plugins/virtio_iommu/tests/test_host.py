"""The reference host (a VFIO-like per-endpoint table) and the device's resets."""

from __future__ import annotations

import pytest
from virtio_rig import G, attach, detach, device, map_, ok, refused

from iommu_uapi.errors import UAPIError
from iommu_uapi_virtio_iommu import AttachFlags, HostTables, Status


def test_host_refuses_overlaps_and_unknown_unmaps() -> None:
    host = HostTables()
    host.map(1, 0x1000, 0x1000, 0x5000, 3)
    with pytest.raises(UAPIError) as e:
        host.map(1, 0x1800, 0x1000, 0, 3)
    assert e.value.rule == "virtio.host.overlap"
    with pytest.raises(UAPIError) as e:
        host.unmap(1, 0x1000, 0x800)
    assert e.value.rule == "virtio.host.missing"
    host.fail("unmap")
    with pytest.raises(UAPIError) as e:
        host.unmap(1, 0x1000, 0x1000)
    assert e.value.rule == "virtio.host.injected" and len(host.mappings(1)) == 1
    host.unmap(1, 0x1000, 0x1000)
    assert host.mappings(1) == []


def test_reset_unmaps_the_host_and_forgets_everything(profile: str) -> None:
    host = HostTables()
    dev = device(profile, host=host)
    ok(attach(dev, 7, 1))
    ok(attach(dev, 8, 2, AttachFlags.BYPASS))
    ok(map_(dev, 7, 0, G - 1, 0x1000))
    dev.reset()
    assert dev.domains == {} and dev.attached == {} and dev.records == set()
    assert host.mappings(1) == [] and dev.mapping_count == 0 and len(dev.tlb) == 0


def test_qemu_keeps_the_endpoint_record_of_a_refused_attach() -> None:
    dev = device("qemu", shared_domains=False)
    ok(attach(dev, 7, 1))
    refused(attach(dev, 7, 2), "virtio.attach.shared", Status.UNSUPP)
    # the record exists: DETACH says "not attached" (S_INVAL), not "no such endpoint"
    refused(detach(dev, 7, 2), "virtio.detach.not_attached", Status.INVAL)


def test_a_refused_undo_leaves_the_device_needing_a_reset(profile: str) -> None:
    host = HostTables()
    dev = device(profile, host=host)
    ok(attach(dev, 7, 1))
    ok(attach(dev, 7, 2))
    host.fail("map", after=1)  # endpoint 2 refuses the map ...
    host.fail("unmap")  # ... and endpoint 1 refuses to give its map back
    refused(map_(dev, 7, 0, G - 1, 0x1000), "virtio.map.host", Status.DEVERR)
    assert dev.mappings(7) == [] and len(host.mappings(1)) == 1
    assert dev.broken is not None and dev.broken.startswith("virtio.host.diverged")
    refused(attach(dev, 8, 3), "virtio.request.broken", None)
    dev.reset()
    assert host.mappings(1) == [] and dev.broken is None


def test_a_reset_the_host_refuses_is_retried_by_the_next_reset(profile: str) -> None:
    host = HostTables()
    dev = device(profile, host=host)
    ok(attach(dev, 7, 1))
    ok(map_(dev, 7, 0, G - 1, 0x1000))
    host.fail("unmap")
    dev.reset()
    assert dev.domains == {} and dev.broken == "virtio.host.diverged"
    assert len(host.mappings(1)) == 1
    dev.reset()
    assert dev.broken is None and host.mappings(1) == []


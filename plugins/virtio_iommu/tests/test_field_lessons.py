"""Field lessons 1-5: what broke in shipped virtio-iommu devices, each as its own test."""

from __future__ import annotations

import pytest
from virtio_rig import G, attach, device, map_, ok, refused, state, unmap

from iommu_uapi.translation import TranslationFault
from iommu_uapi_virtio_iommu import HostTables, Status

R = 1


def test_lesson1_reattach_moves_the_endpoint(profile: str) -> None:
    host = HostTables()
    dev = device(profile, host=host)
    ok(attach(dev, 7, 1))
    ok(attach(dev, 7, 2))
    ok(map_(dev, 7, 0, G - 1, 0x10000))
    ok(attach(dev, 8, 1))
    ok(map_(dev, 8, 0x5000, 0x5FFF, 0x50000))
    assert dev.domain_of(1) == 8 and dev.domains[7].endpoints == {2}
    assert dev.translate(1, 0x5010, R).paddr == 0x50010
    with pytest.raises(TranslationFault):
        dev.translate(1, 0x10, R)  # the old domain's mapping is gone for endpoint 1
    assert dev.translate(2, 0x10, R).paddr == 0x10010
    assert host.mappings(1) == dev.mappings(8) and host.mappings(2) == dev.mappings(7)


def test_lesson1_every_endpoint_of_a_domain_sees_map_and_unmap(profile: str) -> None:
    host = HostTables()
    dev = device(profile, host=host)
    for ep in (1, 2, 3):
        ok(attach(dev, 7, ep))
    ok(map_(dev, 7, 0x2000, 0x3FFF, 0x90000))
    for ep in (1, 2, 3):
        assert dev.translate(ep, 0x2100, R).paddr == 0x90100
        assert host.mappings(ep) == dev.mappings(7)
    ok(unmap(dev, 7, 0x2000, 0x3FFF))
    for ep in (1, 2, 3):
        with pytest.raises(TranslationFault):
            dev.translate(ep, 0x2100, R)
        assert host.mappings(ep) == []


def test_lesson2_unmap_removes_every_mapping_inside_the_range(profile: str) -> None:
    dev = device(profile)
    ok(attach(dev, 7, 1))
    for i in range(5):
        ok(map_(dev, 7, 2 * i * G, 2 * i * G + G - 1, 0x100000 + i * G))
    ok(unmap(dev, 7, 2 * G, 7 * G))  # mappings at 2G, 4G, 6G; 0 and 8G stay
    assert [m.virt_start for m in dev.mappings(7)] == [0, 8 * G]


def test_lesson3_partial_unmap_and_overlapping_map_change_nothing(profile: str) -> None:
    dev = device(profile)
    ok(attach(dev, 7, 1))
    ok(map_(dev, 7, 0, 4 * G - 1, 0x100000))
    before = state(dev)
    refused(unmap(dev, 7, G, 2 * G - 1), "virtio.unmap.split", Status.RANGE)
    refused(map_(dev, 7, 3 * G, 5 * G - 1, 0), "virtio.map.overlap", Status.INVAL)
    assert state(dev) == before
    assert dev.translate(1, 3 * G, R).paddr == 0x100000 + 3 * G


def test_lesson3_a_failing_map_is_rolled_back(profile: str) -> None:
    host = HostTables()
    dev = device(profile, host=host)
    for ep in (1, 2, 3):
        ok(attach(dev, 7, ep))
    host.fail("map", after=1)
    refused(map_(dev, 7, 0, G - 1, 0x1000), "virtio.map.host", Status.DEVERR)
    assert dev.mappings(7) == [] and all(host.mappings(ep) == [] for ep in (1, 2, 3))
    ok(map_(dev, 7, 0, G - 1, 0x1000))  # not refused as an overlap with a stale entry
    assert all(host.mappings(ep) == dev.mappings(7) for ep in (1, 2, 3))


@pytest.mark.parametrize("bypass", [0, 1])
def test_lesson5_unattached_endpoints_with_bypass(profile: str, bypass: int) -> None:
    dev = device(profile, bypass=bypass, negotiate=0)  # firmware without a virtio-iommu driver
    dev.events.post()
    if bypass:
        assert dev.translate(1, 0x7000, R).paddr == 0x7000
        assert dev.events.take() == []
    else:
        with pytest.raises(TranslationFault):
            dev.translate(1, 0x7000, R)
        assert len(dev.events.take()) == 1


def test_lesson4_a_backend_failure_leaves_table_and_host_consistent(profile: str) -> None:
    host = HostTables()
    dev = device(profile, host=host)
    ok(attach(dev, 7, 1))
    ok(attach(dev, 7, 2))
    for i in range(4):
        ok(map_(dev, 7, i * G, i * G + G - 1, 0x100000 + i * G))
    host.fail("unmap", after=3)  # sparse: the host refuses midway through a 4-mapping UNMAP
    refused(unmap(dev, 7, 0, 4 * G - 1), "virtio.unmap.host", Status.DEVERR)
    assert host.mappings(1) == host.mappings(2) == dev.mappings(7)
    assert len(dev.mappings(7)) == 4
    ok(unmap(dev, 7, 0, 4 * G - 1))  # retried: now it goes through
    assert host.mappings(1) == host.mappings(2) == dev.mappings(7) == []
    ok(map_(dev, 7, 0, G - 1, 0x200000))  # no stale entry refuses it as an overlap
    assert host.mappings(1) == host.mappings(2) == dev.mappings(7)

"""ATTACH and DETACH, one test per rule, in the profiles that apply it."""

from __future__ import annotations

import pytest
from virtio_rig import EPS, attach, detach, device, map_, ok, refused, send, state

from iommu_uapi_virtio_iommu import AttachFlags, Feature, HostTables, Status
from iommu_uapi_virtio_iommu import layouts as L


def test_first_attach_creates_the_domain(profile: str) -> None:
    dev = device(profile)
    ok(attach(dev, 7, 1))
    assert dev.domain_of(1) == 7 and sorted(dev.domains) == [7]


def test_attach_reserved_nonzero_is_inval_in_spec() -> None:
    dev = device("spec")
    refused(send(dev, L.encode_attach(7, 1, reserved=b"\0\0\x01\0")), "virtio.attach.reserved",
            Status.INVAL)
    assert dev.domains == {}


def test_attach_reserved_is_not_checked_by_qemu() -> None:
    dev = device("qemu")
    ok(send(dev, L.encode_attach(7, 1, reserved=b"\xff" * 4)))


def test_attach_head_reserved_is_ignored(profile: str) -> None:
    ok(send(device(profile), L.encode_attach(7, 1, head_reserved=b"\xff\xff\xff")))


@pytest.mark.parametrize("flags", [0x2, 0x80000000, 0x3])
def test_attach_unknown_flag_is_inval(profile: str, flags: int) -> None:
    dev = device(profile)
    before = state(dev)
    refused(attach(dev, 7, 1, flags), "virtio.attach.flags", Status.INVAL)
    assert state(dev) == before


def test_attach_bypass_flag_needs_bypass_config_in_spec() -> None:
    dev = device("spec", negotiate=int(Feature.MAP_UNMAP))
    refused(attach(dev, 7, 1, AttachFlags.BYPASS), "virtio.attach.bypass_not_negotiated",
            Status.INVAL)
    assert dev.domains == {}


def test_qemu_takes_the_bypass_flag_without_bypass_config() -> None:
    dev = device("qemu", negotiate=int(Feature.MAP_UNMAP))
    ok(attach(dev, 7, 1, AttachFlags.BYPASS))
    assert dev.domains[7].bypass


def test_attach_unknown_endpoint_is_noent(profile: str) -> None:
    dev = device(profile)
    refused(attach(dev, 7, 99), "virtio.attach.endpoint", Status.NOENT)
    assert dev.domains == {} and dev.records == set()


def test_attach_outside_domain_range_is_range_in_spec() -> None:
    dev = device("spec", domain_range=(1, 10))
    refused(attach(dev, 11, 1), "virtio.attach.domain_range", Status.RANGE)
    assert dev.domains == {}
    ok(attach(device("qemu", domain_range=(1, 10)), 11, 1))


def test_attach_to_a_shared_domain_without_sharing_is_unsupp(profile: str) -> None:
    dev = device(profile, shared_domains=False)
    ok(attach(dev, 7, 1))
    before = state(dev)
    refused(attach(dev, 7, 2), "virtio.attach.shared", Status.UNSUPP)
    assert state(dev) == before


def test_attach_with_the_other_kind_is_inval_and_changes_nothing_in_spec() -> None:
    dev = device("spec")
    ok(attach(dev, 7, 1, AttachFlags.BYPASS))
    ok(attach(dev, 8, 2))
    before = state(dev)
    refused(attach(dev, 7, 2), "virtio.attach.kind", Status.INVAL)
    assert state(dev) == before and dev.domain_of(2) == 8


def test_attach_with_the_other_kind_leaves_the_endpoint_detached_in_qemu() -> None:
    dev = device("qemu")
    ok(attach(dev, 7, 1, AttachFlags.BYPASS))
    ok(attach(dev, 8, 2))
    ok(map_(dev, 8, 0, 0xFFF, 0x1000))
    refused(attach(dev, 7, 2), "virtio.attach.kind", Status.INVAL)
    assert dev.domain_of(2) is None and 8 not in dev.domains  # domain 8 went with its mapping


def test_attach_incompatible_reserved_region_is_unsupp_in_spec() -> None:
    from iommu_uapi_virtio_iommu import ReservedRegion
    eps = {1: (), 2: (ReservedRegion(0x8000, 0x8FFF),)}
    dev = device("spec", endpoints=eps)
    ok(attach(dev, 7, 1))
    ok(map_(dev, 7, 0x8000, 0x8FFF, 0x1000))
    before = state(dev)
    refused(attach(dev, 7, 2), "virtio.attach.incompatible", Status.UNSUPP)
    assert state(dev) == before
    qdev = device("qemu", endpoints=eps)
    ok(attach(qdev, 7, 1))
    ok(map_(qdev, 7, 0x8000, 0x8FFF, 0x1000))
    ok(attach(qdev, 7, 2))


def test_attach_beyond_the_domain_limit_is_nomem(profile: str) -> None:
    dev = device(profile, max_domains=2)
    ok(attach(dev, 1, 1))
    ok(attach(dev, 2, 2))
    before = state(dev)
    refused(attach(dev, 3, 3), "virtio.attach.nomem", Status.NOMEM)
    assert state(dev) == before
    ok(attach(dev, 3, 1))  # moving the only endpoint of domain 1 frees it first


def test_attach_host_failure_is_deverr_and_rolled_back(profile: str) -> None:
    host = HostTables()
    dev = device(profile, host=host)
    ok(attach(dev, 7, 1))
    ok(map_(dev, 7, 0, 0xFFF, 0x10000))
    ok(map_(dev, 7, 0x1000, 0x1FFF, 0x20000))
    host.fail("map", after=1)
    before = state(dev)
    refused(attach(dev, 7, 2), "virtio.attach.host", Status.DEVERR)
    assert state(dev) == before and host.mappings(2) == []


def test_attach_move_refused_by_the_host_is_unsupp(profile: str) -> None:
    host = HostTables()
    dev = device(profile, host=host)
    ok(attach(dev, 7, 1))
    ok(map_(dev, 7, 0, 0xFFF, 0x10000))
    ok(attach(dev, 8, 2))
    ok(map_(dev, 8, 0x5000, 0x5FFF, 0x50000))
    host.fail("map")
    before = state(dev)
    refused(attach(dev, 8, 1), "virtio.attach.move", Status.UNSUPP)
    assert state(dev) == before
    assert host.mappings(1) == dev.mappings(7)


def test_reattach_to_the_same_domain_keeps_it_in_spec() -> None:
    dev = device("spec")
    ok(attach(dev, 7, 1))
    ok(map_(dev, 7, 0, 0xFFF, 0x1000))
    ok(attach(dev, 7, 1))
    assert len(dev.mappings(7)) == 1


def test_reattach_of_the_only_endpoint_recreates_the_domain_empty_in_qemu() -> None:
    dev = device("qemu")
    ok(attach(dev, 7, 1))
    ok(map_(dev, 7, 0, 0xFFF, 0x1000))
    ok(attach(dev, 7, 1))
    assert dev.domain_of(1) == 7 and dev.mappings(7) == []


# ---- DETACH ------------------------------------------------------------------------------------

def test_detach_removes_the_domain_with_its_last_endpoint(profile: str) -> None:
    dev = device(profile)
    ok(attach(dev, 7, 1))
    ok(attach(dev, 7, 2))
    ok(map_(dev, 7, 0, 0xFFF, 0x1000))
    ok(detach(dev, 7, 1))
    assert 7 in dev.domains
    ok(detach(dev, 7, 2))
    assert dev.domains == {} and dev.mapping_count == 0
    ok(attach(dev, 7, 3))  # the id may be reused: a fresh, empty domain
    assert dev.mappings(7) == []


def test_detach_ignores_reserved(profile: str) -> None:
    dev = device(profile)
    ok(attach(dev, 7, 1))
    ok(send(dev, L.encode_detach(7, 1, reserved=b"\xff" * 8)))


def test_detach_unknown_endpoint_is_noent(profile: str) -> None:
    refused(detach(device(profile), 7, 99), "virtio.detach.endpoint", Status.NOENT)


def test_detach_of_a_never_attached_endpoint() -> None:
    # spec: the endpoint exists, it is just not attached (MAY S_INVAL)
    refused(detach(device("spec"), 7, 1), "virtio.detach.not_attached", Status.INVAL)
    # QEMU: no endpoint record yet -> S_NOENT
    refused(detach(device("qemu"), 7, 1), "virtio.detach.endpoint", Status.NOENT)


def test_detach_from_the_wrong_domain_is_inval(profile: str) -> None:
    dev = device(profile)
    ok(attach(dev, 7, 1))
    ok(attach(dev, 8, 2))
    before = state(dev)
    refused(detach(dev, 8, 1), "virtio.detach.not_attached", Status.INVAL)
    refused(detach(dev, 9, 1), "virtio.detach.not_attached", Status.INVAL)
    assert state(dev) == before
    ok(detach(dev, 7, 1))
    refused(detach(dev, 7, 1), "virtio.detach.not_attached", Status.INVAL)  # known, unattached


def test_detach_host_failure_is_deverr_and_rolled_back(profile: str) -> None:
    host = HostTables()
    dev = device(profile, host=host)
    ok(attach(dev, 7, 1))
    for i in range(3):
        ok(map_(dev, 7, i * 0x1000, i * 0x1000 + 0xFFF, 0x10000 * (i + 1)))
    host.fail("unmap", after=2)
    before = state(dev)
    refused(detach(dev, 7, 1), "virtio.detach.host", Status.DEVERR)
    assert state(dev) == before and host.mappings(1) == dev.mappings(7)


def test_every_endpoint_is_attachable(profile: str) -> None:
    dev = device(profile)
    for ep in EPS:
        ok(attach(dev, ep, ep))
    assert {ep: dev.domain_of(ep) for ep in EPS} == {1: 1, 2: 2, 3: 3}

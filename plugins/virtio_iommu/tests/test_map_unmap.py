"""MAP and UNMAP, one test per rule, in the profiles that apply it; the spec's UNMAP examples."""

from __future__ import annotations

import pytest
from virtio_rig import G, attach, device, map_, ok, refused, send, state, unmap

from iommu_uapi_virtio_iommu import (
    AttachFlags,
    Feature,
    HostTables,
    MapFlags,
    ReservedRegion,
    ResvSubtype,
    Status,
    VirtioIommuDevice,
)
from iommu_uapi_virtio_iommu import layouts as L


def _attached(profile: str, **kw: object) -> VirtioIommuDevice:
    dev = device(profile, **kw)  # type: ignore[arg-type]
    ok(attach(dev, 7, 1))
    return dev


def test_map_adds_one_mapping(profile: str) -> None:
    dev = _attached(profile)
    ok(map_(dev, 7, 0x1000, 0x2FFF, 0x40000, MapFlags.READ))
    assert [tuple(m) for m in dev.mappings(7)] == [(0x1000, 0x2FFF, 0x40000, 1)]


@pytest.mark.parametrize("flags", [0x8, 0x100, 0xFFFFFFFF])
def test_map_unknown_flag_is_inval(profile: str, flags: int) -> None:
    dev = _attached(profile)
    refused(map_(dev, 7, 0, G - 1, 0, flags), "virtio.map.flags", Status.INVAL)
    assert dev.mappings(7) == []


def test_map_mmio_needs_f_mmio_in_spec() -> None:
    dev = _attached("spec", negotiate=int(Feature.MAP_UNMAP))
    refused(map_(dev, 7, 0, G - 1, 0, MapFlags.READ | MapFlags.MMIO),
            "virtio.map.mmio_not_negotiated", Status.INVAL)
    qdev = _attached("qemu", negotiate=int(Feature.MAP_UNMAP))
    ok(map_(qdev, 7, 0, G - 1, 0, MapFlags.READ | MapFlags.MMIO))
    mdev = _attached("spec")
    ok(map_(mdev, 7, 0, G - 1, 0, MapFlags.READ | MapFlags.MMIO))


def test_map_unknown_domain_is_noent_and_creates_nothing(profile: str) -> None:
    dev = device(profile)
    refused(map_(dev, 7, 0, G - 1, 0), "virtio.map.domain", Status.NOENT)
    assert dev.domains == {}


def test_map_on_a_bypass_domain_is_inval(profile: str) -> None:
    dev = device(profile)
    ok(attach(dev, 7, 1, AttachFlags.BYPASS))
    refused(map_(dev, 7, 0, G - 1, 0), "virtio.map.bypass_domain", Status.INVAL)


def test_map_end_below_start_is_inval(profile: str) -> None:
    dev = _attached(profile)
    refused(map_(dev, 7, 0x2000, 0xFFF, 0), "virtio.map.order", Status.INVAL)


@pytest.mark.parametrize(("start", "end", "phys", "field"), [
    (0x800, 0x17FF, 0x1000, "virt_start"),
    (0x1000, 0x1FFF, 0x1800, "phys_start"),
    (0x1000, 0x1FFE, 0x1000, "virt_end + 1"),
])
def test_map_unaligned_is_range_in_spec(start: int, end: int, phys: int, field: str) -> None:
    dev = _attached("spec")
    reply = map_(dev, 7, start, end, phys)
    refused(reply, "virtio.map.align", Status.RANGE)
    assert field in reply.message and dev.mappings(7) == []
    ok(map_(_attached("qemu"), 7, start, end, phys))


def test_byte_granule_accepts_any_alignment() -> None:
    dev = _attached("spec", page_size_mask=1)
    ok(map_(dev, 7, 0x801, 0x17FE, 0x1003))


def test_map_outside_input_range_is_range_in_spec() -> None:
    dev = _attached("spec", input_range=(0x10000, 0xFFFFF))
    refused(map_(dev, 7, 0xF000, 0x10FFF, 0), "virtio.map.input_range", Status.RANGE)
    refused(map_(dev, 7, 0xFF000, 0x100FFF, 0), "virtio.map.input_range", Status.RANGE)
    ok(map_(dev, 7, 0x10000, 0xFFFFF, 0))
    ok(map_(_attached("qemu", input_range=(0x10000, 0xFFFFF)), 7, 0, G - 1, 0))


@pytest.mark.parametrize(("start", "end"), [(0x1000, 0x1FFF), (0, 0x1FFF), (0x2000, 0x3FFF),
                                            (0, 0xFFFFF)])
def test_map_over_an_existing_mapping_is_inval_and_changes_nothing(profile: str, start: int,
                                                                   end: int) -> None:
    dev = _attached(profile)
    ok(map_(dev, 7, 0x1000, 0x2FFF, 0x40000))
    before = state(dev)
    refused(map_(dev, 7, start, end, 0x80000), "virtio.map.overlap", Status.INVAL)
    assert state(dev) == before


def test_map_over_a_reserved_region_is_inval_in_spec() -> None:
    regions = [ReservedRegion(0xFEE00000, 0xFEEFFFFF, ResvSubtype.MSI)]
    dev = _attached("spec", reserved_regions=regions)
    refused(map_(dev, 7, 0xFEE00000, 0xFEE00FFF, 0), "virtio.map.resv_mem", Status.INVAL)
    ok(map_(_attached("qemu", reserved_regions=regions), 7, 0xFEE00000, 0xFEE00FFF, 0))


def test_map_beyond_the_mapping_limit_is_nomem(profile: str) -> None:
    dev = _attached(profile, max_mappings=2)
    ok(map_(dev, 7, 0, G - 1, 0))
    ok(map_(dev, 7, G, 2 * G - 1, 0))
    before = state(dev)
    refused(map_(dev, 7, 2 * G, 3 * G - 1, 0), "virtio.map.nomem", Status.NOMEM)
    assert state(dev) == before
    ok(unmap(dev, 7, 0, G - 1))
    ok(map_(dev, 7, 2 * G, 3 * G - 1, 0))


def test_map_refused_by_the_host_is_deverr_and_rolled_back(profile: str) -> None:
    host = HostTables()
    dev = _attached(profile, host=host)
    ok(attach(dev, 7, 2))
    ok(attach(dev, 7, 3))
    host.fail("map", after=2)  # endpoints 1 and 2 mapped, endpoint 3 refuses
    before = state(dev)
    refused(map_(dev, 7, 0, G - 1, 0x5000), "virtio.map.host", Status.DEVERR)
    assert state(dev) == before
    assert [host.mappings(ep) for ep in (1, 2, 3)] == [[], [], []]


# ---- UNMAP -------------------------------------------------------------------------------------

def test_unmap_reserved_nonzero_is_inval_in_spec() -> None:
    dev = _attached("spec")
    ok(map_(dev, 7, 0, G - 1, 0))
    refused(send(dev, L.encode_unmap(7, 0, G - 1, reserved=b"\x01\0\0\0")),
            "virtio.unmap.reserved", Status.INVAL)
    assert len(dev.mappings(7)) == 1
    qdev = _attached("qemu")
    ok(map_(qdev, 7, 0, G - 1, 0))
    ok(send(qdev, L.encode_unmap(7, 0, G - 1, reserved=b"\x01\0\0\0")))
    assert qdev.mappings(7) == []


def test_unmap_unknown_domain_is_noent(profile: str) -> None:
    refused(unmap(device(profile), 7, 0, G - 1), "virtio.unmap.domain", Status.NOENT)


def test_unmap_on_a_bypass_domain_is_inval(profile: str) -> None:
    dev = device(profile)
    ok(attach(dev, 7, 1, AttachFlags.BYPASS))
    refused(unmap(dev, 7, 0, G - 1), "virtio.unmap.bypass_domain", Status.INVAL)


def _spec_example(profile: str, maps: list[tuple[int, int]], start: int, end: int
                  ) -> tuple[Status | None, list[tuple[int, int]]]:
    dev = _attached(profile, page_size_mask=1)
    for s, e in maps:
        ok(map_(dev, 7, s, e, 0x100000 + s))
    reply = unmap(dev, 7, start, end)
    return reply.status, [(m.virt_start, m.virt_end) for m in dev.mappings(7)]


@pytest.mark.parametrize(("maps", "start", "end", "status", "left"), [
    ([], 0, 4, Status.OK, []),
    ([(0, 9)], 0, 9, Status.OK, []),
    ([(0, 4), (5, 9)], 0, 9, Status.OK, []),
    ([(0, 9)], 0, 4, Status.RANGE, [(0, 9)]),
    ([(0, 4), (5, 9)], 0, 4, Status.OK, [(5, 9)]),
    ([(0, 4)], 0, 9, Status.OK, []),
    ([(0, 4), (10, 14)], 0, 14, Status.OK, []),
])
def test_unmap_spec_examples(profile: str, maps: list[tuple[int, int]], start: int, end: int,
                             status: Status, left: list[tuple[int, int]]) -> None:
    assert _spec_example(profile, maps, start, end) == (status, left)


def test_unmap_split_is_range_and_atomic_in_spec() -> None:
    dev = _attached("spec")
    ok(map_(dev, 7, 0, G - 1, 0))
    ok(map_(dev, 7, G, 3 * G - 1, 0))
    before = state(dev)
    refused(unmap(dev, 7, 0, 2 * G - 1), "virtio.unmap.split", Status.RANGE)
    assert state(dev) == before


def test_unmap_split_keeps_earlier_removals_in_qemu() -> None:
    dev = _attached("qemu")
    ok(map_(dev, 7, 0, G - 1, 0))
    ok(map_(dev, 7, G, 3 * G - 1, 0))
    ok(map_(dev, 7, 4 * G, 5 * G - 1, 0))
    refused(unmap(dev, 7, 0, 2 * G - 1), "virtio.unmap.split", Status.RANGE)
    assert [(m.virt_start, m.virt_end) for m in dev.mappings(7)] == \
        [(G, 3 * G - 1), (4 * G, 5 * G - 1)]


def test_unmap_refused_by_the_host_is_deverr_and_rolled_back(profile: str) -> None:
    host = HostTables()
    dev = _attached(profile, host=host)
    ok(attach(dev, 7, 2))
    for i in range(3):
        ok(map_(dev, 7, i * G, i * G + G - 1, 0x100000 + i * G))
    host.fail("unmap", after=4)
    before = state(dev)
    refused(unmap(dev, 7, 0, 3 * G - 1), "virtio.unmap.host", Status.DEVERR)
    assert state(dev) == before
    assert host.mappings(1) == host.mappings(2) == dev.mappings(7)


def test_unmap_of_the_full_range(profile: str) -> None:
    dev = _attached(profile)
    ok(map_(dev, 7, 0, (1 << 64) - 1, 0))
    ok(unmap(dev, 7, 0, (1 << 64) - 1))
    assert dev.mappings(7) == []


def test_map_and_unmap_need_map_unmap_negotiated_in_spec() -> None:
    dev = _attached("spec", negotiate=int(Feature.BYPASS_CONFIG))
    refused(map_(dev, 7, 0, G - 1, 0), "virtio.map.not_negotiated", Status.UNSUPP)
    refused(unmap(dev, 7, 0, G - 1), "virtio.unmap.not_negotiated", Status.UNSUPP)
    qdev = _attached("qemu", negotiate=int(Feature.BYPASS_CONFIG))
    ok(map_(qdev, 7, 0, G - 1, 0))
    ok(unmap(qdev, 7, 0, G - 1))


def test_map_whose_physical_range_passes_2_64_is_range_in_spec() -> None:
    top = (1 << 64) - G
    dev = _attached("spec")
    refused(map_(dev, 7, 0, 2 * G - 1, top), "virtio.map.phys_range", Status.RANGE)
    ok(map_(dev, 7, 0, G - 1, top))  # ends exactly at 2^64 - 1
    qdev = _attached("qemu")
    ok(map_(qdev, 7, 0, 2 * G - 1, top))
    assert qdev.translate(1, G + 0x10, 1).paddr == 0x10  # QEMU's uint64 arithmetic wraps

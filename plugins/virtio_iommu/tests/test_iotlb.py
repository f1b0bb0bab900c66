"""The IOTLB under UNMAP: entries of mappings of any size and alignment go away with their
mapping, whatever else the cache holds (the core's IOTLB takes naturally aligned pages)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from virtio_rig import G, attach, device, map_, ok, unmap

from iommu_uapi.translation import TranslationFault
from iommu_uapi_virtio_iommu import Status
from iommu_uapi_virtio_iommu import layouts as L

R = 1


def test_unmap_of_one_of_many_odd_sized_mappings_leaves_no_stale_entry(profile: str) -> None:
    dev = device(profile)
    ok(attach(dev, 7, 1))
    starts = [G + i * 3 * G for i in range(8)]  # 12 KiB mappings at 4 KiB, 16 KiB, 28 KiB ...
    for s in starts:
        ok(map_(dev, 7, s, s + 3 * G - 1, 0x1000000 + s))
    for s in starts:
        for off in (0, G, 2 * G + 8):
            assert dev.translate(1, s + off, R).paddr == 0x1000000 + s + off
    ok(unmap(dev, 7, starts[3], starts[3] + 3 * G - 1))
    for off in (0, G, 2 * G + 8):
        with pytest.raises(TranslationFault):
            dev.translate(1, starts[3] + off, R)
    assert dev.translate(1, starts[4], R).paddr == 0x1000000 + starts[4]


def test_leaf_size_is_the_largest_aligned_block_inside_the_mapping() -> None:
    dev = device("spec", page_size_mask=1)
    ok(attach(dev, 7, 1))
    ok(map_(dev, 7, 0x1000, 0x8FFF, 0x100000))  # 32 KiB at 4 KiB
    assert dev.translate(1, 0x1000, R).page_size == 0x1000
    assert dev.translate(1, 0x2000, R).page_size == 0x2000
    assert dev.translate(1, 0x4000, R).page_size == 0x4000
    assert dev.translate(1, 0x8800, R).page_size == 0x1000
    ok(map_(dev, 7, 0x10001, 0x10002, 0x200001))  # two bytes
    t = dev.translate(1, 0x10002, R)
    assert (t.paddr, t.page_size) == (0x200002, 1)
    ok(map_(dev, 7, 0x20000, (1 << 64) - 1, 0))
    assert dev.translate(1, 1 << 63, R).page_size == 1 << 63


_SPANS = st.tuples(st.integers(0, 40), st.integers(1, 12))


@given(spans=st.lists(_SPANS, min_size=1, max_size=12), picks=st.lists(st.integers(0, 11)),
       profile=st.sampled_from(["spec", "qemu"]))
def test_translations_follow_the_mappings_through_the_iotlb(
        spans: list[tuple[int, int]], picks: list[int], profile: str) -> None:
    dev = device(profile, page_size_mask=0x100)  # 256-byte granule: mappings inside pages too
    ok(attach(dev, 7, 1))
    live = []
    for start, length in spans:
        s, e = start * 0x300, start * 0x300 + length * 0x100 - 1
        if dev.handle(L.encode_map(7, s, e, 0x800000 + s, 3), 4).status == Status.OK:
            live.append((s, e))
    probes = sorted({a for s, e in live for a in (s, (s + e) // 2, e)})
    for a in probes:
        dev.translate(1, a, R)
    for i in picks:
        if not live:
            break
        s, e = live.pop(i % len(live))
        ok(unmap(dev, 7, s, e))
        for a in probes:
            covered = any(ls <= a <= le for ls, le in live)
            if covered:
                assert dev.translate(1, a, R).paddr == 0x800000 + a
            else:
                with pytest.raises(TranslationFault):
                    dev.translate(1, a, R)


@given(data=st.data(), start=st.integers(0, (1 << 64) - 1))
def test_leaf_is_the_largest_aligned_block_inside(data: st.DataObject, start: int) -> None:
    from iommu_uapi_virtio_iommu.mappings import Mapping
    from iommu_uapi_virtio_iommu.translate import _leaf
    end = data.draw(st.integers(start, (1 << 64) - 1))
    iova = data.draw(st.integers(start, end))
    leaf = _leaf(Mapping(start, end, 0x1000, 3), iova)
    fits = [k for k in range(65) if iova & -(1 << k) >= start
            and (iova & -(1 << k)) + (1 << k) - 1 <= end]
    assert (leaf.iova, leaf.size) == (iova & -(1 << max(fits)), 1 << max(fits))
    assert leaf.paddr == 0x1000 + leaf.iova - start

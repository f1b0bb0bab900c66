"""Counters of every cache (hits, misses, fills, evictions, entries dropped per invalidation
kind), the PCIe ATS range encoding the device TLBs execute, and the cache presets."""

from __future__ import annotations

import pytest

from iommu_uapi.caches import PRESETS, TLB, DeviceTlbs, Geometry, TLBEntry, WalkCache, preset
from iommu_uapi.hw.ats import ats_range, ats_size_encoding


def page(vpn: int, global_: bool = False) -> TLBEntry:
    return TLBEntry(vpn << 12, 0x1000, 0x8000_0000 + (vpn << 12), 3, global_)


def test_iotlb_counts_each_kind_of_drop() -> None:
    tlb = TLB(3)
    for vpn in range(4):
        tlb.fill((1, vpn % 2), vpn << 12, page(vpn, global_=vpn == 3))
    assert (tlb.fills, tlb.evictions, len(tlb)) == (4, 1, 3)
    assert tlb.lookup((1, 0), 0) is None and tlb.lookup((1, 1), 0x3000) is not None  # FIFO
    assert (tlb.hits, tlb.misses, tlb.hit_rate) == (1, 1, 0.5)
    assert tlb.invalidate((1, 0), 0x2000, 0x1000) == 1
    assert tlb.invalidate((1, 1), include_global=False) == 1      # page 3 is global: it stays
    assert tlb.invalidate((1,)) == 1
    tlb.fill((2, 0), 0, page(0))
    assert tlb.flush() == 1
    assert tlb.dropped == {"page": 1, "tag": 2, "global": 1}
    tlb.reset_counters()
    assert (tlb.hits, tlb.misses, tlb.fills, tlb.evictions, tlb.dropped) == (0, 0, 0, 0, {})


def test_walk_cache_counts_hits_and_drops() -> None:
    wc = WalkCache()
    wc.fill((5,), 2, 0x20_0000, 0xA000)
    assert wc.deepest((5,), 0x3F_F000, (2, 3)) == (2, 0xA000)
    assert wc.deepest((6,), 0x3F_F000, (2, 3)) is None
    assert (wc.hits, wc.misses, wc.fills) == (1, 1, 1)
    assert wc.invalidate((5,), 0x20_0000) == 1 and wc.dropped == {"page": 1}


@pytest.mark.parametrize(("addr", "s", "expect"), [
    (0x7123, False, (0x7000, 0x1000)),              # S=0: the one page
    (0x6000, True, (0x6000, 0x2000)),               # bit 12 clear: 8 KiB
    (0x5000, True, (0x4000, 0x4000)),               # one 1 from bit 12: 16 KiB, aligned
    (0x7FFF_FFFF_FFFF_F000, True, (0, 1 << 64)),    # bits 62:12 all ones: everything
])
def test_ats_range_decodes_the_s_bit_encoding(addr: int, s: bool,
                                              expect: tuple[int, int]) -> None:
    assert ats_range(addr, s) == expect


@pytest.mark.parametrize("order", range(0, 53))
def test_ats_size_encoding_round_trips(order: int) -> None:
    base = 0x10_0000_0000_0000 & ~((0x1000 << order) - 1)
    assert ats_range(*ats_size_encoding(base, order)) == (base, 0x1000 << order)


def test_device_tlbs_execute_an_ats_invalidation_request() -> None:
    devs = DeviceTlbs()
    atc = devs.enable(0x300)
    for vpn in range(8):
        atc.fill((4,), vpn << 12, page(vpn))
    addr, s = ats_size_encoding(0x4000, 2)          # 4 pages at 16 KiB
    assert devs.invalidate_request(0x300, (4,), addr, s) == 4
    assert sorted(atc.bucket((4,))) == [0, 1, 2, 3]
    assert devs.invalidate_request(0x301, (4,), addr, s) == 0     # no ATS: nothing
    assert (devs.hits, devs.misses) == (0, 0)


def test_device_tlbs_take_their_geometry() -> None:
    devs = DeviceTlbs(preset("gem5-smmuv3").devtlb)
    atc = devs.enable(1)
    assert atc.capacity == 32 and devs.enable(1) is atc and devs.enable(2, 4).capacity == 4
    for vpn in range(40):
        atc.fill((None,), vpn << 12, page(vpn))
    assert len(atc) == 32 and atc.evictions == 8
    atc.lookup((None,), 0)
    assert (devs.hits, devs.misses) == (0, 1)
    devs.detach(1)
    assert devs.get(1) is None


def test_gem5_smmuv3_preset_has_gem5s_defaults() -> None:
    p = preset("gem5-smmuv3")
    assert p.micro_tlb == Geometry(32, None, "fifo")
    assert p.iotlb == Geometry(2048, 4, "fifo") and p.iotlb.sets == 512
    assert p.config == Geometry(64, 4, "fifo")
    assert {lv: g.entries for lv, g in p.walk_s1.items()} == {4: 4, 3: 28, 2: 348, 1: 4}
    assert {lv: g.entries for lv, g in p.walk_s2.items()} == {4: 4, 3: 28, 2: 92, 1: 4}
    assert TLB(geometry=p.iotlb).capacity == 2048
    assert set(PRESETS) == {"unbounded", "gem5-smmuv3"}
    with pytest.raises(KeyError, match="unbounded"):
        preset("qemu")

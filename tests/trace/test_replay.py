"""Replay's textbook checks: what an LRU IOTLB does with cyclic and ring workloads, and what a
nested walk costs, on the test backend."""

from __future__ import annotations

import errno
import io

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.trace import Header, TraceReader, encode_events, replay
from iommu_uapi.trace import events as ev

from .helpers import lru, run, trace_bytes

K, T = 16, 400


@pytest.mark.parametrize("n", [1, 4, 8, 15])
def test_cyclic_over_k_pages_never_hits_an_lru_smaller_than_k(n: int) -> None:
    stats = run("cyclic", iotlb=lru(n), pages=K, dmas=T)
    assert (stats.caches["iotlb"].hits, stats.caches["iotlb"].misses) == (0, T)
    assert stats.table_reads.histogram == {4: T}


@pytest.mark.parametrize("n", [16, 17, 64, None])
def test_cyclic_over_k_pages_hits_t_minus_k_in_an_lru_of_k_or_more(n: int | None) -> None:
    stats = run("cyclic", iotlb=lru(n) if n else None, pages=K, dmas=T)
    assert (stats.caches["iotlb"].hits, stats.caches["iotlb"].misses) == (T - K, K)
    assert stats.table_reads.histogram == {0: T - K, 4: K}


@pytest.mark.parametrize("n", [1, 8, 64, 4096, None])
@pytest.mark.parametrize("buffer", [2048, 4096])
def test_a_strict_ring_gets_no_iotlb_reuse_whatever_the_iotlb_size(n: int | None,
                                                                   buffer: int) -> None:
    stats = run("ring", iotlb=lru(n) if n else None, mode="strict", ring=16, buffer=buffer,
                packets=300)
    assert stats.caches["iotlb"].hits == 0
    assert stats.caches["iotlb"].misses == 300
    assert stats.invalidations == {"unmap": 300}


def test_deferred_invalidation_hits_grow_with_the_batch() -> None:
    hits = [run("ring", mode="deferred", ring=8, buffer=4096, packets=512,
                batch=b).caches["iotlb"].hits for b in (1, 2, 4, 8, 16, 32, 64)]
    assert hits[:4] == [0, 0, 0, 0]  # the batch flushes before a slot comes round again
    assert hits[3] < hits[4] < hits[5] < hits[6]
    assert hits[6] == 512 * 7 // 8  # one miss per slot per flush


def test_a_ring_packing_two_buffers_a_page_reuses_the_page_once_deferred() -> None:
    strict = run("ring", mode="strict", packets=256, ring=64, buffer=2048)
    deferred = run("ring", mode="deferred", packets=256, ring=64, buffer=2048, batch=4)
    assert strict.caches["iotlb"].hits == 0
    assert deferred.caches["iotlb"].hits == 128


def test_a_timer_flush_in_trace_time_batches_by_the_packets_in_its_window() -> None:
    def hits(timer: int) -> int:
        return run("ring", mode="deferred", ring=8, buffer=4096, packets=512, batch=10**6,
                   timer=timer, interval=100).caches["iotlb"].hits

    assert hits(16 * 100) == 256  # a window of two laps: each slot misses once per window
    assert hits(16 * 100) < hits(64 * 100) < hits(10**9)


def test_a_ring_never_unmapped_hits_once_warm() -> None:
    stats = run("ring", mode="none", ring=16, buffer=4096, packets=160)
    assert (stats.caches["iotlb"].hits, stats.caches["iotlb"].misses) == (144, 16)
    assert stats.invalidations == {}


def test_a_cold_nested_walk_of_4_over_4_levels_reads_24_descriptors() -> None:
    stats = run("nested", pasids=2, pages=4, dmas=200)
    hist = stats.table_reads.histogram
    assert set(hist) == {0, 24}
    assert hist[24] == 2 * 4  # one cold walk per (PASID, page)
    assert stats.caches["iotlb"].misses == 8


def test_a_nested_walk_over_2m_stage2_pages_reads_19() -> None:
    stats = run("nested", pasids=1, pages=2, dmas=20, s2_page=0x20_0000)
    assert max(stats.table_reads.histogram) == (4 + 1) * (3 + 1) - 1


def test_per_context_counts_split_by_device_and_pasid() -> None:
    stats = replay(io.BytesIO(trace_bytes("nested", pasids=3, pages=2, dmas=300)), "mini",
                   per_context=True)
    assert stats.contexts is not None
    assert set(stats.contexts) == {"0x0100:1", "0x0100:2", "0x0100:3"}
    assert sum(c.translations for c in stats.contexts.values()) == 300
    assert all(c.walks == 2 and c.table_reads == 48 for c in stats.contexts.values())


def test_a_dma_over_several_pages_translates_each_page() -> None:
    data = encode_events([ev.DeviceAdd(1), ev.DomainAlloc(1), ev.AttachDevice(1, 1),
                          *(ev.Map(1, 0x10000 + i * 0x1000, 0x20000 + i * 0x1000, 0x1000, 3)
                            for i in range(4)),
                          ev.Dma(1, 0x10800, None, 0x2000, 1), ev.Dma(1, 0x13000, None, 8, 1)])
    stats = replay(io.BytesIO(data), "mini")
    assert (stats.dmas, stats.translations) == (2, 4)


def test_faults_and_refused_calls_are_counted_not_raised() -> None:
    data = encode_events([ev.DeviceAdd(1), ev.DomainAlloc(1), ev.AttachDevice(1, 1),
                          ev.Dma(1, 0x5000), ev.Map(1, 0x1001, 0, 0x1000, 3), ev.Dma(7, 0),
                          ev.Map(9, 0x1000, 0, 0x1000, 3), ev.Unmap(9, 0x1000, 0x1000),
                          ev.Unmap(1, 0x1800, 0x1000), ev.Map(1, 0x1000, 0, 0x1000, 3),
                          ev.Unmap(1, 0x1000, 0x1000)])
    stats = replay(io.BytesIO(data), "mini")
    assert stats.faults == 2
    # an unknown domain, a misaligned map or unmap: refused and counted, never raised
    assert stats.refused == {"Map": 2, "Unmap": 2}
    assert stats.invalidations == {"unmap": 1}


def test_a_backend_without_a_needed_feature_is_refused_upfront() -> None:
    data = trace_bytes("nested", pasids=1, pages=1, dmas=1)
    with pytest.raises(UAPIError) as info:
        replay(io.BytesIO(data), "mini-table")
    assert info.value.rule == "trace.capability"
    assert info.value.errno == errno.EOPNOTSUPP
    assert "BIND_PGTBL" in info.value.message


def test_requirements_are_found_by_a_pass_when_the_header_has_none(tmp_path: object) -> None:
    path = f"{tmp_path}/t.trace"
    with open(path, "wb") as f:
        f.write(encode_events([ev.Bind(1, 1, b"")], Header(requires=None)))
    with pytest.raises(UAPIError) as info:
        replay(path, "mini-table")
    assert info.value.rule == "trace.capability"


def test_dma_runs_replay_as_their_dmas_one_by_one() -> None:
    from iommu_uapi.trace import Replayer, TraceReader, make_iommu

    data = trace_bytes("random", pages=40, dmas=3000, devices=3, seed=2)
    results = []
    for frames in (True, False):
        replayer = Replayer(make_iommu("mini", iotlb=lru(16)))
        with TraceReader(io.BytesIO(data)) as reader:
            replayer.run(reader.frames() if frames else reader.chunks())
        results.append(replayer.stats())
    assert results[0] == results[1]
    assert results[0].dmas == 3000 and results[0].caches["iotlb"].hits > 0


def test_invalidations_are_counted_by_cache_and_granularity() -> None:
    from iommu_uapi.uapi import (
        CacheInvalidateInfo,
        CacheType,
        InvGranu,
        InvGranularity,
        InvPasidFlags,
        InvPasidInfo,
    )

    nested = trace_bytes("nested", pasids=1, pages=2, dmas=10)
    info = CacheInvalidateInfo(argsz=32, version=1, cache=CacheType.IOTLB,
                               granularity=InvGranularity.PASID, granu=InvGranu(
                                   pasid_info=InvPasidInfo(flags=InvPasidFlags.PASID, pasid=1)))
    with TraceReader(io.BytesIO(nested)) as reader:
        events = list(reader)
    events += [ev.Invalidate(1, 0x0100, info.to_bytes()), ev.Invalidate(1, 0x0100, b"\x01"),
               *events[-10:]]
    stats = replay(io.BytesIO(encode_events(events, Header(requires=["BIND_PGTBL",
                                                                     "CACHE_INVLD"]))), "mini")
    assert stats.invalidations == {"IOTLB/PASID": 1}
    assert stats.refused == {"Invalidate": 1}
    assert stats.caches["iotlb"].dropped == {"tag": 2}
    assert stats.table_reads.histogram[24] == 4  # both pages walked again after the flush

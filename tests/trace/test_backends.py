"""Replays on the installed backends: the same trace gives the same translations on every
installed backend that has the features it needs as on the test backend (differential); VT-d's
first-level paging-structure cache shortens nested walks, and a trace recorded on VT-d replays
to the same statistics there. Runs where a backend plugin is installed (tox env py311-vtd)."""

from __future__ import annotations

import io
from typing import Any

import pytest

from iommu_uapi import plugins
from iommu_uapi.errors import UAPIError
from iommu_uapi.features import Feature
from iommu_uapi.trace import (
    Header,
    Recorder,
    Replayer,
    TraceReader,
    TraceWriter,
    make_iommu,
    workload,
)
from iommu_uapi.trace import events as ev
from iommu_uapi.translation import Translation, TranslationFault

from .helpers import lru, run, trace_bytes
from .test_record import drive_and_record

#: the installed backends (the test backends are registered only while a test runs)
INSTALLED = sorted(plugins.registry().backends)
if not INSTALLED:
    pytest.skip("no backend plugin is installed", allow_module_level=True)
needs_vtd = pytest.mark.skipif("vtd" not in INSTALLED, reason="the VT-d plugin is not installed")

WORKLOADS: list[tuple[str, dict[str, Any]]] = [
    ("ring", {"mode": "strict", "ring": 8, "packets": 64}),
    ("ring", {"mode": "deferred", "ring": 8, "buffer": 2048, "packets": 200, "batch": 5}),
    ("random", {"pages": 32, "dmas": 300, "seed": 7, "devices": 2}),
    ("nested", {"pasids": 3, "pages": 5, "dmas": 200}),
]


def translations(backend: str, data: bytes) -> list[tuple[int, int, int] | str]:
    """Every translation a replay of ``data`` made: (paddr, page size, perm), or the fault."""
    iommu = make_iommu(backend, iotlb=lru(16))
    seen: list[tuple[int, int, int] | str] = []
    original = type(iommu).translate

    def translate(dev: Any, iova: int, *, pasid: int | None = None,
                  access: int = 1) -> Translation:
        try:
            tr = original(iommu, dev, iova, pasid=pasid, access=access)
        except (TranslationFault, UAPIError) as exc:
            seen.append(type(exc).__name__)
            raise
        seen.append((tr.paddr, tr.page_size, tr.perm & 3))
        return tr

    iommu.translate = translate  # type: ignore[method-assign]
    with TraceReader(io.BytesIO(data)) as reader:
        Replayer(iommu).run(reader.chunks())
    return seen


@pytest.mark.parametrize("backend", INSTALLED)
@pytest.mark.parametrize(("kind", "params"), WORKLOADS, ids=[w[0] + str(i) for i, w in
                                                              enumerate(WORKLOADS)])
def test_every_capable_backend_gives_the_test_backends_translations(
        backend: str, kind: str, params: dict[str, Any]) -> None:
    header, _ = workload(kind, **params)
    caps = make_iommu(backend).capabilities.features
    if any(not Feature[name] & caps for name in header.requires or ()):
        pytest.skip(f"{backend} lacks what {kind} needs ({header.requires})")
    data = trace_bytes(kind, **params)
    on_backend = translations(backend, data)
    assert on_backend and all(isinstance(t, tuple) for t in on_backend)
    assert on_backend == translations("mini", data)


@needs_vtd
def test_a_cold_nested_walk_on_vtd_reads_24_and_fewer_with_the_walk_cache_warm() -> None:
    stats = run("nested", backend="vtd", pasids=2, pages=8, dmas=400)
    hist = stats.table_reads.histogram
    assert hist[24] >= 1  # the first walk of a PASID: nothing cached
    warm = [reads for reads in hist if 0 < reads < 24]
    assert warm and max(warm) <= 9  # the paging-structure cache holds the upper levels
    assert stats.caches["fl_psc"].hits > 0


@needs_vtd
def test_a_walk_cache_of_one_entry_per_level_costs_more_reads_than_an_unbounded_one() -> None:
    from iommu_uapi.caches import Geometry

    data = trace_bytes("nested", pasids=2, pages=64, dmas=2000, seed=1)
    small = make_iommu("vtd", walk=Geometry(1, None, "lru"))
    big = make_iommu("vtd")
    means = []
    for iommu in (small, big):
        replayer = Replayer(iommu)
        with TraceReader(io.BytesIO(data)) as reader:
            replayer.run(reader.chunks())
        means.append(replayer.stats().table_reads.mean)
    assert means[0] > means[1] > 0


@needs_vtd
def test_a_trace_recorded_on_vtd_replays_to_identical_statistics_there() -> None:
    from iommu_uapi.trace import replay

    live, data = drive_and_record("vtd", "random", pages=48, dmas=800, seed=5)
    again = replay(io.BytesIO(data), "vtd", iotlb=lru(32))
    assert again.caches == live.caches
    assert again.table_reads == live.table_reads


@needs_vtd
def test_recording_a_nested_guest_with_a_snapshot_of_its_memory_replays_the_same() -> None:
    from iommu_uapi.trace.workloads import GUEST_RAM, GUEST_RAM_SIZE

    iommu = make_iommu("vtd")
    buf = io.BytesIO()
    writer = TraceWriter(buf, Header(backend="vtd"))
    recorder = Recorder(writer)
    live = Replayer(iommu)
    _, events = workload("nested", pasids=2, pages=4, dmas=100)
    recorder.attach(iommu)
    for event in events:
        if isinstance(event, ev.Bind):  # the guest's tables, as the bind will find them
            assert recorder.snapshot(GUEST_RAM, GUEST_RAM_SIZE) > 0
        live.run([[event]])
    recorder.detach()
    writer.close()
    again = Replayer(make_iommu("vtd"))
    with TraceReader(io.BytesIO(buf.getvalue())) as reader:
        again.run(reader.chunks())
    assert again.stats().table_reads == live.stats().table_reads
    assert again.faults == live.faults == 0


@needs_vtd
def test_range_calls_are_recorded_and_replay_to_the_same_mappings() -> None:
    """map_pages/unmap_pages reach VT-d through their own hooks: each is recorded as one range
    event, and the replay leaves the same stage-2 mappings."""
    out = io.BytesIO()
    iommu = make_iommu("vtd")
    writer = TraceWriter(out, Header(backend="vtd"))
    rec = Recorder(writer)
    rec.attach(iommu)
    dom = iommu.domain_alloc()
    iommu.map_pages(dom, 0x200000, 0x4000_0000, 0x1000, 16, 3)
    iommu.map_pages(dom, 0x400000, 0x8000_0000, 0x200000, 2, 3)
    iommu.unmap_pages(dom, 0x200000 + 0x4000, 0x1000, 4)
    rec.detach()
    writer.close()
    events = [e for e in TraceReader(io.BytesIO(out.getvalue()))
              if isinstance(e, (ev.Map, ev.Unmap))]
    assert [(type(e).__name__, e.iova, e.size) for e in events] == [
        ("Map", 0x200000, 0x10000), ("Map", 0x400000, 0x400000), ("Unmap", 0x204000, 0x4000)]
    replayed = make_iommu("vtd")
    with TraceReader(io.BytesIO(out.getvalue())) as reader:
        Replayer(replayed).run(reader.chunks())
    rdom = replayed.domains[dom.id]
    for iova in (0x200000, 0x203000, 0x204000, 0x207000, 0x208000, 0x400000, 0x7FF000):
        assert replayed.iova_to_phys(rdom, iova) == iommu.iova_to_phys(dom, iova), hex(iova)

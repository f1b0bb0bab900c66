"""Recording: a recorder sees every control call and DMA; a recorded trace replayed on the same
backend gives identical statistics; without a recorder the data path is the class's."""

from __future__ import annotations

import io
from collections.abc import Iterator
from itertools import islice

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.iommu import IOMMU
from iommu_uapi.trace import (
    Header,
    Recorder,
    Replayer,
    ReplayStats,
    TraceReader,
    TraceWriter,
    make_iommu,
    replay,
    workload,
)
from iommu_uapi.trace import events as ev

from .helpers import lru


def _chunks(events: Iterator[ev.Event], n: int = 64) -> Iterator[list[ev.Event]]:
    while chunk := list(islice(events, n)):
        yield chunk


def drive_and_record(backend: str, kind: str, **params: object
                     ) -> tuple[ReplayStats, bytes]:
    """Drive an IOMMU through a workload with a recorder attached: the live statistics and the
    recorded trace."""
    iommu = make_iommu(backend, iotlb=lru(32))
    buf = io.BytesIO()
    writer = TraceWriter(buf, Header(backend=backend, cache="iotlb=32,0,lru"))
    recorder = Recorder(writer).attach(iommu)
    live = Replayer(iommu)
    _, events = workload(kind, **params)
    live.run(_chunks(events))
    recorder.detach()
    writer.close()
    return live.stats("iotlb=32,0,lru"), buf.getvalue()


def test_a_recorded_trace_replays_to_identical_statistics() -> None:
    for kind, params in (("ring", {"mode": "deferred", "ring": 16, "buffer": 2048,
                                   "packets": 600, "batch": 8}),
                         ("random", {"pages": 64, "dmas": 1500, "seed": 3})):
        live, data = drive_and_record("mini", kind, **params)
        again = replay(io.BytesIO(data), "mini", iotlb=lru(32))
        assert again.caches == live.caches
        assert again.table_reads == live.table_reads
        assert again.config_reads == live.config_reads
        assert (again.dmas, again.translations, again.faults) == (live.dmas,
                                                                  live.translations, 0)
        assert again.invalidations == live.invalidations


def test_the_recorder_keeps_control_calls_as_events_in_order() -> None:
    iommu = IOMMU("mini")
    buf = io.BytesIO()
    writer = TraceWriter(buf, Header(backend="mini"))
    Recorder(writer).attach(iommu)
    dev = iommu.add_device(0x10, ats=True)
    domain = iommu.domain_alloc()
    iommu.attach_device(domain, dev)
    iommu.map(domain, 0x1000, 0x8000_0000, 0x1000, 3)
    iommu.translate(dev, 0x1234, access=2)
    iommu.unmap(domain, 0x1000, 0x1000)
    with pytest.raises(UAPIError):
        iommu.map(domain, 0x1001, 0, 0x1000, 3)  # refused: not recorded
    writer.close()
    with TraceReader(io.BytesIO(buf.getvalue())) as reader:
        assert list(reader) == [
            ev.DeviceAdd(0x10, True, False), ev.DomainAlloc(domain.id),
            ev.AttachDevice(domain.id, 0x10), ev.Map(domain.id, 0x1000, 0x8000_0000, 0x1000, 3),
            ev.Dma(0x10, 0x1234, None, 1, 2), ev.Unmap(domain.id, 0x1000, 0x1000)]


def test_a_detached_recorder_leaves_the_class_data_path_and_records_nothing() -> None:
    iommu = IOMMU("mini")
    writer = TraceWriter(io.BytesIO(), Header())
    recorder = Recorder(writer).attach(iommu)
    assert "translate" in iommu.__dict__
    recorder.detach()
    assert "translate" not in iommu.__dict__
    iommu.add_device(0x20)
    assert writer.events == 0 and writer._pending == []


def test_timed_recording_stamps_events_in_order() -> None:
    iommu = IOMMU("mini")
    buf = io.BytesIO()
    writer = TraceWriter(buf, Header())
    Recorder(writer, timed=True).attach(iommu)
    dev = iommu.add_device(0x30)
    domain = iommu.domain_alloc()
    iommu.attach_device(domain, dev)
    writer.close()
    with TraceReader(io.BytesIO(buf.getvalue())) as reader:
        stamps = [e.t for e in reader]
    assert len(stamps) == 3 and all(t is not None for t in stamps)
    assert stamps == sorted(stamps)  # type: ignore[type-var]


def test_page_requests_and_responses_are_recorded_and_replayed() -> None:
    from iommu_uapi.uapi import PageResponse, PageResponseCode

    iommu = IOMMU("mini")
    buf = io.BytesIO()
    writer = TraceWriter(buf, Header(backend="mini"))
    Recorder(writer).attach(iommu)
    dev = iommu.add_device(0x40, pri=True)
    domain = iommu.domain_alloc()
    iommu.attach_device(domain, dev)
    iommu.register_fault_handler(dev, lambda fault: None)
    iommu.page_request(dev, 0x7000, access=2, grpid=5, private_data=(1, 2))
    response = PageResponse(argsz=24, version=1, grpid=5, code=PageResponseCode.SUCCESS)
    iommu.uapi_page_response(dev, response.to_bytes())
    writer.close()
    with TraceReader(io.BytesIO(buf.getvalue())) as reader:
        events = list(reader)
    assert events == [ev.DeviceAdd(0x40, False, True), ev.DomainAlloc(domain.id),
                      ev.AttachDevice(domain.id, 0x40),
                      ev.PageRequest(0x40, 0x7000, None, 2, 5, True, (1, 2)),
                      ev.PageResponse(0x40, response.to_bytes())]
    again = IOMMU("mini")
    replayer = Replayer(again)
    replayer.run([events])
    assert replayer.refused == {} and replayer.reported == 1
    assert again.backend.responses[-1][1].grpid == 5  # type: ignore[attr-defined]
    assert again.pending_page_requests(replayer.devices[0x40]) == []

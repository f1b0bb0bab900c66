"""The trace format: every event kind round-trips; bad input is one UAPIError naming the byte
offset, never a traceback."""

from __future__ import annotations

import errno
import gzip
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iommu_uapi.errors import UAPIError
from iommu_uapi.trace import (
    EVENT_TYPES,
    TRACE_RULES,
    Header,
    TraceReader,
    TraceWriter,
    encode_events,
    trace_info,
)
from iommu_uapi.trace import events as ev

U64 = st.integers(0, (1 << 64) - 1)
U16 = st.integers(0, 0xFFFF)
T = st.none() | st.integers(0, 1 << 62)
BLOB = st.binary(max_size=80)
PASID = st.none() | st.integers(0, (1 << 20) - 1)

KINDS: dict[type, tuple[st.SearchStrategy[object], ...]] = {
    ev.Dma: (U16, U64, PASID, st.integers(1, 1 << 20), st.integers(1, 15), T),
    ev.Map: (U16, U64, U64, U64, st.integers(0, 7), T),
    ev.Unmap: (U16, U64, U64, T),
    ev.Invalidate: (U16, U16, BLOB, T),
    ev.Bind: (U16, U16, BLOB, T),
    ev.Unbind: (U16, U16, st.integers(0, (1 << 20) - 1), T),
    ev.AttachTable: (U16, BLOB, T),
    ev.DetachTable: (U16, T),
    ev.PageRequest: (U16, U64, PASID, st.integers(0, 15), st.integers(0, 511), st.booleans(),
                     st.none() | st.tuples(U64, U64), T),
    ev.PageResponse: (U16, BLOB, T),
    ev.DeviceAdd: (U16, st.booleans(), st.booleans(), T),
    ev.DeviceRemove: (U16, T),
    ev.DomainAlloc: (U16, T),
    ev.DomainFree: (U16, T),
    ev.SetNesting: (U16, T),
    ev.AttachDevice: (U16, U16, T),
    ev.DetachDevice: (U16, U16, T),
    ev.PasidAlloc: (st.text(max_size=8), st.integers(1, (1 << 20) - 1), T),
    ev.Write: (U64, BLOB, T),
}
EVENTS = st.one_of(*(st.builds(cls, *args) for cls, args in KINDS.items()))


def test_the_round_trip_covers_every_event_kind() -> None:
    assert {cls.__name__ for cls in KINDS} == set(EVENT_TYPES)


@pytest.mark.parametrize("cls", list(KINDS), ids=lambda c: c.__name__)
@given(data=st.data())
def test_each_event_kind_round_trips(cls: type, data: st.DataObject) -> None:
    event = data.draw(st.builds(cls, *KINDS[cls]))
    with TraceReader(io.BytesIO(encode_events([event]))) as reader:
        assert list(reader) == [event]


@given(st.lists(EVENTS, max_size=40), st.booleans(), st.integers(1, 7))
def test_events_round_trip_through_the_format(events: list[ev.Event], compress: bool,
                                              chunk: int) -> None:
    buf = io.BytesIO()
    header = Header(backend="vtd", config={"five_level": True}, meta={"n": len(events)})
    with TraceWriter(buf, header, compress=compress, chunk=chunk) as writer:
        writer.extend(events)
    data = buf.getvalue()
    assert data.startswith(b"\x1f\x8b") == compress
    with TraceReader(io.BytesIO(data)) as reader:
        assert reader.header == header
        assert list(reader) == events


def test_consecutive_dmas_are_one_run_and_a_dma_alone_is_itself() -> None:
    events = [ev.Map(1, 0x1000, 0, 0x1000, 3), ev.Dma(1, 0x1000), ev.Unmap(1, 0x1000, 0x1000),
              ev.Dma(1, 0x2000, None, 8, 2), ev.Dma(1, 0x3000, 5, 8, 2)]
    with TraceReader(io.BytesIO(encode_events(events))) as reader:
        (frame,) = list(reader.frames())
    assert [type(e) for e in frame] == [ev.Map, ev.Dma, ev.Unmap, ev.DmaRun]
    assert frame[3] == ev.DmaRun([0x2000, 0x3000], 1, [None, 5], 8, 2, None, True)
    with TraceReader(io.BytesIO(encode_events(events))) as reader:
        assert list(reader) == events


def test_trace_info_counts_events_by_kind_and_time_span() -> None:
    data = encode_events([ev.DeviceAdd(1, t=5), ev.Dma(1, 0x1000, t=7), ev.Dma(1, 0x2000),
                          ev.Dma(1, 0x3000, t=30)], Header(backend="mini"))
    info = trace_info(io.BytesIO(data))
    assert info.events == {"Dma": 3, "DeviceAdd": 1}
    assert info.total == 4
    assert (info.first_t, info.last_t) == (5, 30)
    assert info.header.backend == "mini"
    assert info.bytes == len(data)


def test_gzip_file_is_chosen_by_name(tmp_path: object) -> None:
    path = f"{tmp_path}/t.trace.gz"
    with TraceWriter(path, Header()) as writer:
        writer.append(ev.Dma(1, 0x1000))
    with open(path, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"
    assert trace_info(path).events == {"Dma": 1}


def _rejected(data: bytes) -> UAPIError:
    with pytest.raises(UAPIError) as info, TraceReader(io.BytesIO(data)) as reader:
        for _ in reader:
            pass
    return info.value


SAMPLE = encode_events([ev.DeviceAdd(0x100), ev.Dma(0x100, 0x1000, 3)] * 3)


@pytest.mark.parametrize("cut", range(1, len(SAMPLE)))
def test_a_truncated_trace_is_refused_with_the_frames_offset(cut: int) -> None:
    err = _rejected(SAMPLE[:cut])
    assert err.rule in ("trace.truncated", "trace.magic")
    assert err.errno == TRACE_RULES[err.rule].errno
    assert "at byte offset" in err.message


def test_a_truncation_names_the_offset_of_the_frame_it_cuts() -> None:
    header_frame = 8 + 4 + int.from_bytes(SAMPLE[8:12], "little")
    err = _rejected(SAMPLE[:header_frame + 6])
    assert err.rule == "trace.truncated"
    assert err.errno == errno.ENODATA
    assert f"at byte offset {header_frame + 4}:" in err.message


def test_a_truncated_gzip_trace_is_refused() -> None:
    err = _rejected(gzip.compress(SAMPLE)[:-12])
    assert err.rule in ("trace.truncated", "trace.corrupt")
    assert "at byte offset" in err.message


def test_a_corrupt_event_frame_is_refused_with_its_offset() -> None:
    header_frame = 8 + 4 + int.from_bytes(SAMPLE[8:12], "little")
    data = bytearray(SAMPLE)
    data[header_frame + 4] = 0xC1  # never used in MessagePack
    err = _rejected(bytes(data))
    assert err.rule == "trace.corrupt"
    assert err.errno == errno.EBADMSG
    assert f"at byte offset {header_frame}:" in err.message


def test_an_event_of_unknown_kind_is_corrupt() -> None:
    import msgspec

    body = msgspec.msgpack.encode([[99, 1, 2]])
    data = SAMPLE[:8 + 4 + int.from_bytes(SAMPLE[8:12], "little")]
    err = _rejected(data + len(body).to_bytes(4, "little") + body + bytes(4))
    assert err.rule == "trace.corrupt"


def test_a_trace_of_another_version_is_refused() -> None:
    import msgspec

    payload = msgspec.msgpack.encode({"version": 99, "backend": "vtd"})
    err = _rejected(b"IOMMUTRC" + len(payload).to_bytes(4, "little") + payload + bytes(4))
    assert err.rule == "trace.version"
    assert err.errno == errno.EPROTONOSUPPORT
    assert "at byte offset 8:" in err.message and "99" in err.message


def test_a_file_that_is_not_a_trace_is_refused() -> None:
    err = _rejected(b"PK\x03\x04" + bytes(40))
    assert err.rule == "trace.magic"
    assert "at byte offset 0" in err.message


def test_a_frame_longer_than_any_writer_makes_is_corrupt() -> None:
    header_frame = 8 + 4 + int.from_bytes(SAMPLE[8:12], "little")
    data = SAMPLE[:header_frame] + (1 << 31).to_bytes(4, "little") + bytes(16)
    err = _rejected(data)
    assert err.rule == "trace.corrupt"
    assert f"at byte offset {header_frame}:" in err.message


def test_a_dma_run_with_columns_of_different_lengths_is_corrupt() -> None:
    import msgspec

    # the run as a writer's array would hold it (tag 18, iova, sid), two IOVAs and three SIDs
    body = msgspec.msgpack.encode([[18, [0x1000, 0x2000], [1, 2, 3]]])
    data = SAMPLE[:8 + 4 + int.from_bytes(SAMPLE[8:12], "little")]
    err = _rejected(data + len(body).to_bytes(4, "little") + body + bytes(4))
    assert err.rule == "trace.corrupt" and "columns" in err.message
    assert f"at byte offset {len(data)}:" in err.message


@pytest.mark.parametrize("columns", [{"sid": [1, 2, 3]}, {"pasid": [None]}, {"size": []},
                                     {"access": [1, 2, 3]}, {"t": [0]}])
def test_a_dma_run_is_not_built_with_columns_of_different_lengths(
        columns: dict[str, object]) -> None:
    fields: dict[str, object] = {"sid": 1, **columns}
    with pytest.raises(UAPIError) as info:
        ev.DmaRun([0x1000, 0x2000], **fields)  # type: ignore[arg-type]
    assert info.value.rule == "trace.corrupt" and "columns" in info.value.message
    assert ev.DmaRun([0x1000, 0x2000], 1, [None, 3], 8, [1, 2]).well_formed()
    with pytest.raises(UAPIError):
        ev.DmaRun(0x1000, 1)  # type: ignore[arg-type]  # iova is a list


MIXED = encode_events([ev.DeviceAdd(0x100), ev.Dma(0x100, 0x1000, 3), ev.Dma(0x108, 0x2000),
                       ev.Invalidate(1, 0x100, b"\x01\x02"), ev.Dma(0x100, 0x1000, None, 8)])


@given(st.lists(st.tuples(st.integers(0, len(MIXED) - 1), st.integers(0, 255)), min_size=1,
                max_size=4), st.booleans())
def test_any_damage_is_read_or_refused_by_a_trace_rule(flips: list[tuple[int, int]],
                                                       compress: bool) -> None:
    data = bytearray(MIXED)
    for pos, value in flips:
        data[pos] = value
    blob = gzip.compress(bytes(data)) if compress else bytes(data)
    try:
        with TraceReader(io.BytesIO(blob)) as reader:
            list(reader)
    except UAPIError as err:
        assert err.rule in TRACE_RULES
        assert err.errno == TRACE_RULES[err.rule].errno


def test_the_trace_rules_are_a_registered_table() -> None:
    """``fail`` raises every trace rule with its errno, as for the core's own tables."""
    from iommu_uapi.ruletable import fail, tables
    from iommu_uapi.trace import TRACE_TABLE

    assert TRACE_TABLE in tables()
    for rule in TRACE_RULES.values():
        err = fail(rule.id)
        assert (err.errno, err.rule) == (rule.errno, rule.id)

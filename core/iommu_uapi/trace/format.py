"""The trace file: framed MessagePack, read as a stream in bounded memory, gzip optional.

Layout: the 8 bytes ``b"IOMMUTRC"``, then frames. A frame is a little-endian u32 length and that
many bytes of MessagePack: the first frame is the :class:`~.events.Header`, each later one a list
of events (at most :data:`CHUNK` of them), and an empty frame (length 0) ends the trace, so a
trace cut anywhere, even between frames, is known to be truncated. A reader holds one frame at
a time, so memory stays flat however long the trace. A file whose name ends in ``.gz`` is
written gzip-compressed; a reader recognises gzip by its magic bytes whatever the name, and its
byte offsets then count in the uncompressed stream.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import IO, Any

import msgspec

from ..errors import UAPIError
from .errors import trace_error
from .events import EVENT_TYPES, FORMAT_VERSION, Dma, DmaRun, Event, Header

__all__ = ["CHUNK", "MAGIC", "TraceInfo", "TraceReader", "TraceWriter", "encode_events",
           "trace_info"]

MAGIC = b"IOMMUTRC"
#: Events per frame (the unit a reader decodes at once).
CHUNK = 16384
#: The largest frame a reader accepts (a writer's frames are a few hundred KiB at most).
MAX_FRAME = 1 << 28
_LEN = struct.Struct("<I")
_GZIP_MAGIC = b"\x1f\x8b"

PathLike = str | os.PathLike[str]


class TraceWriter:
    """Write a trace: the header now, events as they come (``append``/``extend``), framed by
    :data:`CHUNK`. ``gzip`` None compresses when the name ends in ``.gz``. Use as a context
    manager or call :meth:`close`."""

    def __init__(self, target: PathLike | IO[bytes], header: Header, *,
                 compress: bool | None = None, chunk: int = CHUNK) -> None:
        if isinstance(target, (str, os.PathLike)):
            if compress is None:
                compress = os.fspath(target).endswith(".gz")
            raw: IO[bytes] = open(target, "wb")  # noqa: SIM115 - closed by close()
            self._owned: IO[bytes] | None = raw
        else:
            raw, self._owned = target, None
        self._gz = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) if compress else None
        self._out: IO[bytes] = raw if self._gz is None else self._gz  # type: ignore[assignment]
        self._enc = msgspec.msgpack.Encoder()
        self._chunk = chunk
        self._pending: list[Event] = []
        self._run: list[Dma] = []
        self._count = 0
        self.header = header
        self.events = 0
        self._out.write(MAGIC)
        self._frame(self._enc.encode(header))

    def _frame(self, payload: bytes) -> None:
        self._out.write(_LEN.pack(len(payload)))
        self._out.write(payload)

    def append(self, event: Event) -> None:
        """Add one event (consecutive DMAs are stored as one :class:`~.events.DmaRun`, a DMA
        alone as itself)."""
        if event.__class__ is Dma:
            self._run.append(event)
        else:
            if self._run:
                self._end_run()
            self._pending.append(event)
        self._count += 1
        if self._count >= self._chunk:
            self.flush()

    def _end_run(self) -> None:
        run = self._run
        # a DMA alone (a ring's packet between its map and unmap) is stored as itself
        self._pending.append(run[0] if len(run) == 1 else DmaRun.of(run))
        self._run = []

    def extend(self, events: Iterable[Event]) -> None:
        """Add events in order."""
        append = self.append
        for event in events:
            append(event)

    def flush(self) -> None:
        """Write the pending events as one frame."""
        if self._run:
            self._end_run()
        if self._pending:
            self._frame(self._enc.encode(self._pending))
            self.events += self._count
            self._pending = []
            self._count = 0

    def close(self) -> None:
        """Flush, write the end frame, and close (the file too, if this writer opened it)."""
        if self._out.closed:
            return
        self.flush()
        self._out.write(_LEN.pack(0))
        if self._gz is not None:
            self._gz.close()
            self._gz = None
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TraceReader:
    """Read a trace as a stream: :attr:`header` at once, then :meth:`chunks` (a list of events
    per frame) or plain iteration. Bad input raises ``UAPIError`` (rules ``trace.*``) naming the
    byte offset of the frame at fault."""

    def __init__(self, source: PathLike | IO[bytes]) -> None:
        if isinstance(source, (str, os.PathLike)):
            raw: IO[bytes] = open(source, "rb")  # noqa: SIM115 - closed by close()
            self._owned: IO[bytes] | None = raw
        else:
            raw, self._owned = source, None
        begin = raw.tell() if raw.seekable() else 0
        head = raw.read(2)
        rest: IO[bytes] = raw
        if head == _GZIP_MAGIC:
            raw.seek(begin)
            rest = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
            head = b""
        self._in = rest
        self._done = False
        self.offset = 0
        self._head = head
        magic = self._read(len(MAGIC), "the magic")
        if magic != MAGIC:
            raise trace_error("trace.magic", 0, f"not a trace (starts {magic[:8]!r})")
        start = self.offset
        payload = self._frame_payload()
        if not payload:
            raise trace_error("trace.truncated", start, "the header frame is missing")
        try:
            raw_header = msgspec.msgpack.decode(payload)
            version = raw_header.get("version") if isinstance(raw_header, dict) else None
        except msgspec.DecodeError as exc:
            raise trace_error("trace.corrupt", start, f"header does not decode: {exc}") from None
        if version != FORMAT_VERSION:
            raise trace_error("trace.version", start, f"format version {version!r}; this "
                              f"reader knows version {FORMAT_VERSION}")
        try:
            self.header: Header = msgspec.msgpack.decode(payload, type=Header)
        except msgspec.DecodeError as exc:
            raise trace_error("trace.corrupt", start, f"header does not decode: {exc}") from None
        self._dec = msgspec.msgpack.Decoder(list[Event])

    def _read(self, n: int, what: str) -> bytes:
        start = self.offset
        data = self._head[:n]
        self._head = self._head[len(data):]
        try:
            if len(data) < n:
                data += self._in.read(n - len(data))
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise trace_error("trace.truncated" if isinstance(exc, EOFError) else
                              "trace.corrupt", start, f"compressed stream: {exc}") from None
        if len(data) < n:
            raise trace_error("trace.truncated", start,
                              f"{what} needs {n} bytes, {len(data)} left")
        self.offset += n
        return data

    def _frame_payload(self) -> bytes | None:
        """The next frame's bytes; None at the end frame; ``trace.truncated`` at the end of
        the file before the end frame."""
        start = self.offset
        try:
            prefix = self._head + self._in.read(_LEN.size - len(self._head))
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise trace_error("trace.truncated" if isinstance(exc, EOFError) else
                              "trace.corrupt", start, f"compressed stream: {exc}") from None
        self._head = b""
        if not prefix:
            raise trace_error("trace.truncated", start, "the trace ends without its end frame")
        if len(prefix) < _LEN.size:
            raise trace_error("trace.truncated", start, f"a frame length needs 4 bytes, "
                              f"{len(prefix)} left")
        self.offset += _LEN.size
        (length,) = _LEN.unpack(prefix)
        if not length:
            self._done = True
            return None
        if length > MAX_FRAME:
            raise trace_error("trace.corrupt", start, f"a frame of {length} bytes is larger "
                              f"than any writer makes ({MAX_FRAME})")
        return self._read(length, "the frame")

    def chunks(self) -> Iterator[list[Event]]:
        """The events, one decoded frame at a time (DMA runs as their :class:`Dma` events)."""
        for frame in self.frames():
            if any(e.__class__ is DmaRun for e in frame):
                out: list[Event] = []
                for e in frame:
                    if e.__class__ is DmaRun:
                        out.extend(e.dmas())
                    else:
                        out.append(e)
                frame = out
            yield frame

    def frames(self) -> Iterator[list[Event]]:
        """The frames as stored: consecutive DMAs as :class:`~.events.DmaRun` (what a replay
        walks fastest)."""
        dec = self._dec.decode
        while not self._done:
            start = self.offset
            payload = self._frame_payload()
            if payload is None:
                return
            try:
                frame = dec(payload)  # a DMA run checks its columns as it is decoded
            except msgspec.DecodeError as exc:
                raise trace_error("trace.corrupt", start,
                                  f"frame does not decode as events: {exc}") from None
            except UAPIError:  # DmaRun.__post_init__
                raise trace_error("trace.corrupt", start, "a DMA run's columns differ "
                                  "in length") from None
            yield frame

    def __iter__(self) -> Iterator[Event]:
        for chunk in self.chunks():
            yield from chunk

    def position(self) -> int:
        """Bytes of the underlying file read so far (compressed bytes for gzip)."""
        raw = self._owned if self._owned is not None else self._in
        try:
            return int(raw.tell())
        except (OSError, ValueError):
            return self.offset

    def close(self) -> None:
        """Close the file (if this reader opened it)."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self) -> TraceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TraceInfo(msgspec.Struct, frozen=True):
    """What ``iommu-uapi trace info`` prints: the header, event counts by kind, the span of
    time stamps (ns, None when untimed) and the uncompressed size."""

    header: Header
    events: dict[str, int]
    total: int
    first_t: int | None
    last_t: int | None
    bytes: int


def trace_info(source: PathLike | IO[bytes]) -> TraceInfo:
    """Read a whole trace (streaming) and count its events."""
    counts: Counter[str] = Counter()
    first: int | None = None
    last: int | None = None
    with TraceReader(source) as reader:
        for frame in reader.frames():
            for event in frame:
                if event.__class__ is DmaRun:
                    counts["Dma"] += len(event.iova)
                    stamps: list[Any] = event.column("t")
                else:
                    counts[type(event).__name__] += 1
                    stamps = [event.t]
                for t in stamps:
                    if t is not None:
                        if first is None:
                            first = t
                        last = t
        size = reader.offset
    ordered = {name: counts[name] for name in EVENT_TYPES if counts[name]}
    return TraceInfo(reader.header, ordered, sum(counts.values()), first, last, size)


def encode_events(events: Iterable[Event], header: Header | None = None) -> bytes:
    """A whole trace in memory (tests, small tools)."""
    buf = io.BytesIO()
    with TraceWriter(buf, header or Header()) as writer:
        writer.extend(events)
        writer.flush()
    return buf.getvalue()



"""The invalidation queue (VT-d 3.x 6.5.2): a ring of descriptors in memory, IQA/IQH/IQT.

The queue is a :class:`~iommu_uapi.hw.ring.Ring` of the core (slot-gap style: one slot stays
free) placed by IQA; IQH and IQT hold its consumer and producer positions as byte offsets.
Software writes descriptors at IQT and advances it (:meth:`InvalidationQueue.submit`); the
hardware latches IQT, checks it, and consumes from IQH (:meth:`InvalidationQueue.process`),
executing each descriptor against the caches it must reach (hw-formats 1.9.11), until
IQH = IQT. A malformed descriptor stops the queue: FSTS.IQE set, IQERCD.IQEI filled, IQH left at
the descriptor (the ring stopped with the IQEI code), fault event raised. Software repairs the
queue and clears IQE (:meth:`InvalidationQueue.clear_iqe`); processing resumes from IQH.
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from iommu_uapi.errors import MemoryAccessError, UAPIError
from iommu_uapi.hw.ring import Ring
from iommu_uapi.memory import PAGE_SIZE, PhysicalMemory

from .bits import Field, Record, bit
from .caches import VtdCaches
from .qi import Descriptor, DescriptorError, Iqei, PageGroupResponse, decode_descriptor
from .qi_effects import bind
from .registers import VtdConfig
from .status import Fsts, StatusRegisters

__all__ = ["LOG_LIMIT", "InvalidationQueue", "Iqa", "LogRecord", "QueuePointer"]


class Iqa(Record, frozen=True, gc=False):
    """IQA, the invalidation queue address register."""

    LAYOUT = {
        "QS": Field(0, 3),           # queue size: 2^QS pages
        "DW": bit(11),               # 1: 256-bit descriptors
        "IQA": Field(12, 52, 12),    # 4 KiB-aligned queue base
    }
    QS: int = 0
    DW: bool = True
    IQA: int = 0


class QueuePointer(Record, frozen=True, gc=False):
    """IQH / IQT: byte offset of a descriptor in the queue (bits 18:4)."""

    LAYOUT = {"OFFSET": Field(4, 15, 4)}
    OFFSET: int = 0


_OFFSET = QueuePointer.LAYOUT["OFFSET"]
#: In 256-bit mode IQT bit 4 must be clear (descriptors are 32 bytes).
_TAIL_HALF = bit(4)
_IQE = Fsts.LAYOUT["IQE"].mask
#: Descriptor size in bytes by IQA.DW.
_STRIDE = {False: 16, True: 32}


class LogRecord(NamedTuple):
    """One executed descriptor: where it sat in the queue, what it was, how many cache entries
    it removed."""

    offset: int
    descriptor: Descriptor
    dropped: int


#: How many executed descriptors :attr:`InvalidationQueue.log` keeps (a long run keeps bounded
#: memory; :attr:`InvalidationQueue.executed` counts them all).
LOG_LIMIT = 4096


def _ring_geometry(iqa: int) -> tuple[int, int, int]:
    """(base, log2 of the descriptor count, descriptor size) of the queue IQA describes:
    2^QS pages of 16- or 32-byte descriptors."""
    stride = _STRIDE[bool(Iqa.LAYOUT["DW"].get(iqa))]
    entries = (PAGE_SIZE << Iqa.LAYOUT["QS"].get(iqa)) // stride
    return Iqa.LAYOUT["IQA"].get(iqa), entries.bit_length() - 1, stride


class InvalidationQueue:
    """The queue, its registers and the caches it invalidates.

    ``ring`` is the descriptor ring IQA places; ``iqt`` the IQT register as software wrote it
    (checked when the hardware latches it). ``page_response`` receives each page group
    response descriptor (the page-request model's way back to the device); ``log`` lists every
    executed descriptor in order.
    """

    mem: PhysicalMemory
    cfg: VtdConfig
    caches: VtdCaches
    status: StatusRegisters
    ring: Ring
    iqt: int
    scalable: bool
    log: deque[LogRecord]
    executed: int
    page_response: Callable[[PageGroupResponse], None] | None
    _iqa: int

    def __init__(self, mem: PhysicalMemory, cfg: VtdConfig, caches: VtdCaches, *,
                 status: StatusRegisters | None = None, qs: int = 0, wide: bool = True,
                 scalable: bool = True,
                 page_response: Callable[[PageGroupResponse], None] | None = None) -> None:
        if not 0 <= qs <= 7:
            raise UAPIError(errno.EINVAL, f"invalidation queue: QS {qs} not in 0..7",
                            rule="vtd.iq-size")
        self.mem = mem
        self.cfg = cfg
        self.caches = caches
        self.status = status if status is not None else StatusRegisters()
        self._iqa = Iqa(QS=qs, DW=wide, IQA=mem.alloc(PAGE_SIZE << qs)).to_int()
        self.ring = Ring(mem, *_ring_geometry(self._iqa))
        self.iqt = 0
        self.scalable = scalable
        self.log = deque(maxlen=LOG_LIMIT)
        self.executed = 0
        self.page_response = page_response

    def executed_since(self, executed: int) -> list[LogRecord]:
        """The records of the descriptors executed after the first ``executed`` (as far as
        :attr:`log` still keeps them)."""
        newer = self.executed - executed
        return list(self.log)[max(len(self.log) - newer, 0):] if newer > 0 else []

    # -- registers and geometry ---------------------------------------------------------------

    @property
    def iqa(self) -> int:
        """IQA, the queue's address, size and descriptor width."""
        return self._iqa

    @iqa.setter
    def iqa(self, value: int) -> None:
        """A write of IQA places the ring (IQH and IQT return to 0 when its geometry changes)."""
        self._iqa = value
        if self.ring.configure(*_ring_geometry(value)):
            self.iqt = 0

    @property
    def iqh(self) -> int:
        """IQH: the byte offset of the next descriptor the hardware reads."""
        return self.ring.offset(self.ring.cons)

    @property
    def base(self) -> int:
        """The queue's address."""
        return self.ring.base

    @property
    def wide(self) -> bool:
        """256-bit descriptors (IQA.DW)."""
        return self.ring.entry_size == _STRIDE[True]

    @property
    def size(self) -> int:
        """Queue size in bytes."""
        return self.ring.entries * self.ring.entry_size

    @property
    def stride(self) -> int:
        """Bytes per descriptor: 32 (256-bit) or 16."""
        return self.ring.entry_size

    @property
    def head(self) -> int:
        """IQH as a byte offset."""
        return self.iqh

    @property
    def tail(self) -> int:
        """IQT as a byte offset."""
        return _OFFSET.get(self.iqt)

    def _latch_tail(self) -> None:
        """Software produces from IQT: the ring's producer follows the register (an IQT beyond
        the queue wraps)."""
        self.ring.prod = (self.tail // self.stride) % self.ring.entries

    def free_slots(self) -> int:
        """Descriptors software may still write (one slot stays empty to tell full from empty)."""
        self._latch_tail()
        return self.ring.free()

    # -- software side ----------------------------------------------------------------------

    def write_iqt(self, value: int) -> None:
        """A software write of IQT (the value is checked when the hardware uses it)."""
        if not 0 <= value < 1 << 64:
            raise UAPIError(errno.EINVAL, f"IQT: {value!r} is not a 64-bit value",
                            rule="vtd.register")
        self.iqt = value & _OFFSET.mask

    def submit(self, descriptors: Iterable[Descriptor | Sequence[int]]) -> None:
        """Write descriptors (records, or raw quadwords) at IQT and advance IQT past them.

        Raises ``UAPIError``: EINVAL for a field that does not fit or raw quadwords of the wrong
        count, ENOSPC when the queue has no room for all of them; nothing is written then.
        """
        images = []
        nq = self.stride // 8
        for d in descriptors:
            qws = d.qwords()[:nq] if isinstance(d, Descriptor) else tuple(d)
            if len(qws) != nq or any(not isinstance(q, int) or not 0 <= q < 1 << 64
                                     for q in qws):
                raise UAPIError(errno.EINVAL, f"invalidation queue: a descriptor is {nq} "
                                "64-bit quadwords", rule="vtd.iq-descriptor")
            images.append(b"".join(q.to_bytes(8, "little") for q in qws))
        free = self.free_slots()
        if not self.ring.produce_all(images):
            raise UAPIError(errno.ENOSPC, f"invalidation queue: {len(images)} descriptors, "
                            f"{free} free slots", rule="vtd.iq-full")
        self.iqt = self.ring.offset(self.ring.prod)

    def clear_iqe(self) -> None:
        """Software writes 1 to FSTS.IQE; the queue resumes from IQH at the next process()."""
        self.status.write_fsts(_IQE)
        self.ring.acknowledge()

    # -- hardware side ----------------------------------------------------------------------

    def _stop(self, iqei: Iqei) -> None:
        self.status.fsts_set("IQE")
        self.status.set_iqei(iqei)
        self.status.raise_fault_event()
        self.ring.stop(iqei)

    def _decode(self, image: bytes) -> Descriptor:
        """The descriptor a fetched image holds (``DescriptorError`` when it is refused)."""
        stride = len(image)
        return decode_descriptor(
            [int.from_bytes(image[i:i + 8], "little") for i in range(0, stride, 8)],
            self.cfg, wide=stride == _STRIDE[True], scalable=self.scalable)

    def process(self) -> int:
        """Latch IQT and execute descriptors from IQH until IQT (or an error); returns how many
        completed."""
        if self.status.fsts & _IQE:
            return 0
        ring = self.ring
        ring.acknowledge()      # IQE is clear: software acknowledged any earlier stop
        tail = self.tail
        if tail == self.head:
            return 0
        if tail >= self.size:
            self._stop(Iqei.TAIL_BEYOND_QUEUE)
            return 0
        if self.wide and _TAIL_HALF.get(self.iqt):
            self._stop(Iqei.TAIL_MISALIGNED)
            return 0
        ring.set_prod(tail // self.stride)
        done = 0
        while True:
            offset = ring.offset(ring.cons)
            try:
                image = ring.peek()
            except MemoryAccessError:
                self._stop(Iqei.FETCH_ERROR)
                break
            if image is None:
                break
            try:
                desc = self._decode(image)
                dropped = self._execute(desc)
            except DescriptorError as exc:
                self._stop(exc.iqei)
                break
            self.log.append(LogRecord(offset, desc, dropped))
            self.executed += 1
            ring.advance()
            done += 1
        return done

    def run(self, descriptors: Iterable[Descriptor | Sequence[int]]) -> int:
        """Submit then process (what a driver's synchronous ``qi_submit_sync`` amounts to)."""
        self.submit(descriptors)
        return self.process()

    # -- what each descriptor reaches ---------------------------------------------------------

    def _execute(self, d: Descriptor) -> int:
        """Execute a decoded descriptor on the unit (:mod:`.qi_effects`); returns the cache
        entries it removed."""
        return bind(d)(self)

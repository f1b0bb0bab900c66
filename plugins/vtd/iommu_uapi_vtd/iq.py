"""The invalidation queue (VT-d 3.x 6.5.2): a ring of descriptors in memory, IQA/IQH/IQT.

Software writes descriptors at IQT and advances it (:meth:`InvalidationQueue.submit`); the
hardware consumes them from IQH (:meth:`InvalidationQueue.process`), executing each against the
caches it must reach (hw-formats 1.9.11), until IQH = IQT. A malformed descriptor stops the
queue: FSTS.IQE set, IQERCD.IQEI filled, IQH left at the descriptor, fault event raised.
Software repairs the queue and clears IQE (:meth:`InvalidationQueue.clear_iqe`); processing
resumes from IQH.
"""

from __future__ import annotations

import errno
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from iommu_uapi.caches.devtlb import ats_selection
from iommu_uapi.errors import MemoryAccessError, UAPIError
from iommu_uapi.memory import PAGE_SIZE, PhysicalMemory

from .bits import Field, Record, bit
from .caches import VtdCaches
from .qi import (
    ContextCacheInv,
    Descriptor,
    DescriptorError,
    DevTlbInv,
    IecInv,
    InvWait,
    IotlbInv,
    Iqei,
    PageGroupResponse,
    PasidCacheInv,
    PasidDevTlbInv,
    PasidIotlbInv,
    decode_descriptor,
    devtlb_range,
    page_range,
)
from .registers import VtdConfig
from .status import StatusRegisters

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


class LogRecord(NamedTuple):
    """One executed descriptor: where it sat in the queue, what it was, how many cache entries
    it removed."""

    offset: int
    descriptor: Descriptor
    dropped: int


#: How many executed descriptors :attr:`InvalidationQueue.log` keeps (a long run keeps bounded
#: memory; :attr:`InvalidationQueue.executed` counts them all).
LOG_LIMIT = 4096


class InvalidationQueue:
    """The queue, its registers and the caches it invalidates.

    ``page_response`` receives each page group response descriptor (the page-request model's
    way back to the device); ``log`` lists every executed descriptor in order.
    """

    mem: PhysicalMemory
    cfg: VtdConfig
    caches: VtdCaches
    status: StatusRegisters
    iqa: int
    iqh: int
    iqt: int
    scalable: bool
    log: deque[LogRecord]
    executed: int
    page_response: Callable[[PageGroupResponse], None] | None

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
        self.iqa = Iqa(QS=qs, DW=wide, IQA=mem.alloc(PAGE_SIZE << qs)).to_int()
        self.iqh = self.iqt = 0
        self.scalable = scalable
        self.log = deque(maxlen=LOG_LIMIT)
        self.executed = 0
        self.page_response = page_response

    def executed_since(self, executed: int) -> list[LogRecord]:
        """The records of the descriptors executed after the first ``executed`` (as far as
        :attr:`log` still keeps them)."""
        newer = self.executed - executed
        return list(self.log)[max(len(self.log) - newer, 0):] if newer > 0 else []

    # -- geometry ---------------------------------------------------------------------------

    @property
    def base(self) -> int:
        """The queue's address."""
        return Iqa.LAYOUT["IQA"].get(self.iqa)

    @property
    def wide(self) -> bool:
        """256-bit descriptors (IQA.DW)."""
        return bool(Iqa.LAYOUT["DW"].get(self.iqa))

    @property
    def size(self) -> int:
        """Queue size in bytes."""
        return PAGE_SIZE << Iqa.LAYOUT["QS"].get(self.iqa)

    @property
    def stride(self) -> int:
        """Bytes per descriptor: 32 (256-bit) or 16."""
        return 32 if self.wide else 16

    @property
    def head(self) -> int:
        """IQH as a byte offset."""
        return _OFFSET.get(self.iqh)

    @property
    def tail(self) -> int:
        """IQT as a byte offset."""
        return _OFFSET.get(self.iqt)

    def free_slots(self) -> int:
        """Descriptors software may still write (one slot stays empty to tell full from empty)."""
        used = (self.tail - self.head) % self.size
        return self.size // self.stride - 1 - used // self.stride

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
        if len(images) > self.free_slots():
            raise UAPIError(errno.ENOSPC, f"invalidation queue: {len(images)} descriptors, "
                            f"{self.free_slots()} free slots", rule="vtd.iq-full")
        tail = self.tail
        for image in images:
            self.mem.write(self.base + tail, image)
            tail = (tail + self.stride) % self.size
        self.iqt = _OFFSET.put(tail)

    def clear_iqe(self) -> None:
        """Software writes 1 to FSTS.IQE; the queue resumes from IQH at the next process()."""
        self.status.write_fsts(1 << 4)

    # -- hardware side ----------------------------------------------------------------------

    def _stop(self, iqei: Iqei) -> None:
        self.status.fsts_set("IQE")
        self.status.set_iqei(iqei)
        self.status.raise_fault_event()

    def process(self) -> int:
        """Execute descriptors from IQH until IQT (or an error); returns how many completed."""
        done = 0
        while not self.status.fsts_get("IQE") and self.head != self.tail:
            if self.tail >= self.size:
                self._stop(Iqei.TAIL_BEYOND_QUEUE)
                break
            if self.wide and _TAIL_HALF.get(self.iqt):
                self._stop(Iqei.TAIL_MISALIGNED)
                break
            offset = self.head
            try:
                image = self.mem.read(self.base + offset, self.stride)
            except MemoryAccessError:
                self._stop(Iqei.FETCH_ERROR)
                break
            qws = [int.from_bytes(image[i:i + 8], "little") for i in range(0, self.stride, 8)]
            try:
                desc = decode_descriptor(qws, self.cfg, wide=self.wide, scalable=self.scalable)
                dropped = self._execute(desc)
            except DescriptorError as exc:
                self._stop(exc.iqei)
                break
            self.log.append(LogRecord(offset, desc, dropped))
            self.executed += 1
            self.iqh = _OFFSET.put((offset + self.stride) % self.size)
            done += 1
        return done

    def run(self, descriptors: Iterable[Descriptor | Sequence[int]]) -> int:
        """Submit then process (what a driver's synchronous ``qi_submit_sync`` amounts to)."""
        self.submit(descriptors)
        return self.process()

    # -- what each descriptor reaches ---------------------------------------------------------

    def _execute(self, d: Descriptor) -> int:
        handler = _HANDLERS[type(d)]
        return handler(self, d)

    def _context_cache(self, d: Descriptor) -> int:
        assert isinstance(d, ContextCacheInv)
        cc = self.caches.context
        if d.G == 1:
            return cc.invalidate_global()
        if d.G == 2:
            return cc.invalidate_domain(d.DID)
        return cc.invalidate_device(d.SID, d.FM)

    def _iotlb(self, d: Descriptor) -> int:
        assert isinstance(d, IotlbInv)
        c = self.caches
        if d.G == 1:
            return c.iotlb.flush() + c.fl_psc.invalidate() + c.sl_psc.invalidate()
        if d.G == 2:
            return (c.iotlb.invalidate(("fl", d.DID)) + c.iotlb.invalidate(("sl", d.DID))
                    + c.fl_psc.invalidate((d.DID,)) + c.sl_psc.invalidate((d.DID,)))
        base, size = page_range(d.ADDR, d.AM)
        # SL-only/PT translations of the range go; first-level and nested translations of the
        # DID may derive from the changed second-level range at any input address, so all go.
        n = c.iotlb.invalidate(("sl", d.DID), base, size) + c.iotlb.invalidate(("fl", d.DID))
        if not d.IH:
            n += c.sl_psc.invalidate((d.DID,), base, size) + c.fl_psc.invalidate((d.DID,))
        return n

    def _devtlb(self, d: Descriptor) -> int:
        assert isinstance(d, DevTlbInv)
        base, size = devtlb_range(d.ADDR, d.S)
        # The device receives an ATS Invalidate Request without a PASID prefix: by PCIe it drops
        # every entry of the range, those requested with a PASID included (ats_selection).
        prefix = (d.SID, *ats_selection(None))
        return self.caches.devtlb.invalidate(d.SID, prefix, base, size)

    def _iec(self, d: Descriptor) -> int:
        return 0    # interrupt-entry cache: not modelled, the descriptor is accepted

    def _wait(self, d: Descriptor) -> int:
        assert isinstance(d, InvWait)
        if d.SW:
            try:
                self.mem.write32(d.STADDR, d.STDATA)
            except MemoryAccessError:
                raise DescriptorError(Iqei.FETCH_ERROR, "wait descriptor: status address "
                                      f"{d.STADDR:#x} outside memory") from None
        if d.IF:
            self.status.set_iwc()
            self.status.raise_invalidation_event()
        return 0

    def _pasid_iotlb(self, d: Descriptor) -> int:
        assert isinstance(d, PasidIotlbInv)
        c = self.caches
        tag = ("fl", d.DID, d.PASID)
        if d.G == 2:
            return (c.iotlb.invalidate(tag, include_global=False)
                    + c.fl_psc.invalidate((d.DID, d.PASID)))
        base, size = page_range(d.ADDR, d.AM)
        n = c.iotlb.invalidate(tag, base, size)
        if not d.IH:
            n += c.fl_psc.invalidate((d.DID, d.PASID), base, size)
        return n

    def _pasid_cache(self, d: Descriptor) -> int:
        assert isinstance(d, PasidCacheInv)
        pc = self.caches.pasid
        if d.G == 0:
            return pc.invalidate_domain(d.DID)
        if d.G == 1:
            return pc.invalidate_pasid(d.DID, d.PASID)
        return pc.invalidate_global()

    def _pasid_devtlb(self, d: Descriptor) -> int:
        assert isinstance(d, PasidDevTlbInv)
        base, size = devtlb_range(d.ADDR, d.S)
        # G asks the device to drop the range for every PASID (its global translations); the
        # model drops the range under every PASID of the device, a legal over-invalidation.
        prefix = (d.SID, *ats_selection(d.PASID, global_invalidate=bool(d.G)))
        return self.caches.devtlb.invalidate(d.SID, prefix, base, size)

    def _page_response(self, d: Descriptor) -> int:
        assert isinstance(d, PageGroupResponse)
        if self.page_response is not None:
            self.page_response(d)
        return 0


_HANDLERS: dict[type[Descriptor], Callable[[InvalidationQueue, Descriptor], int]] = {
    ContextCacheInv: InvalidationQueue._context_cache,
    IotlbInv: InvalidationQueue._iotlb,
    DevTlbInv: InvalidationQueue._devtlb,
    IecInv: InvalidationQueue._iec,
    InvWait: InvalidationQueue._wait,
    PasidIotlbInv: InvalidationQueue._pasid_iotlb,
    PasidCacheInv: InvalidationQueue._pasid_cache,
    PasidDevTlbInv: InvalidationQueue._pasid_devtlb,
    PageGroupResponse: InvalidationQueue._page_response,
}

"""The invalidation queue as the host driver drives it: synchronous submission
(``qi_submit_sync``) and the driver's recovery from a refused descriptor.

:class:`SyncQueue` is an :class:`~.iq.InvalidationQueue` whose :meth:`SyncQueue.run` writes the
descriptors' images at IQT, advances IQT and lets the hardware consume them at once: each image
is read back from queue memory, decoded and validated as :func:`~.qi.decode_descriptor` does, and
executed against the caches, with a :class:`~.iq.LogRecord` per descriptor. Encoding and decoding
are pure functions of the descriptor and of its image under a fixed capability set, so both are
memoised: a repeated invalidation costs a dictionary lookup instead of a bit-field walk. The queue
geometry (IQA) is fixed for the queue's life.

When the hardware refuses a descriptor (FSTS.IQE), the Linux driver overwrites it with its wait
descriptor, clears IQE and resumes: the invalidation is lost without an error reaching the
caller. :meth:`SyncQueue.run` does the same and keeps the refused descriptors in ``lost``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from iommu_uapi.memory import PhysicalMemory

from .caches import VtdCaches
from .iq import InvalidationQueue, LogRecord, QueuePointer
from .qi import (
    DESCRIPTOR_TYPES,
    TYPE_HI,
    TYPE_LO,
    Descriptor,
    DescriptorError,
    InvWait,
    decode_descriptor,
)
from .registers import VtdConfig
from .status import StatusRegisters

__all__ = ["SyncQueue"]

_MEMO_LIMIT = 4096
_new_log = tuple.__new__  # builds a LogRecord without NamedTuple's keyword handling
_FSTS_IQE = 1 << 4
#: IQH/IQT hold the byte offset of a descriptor in bits 18:4.
_OFFSET_MASK = QueuePointer.LAYOUT["OFFSET"].mask


class SyncQueue(InvalidationQueue):
    """The unit's invalidation queue with synchronous, memoised submission."""

    lost: list[Descriptor]

    def __init__(self, mem: PhysicalMemory, cfg: VtdConfig, caches: VtdCaches, *,
                 status: StatusRegisters | None = None, **kwargs: object) -> None:
        super().__init__(mem, cfg, caches, status=status, **kwargs)  # type: ignore[arg-type]
        self.lost = []
        self._images: dict[Descriptor, bytes] = {}
        self._decoded: dict[bytes, Descriptor] = {}
        self._base = self.base
        self._stride = self.stride
        self._size = self.size
        self._nq = self._stride // 8
        self._slots = self._size // self._stride  # one stays empty: a batch has fewer

    def _image(self, d: Descriptor) -> bytes:
        image = self._images.get(d)
        if image is None:
            image = b"".join(q.to_bytes(8, "little") for q in d.qwords()[: self._nq])
            if len(self._images) >= _MEMO_LIMIT:
                self._images.clear()
            self._images[d] = image
        return image

    def run(self, descriptors: Sequence[Descriptor | Sequence[int]]) -> int:  # type: ignore[override]
        """Submit ``descriptors`` and process the queue to the tail (see the module docstring);
        returns how many descriptors were lost to a queue error."""
        done = self._run_fast(descriptors)
        if done:
            return 0
        if done is None:
            self.submit(descriptors)
        lost = 0
        self._process_fast()
        while self.status.fsts & _FSTS_IQE:
            raw = self.mem.read(self._base + self.head, self._stride)
            self.lost.append(_decode_lost(raw))
            self.mem.write(self._base + self.head, self._image(InvWait()))
            self.clear_iqe()
            self._process_fast()
            lost += 1
        return lost

    def _run_fast(self, descriptors: Sequence[Descriptor | Sequence[int]]) -> bool | None:
        """The common case in one pass: an idle queue without IQE, descriptors whose images are
        memoised, room for all of them. The images are written at IQT; the hardware side then
        fetches each at IQH, decodes it (memoised) and executes it. True when all were
        executed; None, having done nothing, when the case is not the common one; False when
        the queue must go on from IQH (an image not decoded yet, or a refused descriptor:
        IQE)."""
        if self.status.fsts & _FSTS_IQE or self.iqh != self.iqt \
                or len(descriptors) >= self._slots:
            return None
        try:
            batch = list(map(self._images.__getitem__, descriptors))  # type: ignore[arg-type]
        except (KeyError, TypeError):
            return None  # first sight of a descriptor, or raw qwords
        base, stride, size, mem = self._base, self._stride, self._size, self.mem
        head = tail = self.iqh & _OFFSET_MASK
        for image in batch:  # software: every descriptor at IQT, then IQT moves past them
            mem.write(base + tail, image)
            tail = (tail + stride) % size
        self.iqt = tail
        # hardware: fetch at IQH, decode (memoised), execute. Nothing runs between the writes
        # above and these fetches, so each fetch returns the image just written: it is used as
        # the fetched bytes without reading them back.
        decoded, log = self._decoded, self.log
        for image in batch:
            desc = decoded.get(image)
            if desc is None:  # never decoded under this queue: the general path does it
                return False
            try:
                dropped = self._execute(desc)
            except DescriptorError as exc:
                self._stop(exc.iqei)
                return False
            log.append(_new_log(LogRecord, (head, desc, dropped)))
            self.executed += 1
            head = self.iqh = (head + stride) % size
        return True

    def _process_fast(self) -> None:
        """:meth:`InvalidationQueue.process` for a queue whose tail software wrote itself."""
        if self.status.fsts & _FSTS_IQE:
            return
        head, tail = self.iqh & _OFFSET_MASK, self.iqt & _OFFSET_MASK
        if tail >= self._size or (self._stride == 32 and tail & 0x10):
            self.process()  # the hardware's tail checks set IQE
            return
        base, stride, size = self._base, self._stride, self._size
        read, decoded, log = self.mem.read, self._decoded, self.log
        while head != tail:
            image = read(base + head, stride)
            try:
                desc = decoded.get(image)
                if desc is None:
                    desc = decode_descriptor(
                        [int.from_bytes(image[i:i + 8], "little") for i in range(0, stride, 8)],
                        self.cfg, wide=stride == 32, scalable=self.scalable)
                    if len(decoded) >= _MEMO_LIMIT:
                        decoded.clear()
                    decoded[image] = desc
                dropped = self._execute(desc)
            except DescriptorError as exc:
                self.iqh = head
                self._stop(exc.iqei)
                return
            log.append(LogRecord(head, desc, dropped))
            self.executed += 1
            head = (head + stride) % size
        self.iqh = head

    def submit(self, descriptors: Iterable[Descriptor | Sequence[int]]) -> None:
        """:meth:`InvalidationQueue.submit`, memoising the images of typed descriptors so that
        the next submission of the same descriptor takes the one-pass path."""
        descriptors = list(descriptors)
        super().submit(descriptors)
        for d in descriptors:
            if isinstance(d, Descriptor):
                self._image(d)


def _decode_lost(raw: bytes) -> Descriptor:
    """The fields of a refused descriptor, for the record (no validation)."""
    value = int.from_bytes(raw, "little")
    cls = DESCRIPTOR_TYPES.get(TYPE_LO.get(value) | TYPE_HI.get(value) << 4, InvWait)
    return cls.from_int(value)

"""The invalidation queue as the host driver drives it: synchronous submission
(``qi_submit_sync``) and the driver's recovery from a refused descriptor.

:class:`SyncQueue` is an :class:`~.iq.InvalidationQueue` whose :meth:`SyncQueue.run` writes the
descriptors' images at IQT, advances IQT and lets the hardware consume them at once: each image
is read back from queue memory, decoded and validated as :func:`~.qi.decode_descriptor` does, and
executed against the caches, with a :class:`~.iq.LogRecord` per descriptor. Encoding and decoding
are pure functions of the descriptor and of its image under a fixed capability set, so both are
memoised (the image with the descriptor bound for execution, :func:`~.qi_effects.bind`): a
repeated invalidation costs a dictionary lookup instead of a bit-field walk. The queue geometry
(IQA) is fixed for the queue's life.

When the hardware refuses a descriptor (FSTS.IQE), the Linux driver overwrites it with its wait
descriptor, clears IQE and resumes: the invalidation is lost without an error reaching the
caller. :meth:`SyncQueue.run` does the same and keeps the refused descriptors in ``lost``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from iommu_uapi.memory import PhysicalMemory

from .caches import VtdCaches
from .iq import InvalidationQueue, LogRecord
from .qi import DESCRIPTOR_TYPES, TYPE_HI, TYPE_LO, Descriptor, DescriptorError, InvWait
from .qi_effects import Effect, bind
from .registers import VtdConfig
from .status import Fsts, StatusRegisters

__all__ = ["SyncQueue"]

_MEMO_LIMIT = 4096
_new_log = tuple.__new__  # builds a LogRecord without NamedTuple's keyword handling
_FSTS_IQE = Fsts.LAYOUT["IQE"].mask


class SyncQueue(InvalidationQueue):
    """The unit's invalidation queue with synchronous, memoised submission."""

    lost: list[Descriptor]

    def __init__(self, mem: PhysicalMemory, cfg: VtdConfig, caches: VtdCaches, *,
                 status: StatusRegisters | None = None, **kwargs: object) -> None:
        super().__init__(mem, cfg, caches, status=status, **kwargs)  # type: ignore[arg-type]
        self.lost = []
        self._images: dict[Descriptor, bytes] = {}
        # image -> its descriptor and the descriptor bound for execution (:mod:`.qi_effects`)
        self._decoded: dict[bytes, tuple[Descriptor, Effect]] = {}
        self._nq = self.stride // 8
        # the ring's geometry, fixed for the queue's life: a position's byte offset is
        # (position & _slot_mask) << _shift
        self._shift = self.stride.bit_length() - 1
        self._slot_mask = self.ring.entries - 1

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
        returns how many descriptors were lost to a queue error.

        The common case takes one pass: an idle queue without IQE and descriptors whose images
        are memoised are produced into the ring at IQT; the hardware side then takes each at
        IQH, decodes it (memoised) and executes it. Nothing runs between the writes and these
        fetches, so each fetch returns the image just written: it is used as the fetched bytes
        without reading them back. Anything else (first sight of a descriptor, raw quadwords,
        no room, a queue error) goes through :meth:`submit` and :meth:`process`.
        """
        ring = self.ring
        head = ring.cons
        shift, slots = self._shift, self._slot_mask
        if self.status.fsts & _FSTS_IQE or ring.stopped or ring.prod != head or \
                self.iqt != (head & slots) << shift:
            return self._submit_and_recover(descriptors)
        try:
            batch = list(map(self._images.__getitem__, descriptors))  # type: ignore[arg-type]
        except (KeyError, TypeError):
            return self._submit_and_recover(descriptors)  # first sight, or raw qwords
        if not ring.produce_all(batch):
            return self._submit_and_recover(descriptors)
        self.iqt = (ring.prod & slots) << shift
        decoded, log = self._decoded, self.log
        done = 0
        try:
            for image in batch:
                known = decoded.get(image)
                if known is None:  # never decoded under this queue: the general path does it
                    break
                desc, execute = known
                dropped = execute(self)
                log.append(_new_log(LogRecord, (((head + done) & slots) << shift, desc,
                                                dropped)))
                done += 1
        except DescriptorError as exc:
            self._stop(exc.iqei)  # IQH stays at the refused descriptor
        finally:
            if done == len(batch):
                ring.cons = ring.prod  # the hardware caught up with IQT
            else:
                ring.advance(done)
            self.executed += done
        return 0 if ring.cons == ring.prod else self._recover()

    def _submit_and_recover(self, descriptors: Sequence[Descriptor | Sequence[int]]) -> int:
        self.submit(descriptors)
        return self._recover()

    def _recover(self) -> int:
        """Process to the tail as the driver does: each refused descriptor is overwritten with a
        wait descriptor, IQE cleared and the queue resumed; returns how many were lost."""
        lost = 0
        self.process()
        ring = self.ring
        while self.status.fsts & _FSTS_IQE:
            addr = ring.address(ring.cons)
            self.lost.append(_decode_lost(self.mem.read(addr, ring.entry_size)))
            self.mem.write(addr, self._image(InvWait()))
            self.clear_iqe()
            self.process()
            lost += 1
        return lost

    def _decode(self, image: bytes) -> Descriptor:
        """:meth:`InvalidationQueue._decode`, memoised by image with its bound effect."""
        known = self._decoded.get(image)
        if known is None:
            desc = super()._decode(image)
            if len(self._decoded) >= _MEMO_LIMIT:
                self._decoded.clear()
            known = self._decoded[image] = (desc, bind(desc))
        return known[0]

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

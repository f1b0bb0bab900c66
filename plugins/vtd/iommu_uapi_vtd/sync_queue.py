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

The invalidations that carry an address (IOTLB, PASID-based IOTLB and device-TLB invalidations)
differ from one flush to the next only in their address fields (ADDR, AM or S, IH). Each
distinct *template* (the descriptor with those fields zero: one per domain, PASID or device) is
prepared once (:mod:`.qi_template`): its image encoded and decoded by the hardware's rules, and
its effect bound (:func:`~.qi_effects.bind_address`). A descriptor of a prepared template is
then written into the queue as the template's image with the address fields placed, and the
hardware side checks what the general decode would check of those fields (their reserved bits
under this unit's capabilities, AM against MAMV): what it decodes is then the descriptor
itself, which is executed and logged without decoding the image again. A driver's stream of new
addresses (:meth:`SyncQueue.run_one`, through the template's
:func:`~.qi_template.one_descriptor_path`) memoises nothing per address; :meth:`SyncQueue.run`
remembers the
image of each such descriptor it is given (bounded), so a repeated one costs a lookup. The
queue memory, IQH/IQT, the log and the caches end up exactly as after the general submit and
process.

When the hardware refuses a descriptor (FSTS.IQE), the Linux driver overwrites it with its wait
descriptor, clears IQE and resumes: the invalidation is lost without an error reaching the
caller. :meth:`SyncQueue.run` does the same and keeps the refused descriptors in ``lost``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import msgspec

from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import PhysicalMemory

from .caches import VtdCaches
from .iq import InvalidationQueue, LogRecord
from .qi import (
    DESCRIPTOR_TYPES,
    TYPE_HI,
    TYPE_LO,
    Descriptor,
    DescriptorError,
    InvWait,
)
from .qi_effects import AddressEffect, Effect, bind, bind_address
from .qi_template import ADDRESS_FIELDS as ADDRESS_FIELDS  # its former home
from .qi_template import ZEROS, PlacedPath, Template, one_descriptor_path, placed_path, placer
from .registers import VtdConfig
from .status import Fsts, StatusRegisters

__all__ = ["SyncQueue"]

_MEMO_LIMIT = 4096
_new_log = tuple.__new__  # builds a LogRecord without NamedTuple's keyword handling
_FSTS_IQE = Fsts.LAYOUT["IQE"].mask
_replace = msgspec.structs.replace

class SyncQueue(InvalidationQueue):
    """The unit's invalidation queue with synchronous, memoised submission."""

    lost: list[Descriptor]

    def __init__(self, mem: PhysicalMemory, cfg: VtdConfig, caches: VtdCaches, *,
                 status: StatusRegisters | None = None, **kwargs: object) -> None:
        super().__init__(mem, cfg, caches, status=status, **kwargs)  # type: ignore[arg-type]
        self.lost = []
        self._images: dict[Descriptor, bytes] = {}
        # an address-carrying descriptor run() was given -> its image and effect
        self._repeats: dict[Descriptor, tuple[bytes, AddressEffect]] = {}
        # template descriptor -> its preparation (None: its image cannot be encoded)
        self._templates: dict[Descriptor, Template | None] = {}
        # template descriptor -> its one-descriptor path (:meth:`_runner`)
        self._runners: dict[Descriptor, Callable[[Descriptor], bool]] = {}
        self._stride = self.stride
        self._image_mask = (1 << (8 * self._stride)) - 1
        # image -> its descriptor and the descriptor bound for execution (:mod:`.qi_effects`)
        self._decoded: dict[bytes, tuple[Descriptor, Effect]] = {}
        self._nq = self._stride // 8
        # the ring's geometry, fixed for the queue's life: a position's byte offset is
        # (position & _slot_mask) << _shift
        self._shift = self._stride.bit_length() - 1
        self._slot_mask = self.ring.entries - 1
        self._positions = self.ring.positions - 1

    def _image(self, d: Descriptor) -> bytes:
        image = self._images.get(d)
        if image is None:
            image = b"".join(q.to_bytes(8, "little") for q in d.qwords()[: self._nq])
            if len(self._images) >= _MEMO_LIMIT:
                self._images.clear()
            self._images[d] = image
        return image

    def _template(self, template: Descriptor) -> Template | None:
        """Prepare ``template`` (see the module docstring): None when its image cannot be
        encoded (a field that does not fit) or lies beyond this queue's descriptor width."""
        if len(self._templates) >= _MEMO_LIMIT:
            self._templates.clear()
        cls = type(template)
        try:
            value = template.to_int()
        except (ValueError, UAPIError):
            self._templates[template] = None
            return None
        prepared = None
        if not value & ~self._image_mask:
            effect: AddressEffect | None = None
            try:
                decoded = InvalidationQueue._decode(self, value.to_bytes(self._stride, "little"))
            except DescriptorError:
                pass
            else:
                if decoded == template:
                    effect = bind_address(decoded)
            refused = cls.reserved_mask(self.cfg) | ~self._image_mask
            prepared = Template(value, refused, placer(cls, self.cfg.mamv), effect)
        self._templates[template] = prepared
        return prepared

    def _prepare(self, d: Descriptor) -> tuple[bytes, Descriptor, AddressEffect | None]:
        """The image of ``d`` to write at IQT, and, when the hardware's decode of that image
        is ``d`` itself, the effect that executes it (else None: the image is decoded).
        ``ValueError`` when ``d`` cannot be written, or has an AM above MAMV (the general path
        writes it and the hardware refuses it)."""
        zeros = ZEROS.get(d.__class__)
        if zeros is None:
            image = self._images.get(d)
            return (self._image(d) if image is None else image), d, None
        known = self._repeats.get(d)
        if known is not None:  # a descriptor given before (a guest repeating an invalidation)
            return known[0], d, known[1]
        template = _replace(d, **zeros)
        t = self._templates.get(template)
        if t is None:
            t = self._template(template)
            if t is None:
                raise ValueError("a template field does not fit")
        bits = t.place(d)
        image = (t.image | bits).to_bytes(self._stride, "little")
        if bits & t.refused or t.effect is None:
            return image, d, None
        if len(self._repeats) >= _MEMO_LIMIT:
            self._repeats.clear()
        self._repeats[d] = (image, t.effect)
        return image, d, t.effect

    def run(self, descriptors: Sequence[Descriptor | Sequence[int]]) -> int:  # type: ignore[override]
        """Submit ``descriptors`` and process the queue to the tail (see the module docstring);
        returns how many descriptors were lost to a queue error.

        The common case takes one pass: an idle queue without IQE and typed descriptors are
        produced into the ring at IQT; the hardware side then takes each at IQH and executes
        it: a descriptor of a prepared template as itself (its image holds exactly its fields),
        any other decoded from its image (memoised). Nothing runs between the writes and these
        fetches, so each fetch returns the image just written: it is used as the fetched bytes
        without reading them back. Anything else (raw quadwords, a field that does not fit, no
        room, a queue error) goes through :meth:`submit` and :meth:`process`. An
        address-carrying descriptor given again (a guest repeating an invalidation) finds its
        image remembered.
        """
        if len(descriptors) == 1 and descriptors[0].__class__ in ZEROS:
            d = descriptors[0]
            known = self._repeats.get(d)
            if known is None:
                known = self._placed(d, _replace(d, **ZEROS[d.__class__]))
                if known is None:
                    return self._run_batch((d,))
                if len(self._repeats) >= _MEMO_LIMIT:
                    self._repeats.clear()
                self._repeats[d] = known
            # a guest repeating an invalidation comes here each time: on an idle queue (every
            # slot free) the image goes at IQT in one write and is executed at once
            ring = self.ring
            head = ring.cons
            shift, slot = self._shift, head & self._slot_mask
            if self.status.fsts & _FSTS_IQE or ring.stopped or ring.prod != head or \
                    self.iqt != slot << shift:
                return self._run_batch((d,))
            self.mem.write(ring.base + slot * self._stride, known[0])
            tail = ring.prod = (head + 1) & self._positions
            self.iqt = (tail & self._slot_mask) << shift
            self.log.append(_new_log(LogRecord, (slot << shift, d, known[1](self, d))))
            ring.cons = tail  # the hardware caught up with IQT
            self.executed += 1
            return 0
        return self._run_batch(descriptors)

    def run_one(self, d: Descriptor, template: Descriptor) -> int:
        """:meth:`run` of the one address-carrying descriptor ``d`` of ``template`` (``d`` with
        its address fields zero, see ``ADDRESS_FIELDS``: a driver keeps one per domain, PASID
        or device), without building the template again and remembering nothing of ``d`` (a
        stream of new addresses): an idle queue takes its image at IQT and executes it at once
        as the hardware would (the template's :meth:`_runner`); anything else goes the way of
        :meth:`run`."""
        runner = self._runners.get(template)
        if runner is None:
            runner = self._runner(template)
        if runner(d):
            return 0
        return self._run_batch((d,))

    def _runner(self, template: Descriptor) -> Callable[[Descriptor], bool]:
        """The one-descriptor path of ``template``, bound to this queue once: ``d``'s address
        fields placed into the template's image (:meth:`_placed`'s checks), the image written
        at IQT of an idle queue (no IQE, IQH at IQT: every slot free) in one memory write, IQT
        and IQH advanced past it, executed as ``d`` and logged; False (nothing done) when
        :meth:`_placed` would refuse or the queue is not idle."""
        if len(self._runners) >= _MEMO_LIMIT:
            self._runners.clear()
        t = self._templates.get(template)
        if t is None:
            t = self._template(template)
        if t is None or t.effect is None:  # every descriptor of it goes the general way
            self._runners[template] = _refuse
            return _refuse
        run = one_descriptor_path(self, t)
        self._runners[template] = run
        return run

    def placed_runner(self, template: Descriptor) -> PlacedPath | None:
        """The one-descriptor path of ``template`` for a caller that places the address fields
        itself (:func:`~.qi_template.placed_path`; the queue's geometry is fixed for its life,
        so the path may be kept); None when the hardware refuses the template or its image
        cannot be encoded (its descriptors go the way of :meth:`run_one`)."""
        t = self._templates.get(template)
        if t is None:
            t = self._template(template)
        if t is None or t.effect is None:
            return None
        return placed_path(self, t)

    def _placed(self, d: Descriptor, template: Descriptor) -> tuple[bytes, AddressEffect] | None:
        """The image of ``d`` (of ``template``) and the effect that executes it, when the
        hardware's decode of that image is ``d`` itself; None otherwise (a field that does not
        fit, a bit the hardware refuses, a template it refuses)."""
        t = self._templates.get(template)
        if t is None:
            t = self._template(template)
        if t is None or t.effect is None:
            return None
        try:
            bits = t.place(d)
        except ValueError:
            return None
        if bits & t.refused:
            return None
        return (t.image | bits).to_bytes(self._stride, "little"), t.effect

    def _run_batch(self, descriptors: Sequence[Descriptor | Sequence[int]]) -> int:
        """:meth:`run` of any batch (see there)."""
        ring = self.ring
        head = ring.cons
        shift, slots = self._shift, self._slot_mask
        if self.status.fsts & _FSTS_IQE or ring.stopped or ring.prod != head or \
                self.iqt != (head & slots) << shift:
            return self._submit_and_recover(descriptors)
        try:
            prepare = self._prepare
            plan = [prepare(d) for d in descriptors]  # type: ignore[arg-type]
        except Exception:  # raw qwords, or a field that does not fit: the general path
            return self._submit_and_recover(descriptors)
        if not ring.produce_all([image for image, _, _ in plan]):
            return self._submit_and_recover(descriptors)
        self.iqt = (ring.prod & slots) << shift
        decoded, log = self._decoded, self.log
        done = 0
        try:
            for image, desc, effect in plan:
                if effect is None:
                    known = decoded.get(image)
                    if known is None:  # decoded (DescriptorError: refused), then memoised
                        self._decode(image)
                        known = decoded[image]
                    desc, execute = known
                    dropped = execute(self)
                else:
                    dropped = effect(self, desc)
                log.append(_new_log(LogRecord, (((head + done) & slots) << shift, desc,
                                                dropped)))
                done += 1
        except DescriptorError as exc:
            self._stop(exc.iqei)  # IQH stays at the refused descriptor
        finally:
            if done == len(plan):
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


def _refuse(d: Descriptor) -> bool:
    return False


def _decode_lost(raw: bytes) -> Descriptor:
    """The fields of a refused descriptor, for the record (no validation)."""
    value = int.from_bytes(raw, "little")
    cls = DESCRIPTOR_TYPES.get(TYPE_LO.get(value) | TYPE_HI.get(value) << 4, InvWait)
    return cls.from_int(value)

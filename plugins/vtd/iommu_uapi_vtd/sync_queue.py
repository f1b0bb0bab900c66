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
differ from one flush to the next only in their address fields (ADDR, AM or S, IH): their images
are built from a memoised *template*, the image of the same descriptor with those fields zero,
by placing the address fields alone; the hardware side checks them (reserved bits, AM against
MAMV) against the template's decoded descriptor, so a new address costs neither a full encode
nor a full decode, and nothing is memoised per address.

When the hardware refuses a descriptor (FSTS.IQE), the Linux driver overwrites it with its wait
descriptor, clears IQE and resumes: the invalidation is lost without an error reaching the
caller. :meth:`SyncQueue.run` does the same and keeps the refused descriptors in ``lost``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import msgspec

from iommu_uapi.memory import PhysicalMemory

from .caches import VtdCaches
from .iq import InvalidationQueue, LogRecord
from .qi import (
    DESCRIPTOR_TYPES,
    TYPE_HI,
    TYPE_LO,
    Descriptor,
    DescriptorError,
    DevTlbInv,
    InvWait,
    IotlbInv,
    PasidDevTlbInv,
    PasidIotlbInv,
)
from .qi_effects import Effect, bind
from .registers import VtdConfig
from .status import Fsts, StatusRegisters

__all__ = ["SyncQueue"]

_MEMO_LIMIT = 4096
_new_log = tuple.__new__  # builds a LogRecord without NamedTuple's keyword handling
_FSTS_IQE = Fsts.LAYOUT["IQE"].mask
_replace = msgspec.structs.replace

#: By descriptor type: the fields that carry the address of an invalidation (all else is the
#: template shared by every address of one domain, PASID or device).
ADDRESS_FIELDS: dict[type[Descriptor], tuple[str, ...]] = {
    IotlbInv: ("AM", "IH", "ADDR"),
    PasidIotlbInv: ("AM", "IH", "ADDR"),
    DevTlbInv: ("S", "ADDR"),
    PasidDevTlbInv: ("S", "ADDR"),
}
#: By type: the address fields zero (a template's), and their bits in place.
_ZEROS = {cls: {f: False if cls.LAYOUT[f].width == 1 else 0 for f in fields}
          for cls, fields in ADDRESS_FIELDS.items()}
_ADDRESS_LAYOUT = {cls: tuple((f, cls.LAYOUT[f]) for f in fields)
                   for cls, fields in ADDRESS_FIELDS.items()}
_ADDRESS_MASKS = {cls: sum(cls.LAYOUT[f].mask for f in fields)
                  for cls, fields in ADDRESS_FIELDS.items()}


class SyncQueue(InvalidationQueue):
    """The unit's invalidation queue with synchronous, memoised submission."""

    lost: list[Descriptor]

    def __init__(self, mem: PhysicalMemory, cfg: VtdConfig, caches: VtdCaches, *,
                 status: StatusRegisters | None = None, **kwargs: object) -> None:
        super().__init__(mem, cfg, caches, status=status, **kwargs)  # type: ignore[arg-type]
        self.lost = []
        self._images: dict[Descriptor, bytes] = {}
        # template descriptor -> its image as an integer (address-carrying types)
        self._templates: dict[Descriptor, int] = {}
        # template image -> its decoded descriptor
        self._decoded_templates: dict[bytes, Descriptor] = {}
        self._image_mask = (1 << (64 * (self.stride // 8))) - 1
        # by address-carrying type: its reserved bits under this unit's capabilities
        self._reserved = {cls: cls.reserved_mask(cfg) for cls in ADDRESS_FIELDS}
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
            fields = ADDRESS_FIELDS.get(type(d))
            if fields is not None:  # a new address: placed into its template, then memoised
                image = self._address_image(d, fields)
            else:
                image = b"".join(q.to_bytes(8, "little") for q in d.qwords()[: self._nq])
            if len(self._images) >= _MEMO_LIMIT:
                self._images.clear()
            self._images[d] = image
        return image

    def _address_image(self, d: Descriptor, fields: tuple[str, ...]) -> bytes:
        """The image of an address-carrying descriptor: its template's with the address fields
        placed (a field that does not fit takes the full encode, which refuses it)."""
        cls = type(d)
        template = _replace(d, **_ZEROS[cls])
        value = self._templates.get(template)
        if value is None:
            if len(self._templates) >= _MEMO_LIMIT:
                self._templates.clear()
            value = self._templates[template] = template.to_int()
        layout = cls.LAYOUT
        try:
            for name in fields:
                value |= layout[name].put(getattr(d, name))
        except ValueError:
            d.to_int()  # raises the field's refusal
            raise
        return (value & self._image_mask).to_bytes(self.stride, "little")

    def _address_decode(self, image: bytes) -> tuple[Descriptor, Effect] | None:
        """The hardware's decode of an address-carrying descriptor from its template's decoded
        descriptor: the address fields' reserved bits and AM against MAMV are checked here, the
        rest was checked when the template was decoded. None: not such a descriptor, or one
        the general decode must refuse."""
        raw = int.from_bytes(image, "little")
        cls = DESCRIPTOR_TYPES.get(TYPE_LO.get(raw) | TYPE_HI.get(raw) << 4)
        fields = ADDRESS_FIELDS.get(cls) if cls is not None else None
        if cls is None or fields is None:
            return None
        key = (raw & ~_ADDRESS_MASKS[cls]).to_bytes(len(image), "little")
        template = self._decoded_templates.get(key)
        if template is None:
            try:
                template = super()._decode(key)
            except DescriptorError:
                return None
            if len(self._decoded_templates) >= _MEMO_LIMIT:
                self._decoded_templates.clear()
            self._decoded_templates[key] = template
        if raw & self._reserved[cls]:
            return None
        values = {}
        for name, field in _ADDRESS_LAYOUT[cls]:
            value = (raw >> field.shift) & ((1 << field.width) - 1)
            values[name] = bool(value) if field.width == 1 else value << field.unit
        if values.get("AM", 0) > self.cfg.mamv:
            return None
        desc = _replace(template, **values)
        return desc, bind(desc)

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
        images, batch = self._images, []
        try:
            for d in descriptors:
                image = images.get(d)  # type: ignore[arg-type]
                batch.append(self._image(d) if image is None else image)  # type: ignore[arg-type]
        except Exception:  # raw qwords, or a field that does not fit: the general path
            return self._submit_and_recover(descriptors)
        if not ring.produce_all(batch):
            return self._submit_and_recover(descriptors)
        self.iqt = (ring.prod & slots) << shift
        decoded, log = self._decoded, self.log
        done = 0
        try:
            for image in batch:
                known = decoded.get(image)
                if known is None:  # a new address decoded from its template, then memoised
                    known = self._address_decode(image)
                    if known is None:  # never decoded under this queue: the general path
                        break
                    if len(decoded) >= _MEMO_LIMIT:
                        decoded.clear()
                    decoded[image] = known
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

"""Hardware bit fields declared once, and the records built from them.

A hardware structure (a register, a table entry, a queue descriptor, an event record) is a
:class:`Record`: a frozen msgspec Struct whose attributes are the structure's fields, plus a
``LAYOUT`` table that names each field's position once, as a :class:`Field`. Positions are
absolute bit numbers inside the whole structure (bit 64 is bit 0 of the second little-endian
quadword), as both the VT-d and the SMMUv3 specifications number them. Packing, unpacking, the
defined-bits mask, the byte image and the memory image all come from that one table.

Reserved bits come from the table too. Bits no field occupies are always reserved; a record also
declares the fields that exist only with a capability (``CAPABILITY_FIELDS``: reserved unless the
capability is present) and the fields whose value is limited by a capability's width
(``CAPABILITY_WIDTHS``: an address field whose bits at or above the host address width are
reserved). :meth:`Record.reserved_mask` computes the mask for a capability set, and
:meth:`Record.decode` refuses a value with a reserved bit set.

The records refuse with the backend's own rule ids: a backend's base record names the
:class:`Refusal` (errno and rule id) for a field value that does not fit (``FIELD_REFUSAL``) and
for an image of the wrong size (``SIZE_REFUSAL``), and may name one for a reserved bit set
(``RESERVED_REFUSAL``, or the caller passes one to :meth:`Record.decode`). This module names
none: it is shared by every backend.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self

import msgspec

from ..errors import UAPIError

if TYPE_CHECKING:
    from ..memory import GuestMemory, PhysicalMemory

__all__ = [
    "Field",
    "Record",
    "Refusal",
    "bit",
    "capability",
    "int_to_qwords",
    "qwords_to_int",
]

_U64 = (1 << 64) - 1


class Field(NamedTuple):
    """A field of ``width`` bits at absolute bit ``shift``.

    ``unit`` is the number of low-order bits the field does not store: an address field holding
    bits 63:12 of a 4 KiB-aligned address is ``Field(shift, 52, unit=12)``, and its value is the
    address itself. Width-1 fields are flags and read as ``bool``.
    """

    shift: int
    width: int
    unit: int = 0

    @property
    def mask(self) -> int:
        """The field's bits in place."""
        return ((1 << self.width) - 1) << self.shift

    @property
    def high(self) -> int:
        """The number of the field's highest bit."""
        return self.shift + self.width - 1

    def get(self, raw: int) -> int:
        """The field's value in ``raw`` (for an address field, the address)."""
        return ((raw >> self.shift) & ((1 << self.width) - 1)) << self.unit

    def fits(self, value: int) -> bool:
        """Whether ``value`` can be stored in the field without loss."""
        return value >= 0 and value & ((1 << self.unit) - 1) == 0 and (
            value >> self.unit) < (1 << self.width)

    def put(self, value: int) -> int:
        """``value`` placed at the field's bits; ``ValueError`` when it does not fit."""
        value = int(value)
        if not self.fits(value):
            raise ValueError(f"{value:#x} does not fit in bits {self.high}:{self.shift}"
                             + (f" (aligned to {1 << self.unit:#x})" if self.unit else ""))
        return (value >> self.unit) << self.shift

    def beyond(self, value_bits: int) -> int:
        """The field's bits holding value bits at or above ``value_bits`` (an address field's
        bits beyond the address width): the reserved part of the field under that width."""
        kept = max(0, value_bits - self.unit)
        return self.mask & ~(((1 << kept) - 1) << self.shift)


def bit(n: int) -> Field:
    """A one-bit flag at absolute bit ``n``."""
    return Field(n, 1)


def qwords_to_int(qwords: Sequence[int]) -> int:
    """Join little-endian quadwords (QW0 first) into one integer."""
    value = 0
    for i, qw in enumerate(qwords):
        value |= (qw & _U64) << (64 * i)
    return value


def int_to_qwords(value: int, count: int) -> tuple[int, ...]:
    """Split ``value`` into ``count`` little-endian quadwords, QW0 first."""
    return tuple((value >> (64 * i)) & _U64 for i in range(count))


class Refusal(NamedTuple):
    """The errno and rule id a record refuses with (``UAPIError.errno`` / ``.rule``)."""

    errno: int
    rule: str

    def error(self, message: str) -> UAPIError:
        """The refusal as an exception carrying ``message``."""
        return UAPIError(self.errno, message, rule=self.rule)


def capability(caps: object, name: str) -> int:
    """The value of capability ``name`` in the capability set ``caps``.

    A capability set is a set of the names present (value 1 or 0), a mapping of names to values,
    or an object whose attributes are the capabilities (a backend's configuration Struct: a
    boolean attribute for a feature, an integer for a width). An object that lacks the attribute
    is an error in the record's declaration and raises ``AttributeError``.
    """
    if isinstance(caps, AbstractSet):
        return int(name in caps)
    if isinstance(caps, Mapping):
        return int(caps.get(name, 0))
    return int(getattr(caps, name))


class Record(msgspec.Struct, frozen=True, gc=False):
    """A hardware structure: fields named in ``LAYOUT``, ``BITS`` bits long.

    ``FIXED`` holds bits that are constant for the structure (a descriptor's type code): added
    by :meth:`to_int`, counted as defined, expected by decoders. ``CAPABILITY_FIELDS`` maps a
    field to the capability without which it is reserved; ``CAPABILITY_WIDTHS`` maps a field to
    the capability giving how many bits its value may have. A record with a ``LAYOUT`` must name
    ``FIELD_REFUSAL`` and ``SIZE_REFUSAL`` (itself or through its base class).
    """

    LAYOUT: ClassVar[dict[str, Field]] = {}
    BITS: ClassVar[int] = 64
    FIXED: ClassVar[int] = 0
    CAPABILITY_FIELDS: ClassVar[Mapping[str, str]] = {}
    CAPABILITY_WIDTHS: ClassVar[Mapping[str, str]] = {}
    FIELD_REFUSAL: ClassVar[Refusal]
    SIZE_REFUSAL: ClassVar[Refusal]
    RESERVED_REFUSAL: ClassVar[Refusal | None] = None
    _DEFINED: ClassVar[int] = 0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        mask = cls.FIXED
        for field in cls.LAYOUT.values():
            mask |= field.mask
        cls._DEFINED = mask
        if cls.LAYOUT:
            missing = [name for name in ("FIELD_REFUSAL", "SIZE_REFUSAL")
                       if not isinstance(getattr(cls, name, None), Refusal)]
            if missing:
                raise TypeError(f"{cls.__name__}: a record with fields names its refusals: "
                                f"{', '.join(missing)} missing")
        unknown = (set(cls.CAPABILITY_FIELDS) | set(cls.CAPABILITY_WIDTHS)) - set(cls.LAYOUT)
        if unknown:
            raise TypeError(f"{cls.__name__}: capability-dependent fields {sorted(unknown)} "
                            "are not in LAYOUT")

    # -- encode ---------------------------------------------------------------------------

    def to_int(self) -> int:
        """The structure's value; ``FIELD_REFUSAL`` naming the field that does not fit."""
        value = self.FIXED
        for name, field in self.LAYOUT.items():
            try:
                value |= field.put(getattr(self, name))
            except ValueError as exc:
                raise self.FIELD_REFUSAL.error(f"{type(self).__name__}.{name}: {exc}") from None
        return value

    def qwords(self) -> tuple[int, ...]:
        """The structure as little-endian quadwords, QW0 first."""
        return int_to_qwords(self.to_int(), self.BITS // 64)

    def to_bytes(self) -> bytes:
        """The little-endian image written into memory."""
        return self.to_int().to_bytes(self.BITS // 8, "little")

    def to_memory(self, mem: PhysicalMemory | GuestMemory, addr: int) -> None:
        """Write the image at ``addr`` (``MemoryAccessError`` outside the memory)."""
        mem.write(addr, self.to_bytes())

    # -- decode ---------------------------------------------------------------------------

    @classmethod
    def from_int(cls, raw: int) -> Self:
        """The fields of ``raw``; reserved bits are ignored here (see :meth:`decode`)."""
        kwargs: dict[str, Any] = {}
        for name, field in cls.LAYOUT.items():
            value = field.get(raw)
            kwargs[name] = bool(value) if field.width == 1 else value
        return cls(**kwargs)

    @classmethod
    def from_bytes(cls, buf: bytes | bytearray | memoryview) -> Self:
        """Decode the little-endian image of exactly ``BITS // 8`` bytes."""
        if len(buf) != cls.BITS // 8:
            raise cls.SIZE_REFUSAL.error(f"{cls.__name__}: need {cls.BITS // 8} bytes, got "
                                         f"{len(buf)}")
        return cls.from_int(int.from_bytes(buf, "little"))

    @classmethod
    def decode(cls, raw: int, caps: object, *, refusal: Refusal | None = None) -> Self:
        """The fields of ``raw`` after checking that no bit reserved under the capability set
        ``caps`` is set (nor any bit beyond ``BITS``): else ``refusal`` (default
        ``RESERVED_REFUSAL``) naming the bits."""
        reserved = (raw & cls.reserved_mask(caps)) | (raw >> cls.BITS << cls.BITS)
        if reserved:
            chosen = refusal if refusal is not None else cls.RESERVED_REFUSAL
            if chosen is None:
                raise TypeError(f"{cls.__name__} names no RESERVED_REFUSAL: pass refusal=")
            raise chosen.error(f"{cls.__name__}: reserved bits {reserved:#x} set")
        return cls.from_int(raw)

    @classmethod
    def from_memory(cls, mem: PhysicalMemory | GuestMemory, addr: int, caps: object = None, *,
                    refusal: Refusal | None = None) -> Self:
        """Read the record at ``addr``; with a capability set ``caps`` its reserved bits are
        checked as :meth:`decode` does (``MemoryAccessError`` outside the memory)."""
        raw = int.from_bytes(mem.read(addr, cls.BITS // 8), "little")
        if caps is None:
            return cls.from_int(raw)
        return cls.decode(raw, caps, refusal=refusal)

    # -- defined and reserved bits ----------------------------------------------------------

    @classmethod
    def defined_mask(cls) -> int:
        """Every bit some field (or the fixed part) occupies."""
        return cls._DEFINED

    @classmethod
    def reserved_bits(cls, raw: int) -> int:
        """The bits of ``raw`` that no field defines."""
        return raw & ~cls._DEFINED & ((1 << cls.BITS) - 1)

    @classmethod
    def reserved_mask(cls, caps: object) -> int:
        """Bits that must be zero under the capability set ``caps``: those no field defines,
        the fields whose capability is absent and the bits of width-limited fields beyond
        their capability's width."""
        try:
            return _reserved_mask(cls, caps)
        except TypeError:   # an unhashable capability set (a dict, a set): not cached
            return _reserved_mask.__wrapped__(cls, caps)

    def describe(self) -> dict[str, int | bool]:
        """Field name -> value, in layout order (for tracing and the command line)."""
        return {name: getattr(self, name) for name in self.LAYOUT}


@functools.lru_cache(maxsize=512)
def _reserved_mask(cls: type[Record], caps: object) -> int:
    mask = ~cls._DEFINED & ((1 << cls.BITS) - 1)
    for name, cap in cls.CAPABILITY_FIELDS.items():
        if not capability(caps, cap):
            mask |= cls.LAYOUT[name].mask
    for name, cap in cls.CAPABILITY_WIDTHS.items():
        mask |= cls.LAYOUT[name].beyond(capability(caps, cap))
    return mask

"""Named bit fields and the records built from them.

Every VT-d structure in this package (registers, root/context/PASID entries, invalidation
descriptors, fault records, page requests) is declared as a :class:`Record`: a frozen msgspec
Struct whose attributes are the structure's fields, plus a ``LAYOUT`` table that names each
field's position once, as a :class:`Field`. Positions are absolute bit numbers inside the whole
structure (bit 64 is bit 0 of the second little-endian quadword), as in the VT-d specification's
tables. Packing, unpacking, the defined-bits mask (from which reserved-bit checks are derived) and
the byte image all come from that one table.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple, Self

import msgspec

from iommu_uapi.errors import UAPIError

__all__ = ["Field", "Record", "bit", "qwords_to_int"]


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


def bit(n: int) -> Field:
    """A one-bit flag at absolute bit ``n``."""
    return Field(n, 1)


def qwords_to_int(qwords: Sequence[int]) -> int:
    """Join little-endian quadwords (QW0 first) into one integer."""
    value = 0
    for i, qw in enumerate(qwords):
        value |= (qw & 0xFFFF_FFFF_FFFF_FFFF) << (64 * i)
    return value


class Record(msgspec.Struct, frozen=True, gc=False):
    """A hardware structure: fields named in ``LAYOUT``, ``BITS`` bits long.

    ``FIXED`` holds bits that are constant for the structure (a descriptor's type code) and are
    added by :meth:`to_int` and expected by decoders.
    """

    LAYOUT: ClassVar[dict[str, Field]] = {}
    BITS: ClassVar[int] = 64
    FIXED: ClassVar[int] = 0

    # -- encode ---------------------------------------------------------------------------

    def to_int(self) -> int:
        """The structure's value; ``UAPIError(EINVAL)`` naming the field that does not fit."""
        value = self.FIXED
        for name, field in self.LAYOUT.items():
            try:
                value |= field.put(getattr(self, name))
            except ValueError as exc:
                raise UAPIError(errno.EINVAL, f"{type(self).__name__}.{name}: {exc}",
                                rule="vtd.field-width") from None
        return value

    def qwords(self) -> tuple[int, ...]:
        """The structure as little-endian quadwords, QW0 first."""
        value = self.to_int()
        return tuple((value >> (64 * i)) & 0xFFFF_FFFF_FFFF_FFFF for i in range(self.BITS // 64))

    def to_bytes(self) -> bytes:
        """The little-endian image written into memory."""
        return self.to_int().to_bytes(self.BITS // 8, "little")

    # -- decode ---------------------------------------------------------------------------

    @classmethod
    def from_int(cls, raw: int) -> Self:
        """The fields of ``raw``; reserved bits are ignored here (see :meth:`reserved_bits`)."""
        kwargs: dict[str, Any] = {}
        for name, field in cls.LAYOUT.items():
            value = field.get(raw)
            kwargs[name] = bool(value) if field.width == 1 else value
        return cls(**kwargs)

    @classmethod
    def from_bytes(cls, buf: bytes | bytearray | memoryview) -> Self:
        """Decode the little-endian image of exactly ``BITS // 8`` bytes."""
        if len(buf) != cls.BITS // 8:
            raise UAPIError(errno.EINVAL, f"{cls.__name__}: need {cls.BITS // 8} bytes, got "
                            f"{len(buf)}", rule="vtd.size")
        return cls.from_int(int.from_bytes(buf, "little"))

    @classmethod
    def defined_mask(cls) -> int:
        """Every bit some field (or the fixed part) occupies."""
        mask = cls.FIXED
        for field in cls.LAYOUT.values():
            mask |= field.mask
        return mask

    @classmethod
    def reserved_bits(cls, raw: int) -> int:
        """The bits of ``raw`` that no field defines."""
        return raw & ~cls.defined_mask() & ((1 << cls.BITS) - 1)

    def describe(self) -> dict[str, int | bool]:
        """Field name -> value, in layout order (for tracing and the command line)."""
        return {name: getattr(self, name) for name in self.LAYOUT}

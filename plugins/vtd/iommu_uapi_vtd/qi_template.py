"""Address-carrying invalidation templates and their one-descriptor path (hw-formats 1.9.11).

The invalidations that carry an address (IOTLB, PASID-based IOTLB and device-TLB invalidations)
differ from one flush to the next only in their address fields (``ADDRESS_FIELDS``: ADDR, AM or
S, IH). A *template* is such a descriptor with those fields zero (one per domain, PASID or
device); a :class:`Template` holds its image, the address bits the hardware refuses under the
unit's capabilities, its :data:`Placer` and its bound effect. :func:`one_descriptor_path` binds a
template to a queue once: a descriptor of it is then placed into the image with one int OR,
stored at IQT of an idle queue through the memory's writable page view, executed and logged,
with IQH/IQT and the log as the general submit and process leave them.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from iommu_uapi.memory import PAGE_SIZE, PhysicalMemory

from .iq import LogRecord
from .qi import Descriptor, DevTlbInv, IotlbInv, PasidDevTlbInv, PasidIotlbInv
from .qi_effects import AddressEffect
from .status import Fsts

if TYPE_CHECKING:
    from .iq import InvalidationQueue

__all__ = ["ADDRESS_FIELDS", "ZEROS", "PlacedPath", "Placer", "Template", "one_descriptor_path",
           "placed_path", "placer"]

_new_log = tuple.__new__  # builds a LogRecord without NamedTuple's keyword handling
_FSTS_IQE = Fsts.LAYOUT["IQE"].mask
_IN_PAGE = PAGE_SIZE - 1
_PAGE_BASE = ~_IN_PAGE
_U64 = (1 << 64) - 1

#: By descriptor type: the fields that carry the address of an invalidation (all else is the
#: template shared by every address of one domain, PASID or device).
ADDRESS_FIELDS: dict[type[Descriptor], tuple[str, ...]] = {
    IotlbInv: ("AM", "IH", "ADDR"),
    PasidIotlbInv: ("AM", "IH", "ADDR"),
    DevTlbInv: ("S", "ADDR"),
    PasidDevTlbInv: ("S", "ADDR"),
}
#: By type: the address fields zero (a template's).
ZEROS = {cls: {f: False if cls.LAYOUT[f].width == 1 else 0 for f in fields}
          for cls, fields in ADDRESS_FIELDS.items()}

#: Places a descriptor's address fields: their bits in place, ``ValueError`` when one does not
#: fit (or, for AM, exceeds the limit the placer was made with).
Placer = Callable[[Descriptor], int]

#: Runs a descriptor of a template whose address bits are already placed (``d``, its bits):
#: True when done, False (nothing done) when the queue is not idle or a bit is refused.
PlacedPath = Callable[[Descriptor, int], bool]


def placer(cls: type[Descriptor], am_limit: int) -> Placer:
    """The :data:`Placer` of ``cls``'s address fields (two or three, see ``ADDRESS_FIELDS``): a
    value fits when it is a multiple of its field's unit below the field's limit; AM also stays
    within ``am_limit``."""
    names = ADDRESS_FIELDS[cls]
    layout = cls.LAYOUT
    specs = [(layout[n].shift, layout[n].unit,
              min(1 << (layout[n].width + layout[n].unit), am_limit + 1 if n == "AM" else 1 << 64))
             for n in names]
    get = operator.attrgetter(*names)
    (s0, u0, l0), (s1, u1, l1) = specs[0], specs[1]
    m0, m1 = (1 << u0) - 1, (1 << u1) - 1
    if len(specs) == 2:
        def place2(d: Descriptor) -> int:
            a, b = get(d)
            if not (0 <= a < l0 and 0 <= b < l1) or a & m0 or b & m1:
                raise ValueError(f"{cls.__name__}: an address field does not fit")
            bits: int = (a >> u0) << s0 | (b >> u1) << s1
            return bits
        return place2
    s2, u2, l2 = specs[2]
    m2 = (1 << u2) - 1

    def place3(d: Descriptor) -> int:
        a, b, c = get(d)
        if not (0 <= a < l0 and 0 <= b < l1 and 0 <= c < l2) or a & m0 or b & m1 or c & m2:
            raise ValueError(f"{cls.__name__}: an address field does not fit")
        bits: int = (a >> u0) << s0 | (b >> u1) << s1 | (c >> u2) << s2
        return bits
    return place3


class Template(NamedTuple):
    """A prepared template: its image (address fields zero), the bits of an address that the
    hardware refuses (reserved under the unit's capabilities), how the address fields are
    placed, and its bound effect (None: the hardware refuses the template itself, so every
    descriptor of it is decoded and refused)."""

    image: int
    refused: int
    place: Placer
    effect: AddressEffect | None


def one_descriptor_path(q: InvalidationQueue, t: Template) -> Callable[[Descriptor], bool]:
    """The one-descriptor path of template ``t`` on queue ``q`` (whose geometry, IQA, stays
    fixed while the path is in use): a descriptor ``d`` of the template has its address fields
    placed into the image (refused: a field that does not fit, a bit the hardware refuses), the
    image stored at IQT of an idle queue (no IQE, not stopped, IQH at IQT: every slot free),
    IQT and IQH advanced past it, ``d`` executed by the template's effect and logged; returns
    False (nothing done) when refused or the queue is not idle. ``ValueError`` for a template
    without an effect (the hardware refuses it: its descriptors take the general path)."""
    place, run_placed = t.place, placed_path(q, t)

    def run(d: Descriptor) -> bool:
        try:
            bits = place(d)
        except ValueError:
            return False
        return run_placed(d, bits)
    return run


def placed_path(q: InvalidationQueue, t: Template) -> PlacedPath:
    """:func:`one_descriptor_path` of template ``t`` on queue ``q`` for a caller that places the
    address fields itself: ``run(d, bits)`` takes ``d`` and its address bits (what ``t.place(d)``
    returns, which the caller vouches for: its fields fit); a bit the hardware refuses, or a
    queue that is not idle, returns False with nothing done. ``ValueError`` as
    :func:`one_descriptor_path`."""
    image0, refused, effect = t.image, t.refused, t.effect
    if effect is None:
        raise ValueError("a template the hardware refuses has no one-descriptor path")
    ring, mem, status, log = q.ring, q.mem, q.status, q.log
    stride = q.stride
    shift, slots = stride.bit_length() - 1, ring.entries - 1
    positions = ring.positions - 1
    # the slot's quadwords stored through the memory's writable page view (a slot never
    # straddles a page: IQA is page-aligned); a page not backed yet, or a memory that writes
    # its own way, goes through write()
    own_write = type(mem).write is not PhysicalMemory.write or "write" in vars(mem)
    quads = None if own_write else mem.page_quads_writable()
    qget = ({} if quads is None else quads).get
    wide = stride == 32

    def run_placed(d: Descriptor, bits: int) -> bool:
        head = ring.cons
        slot = head & slots
        if bits & refused or status.fsts & _FSTS_IQE or ring.stopped or \
                ring.prod != head or q.iqt != slot << shift:
            return False
        addr, image = ring.base + slot * stride, image0 | bits
        page = qget(addr & _PAGE_BASE)
        if page is None:
            mem.write(addr, image.to_bytes(stride, "little"))
        else:
            at = (addr & _IN_PAGE) >> 3
            page[at] = image & _U64
            page[at + 1] = image >> 64 & _U64
            if wide:  # a 256-bit descriptor
                page[at + 2] = image >> 128 & _U64
                page[at + 3] = image >> 192
        tail = ring.prod = (head + 1) & positions
        q.iqt = (tail & slots) << shift
        log.append(_new_log(LogRecord, (slot << shift, d, effect(q, d))))
        ring.cons = tail  # the hardware caught up with IQT
        q.executed += 1
        return True
    return run_placed

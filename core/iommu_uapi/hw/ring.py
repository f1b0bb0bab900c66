"""Rings in memory: the circular queues IOMMUs and their drivers share.

A :class:`Ring` is 2^``log2size`` entries of ``entry_size`` bytes at ``base`` in a
:class:`~iommu_uapi.memory.PhysicalMemory`, a producer position (where the next entry is
written) and a consumer position (the next entry to read). VT-d's invalidation queue and
page-request queue, SMMUv3's command, event and PRI queues are all such rings; they differ in how
the positions tell a full ring from an empty one (:class:`IndexStyle`):

* :attr:`IndexStyle.SLOT_GAP` (VT-d IQH/IQT, PQH/PQT): a position is an entry index
  0..2^n - 1 (the registers hold it as a byte offset). Equal positions mean empty, so one slot
  always stays free: the ring is full when producer + 1 == consumer.
* :attr:`IndexStyle.WRAP_BIT` (SMMUv3 PROD/CONS): a position is the index in bits n-1:0 plus a
  wrap flag at bit n, toggled each time the index passes the end. Empty when index and wrap are
  equal; full when the indices are equal and the wraps differ; all 2^n slots are usable.

Two conditions are kept with the ring, as both architectures have them:

* **stopped** (VT-d FSTS.IQE with IQERCD.IQEI, SMMUv3 CMDQ_CONS.ERR with GERROR.CMDQ_ERR): the
  consumer met an entry it refuses, :meth:`Ring.stop` records the error code and leaves the
  consumer position at that entry; nothing is consumed until :meth:`Ring.acknowledge` (software
  clears IQE / toggles GERRORN), and consumption resumes at the same entry.
* **overflow** (VT-d PRS.PRO, SMMUv3 EVENTQ/PRIQ PROD.OVFLG vs CONS.OVACKFLG): a producer that
  could not write an entry because the ring was full loses it; the overflow condition is entered
  by toggling the overflow flag when it is not already present, and lasts until the consumer
  side acknowledges it (OVACKFLG := OVFLG, or writing 1 to PRO). Entries are still produced while
  the condition is present (when there is room).

Positions and errors are plain attributes (the registers a backend exposes are encoded from
them); the geometry is checked once, in the constructor and :meth:`Ring.configure`.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..memory import PhysicalMemory

__all__ = ["MAX_LOG2SIZE", "IndexStyle", "Ring"]


class IndexStyle(Enum):
    """How producer and consumer positions tell a full ring from an empty one."""

    #: Entry indices without a wrap flag; one slot is kept free (VT-d).
    SLOT_GAP = "slot-gap"
    #: Entry index plus a wrap flag at bit log2size (SMMUv3 PROD/CONS).
    WRAP_BIT = "wrap-bit"


#: The largest ring: SMMUv3 queue indices are at most 19 bits (LOG2SIZE <= 19), VT-d queues at
#: most 2^7 pages of 16-byte descriptors (2^15 entries).
MAX_LOG2SIZE = 19


class Ring:
    """A ring of 2^``log2size`` entries of ``entry_size`` bytes at ``base`` in ``mem``.

    ``prod`` and ``cons`` are positions (see :class:`IndexStyle`); ``error`` is the code of the
    last :meth:`stop` and ``stopped`` whether consumption waits for :meth:`acknowledge`;
    ``ovflg``/``ovackflg`` are the overflow flag and its acknowledgement (the overflow condition
    is present while they differ); ``lost`` counts entries a full ring could not take.
    """

    __slots__ = ("_capacity", "_mask", "_slots", "base", "cons", "entry_size", "error",
                 "log2size", "lost", "mem", "ovackflg", "ovflg", "prod", "stopped", "style")

    mem: PhysicalMemory
    base: int
    log2size: int
    entry_size: int
    style: IndexStyle
    prod: int
    cons: int
    stopped: bool
    error: int
    ovflg: bool
    ovackflg: bool
    lost: int
    _mask: int       # positions - 1: a position's bits (index and wrap flag)
    _slots: int      # entries - 1: a position's index bits
    _capacity: int

    def __init__(self, mem: PhysicalMemory, base: int, log2size: int, entry_size: int,
                 style: IndexStyle = IndexStyle.SLOT_GAP) -> None:
        self.mem = mem
        self.style = style
        self.stopped = False
        self.error = 0
        self.ovflg = self.ovackflg = False
        self.lost = 0
        self.configure(base, log2size, entry_size)

    def configure(self, base: int, log2size: int, entry_size: int) -> bool:
        """Place the ring (a write of the queue's base register): both positions return to 0
        when the size or the entry size changes, else they are kept; returns whether they were
        reset. ``ValueError`` for a
        geometry no queue has: a negative base, an entry size that is not a power of two, a
        size outside 2^0..2^19 (2^1.. for :attr:`IndexStyle.SLOT_GAP`, which keeps a slot free)."""
        least = 1 if self.style is IndexStyle.SLOT_GAP else 0
        if not least <= log2size <= MAX_LOG2SIZE:
            raise ValueError(f"ring: log2size {log2size} not in {least}..{MAX_LOG2SIZE}")
        if entry_size <= 0 or entry_size & (entry_size - 1):
            raise ValueError(f"ring: entry size {entry_size} is not a power of two")
        if base < 0:
            raise ValueError(f"ring: base {base:#x} is negative")
        changed = getattr(self, "log2size", None) != log2size or \
            getattr(self, "entry_size", None) != entry_size
        self.base, self.log2size, self.entry_size = base, log2size, entry_size
        wrap = self.style is IndexStyle.WRAP_BIT
        self._mask = (1 << (log2size + wrap)) - 1
        self._slots = (1 << log2size) - 1
        self._capacity = self._slots + wrap
        if changed:
            self.prod = self.cons = 0
        return changed

    # -- geometry -----------------------------------------------------------------------------

    @property
    def entries(self) -> int:
        """Slots in the ring: 2^log2size."""
        return self._slots + 1

    @property
    def capacity(self) -> int:
        """Entries the ring can hold at once: every slot, or all but one (SLOT_GAP)."""
        return self._capacity

    @property
    def positions(self) -> int:
        """How many distinct positions there are: the slots, twice with a wrap flag."""
        return self._mask + 1

    def index(self, pos: int) -> int:
        """The slot of position ``pos`` (its bits log2size-1:0)."""
        return pos & self._slots

    def wrap(self, pos: int) -> int:
        """The wrap flag of position ``pos`` (bit log2size; always 0 for SLOT_GAP)."""
        return (pos & self._mask) >> self.log2size

    def offset(self, pos: int) -> int:
        """The byte offset of position ``pos``'s slot from the ring's base."""
        return (pos & self._slots) * self.entry_size

    def address(self, pos: int) -> int:
        """The address of position ``pos``'s slot."""
        return self.base + (pos & self._slots) * self.entry_size

    def step(self, pos: int, n: int = 1) -> int:
        """The position ``n`` entries after ``pos`` (the wrap flag toggles as the index passes
        the end)."""
        return (pos + n) & self._mask

    def valid(self, pos: int) -> bool:
        """Whether ``pos`` is a position of this ring."""
        return 0 <= pos <= self._mask

    def set_prod(self, pos: int) -> None:
        """Move the producer to ``pos`` (a producer register written); ``ValueError`` for a
        value that is not a position (the backend masks or refuses register values first)."""
        if not self.valid(pos):
            raise ValueError(f"ring: producer position {pos:#x} beyond {self._mask:#x}")
        self.prod = pos

    def set_cons(self, pos: int) -> None:
        """Move the consumer to ``pos`` (a consumer register written); ``ValueError`` as for
        :meth:`set_prod`."""
        if not self.valid(pos):
            raise ValueError(f"ring: consumer position {pos:#x} beyond {self._mask:#x}")
        self.cons = pos

    # -- occupancy ----------------------------------------------------------------------------

    def used(self) -> int:
        """Entries produced and not consumed yet."""
        return (self.prod - self.cons) & self._mask

    def free(self) -> int:
        """Entries the producer may still write."""
        return self._capacity - ((self.prod - self.cons) & self._mask)

    def empty(self) -> bool:
        """Producer and consumer at the same position (index and wrap)."""
        return self.prod == self.cons

    def full(self) -> bool:
        """No room for one more entry: producer + 1 == consumer (SLOT_GAP), or same index with
        different wrap flags (WRAP_BIT)."""
        return (self.prod - self.cons) & self._mask == self._capacity

    # -- producer side ------------------------------------------------------------------------

    def produce(self, entry: bytes) -> bool:
        """Write ``entry`` at the producer position and advance it; False (nothing written,
        nothing changed) when the ring is full. ``ValueError`` for an entry of another size."""
        if len(entry) != self.entry_size:
            raise ValueError(f"ring: entry of {len(entry)} bytes, slots of {self.entry_size}")
        if (self.prod - self.cons) & self._mask == self._capacity:
            return False
        self.mem.write(self.base + (self.prod & self._slots) * self.entry_size, entry)
        self.prod = (self.prod + 1) & self._mask
        return True

    def produce_all(self, entries: Sequence[bytes]) -> bool:
        """Write every entry of ``entries`` in order and advance past them, or (not room for all
        of them) write none and return False."""
        mask, pos, n = self._mask, self.prod, len(entries)
        if n > self._capacity - ((pos - self.cons) & mask):
            return False
        size, slots = self.entry_size, self._slots
        for entry in entries:
            if len(entry) != size:  # checked before any write: nothing produced
                raise ValueError(f"ring: entry of {len(entry)} bytes, slots of {size}")
        # the slots up to the ring's end are contiguous: one write for them, one for the rest
        first = min(n, slots + 1 - (pos & slots))
        if not first:
            return True
        self.mem.write(self.base + (pos & slots) * size,
                       b"".join(entries if first == n else entries[:first]))
        if first < n:
            self.mem.write(self.base, b"".join(entries[first:]))
        self.prod = (pos + n) & mask
        return True

    def produce_or_overflow(self, entry: bytes) -> bool:
        """A hardware producer's write (an event, a page request): :meth:`produce`, or when the
        ring is full the entry is lost (``lost`` + 1) and the overflow condition is entered:
        the overflow flag toggles unless the condition is already present."""
        if self.produce(entry):
            return True
        self.lost += 1
        if self.ovflg == self.ovackflg:
            self.ovflg = not self.ovflg
        return False

    @property
    def overflowed(self) -> bool:
        """The overflow condition: the flag differs from its acknowledgement."""
        return self.ovflg != self.ovackflg

    def acknowledge_overflow(self) -> None:
        """The consumer acknowledges the overflow (OVACKFLG := OVFLG; VT-d: PRS.PRO written 1)."""
        self.ovackflg = self.ovflg

    # -- consumer side ------------------------------------------------------------------------

    def peek(self) -> bytes | None:
        """The entry at the consumer position, without consuming it; None when the ring is
        empty or stopped (``MemoryAccessError`` when the slot lies outside the memory)."""
        if self.stopped or self.prod == self.cons:
            return None
        return self.mem.read(self.base + (self.cons & self._slots) * self.entry_size,
                             self.entry_size)

    def advance(self, n: int = 1) -> None:
        """Consume ``n`` entries (the consumer finished with them); ``ValueError`` past the
        producer."""
        if not 0 <= n <= (self.prod - self.cons) & self._mask:
            raise ValueError(f"ring: cannot consume {n} of {self.used()} entries")
        self.cons = (self.cons + n) & self._mask

    def consume(self) -> bytes | None:
        """:meth:`peek` and :meth:`advance` past the entry; None when empty or stopped."""
        entry = self.peek()
        if entry is not None:
            self.cons = (self.cons + 1) & self._mask
        return entry

    def drain(self) -> list[bytes]:
        """Consume every entry up to the producer (or until the ring stops)."""
        out = []
        while (entry := self.consume()) is not None:
            out.append(entry)
        return out

    # -- errors -------------------------------------------------------------------------------

    def stop(self, error: int) -> None:
        """The consumer refused the entry at its position: record ``error`` and consume nothing
        until :meth:`acknowledge`; the consumer position stays at the refused entry."""
        self.stopped = True
        self.error = error

    def acknowledge(self) -> None:
        """Software acknowledged the error: consumption resumes at the consumer position
        (``error`` keeps the last code, as the error registers do)."""
        self.stopped = False

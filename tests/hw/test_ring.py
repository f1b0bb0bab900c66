"""Rings in memory, in both index styles: VT-d's (a slot kept free, full when prod + 1 == cons)
and SMMUv3's (a wrap flag at bit log2size: empty when index and wrap are equal, full when the
indices are equal and the wraps differ); overflow as the event and PRI queues signal it (the flag
toggles once per overflow condition); a stopped consumer (CMDQ_CONS.ERR, FSTS.IQE) that resumes
at the refused entry once acknowledged."""

from __future__ import annotations

import errno
from collections import deque

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from iommu_uapi.errors import MemoryAccessError
from iommu_uapi.hw.bits import Field, Record, Refusal, bit
from iommu_uapi.hw.ring import IndexStyle, Ring
from iommu_uapi.memory import PhysicalMemory

SLOT, WRAP = IndexStyle.SLOT_GAP, IndexStyle.WRAP_BIT
BASE = 0x10_0000


def entry(n: int, size: int = 16) -> bytes:
    return n.to_bytes(4, "little") * (size // 4)


def ring(style: IndexStyle, log2size: int = 2, size: int = 16) -> Ring:
    return Ring(PhysicalMemory(), BASE, log2size, size, style)


# -- SMMUv3 style ----------------------------------------------------------------------------------


def test_wrap_bit_ring_uses_every_slot_and_tells_full_from_empty_by_the_wrap_flag() -> None:
    r = ring(WRAP)
    assert r.entries == r.capacity == 4 and r.positions == 8
    assert r.empty() and not r.full() and r.free() == 4
    for i in range(4):
        assert r.produce(entry(i))
    # PROD index 0, wrap 1; CONS index 0, wrap 0: same index, different wraps -> full
    assert (r.index(r.prod), r.wrap(r.prod), r.index(r.cons), r.wrap(r.cons)) == (0, 1, 0, 0)
    assert r.full() and not r.empty() and r.used() == 4 and r.free() == 0
    assert not r.produce(entry(9)) and r.prod == 4          # nothing written, nothing moved
    assert r.mem.read(BASE, 16) == entry(0)
    assert r.drain() == [entry(i) for i in range(4)]
    # both at index 0 with wrap 1: equal -> empty
    assert r.cons == r.prod == 4 and r.wrap(r.cons) == 1 and r.empty() and not r.full()


def test_wrap_flag_toggles_each_time_the_index_passes_the_end() -> None:
    r = ring(WRAP, log2size=1)
    wraps = []
    for i in range(9):
        assert r.produce(entry(i)) and r.consume() == entry(i)
        wraps.append((r.index(r.prod), r.wrap(r.prod)))
    assert wraps == [(1, 0), (0, 1), (1, 1), (0, 0), (1, 0), (0, 1), (1, 1), (0, 0), (1, 0)]
    assert r.step(0b11) == 0 and r.step(0b01, 3) == 0


def test_a_one_entry_wrap_ring_holds_one_entry() -> None:
    r = ring(WRAP, log2size=0)                  # LOG2SIZE 0: RD_WRAP is bit 0
    assert r.capacity == 1 and r.positions == 2
    assert r.produce(entry(1)) and r.full() and r.prod == 1 and r.wrap(r.prod) == 1
    assert not r.produce(entry(2))
    assert r.consume() == entry(1) and r.empty() and r.cons == 1


def test_overflow_toggles_the_flag_once_until_acknowledged() -> None:
    r = ring(WRAP, log2size=1)
    assert r.produce_or_overflow(entry(0)) and r.produce_or_overflow(entry(1))
    assert not r.overflowed and r.lost == 0
    assert not r.produce_or_overflow(entry(2))               # full: lost, OVFLG toggles
    assert r.overflowed and r.ovflg and not r.ovackflg and r.lost == 1
    assert not r.produce_or_overflow(entry(3))               # condition already present
    assert r.ovflg and r.lost == 2
    assert r.consume() == entry(0)
    assert r.produce_or_overflow(entry(4))                   # unacknowledged: still produces
    assert r.overflowed
    r.acknowledge_overflow()                                 # OVACKFLG := OVFLG
    assert not r.overflowed and r.ovackflg
    assert not r.produce_or_overflow(entry(5))               # a new condition toggles back
    assert r.overflowed and not r.ovflg and r.lost == 3
    assert r.drain() == [entry(1), entry(4)]


def test_a_stopped_consumer_stays_at_the_refused_entry_until_acknowledged() -> None:
    r = ring(WRAP)
    assert r.produce_all([entry(i) for i in range(3)])
    assert r.consume() == entry(0)
    assert r.peek() == entry(1)
    r.stop(1)                                                # e.g. CERROR_ILL at entry 1
    assert r.stopped and r.error == 1 and r.cons == 1
    assert r.peek() is None and r.consume() is None and r.drain() == []
    assert r.produce(entry(3))                               # the producer side goes on
    r.mem.write(r.address(r.cons), entry(7))                 # software repairs the slot
    r.acknowledge()
    assert not r.stopped and r.error == 1                    # the code stays readable
    assert r.drain() == [entry(7), entry(2), entry(3)]


# -- VT-d style ----------------------------------------------------------------------------------


def test_slot_gap_ring_keeps_one_slot_free() -> None:
    r = ring(SLOT, log2size=3, size=32)
    assert r.entries == 8 and r.capacity == 7 and r.positions == 8
    assert r.produce_all([entry(i, 32) for i in range(7)])
    assert r.full() and r.prod == 7 and r.step(r.prod) == r.cons    # tail + 1 == head
    assert not r.produce(entry(9, 32)) and not r.produce_all([entry(9, 32)])
    assert [r.offset(p) for p in range(8)] == [32 * i for i in range(8)]
    assert r.consume() == entry(0, 32) and r.produce(entry(7, 32))
    assert r.prod == 0 and r.wrap(r.prod) == 0 and r.full()          # wrapped, no wrap flag
    assert r.mem.read(BASE + 7 * 32, 32) == entry(7, 32)
    assert r.drain() == [entry(i, 32) for i in range(1, 8)] and r.empty()


def test_produce_all_writes_all_or_nothing() -> None:
    r = ring(SLOT)
    assert r.produce(entry(0))
    assert not r.produce_all([entry(1), entry(2), entry(3)])         # 2 free
    assert r.prod == 1 and r.mem.read(BASE + 16, 16) == bytes(16)
    with pytest.raises(ValueError):
        r.produce_all([entry(1), b"short"])
    assert r.prod == 1 and r.used() == 1
    with pytest.raises(ValueError):
        r.produce(b"x" * 32)
    assert r.produce_all([]) and r.prod == 1


def test_produce_all_across_the_end_writes_both_ends() -> None:
    r = ring(WRAP)                                           # 4 slots
    assert r.produce_all([entry(i) for i in range(3)]) and r.drain()
    assert r.produce_all([entry(7), entry(8), entry(9)])     # slots 3, 0, 1
    assert r.mem.read(BASE + 48, 16) == entry(7)
    assert r.mem.read(BASE, 32) == entry(8) + entry(9)
    assert (r.prod, r.cons) == (6, 3) and r.drain() == [entry(7), entry(8), entry(9)]


def test_positions_and_geometry_are_checked() -> None:
    r = ring(SLOT)
    r.set_prod(3)
    r.set_cons(2)
    assert r.used() == 1
    for bad in (4, -1):
        with pytest.raises(ValueError):
            r.set_prod(bad)
        with pytest.raises(ValueError):
            r.set_cons(bad)
    with pytest.raises(ValueError):
        r.advance(2)
    assert r.cons == 2
    w = ring(WRAP)
    w.set_prod(7)                                            # index 3, wrap 1
    assert w.used() == 7 and w.index(7) == 3 and w.wrap(7) == 1
    with pytest.raises(ValueError):
        w.set_prod(8)
    mem = PhysicalMemory()
    for log2size, size, style in [(0, 16, SLOT), (20, 16, WRAP), (2, 24, WRAP), (2, 0, SLOT)]:
        with pytest.raises(ValueError):
            Ring(mem, 0, log2size, size, style)
    with pytest.raises(ValueError):
        Ring(mem, -16, 2, 16)


def test_configure_keeps_positions_unless_the_geometry_changes() -> None:
    r = ring(SLOT)
    r.produce_all([entry(1), entry(2)])
    r.consume()
    assert not r.configure(0x20_0000, 2, 16)                 # moved, same geometry
    assert (r.prod, r.cons, r.base) == (2, 1, 0x20_0000)
    assert r.peek() == bytes(16)                             # reads the new place
    assert r.configure(0x20_0000, 3, 16)                     # resized: positions reset
    assert (r.prod, r.cons, r.entries) == (0, 0, 8)


def test_a_slot_outside_memory_is_a_fetch_error_and_consumes_nothing() -> None:
    r = Ring(PhysicalMemory(addr_bits=32), (1 << 32) - 32, 2, 16)
    assert r.produce(entry(0))
    r.set_prod(3)                                            # slots 2, 3 lie beyond memory
    r.set_cons(2)
    with pytest.raises(MemoryAccessError):
        r.peek()
    assert r.cons == 2
    with pytest.raises(MemoryAccessError):
        r.consume()
    assert r.cons == 2


# -- both styles against a model -------------------------------------------------------------------


class RingModel(RuleBasedStateMachine):
    """A ring against a deque of what it holds: occupancy, order, bytes in memory, positions."""

    @initialize(style=st.sampled_from([SLOT, WRAP]), log2size=st.integers(1, 3))
    def setup(self, style: IndexStyle, log2size: int) -> None:
        self.ring = ring(style, log2size)
        self.model: deque[bytes] = deque()
        self.produced = self.consumed = 0
        self.lost = 0
        self.flag_toggles = 0

    @rule(n=st.integers(0, 5))
    def produce_all(self, n: int) -> None:
        batch = [entry(self.produced + i) for i in range(n)]
        room = self.ring.capacity - len(self.model)
        assert self.ring.produce_all(batch) == (n <= room)
        if n <= room:
            self.model.extend(batch)
            self.produced += n

    @rule()
    def produce_or_overflow(self) -> None:
        e = entry(self.produced)
        full = len(self.model) == self.ring.capacity
        was = self.ring.overflowed
        assert self.ring.produce_or_overflow(e) == (not full)
        if full:
            self.lost += 1
            self.flag_toggles += not was
            assert self.ring.overflowed
        else:
            self.model.append(e)
            self.produced += 1

    @rule()
    def consume(self) -> None:
        got = self.ring.consume()
        assert got == (self.model.popleft() if self.model else None)

    @precondition(lambda self: self.ring.overflowed)
    @rule()
    def acknowledge_overflow(self) -> None:
        self.ring.acknowledge_overflow()
        assert not self.ring.overflowed

    @invariant()
    def occupancy_and_memory_agree(self) -> None:
        r = self.ring
        assert r.used() == len(self.model) and r.free() == r.capacity - len(self.model)
        assert r.empty() == (not self.model)
        assert r.full() == (len(self.model) == r.capacity)
        assert r.lost == self.lost and r.ovflg == bool(self.flag_toggles % 2)
        for i, want in enumerate(self.model):
            assert r.mem.read(r.address(r.step(r.cons, i)), r.entry_size) == want

    @invariant()
    def positions_count_entries(self) -> None:
        r = self.ring
        consumed = self.produced - len(self.model)
        assert r.prod == self.produced % r.positions and r.cons == consumed % r.positions
        if r.style is WRAP:   # the wrap flag is the parity of passes over the end
            assert r.wrap(r.prod) == (self.produced >> r.log2size) & 1


TestRingModel = RingModel.TestCase


# -- SMMUv3 queue registers over a ring ------------------------------------------------------------


class SmmuRecord(Record, frozen=True, gc=False):
    FIELD_REFUSAL = Refusal(errno.EINVAL, rule="test.field-width")
    SIZE_REFUSAL = Refusal(errno.EINVAL, rule="test.size")


class CmdqCons(SmmuRecord, frozen=True, gc=False):
    """CMDQ_CONS (32 bits): RD index and wrap in 19:0, ERR 30:24."""

    BITS = 32
    LAYOUT = {"RD": Field(0, 20), "ERR": Field(24, 7)}
    RD: int = 0
    ERR: int = 0


class EventqProd(SmmuRecord, frozen=True, gc=False):
    """EVENTQ_PROD (32 bits): WR index and wrap in 19:0, OVFLG 31."""

    BITS = 32
    LAYOUT = {"WR": Field(0, 20), "OVFLG": bit(31)}
    WR: int = 0
    OVFLG: bool = False


CERROR_ILL = 1


def test_cmdq_stops_at_an_illegal_command_with_cons_err_and_resumes_after_gerrorn() -> None:
    cmdq = ring(WRAP, log2size=3)
    commands = [bytes([op]) + bytes(15) for op in (0x46, 0x99, 0x46)]  # SYNC, bad, SYNC
    assert cmdq.produce_all(commands)          # software writes CMDQ_PROD = 3
    executed = []
    while (cmd := cmdq.peek()) is not None:
        if cmd[0] != 0x46:
            cmdq.stop(CERROR_ILL)              # CONS left at the faulting command
            break
        executed.append(cmd[0])
        cmdq.advance()
    assert CmdqCons.from_int(CmdqCons(RD=cmdq.cons, ERR=cmdq.error).to_int()) == \
        CmdqCons(RD=1, ERR=CERROR_ILL)
    assert cmdq.peek() is None                 # stopped until GERRORN is toggled
    cmdq.mem.write(cmdq.address(cmdq.cons), commands[0])   # Linux rewrites it as a CMD_SYNC
    cmdq.acknowledge()
    assert cmdq.drain() == [commands[0], commands[2]] and executed == [0x46]
    assert CmdqCons(RD=cmdq.cons, ERR=cmdq.error).to_int() == 3 | CERROR_ILL << 24


def test_eventq_prod_register_shows_the_wrap_and_overflow_flags() -> None:
    evtq = ring(WRAP, log2size=1, size=32)
    for i in range(3):
        evtq.produce_or_overflow(entry(i, 32))                # the third is lost
    prod = EventqProd(WR=evtq.prod, OVFLG=evtq.ovflg).to_int()
    assert prod == 0b10 | 1 << 31             # index 0, wrap 1, overflow flag toggled
    assert evtq.overflowed and EventqProd.from_int(prod).OVFLG   # condition present

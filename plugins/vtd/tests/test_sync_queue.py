"""The driver's synchronous queue: its one-pass path for memoised descriptors does exactly what
the general queue does (same log, same caches, same losses), across wrap-around and errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_iq import DEV, A, B, populated, snapshot

from iommu_uapi.memory import PhysicalMemory
from iommu_uapi_vtd.caches import VtdCaches
from iommu_uapi_vtd.iq import LOG_LIMIT, InvalidationQueue
from iommu_uapi_vtd.qi import (
    ContextCacheInv,
    Descriptor,
    DevTlbInv,
    InvWait,
    IotlbInv,
    Iqei,
    PasidCacheInv,
    PasidDevTlbInv,
    PasidIotlbInv,
)
from iommu_uapi_vtd.registers import VtdConfig
from iommu_uapi_vtd.sync_queue import SyncQueue

CFG = VtdConfig()
OUTSIDE = 1 << 60  # a status address beyond the 52-bit physical address space

# A small vocabulary, so that descriptors repeat and the memoised one-pass path is taken; the
# wait descriptor with an unreachable status address is refused at execution (IQE).
DESCRIPTORS: list[Descriptor] = [
    PasidIotlbInv(G=3, DID=5, PASID=A, ADDR=0x1000), PasidIotlbInv(G=2, DID=5, PASID=B),
    IotlbInv(G=2, DID=6), IotlbInv(G=3, DID=5, ADDR=0x40_0000), ContextCacheInv(G=1),
    PasidCacheInv(G=1, DID=5, PASID=A), PasidDevTlbInv(SID=DEV, PASID=A, ADDR=0x9000),
]


def general_run(q: InvalidationQueue, batch: list[Descriptor]) -> int:
    """What the driver's recovery does on the general queue: run, and on IQE overwrite the
    refused descriptor with a wait descriptor, clear IQE and go on."""
    q.submit(batch)
    q.process()
    lost = 0
    while q.status.fsts_get("IQE"):
        q.mem.write(q.base + q.head, InvWait().to_bytes())
        q.clear_iqe()
        q.process()
        lost += 1
    return lost


def queue_memory(q: InvalidationQueue) -> bytes:
    """The queue's descriptors as they lie in memory."""
    return q.mem.read(q.base, q.size)


@settings(max_examples=100)
@given(st.lists(st.lists(st.sampled_from(range(len(DESCRIPTORS) + 1)), min_size=1, max_size=4),
                min_size=1, max_size=60))
def test_one_pass_path_matches_the_general_queue(batches: list[list[int]]) -> None:
    vocab = [*DESCRIPTORS, InvWait(SW=True, STADDR=OUTSIDE & ~3, STDATA=1)]
    fast_caches, slow_caches = populated(), populated()
    fast = SyncQueue(PhysicalMemory(), CFG, fast_caches)
    slow = InvalidationQueue(PhysicalMemory(), CFG, slow_caches)
    for picks in batches:
        batch = [vocab[i] for i in picks]
        assert fast.run(batch) == general_run(slow, batch)
        assert snapshot(fast_caches) == snapshot(slow_caches)
        assert queue_memory(fast) == queue_memory(slow)
        assert (fast.head, fast.tail, fast.iqt) == (slow.head, slow.tail, slow.iqt)
        assert fast.head == fast.tail == slow.head == slow.tail
        assert not fast.status.fsts_get("IQE")
    assert [(r.offset, r.descriptor, r.dropped) for r in fast.log] == \
        [(r.offset, r.descriptor, r.dropped) for r in slow.log]
    assert fast.status.fault_events == slow.status.fault_events


def test_a_repeated_descriptor_wraps_around_the_queue() -> None:
    caches = VtdCaches()
    q = SyncQueue(PhysicalMemory(), CFG, caches)
    slots = q.size // q.stride
    for i in range(slots * 2 + 3):
        assert q.run([IotlbInv(G=1)]) == 0
        assert q.head == q.tail == (i + 1) * q.stride % q.size
    offsets = [r.offset for r in list(q.log)[slots - 1 : slots + 2]]
    assert offsets == [q.size - q.stride, 0, q.stride]


def test_a_refused_memoised_descriptor_is_lost_every_time_and_the_queue_goes_on() -> None:
    caches = populated()
    q = SyncQueue(PhysicalMemory(), CFG, caches)
    bad = InvWait(SW=True, STADDR=OUTSIDE, STDATA=1)
    for _ in range(3):
        assert q.run([bad, PasidCacheInv(G=3)]) == 1
        assert q.lost[-1] == bad and q.status.iqei == Iqei.FETCH_ERROR
        assert not q.status.fsts_get("IQE") and q.head == q.tail
    assert len(q.lost) == 3 and len(caches.pasid) == 0


def test_the_log_is_bounded_and_the_count_counts_everything() -> None:
    q = SyncQueue(PhysicalMemory(), CFG, VtdCaches())
    for _ in range(LOG_LIMIT + 10):
        q.run([IotlbInv(G=1)])
    mark = q.executed
    q.run([PasidCacheInv(G=3), IotlbInv(G=2, DID=5)])
    assert len(q.log) == LOG_LIMIT and q.executed == LOG_LIMIT + 12
    newer = [r.descriptor for r in q.executed_since(mark)]
    assert newer == [PasidCacheInv(G=3), IotlbInv(G=2, DID=5)]
    assert q.executed_since(q.executed) == [] and len(q.executed_since(0)) == LOG_LIMIT


def address_descriptor(kind: int, page: int, am: int, flag: bool) -> Descriptor:
    """An address-carrying invalidation of ``kind`` at ``page`` (AM/S/IH from ``am``/``flag``);
    AM may exceed MAMV, which the hardware refuses."""
    addr = page << 12
    return [
        IotlbInv(G=3, DID=5, AM=am, IH=flag, ADDR=addr),
        PasidIotlbInv(G=3, DID=5, PASID=A, AM=am, IH=flag, ADDR=addr),
        DevTlbInv(SID=DEV, S=flag, ADDR=addr),
        PasidDevTlbInv(SID=DEV, PASID=A, S=flag, ADDR=addr),
    ][kind]


@settings(max_examples=100)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, (1 << 36) - 1),
                          st.integers(0, CFG.mamv + 2), st.booleans()), min_size=1, max_size=40))
def test_new_addresses_take_the_template_path_and_match_the_general_queue(
        picks: list[tuple[int, int, int, bool]]) -> None:
    fast_caches, slow_caches = populated(), populated()
    fast = SyncQueue(PhysicalMemory(), CFG, fast_caches)
    slow = InvalidationQueue(PhysicalMemory(), CFG, slow_caches)
    for pick in picks:
        batch = [address_descriptor(*pick)]
        assert fast.run(batch) == general_run(slow, batch)
        assert snapshot(fast_caches) == snapshot(slow_caches)
        assert queue_memory(fast) == queue_memory(slow)
        assert (fast.head, fast.tail, fast.iqt) == (slow.head, slow.tail, slow.iqt)
    assert [(r.offset, r.descriptor, r.dropped) for r in fast.log] == \
        [(r.offset, r.descriptor, r.dropped) for r in slow.log]
    assert fast.status.fault_events == slow.status.fault_events


def test_new_addresses_memoise_nothing_per_address() -> None:
    """A driver's stream of new addresses of one template (run_one) prepares that template once
    and memoises no image and no decode per address; run() remembers a bounded number of the
    single descriptors it is given. Every one is executed and logged as itself."""
    from iommu_uapi_vtd.sync_queue import _MEMO_LIMIT

    q = SyncQueue(PhysicalMemory(), CFG, populated())
    template = IotlbInv(G=3, DID=5)
    for page in range(_MEMO_LIMIT + 100):
        assert q.run_one(IotlbInv(G=3, DID=5, ADDR=page << 12), template) == 0
    assert len(q._templates) == 1 and not q._images and not q._decoded and not q._repeats
    assert q.log[-1].descriptor == IotlbInv(G=3, DID=5, ADDR=(_MEMO_LIMIT + 99) << 12)
    for page in range(_MEMO_LIMIT + 100):
        assert q.run([IotlbInv(G=3, DID=5, ADDR=page << 12)]) == 0
    assert 0 < len(q._repeats) <= _MEMO_LIMIT and len(q._templates) == 1
    assert q.executed == 2 * (_MEMO_LIMIT + 100)


def test_run_one_matches_the_general_queue_for_any_address() -> None:
    """run_one with the template of each address descriptor (AM up to MAMV + 2: those above
    are refused by the hardware and lost) leaves what the general queue leaves."""
    fast_caches, slow_caches = populated(), populated()
    fast = SyncQueue(PhysicalMemory(), CFG, fast_caches)
    slow = InvalidationQueue(PhysicalMemory(), CFG, slow_caches)
    for kind in range(4):
        for am in range(CFG.mamv + 3):
            for flag in (False, True):
                d = address_descriptor(kind, 0x12345 << am, am, flag)
                template = address_descriptor(kind, 0, 0, False)
                assert fast.run_one(d, template) == general_run(slow, [d])
                assert snapshot(fast_caches) == snapshot(slow_caches)
                assert queue_memory(fast) == queue_memory(slow)
                assert (fast.head, fast.tail, fast.iqt) == (slow.head, slow.tail, slow.iqt)
    assert [(r.offset, r.descriptor, r.dropped) for r in fast.log] == \
        [(r.offset, r.descriptor, r.dropped) for r in slow.log]
    assert fast.status.fault_events == slow.status.fault_events and fast.lost


def test_a_new_address_is_neither_encoded_nor_decoded_from_scratch() -> None:
    q = SyncQueue(PhysicalMemory(), CFG, populated())
    q.run([IotlbInv(G=3, DID=5, ADDR=0x1000)])
    calls: list[str] = []
    real_to_int, real_decode = IotlbInv.to_int, InvalidationQueue._decode

    def counting_to_int(self: Descriptor) -> int:
        calls.append("encode")
        return real_to_int(self)  # type: ignore[arg-type]

    def counting_decode(self: InvalidationQueue, image: bytes) -> Descriptor:
        calls.append("decode")
        return real_decode(self, image)

    IotlbInv.to_int = counting_to_int  # type: ignore[method-assign]
    InvalidationQueue._decode = counting_decode  # type: ignore[method-assign]
    try:
        for page in range(2, 50):
            assert q.run([IotlbInv(G=3, DID=5, AM=1, ADDR=page << 13)]) == 0
    finally:
        IotlbInv.to_int = real_to_int  # type: ignore[method-assign]
        InvalidationQueue._decode = real_decode  # type: ignore[method-assign]
    assert calls == []
    assert q.log[-1].descriptor == IotlbInv(G=3, DID=5, AM=1, ADDR=49 << 13)


class _WriteLogged(PhysicalMemory):
    """A memory that records every write() (the queue must write through it)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(addr)
        super().write(addr, data)


@pytest.mark.parametrize(("wide", "qs", "memory"), [
    (True, 0, PhysicalMemory), (False, 0, PhysicalMemory), (True, 1, PhysicalMemory),
    (False, 1, PhysicalMemory), (True, 0, _WriteLogged)])
def test_run_one_wraps_around_and_queues_behind_pending_work_as_the_general_queue(
        wide: bool, qs: int, memory: type[PhysicalMemory]) -> None:
    """run_one of new addresses around the ring's end (128- and 256-bit descriptors, rings of
    one and two pages, a memory whose writes are its own), then behind a descriptor submitted
    and not processed yet (the queue is not idle: the general path takes both), leaves the
    queue memory, IQH/IQT, the log and the caches as the general queue does."""
    fast_caches, slow_caches = populated(), populated()
    fast = SyncQueue(memory(), CFG, fast_caches, wide=wide, qs=qs)
    slow = InvalidationQueue(PhysicalMemory(), CFG, slow_caches, wide=wide, qs=qs)
    template = IotlbInv(G=3, DID=5)

    def same() -> None:
        assert snapshot(fast_caches) == snapshot(slow_caches)
        assert queue_memory(fast) == queue_memory(slow)
        assert (fast.head, fast.tail, fast.iqt) == (slow.head, slow.tail, slow.iqt)

    for page in range(fast.ring.entries + 3):
        d = IotlbInv(G=3, DID=5, IH=bool(page & 1), ADDR=page << 12)
        assert fast.run_one(d, template) == general_run(slow, [d]) == 0
        same()
    pending = IotlbInv(G=2, DID=6)
    fast.submit([pending])
    slow.submit([pending])
    d = IotlbInv(G=3, DID=5, ADDR=0x40_0000)
    assert fast.run_one(d, template) == general_run(slow, [d]) == 0
    same()
    assert fast.head == fast.tail and fast.log[-1].descriptor == d
    if isinstance(fast.mem, _WriteLogged):  # every descriptor went through its write()
        assert len(fast.mem.writes) >= fast.executed
    assert [(r.offset, r.descriptor, r.dropped) for r in fast.log] == \
        [(r.offset, r.descriptor, r.dropped) for r in slow.log]

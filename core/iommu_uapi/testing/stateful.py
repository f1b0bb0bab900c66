"""A hypothesis state machine driving a backend and a reference model in lock-step.

Rules: allocate, bind, unbind and free PASIDs; map and unmap guest pages; invalidate with every
negotiated cell; translate; send garbage. The model keeps, for each (PASID, guest address), the
set of answers the architecture allows: after a guest PTE change and before an invalidation
that covers it, the old and the new translation are both allowed (an "old-or-new window"); after
it, only the new one. It checks that

* nothing translates that is not mapped and bound;
* after a completed invalidation that covers a change, the translation shows the change;
* refused calls change nothing;
* after a successful negotiation, free PASID, unbind guest PASID and every negotiated
  invalidation never fail on valid input.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from ..errors import UAPIError
from ..features import CacheCell, Feature
from ..translation import TranslationFault
from ..uapi.consts import CacheType, InvGranularity
from .harness import READ, Harness

__all__ = ["FAULT", "BackendModelMachine", "machine_for"]

#: The model's name for "this access faults".
FAULT = -1
_BASE_VA = 0x5555_0000_0000


class BackendModelMachine(RuleBasedStateMachine):
    """Bind to a harness with :func:`machine_for`; ``backend`` and ``profile`` are class
    attributes set there."""

    backend: str = ""
    profile: str = "linux-5.10"

    pasids = Bundle("pasids")
    vas = Bundle("vas")

    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(self.backend, profile=self.profile)
        caps = self.h.caps
        self.cells = sorted((c for c in caps.cache_cells if c.cache == CacheType.IOTLB and
                             c.granularity != InvGranularity.DOMAIN), key=str)
        self.h.iommu.negotiate(Feature.BIND_PGTBL | Feature.CACHE_INVLD, self.cells)
        self.dev = self.h.dev2  # no device TLB: the IOTLB alone is modelled
        self.mapped: dict[int, int] = {}  # guest VA -> host physical page
        self.allowed: dict[tuple[int, int], set[int]] = {}  # stale windows per (pasid, va)
        self.bound: set[int] = set()
        self.allocated: set[int] = set()
        self.fresh_may_fault: set[int] = set()  # PASIDs whose non-leaf caches may be stale
        self.seen: set[int] = set()  # every guest VA ever mapped

    # -- answers -------------------------------------------------------------------------------

    def _now(self, va: int) -> int:
        return self.mapped.get(va, FAULT)

    def _open_window(self, va: int, old: int) -> None:
        for pasid in self.bound:
            self.allowed.setdefault((pasid, va), set()).update((old, self._now(va)))

    # -- rules ---------------------------------------------------------------------------------

    @precondition(lambda self: len(self.allocated) < 4)
    @rule(target=pasids, bind=st.booleans())
    def alloc_pasid(self, bind: bool) -> int:
        pasid = self.h.vm.alloc()
        self.allocated.add(pasid)
        if bind:
            self.bind(pasid)
        return pasid

    @rule(target=vas, va=st.one_of(vas, st.integers(0, 63).map(
        lambda page: _BASE_VA + (page << 12) + (page >> 4 << 30))))
    def guest_map(self, va: int) -> int:
        self.seen.add(va)
        if va not in self.mapped:
            gpa = self.h.gmap(va)
            self.mapped[va] = self.h.hpa(gpa)
            self._open_window(va, FAULT)
            for pasid in self.fresh_may_fault & self.bound:
                self.allowed.setdefault((pasid, va), set()).update((FAULT, self._now(va)))
        return va

    @rule(va=vas)
    def guest_unmap(self, va: int) -> None:
        if va in self.mapped:
            old = self.mapped.pop(va)
            self.h.gunmap(va)
            self._open_window(va, old)
            self.fresh_may_fault |= self.bound

    @rule(pasid=pasids)
    def bind(self, pasid: int) -> None:
        if pasid not in self.allocated:
            return
        if pasid in self.bound:
            before = self.h.snapshot()
            try:
                self.h.bind(pasid, self.dev)
            except UAPIError:
                assert self.h.snapshot() == before, "a refused bind changed state"
                return
            raise AssertionError(f"binding PASID {pasid} twice was accepted")
        self.h.bind(pasid, self.dev)
        self.bound.add(pasid)
        for addr in list(self.mapped)[:4]:
            self.translate(pasid, addr)

    @rule(pasid=pasids)
    def unbind(self, pasid: int) -> None:
        if pasid not in self.allocated:
            return
        self.h.unbind(pasid, self.dev)  # never fails on valid input
        self.bound.discard(pasid)
        self._forget(pasid)

    @rule(pasid=consumes(pasids))
    def free(self, pasid: int) -> None:
        if pasid not in self.allocated:
            return
        self.h.iommu.free_pasid(pasid, self.h.vm)  # never fails on a valid, allocated PASID
        self.allocated.discard(pasid)
        self.bound.discard(pasid)
        self._forget(pasid)

    def _forget(self, pasid: int) -> None:
        self.fresh_may_fault.discard(pasid)
        for key in [k for k in self.allowed if k[0] == pasid]:
            del self.allowed[key]

    @precondition(lambda self: self.bound and self.cells)
    @rule(va=vas, which=st.integers(0, 63))
    def invalidate(self, va: int, which: int) -> None:
        pasid = sorted(self.bound)[which % len(self.bound)]
        cell: CacheCell = self.cells[which // 4 % len(self.cells)]
        self.h.invalidate(Harness.inv_info(cell, pasid, va), self.dev)  # negotiated: no failure
        if cell.granularity == InvGranularity.PASID:
            self._forget(pasid)
            covered = list(self.mapped)
        else:
            self.allowed.pop((pasid, va), None)
            covered = [va]
        for addr in covered:  # the change is visible right after the covering invalidation
            self.translate(pasid, addr)

    @rule(data=st.binary(min_size=16, max_size=64))
    def garbage(self, data: bytes) -> None:
        before = self.h.snapshot()
        try:
            self.h.iommu.uapi_cache_invalidate(self.h.domain, self.dev, data)
        except UAPIError:
            assert self.h.snapshot() == before, "a refused invalidation changed state"

    @rule(pasid=pasids, va=vas)
    def translate(self, pasid: int, va: int) -> None:
        try:
            got = self.h.translate(va, pasid, READ, self.dev).paddr
        except TranslationFault:
            got = FAULT
        if pasid not in self.bound:
            assert got == FAULT, f"PASID {pasid} is not bound but {va:#x} translated"
            return
        allowed = self.allowed.get((pasid, va), {self._now(va)})
        assert got in allowed, (f"PASID {pasid} {va:#x}: got {got:#x}, allowed "
                                f"{sorted(hex(a) for a in allowed)}")

    @invariant()
    def nothing_bound_that_is_not_allocated(self) -> None:
        assert self.bound <= self.allocated

    @invariant()
    def every_dma_agrees_with_the_model(self) -> None:
        """Devices keep doing DMA: every (PASID, address) pair is translated after every step,
        which also keeps the IOTLB full so a missing invalidation shows."""
        for pasid in sorted(self.allocated):
            for va in sorted(self.seen):
                self.translate(pasid, va)


def machine_for(backend: str, profile: str = "linux-5.10") -> Any:
    """A :class:`BackendModelMachine` subclass bound to ``backend``; run it with
    ``run_state_machine_as_test(machine_for(name))``."""
    return type(f"ModelOf{backend.title()}", (BackendModelMachine,),
                {"backend": backend, "profile": profile})

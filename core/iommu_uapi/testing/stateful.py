"""A hypothesis state machine driving a backend and a reference model in lock-step.

Rules: allocate, enter, leave and free PASIDs; map, unmap and remap guest pages (guest PTE
changes, with or without the guest's invalidation); unmap and remap guest RAM at stage 2 (the
host domain's own tables); detach and re-attach the device; invalidate with every negotiated
cell; translate with and without a PASID; send garbage; and, when the backend declares PASID
tables, attach (stage 1 bypassed or aborting), detach and send garbage to a guest PASID table of
a second domain.

A guest context enters the way the backend's guest format says (:mod:`iommu_uapi.guest`): bound
with ``sva_bind_gpasid`` (a second bind, or one through a detached device, is refused and
changes nothing; a detached device loses its bindings), or written into the guest PASID table
attached to the domain and made visible with a PASID-cache invalidation (the table belongs to
the domain: a detached device's PASIDs translate again once it is attached; a PASID leaves
before it is freed, as a guest driver clears its entry). The machine needs contexts told apart
by PASID (not a single-context table).

The model keeps, for each (PASID, guest address), the answer the tables give now, plus the old
answers the architecture still allows: after a guest PTE change and before an invalidation that
covers it, the old and the new translation are both allowed (an "old-or-new window"); after it,
only the new one. Host stage-2 changes go through ``IOMMU.map``/``unmap``, which flush as the
host driver does, so they are visible when the call returns: a translation through a guest-RAM
page unmapped at stage 2 faults at once (and an old window can no longer show that page), with a
PASID or without. It checks that

* nothing translates that is not mapped and bound (nor through a detached device, nor through a
  domain whose PASID-table config aborts);
* after a completed invalidation that covers a change, the translation shows the change;
* refused calls change nothing;
* after a successful negotiation, free PASID, unbind guest PASID, unbind PASID table and every
  negotiated invalidation never fail on valid input.
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
from ..guest import GuestEntry, GuestFormat
from ..translation import TranslationFault
from ..uapi.consts import CacheType, InvGranularity
from .harness import READ, RW, Harness
from .stateful_tables import FAULT, PasidTableDomainRules

__all__ = ["FAULT", "BackendModelMachine", "machine_for"]

_BASE_VA = 0x5555_0000_0000
#: Where a guest-RAM page remapped at stage 2 moves to (host memory outside guest RAM).
_MOVED_HPA = 0x3_0000_0000


class BackendModelMachine(PasidTableDomainRules, RuleBasedStateMachine):
    """Bind to a harness with :func:`machine_for`; ``backend`` and ``profile`` are class
    attributes set there."""

    backend: str = ""
    profile: str = "linux-5.10"
    base_va = _BASE_VA
    guest_format: GuestFormat | None = None

    pasids = Bundle("pasids")
    vas = Bundle("vas")

    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(self.backend, profile=self.profile, guest_format=self.guest_format)
        caps = self.h.caps
        self.cells = sorted((c for c in caps.cache_cells if c.cache == CacheType.IOTLB and
                             c.granularity != InvGranularity.DOMAIN), key=str)
        self.tables = bool(caps.features & Feature.BIND_PASID_TABLE)
        #: contexts are bound (else written into the domain's guest PASID table)
        self.binds = self.h.entry is GuestEntry.BIND_GPASID
        require = Feature.CACHE_INVLD | (Feature.BIND_PGTBL if self.binds else 0)
        self.h.iommu.negotiate(require | (Feature.BIND_PASID_TABLE if self.tables else 0),
                               self.cells)
        self.dev = self.h.dev2  # no device TLB: the IOTLB alone is modelled
        self.attached = True
        self.gpa_of: dict[int, int] = {}  # guest VA -> guest page (guest PTEs)
        self.s2_unmapped: set[int] = set()  # guest pages unmapped at stage 2
        self.s2_moved: dict[int, int] = {}  # guest page -> host page it was remapped to
        self.stale: dict[tuple[int, int], set[int]] = {}  # old answers still allowed
        self.bound: set[int] = set()
        self.allocated: set[int] = set()
        self.fresh_may_fault: set[int] = set()  # PASIDs whose non-leaf caches may be stale
        self.seen: set[int] = set()  # every guest VA ever mapped
        self.seen_gpas: set[int] = set()  # every guest page ever mapped by a guest PTE
        if self.tables:
            self.table_domain()

    # -- answers -------------------------------------------------------------------------------

    def _host_page(self, gpa: int) -> int:
        """What guest page ``gpa`` maps to at stage 2 now."""
        if gpa in self.s2_unmapped:
            return FAULT
        return self.s2_moved.get(gpa, self.h.hpa(gpa))

    def _now(self, va: int) -> int:
        gpa = self.gpa_of.get(va)
        return FAULT if gpa is None else self._host_page(gpa)

    def _open_window(self, va: int, old: int) -> None:
        for pasid in self.bound:
            self.stale.setdefault((pasid, va), set()).add(old)

    def _check(self, got: int, allowed: set[int], what: str) -> None:
        assert got in allowed, f"{what}: got {got:#x}, allowed {sorted(hex(a) for a in allowed)}"

    # -- PASIDs --------------------------------------------------------------------------------

    @precondition(lambda self: len(self.allocated) < 4)
    @rule(target=pasids, bind=st.booleans())
    def alloc_pasid(self, bind: bool) -> int:
        pasid = self.h.vm.alloc()
        self.allocated.add(pasid)
        if bind:
            self.bind(pasid)
        return pasid

    @rule(pasid=pasids)
    def bind(self, pasid: int) -> None:
        """Enter ``pasid``: bind it (refused unchanged when bound, or the device detached) or
        write its guest PASID-table entry (accepted again and again, attached or not)."""
        if pasid not in self.allocated:
            return
        if self.binds and (pasid in self.bound or not self.attached):
            before = self.h.snapshot()
            try:
                self.h.bind(pasid, self.dev)
            except UAPIError:
                assert self.h.snapshot() == before, "a refused bind changed state"
                return
            raise AssertionError(f"binding PASID {pasid} (bound: {pasid in self.bound}, "
                                 f"device attached: {self.attached}) was accepted")
        self.h.enter(pasid, self.dev)
        self.bound.add(pasid)
        for addr in list(self.gpa_of)[:4]:
            self.translate(pasid, addr)

    @rule(pasid=pasids)
    def unbind(self, pasid: int) -> None:
        if pasid not in self.allocated:
            return
        self.h.leave(pasid, self.dev)  # never fails on valid input (attached or not)
        self.bound.discard(pasid)
        self._forget(pasid)

    @rule(pasid=consumes(pasids))
    def free(self, pasid: int) -> None:
        if pasid not in self.allocated:
            return
        if not self.binds and pasid in self.bound:
            self.h.leave(pasid, self.dev)  # the guest clears the entry of a PASID it frees
        self.h.iommu.free_pasid(pasid, self.h.vm)  # never fails on a valid, allocated PASID
        self.allocated.discard(pasid)
        self.bound.discard(pasid)
        self._forget(pasid)

    def _forget(self, pasid: int) -> None:
        self.fresh_may_fault.discard(pasid)
        for key in [k for k in self.stale if k[0] == pasid]:
            del self.stale[key]

    # -- the guest's page tables -----------------------------------------------------------------

    @rule(target=vas, va=st.one_of(vas, st.integers(0, 63).map(
        lambda page: _BASE_VA + (page << 12) + (page >> 4 << 30))))
    def guest_map(self, va: int) -> int:
        self.seen.add(va)
        if va not in self.gpa_of:
            gpa = self.h.gmap(va)
            self.gpa_of[va] = gpa
            self.seen_gpas.add(gpa)
            self._open_window(va, FAULT)
            for pasid in self.fresh_may_fault & self.bound:
                self.stale.setdefault((pasid, va), set()).add(FAULT)
        return va

    @rule(va=vas, flush=st.booleans())
    def guest_unmap(self, va: int, flush: bool) -> None:
        """The guest removes a PTE and (``flush``, when the device is attached) invalidates it
        for every bound PASID right away, as its driver usually does; otherwise the old-or-new
        window stays open."""
        if va in self.gpa_of:
            old = self._now(va)
            del self.gpa_of[va]
            self.h.gunmap(va)
            self._open_window(va, old)
            self.fresh_may_fault |= self.bound
            if flush:
                self._flush(va, self.cells[-1:])

    @rule(va=vas)
    def guest_remap(self, va: int) -> None:
        """The guest points a mapped address at a fresh page and invalidates it for every bound
        PASID: the translation must show the new page at once. (Unmap and map without the
        invalidation are the rules above.)"""
        if va in self.gpa_of:
            self.guest_unmap(va, False)
            self.guest_map(va)
            self._flush(va, self.cells[:1])

    def _flush(self, va: int, cells: list[CacheCell]) -> None:
        if cells and self.attached:
            for pasid in sorted(self.bound):
                self._invalidate(pasid, cells[0], va)

    # -- the host's stage 2 ----------------------------------------------------------------------

    @rule(va=vas)
    def stage2_unmap(self, va: int) -> None:
        """The host takes back the guest page behind ``va``: once ``unmap`` returns, nothing
        translates through it, with a PASID or without."""
        gpa = self.gpa_of.get(va)
        if gpa is None or gpa in self.s2_unmapped:
            return
        old = self._host_page(gpa)
        assert self.h.iommu.unmap(self.h.domain, gpa, 0x1000) == 0x1000
        self.s2_unmapped.add(gpa)
        for answers in self.stale.values():
            answers.discard(old)

    @precondition(lambda self: self.s2_unmapped)
    @rule(which=st.integers(0, 63))
    def stage2_remap(self, which: int) -> None:
        """The host maps an unmapped guest page again, alternately elsewhere and back home."""
        gpa = sorted(self.s2_unmapped)[which % len(self.s2_unmapped)]
        home = self.h.hpa(gpa)
        hpa = home if gpa in self.s2_moved else _MOVED_HPA + gpa
        self.h.iommu.map(self.h.domain, gpa, hpa, 0x1000, RW)
        self.s2_unmapped.discard(gpa)
        if hpa == home:
            del self.s2_moved[gpa]
        else:
            self.s2_moved[gpa] = hpa

    # -- the device ------------------------------------------------------------------------------

    @precondition(lambda self: self.attached)
    @rule(pasid=pasids)
    def detach(self, pasid: int) -> None:
        """Detach the device: every DMA of it then faults; its bound PASIDs are unbound first
        and binding ``pasid`` to it is refused until it is attached again (the entries of a
        guest PASID table stay: entering ``pasid`` is accepted)."""
        self.h.iommu.detach_device(self.h.domain, self.dev)
        self.attached = False
        if self.binds:
            for bound in list(self.bound):
                self._forget(bound)
            self.bound.clear()
            assert self.h.iommu.bound_pasids(self.dev) == []
        self.bind(pasid)

    @precondition(lambda self: not self.attached)
    @rule()
    def attach(self) -> None:
        """Attach the device again: requests without PASID see stage 2; no PASID is bound
        (the PASIDs entered in the domain's guest PASID table translate again)."""
        self.h.iommu.attach_device(self.h.domain, self.dev)
        self.attached = True

    # -- invalidation and garbage ----------------------------------------------------------------

    @precondition(lambda self: self.cells and self.attached and self.allocated and self.seen)
    @rule(which=st.integers(0, 1 << 12))
    def invalidate(self, which: int) -> None:
        """A negotiated invalidation of an allocated PASID (bound or not) never fails; ``which``
        picks the PASID, the cell and the guest address."""
        pasid = sorted(self.allocated)[which % len(self.allocated)]
        cell: CacheCell = self.cells[which // 4 % len(self.cells)]
        self._invalidate(pasid, cell, sorted(self.seen)[which // 16 % len(self.seen)])

    def _invalidate(self, pasid: int, cell: CacheCell, va: int) -> None:
        self.h.invalidate(Harness.inv_info(cell, pasid, va), self.dev)
        if cell.granularity == InvGranularity.PASID:
            self._forget(pasid)
            covered = list(self.gpa_of)
        else:
            self.stale.pop((pasid, va), None)
            covered = [va]
        for addr in covered:  # the change is visible right after the covering invalidation
            self.translate(pasid, addr)

    @rule(data=st.binary(min_size=16, max_size=64), unbind=st.booleans())
    def garbage(self, data: bytes, unbind: bool) -> None:
        """Random bytes to the invalidation (or the unbind) entry point: refused unchanged, or
        accepted as some valid request, after which the model allows what it may have done."""
        unbind = unbind and self.binds
        before = self.h.snapshot()
        send = self.h.iommu.uapi_sva_unbind_gpasid if unbind else \
            self.h.iommu.uapi_cache_invalidate
        try:
            send(self.h.domain, self.dev, data)
        except UAPIError:
            assert self.h.snapshot() == before, "a refused request changed state"
            return
        if unbind:  # random bytes that pass every bind check unbind some allocated PASID
            for pasid in self.bound - set(self.h.iommu.bound_pasids(self.dev)):
                self.bound.discard(pasid)
                self._forget(pasid)

    # -- DMA -----------------------------------------------------------------------------------

    @rule(pasid=pasids, va=vas)
    def translate(self, pasid: int, va: int) -> None:
        try:
            got = self.h.translate(va, pasid, READ, self.dev).paddr
        except TranslationFault:
            got = FAULT
        if pasid not in self.bound or not self.attached:
            assert got == FAULT, (f"PASID {pasid} is not entered (or its device detached) but "
                                  f"{va:#x} translated")
            return
        allowed = {self._now(va)} | self.stale.get((pasid, va), set())
        self._check(got, allowed, f"PASID {pasid} {va:#x}")

    def _translate_gpa(self, dev: Any, gpa: int) -> int:
        try:
            return int(self.h.iommu.translate(dev, gpa, access=READ).paddr)
        except TranslationFault:
            return FAULT

    @invariant()
    def nothing_bound_that_is_not_allocated(self) -> None:
        assert self.bound <= self.allocated

    @invariant()
    def every_dma_agrees_with_the_model(self) -> None:
        """Devices keep doing DMA: every (PASID, address) pair and every guest page without a
        PASID is translated after every step, which also keeps the IOTLB full so a missing
        invalidation shows."""
        for pasid in sorted(self.allocated):
            for va in sorted(self.seen):
                self.translate(pasid, va)
        for gpa in sorted(self.seen_gpas):
            want = self._host_page(gpa) if self.attached else FAULT
            self._check(self._translate_gpa(self.dev, gpa), {want}, f"no PASID {gpa:#x}")

def machine_for(backend: str, profile: str = "linux-5.10",
                guest_format: GuestFormat | None = None) -> Any:
    """A :class:`BackendModelMachine` subclass bound to ``backend`` (under ``profile``, its
    guests in ``guest_format``: None, the first the backend declares); run it with
    ``run_state_machine_as_test(machine_for(name))``."""
    return type(f"ModelOf{backend.title()}", (BackendModelMachine,),
                {"backend": backend, "profile": profile, "guest_format": guest_format})

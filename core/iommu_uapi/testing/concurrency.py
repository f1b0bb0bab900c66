"""The concurrency area of the conformance suite: DMA in several threads against control calls.

The contract (``docs/concurrency.md``): control calls on one IOMMU are serialised; ``translate``
may run in other threads meanwhile and returns a translation valid before or after each
concurrent control call, raising nothing but :class:`TranslationFault` or :class:`UAPIError`;
once an unmap, invalidation or unbind has returned, no translation sees what it removed.

Each test is bounded: a few DMA threads run while one control thread performs a fixed number of
calls (fixed seeds pick the addresses), and every translation is checked against the *states*
the control thread published. States are numbered; the control thread publishes state ``n``
once the call that made it has returned. A translation that started when state ``n0`` was
published and ended when ``n1`` was may see any state from ``n0`` to ``n1 + 1`` (the call in
flight at its end), and nothing else: an older mapping after an unmap returned is a failure.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable

import pytest

from ..device import Device, Domain
from ..errors import UAPIError
from ..features import CacheCell
from ..iommu import IOMMU
from ..translation import TranslationFault
from ..uapi.consts import CacheType, InvGranularity
from .assertions import need
from .harness import GUEST_RAM_GPA, GUEST_RAM_HPA, GUEST_RAM_SIZE, GUEST_VA, READ, RW, Harness

__all__ = ["ConcurrencyTests", "Race"]

DMA_THREADS = 3
#: control calls per test (each a map/unmap, bind/unbind or remap/invalidate step)
STEPS = 400
#: a test never runs longer than this, whatever the machine's speed
DEADLINE_S = 5.0
HOST_IOVA = 0x7_0000_0000
HPA_BASE = 0x40_0000_0000
BLOCK = 0x20_0000  # 2 MiB: more pages than the harness's guest RAM
FILLER_VA = 0x5000_0000
FILLER_PAGES = 32
#: threads switch this often during a race (Python's default, 5 ms, hides most races)
SWITCH_INTERVAL_S = 1e-5
FAULT = -1  # a state in which the address faults


Values = frozenset[int]
#: ``plan(n)``: what DMA to the probed address may give while control call ``n`` runs and once
#: it has returned (physical addresses, :data:`FAULT`), and the call itself
Plan = Callable[[int], tuple[Values, Values, Callable[[], None]]]


class Race:
    """One bounded race: the control thread runs ``plan(n)``'s calls in turn while DMA threads
    run ``dma()`` (one DMA: its physical address, or it raises), each checked against the
    states published (see the module docstring). ``initial``: what DMA gives before call 1."""

    def __init__(self, plan: Plan, dma: Callable[[], int], initial: Values,
                 filler: Callable[[random.Random], object] | None = None) -> None:
        self.plan = plan
        self.dma = dma
        self.filler = filler
        #: by state number: what DMA may give while the call runs, and once it has returned
        self.during: list[Values] = [initial]
        self.after: list[Values] = [initial]
        self.published = 0
        self.errors: list[str] = []
        self.seen = 0
        self._stop = threading.Event()

    def allowed(self, n0: int, n1: int) -> Values:
        """What a DMA that started with state ``n0`` published and ended with ``n1`` may give."""
        out = set(self.after[n0])
        for k in range(n0 + 1, min(n1 + 1, len(self.during) - 1) + 1):
            out |= self.during[k]
        return frozenset(out)

    def _dma_thread(self, seed: int) -> None:
        rng = random.Random(seed)
        filler = self.filler
        while not self._stop.is_set():
            n0 = self.published
            try:
                if filler is not None:
                    filler(rng)
                got = self.dma()
            except TranslationFault:
                got = FAULT
            except UAPIError as err:
                self.errors.append(f"DMA raised {err!r}")
                return
            except Exception as err:  # the contract allows nothing else
                self.errors.append(f"DMA raised {type(err).__name__}: {err}")
                return
            n1 = self.published
            allowed = self.allowed(n0, n1)
            if got not in allowed:
                self.errors.append(f"DMA gave {got:#x} between states {n0} and {n1 + 1}, "
                                   f"which allow only {sorted(hex(a) for a in allowed)}")
                return
            self.seen += 1
            if rng.random() < 0.05:
                time.sleep(0)

    def run(self, steps: int = STEPS) -> None:
        """Run ``steps`` control calls against :data:`DMA_THREADS` DMA threads; fail with the
        first contract violation any thread saw."""
        threads = [threading.Thread(target=self._dma_thread, args=(seed,), daemon=True)
                   for seed in range(DMA_THREADS)]
        interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        for t in threads:
            t.start()
        deadline = time.monotonic() + DEADLINE_S
        try:
            for n in range(1, steps + 1):
                if self.errors or time.monotonic() > deadline:
                    break
                during, after, call = self.plan(n)
                self.during.append(during | self.after[-1])
                self.after.append(after)
                call()
                self.published = n
        finally:
            self._stop.set()
            for t in threads:
                t.join(DEADLINE_S)
            sys.setswitchinterval(interval)
        assert not any(t.is_alive() for t in threads), "a DMA thread did not finish"
        assert not self.errors, self.errors[0]
        assert self.seen, "no DMA completed"


class ConcurrencyTests:
    """``translate`` in several threads while one thread maps, unmaps, binds and invalidates."""

    def test_host_map_unmap_under_dma(self, harness: Harness) -> None:
        iommu, domain, dev = _host_domain(harness, ats=False)
        Race(_map_unmap(iommu, domain, random.Random(1)),
             lambda: iommu.translate(dev, HOST_IOVA + 0x18, access=READ).paddr - 0x18,
             _FAULTS, _ram_filler(harness, dev)).run()

    def test_host_unmap_under_dma_with_ats(self, harness: Harness) -> None:
        if harness.dev.atc is None:
            pytest.skip("no ATS device: the backend declares no DEV_IOTLB cache cell")
        iommu, domain, dev = _host_domain(harness, ats=True)
        Race(_map_unmap(iommu, domain, random.Random(2)),
             lambda: iommu.translate(dev, HOST_IOVA, access=READ).paddr, _FAULTS,
             _ram_filler(harness, dev)).run()

    def test_enter_leave_under_dma(self, harness: Harness) -> None:
        need(harness, nesting=True)
        pasid = harness.vm.alloc()
        gpa = harness.gmap(GUEST_VA)
        mapped = frozenset({harness.hpa(gpa)})

        def plan(n: int) -> tuple[Values, Values, Callable[[], None]]:
            if n % 2:
                return mapped, mapped, lambda: harness.enter(pasid, harness.dev2)
            return _FAULTS, _FAULTS, lambda: harness.leave(pasid, harness.dev2)

        def dma() -> int:
            return harness.translate(GUEST_VA, pasid, READ, dev=harness.dev2).paddr

        Race(plan, dma, _FAULTS, _guest_filler(harness, pasid)).run(STEPS // 2)
        assert harness.iommu.bound_pasids(harness.dev2) == [], "a binding outlived its unbind"

    def test_guest_remap_and_invalidate_under_dma(self, harness: Harness) -> None:
        need(harness, nesting=True)
        pasid = harness.vm.alloc()
        pages = [harness.guest_page() for _ in range(4)]
        harness.gmap(GUEST_VA, pages[0])
        harness.enter(pasid, harness.dev2)
        info = harness.inv_info(next(iter(_iotlb_cells(harness))), pasid, GUEST_VA)
        rng = random.Random(3)

        def plan(n: int) -> tuple[Values, Values, Callable[[], None]]:
            gpa = pages[rng.randrange(len(pages))]

            def remap() -> None:  # the guest rewrites its PTE, then invalidates
                harness.gunmap(GUEST_VA)
                harness.gmap(GUEST_VA, gpa)
                for dev in harness.domain.devices:
                    harness.invalidate(info, dev)

            new = frozenset({harness.hpa(gpa)})
            return new | _FAULTS, new, remap

        def dma() -> int:
            return harness.translate(GUEST_VA, pasid, READ, dev=harness.dev2).paddr

        Race(plan, dma, frozenset({harness.hpa(pages[0])}),
             _guest_filler(harness, pasid)).run(STEPS // 2)


_FAULTS: Values = frozenset({FAULT})


def _map_unmap(iommu: IOMMU, domain: Domain, rng: random.Random) -> Plan:
    """Odd calls map a block at :data:`HOST_IOVA` (one page, or :data:`BLOCK` bytes) to fresh
    memory, even calls unmap it (so the unmap's flush covers more pages than the IOTLB holds
    for the domain, and scans the domain's entries while DMA fills them)."""
    def plan(n: int) -> tuple[Values, Values, Callable[[], None]]:
        size = BLOCK if n % 4 == 1 else 0x1000
        if n % 2:
            hpa = HPA_BASE + rng.randrange(1 << 8) * BLOCK
            new = frozenset({hpa})
            return new, new, lambda: iommu.map(domain, HOST_IOVA, hpa, size, RW)

        def unmap() -> None:
            assert iommu.unmap(domain, HOST_IOVA, BLOCK) > 0

        return _FAULTS, _FAULTS, unmap
    return plan


def _host_domain(h: Harness, *, ats: bool) -> tuple[IOMMU, Domain, Device]:
    """A fresh host domain (stage 2 only, whatever the harness's domain nests) with one new
    device attached, its guest RAM window mapped as the harness's is."""
    iommu = h.iommu
    domain = h.new_domain()
    dev = iommu.add_device(0x0400 + ats, ats=ats)
    iommu.attach_device(domain, dev)
    iommu.map(domain, GUEST_RAM_GPA, GUEST_RAM_HPA, GUEST_RAM_SIZE, RW)
    return iommu, domain, dev


def _ram_filler(h: Harness, dev: Device) -> Callable[[random.Random], object]:
    """DMA to a random page of the harness's guest RAM, mapped at stage 2 throughout."""
    def fill(rng: random.Random) -> object:
        return h.iommu.translate(dev, GUEST_RAM_GPA + rng.randrange(GUEST_RAM_SIZE >> 12) * 0x1000)
    return fill


def _guest_filler(h: Harness, pasid: int) -> Callable[[random.Random], object]:
    """DMA with ``pasid`` to a random one of :data:`FILLER_PAGES` guest pages (the walk and
    IOTLB caches fill while the PASID comes and goes)."""
    for i in range(FILLER_PAGES):
        h.gmap(FILLER_VA + i * 0x20_0000)

    def fill(rng: random.Random) -> object:
        try:
            return h.translate(FILLER_VA + rng.randrange(FILLER_PAGES) * 0x20_0000, pasid,
                               dev=h.dev2)
        except TranslationFault as fault:
            return fault
    return fill


def _iotlb_cells(h: Harness) -> list[CacheCell]:
    """The IOTLB invalidation cells the backend declares, the narrowest first (skips when
    there is none)."""
    order = {InvGranularity.ADDR: 0, InvGranularity.PASID: 1, InvGranularity.DOMAIN: 2}
    cells = sorted((c for c in h.caps.cache_cells if c.cache == CacheType.IOTLB),
                   key=lambda c: order.get(InvGranularity(c.granularity), 3))
    if not cells:
        pytest.skip("backend declares no IOTLB invalidation cell")
    return cells

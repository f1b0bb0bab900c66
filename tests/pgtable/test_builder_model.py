"""Stateful property tests: random map/unmap sequences (single leaves, ``map_pages`` and
``unmap_pages`` runs, ``map`` of any aligned size) against an interval model, for every format,
granule, address width and stage. After every step iova_to_phys and the walker agree with the
model, refused calls change nothing, when nothing is mapped no table holds a leaf, the table
memory is exactly the builder's tables, and the flush callbacks were told exactly the range
unmapped and the spans of the tables freed, which lie inside the range (a table goes only with an
unmap covering its whole span; a one-page unmap frees none).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from functools import partial

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable import lpae, vtd_sl, x86
from iommu_uapi.pgtable.builder import PageTableBuilder
from iommu_uapi.pgtable.common import Access, FlushOps, Prot, WalkFault

Factory = Callable[[PhysicalMemory], PageTableBuilder]

CONFIGS: dict[str, Factory] = {
    "x86-4": lambda m: x86.X86PageTable(x86.X86Config(), m),
    "x86-5": lambda m: x86.X86PageTable(x86.X86Config(levels=5, haw=52), m),
    "x86-4-no1g": lambda m: x86.X86PageTable(x86.X86Config(fl1gp=False), m),
    "sl-aw1": lambda m: vtd_sl.SLPageTable(vtd_sl.SLConfig(aw=1, haw=39), m),
    "sl-aw2": lambda m: vtd_sl.SLPageTable(vtd_sl.SLConfig(aw=2, sllps=1), m),
    "sl-aw3": lambda m: vtd_sl.SLPageTable(vtd_sl.SLConfig(aw=3, haw=52), m),
    "s1-4k": lambda m: lpae.LPAEPageTable(lpae.LPAEConfig(), m),
    "s1-4k-39": lambda m: lpae.LPAEPageTable(lpae.LPAEConfig(t0sz=25), m),
    "s1-16k": lambda m: lpae.LPAEPageTable(lpae.LPAEConfig(granule=16384, t0sz=17), m),
    "s1-64k-52": lambda m: lpae.LPAEPageTable(
        lpae.LPAEConfig(granule=65536, t0sz=12, oas=52), m),
    "s2-4k-concat": lambda m: lpae.LPAEPageTable(
        lpae.LPAEConfig(stage=2, t0sz=22, sl0=1), m),
    "s2-16k": lambda m: lpae.LPAEPageTable(
        lpae.LPAEConfig(stage=2, granule=16384, t0sz=24, sl0=1), m),
    "s2-64k": lambda m: lpae.LPAEPageTable(
        lpae.LPAEConfig(stage=2, granule=65536, t0sz=18, sl0=1), m),
}


class Model:
    """Mapped intervals [start, end) -> output start; what the page table should say."""

    def __init__(self) -> None:
        self.spans: list[tuple[int, int, int]] = []

    def overlaps(self, start: int, end: int) -> bool:
        return any(s < end and start < e for s, e, _ in self.spans)

    def add(self, start: int, end: int, pa: int) -> None:
        self.spans.append((start, end, pa))

    def remove(self, start: int, end: int) -> bool:
        hit = False
        kept = []
        for s, e, pa in self.spans:
            if s < end and start < e:
                hit = True
                if s < start:
                    kept.append((s, start, pa))
                if end < e:
                    kept.append((end, e, pa + (end - s)))
            else:
                kept.append((s, e, pa))
        self.spans = kept
        return hit

    def lookup(self, iova: int) -> int | None:
        for s, e, pa in self.spans:
            if s <= iova < e:
                return pa + (iova - s)
        return None


def machine_for(name: str) -> type[RuleBasedStateMachine]:
    factory = CONFIGS[name]
    probe = factory(PhysicalMemory())
    sizes = probe.page_sizes
    big = sizes[-1]
    top = probe.levels[0]
    input_bits = top.shift + (top.index_mask + 1).bit_length() - 1
    # three windows of two largest blocks: the bottom, the middle and the top of the input range
    bases = sorted({0, 1 << (input_bits - 1), (1 << input_bits) - 2 * big})
    if name.startswith("x86"):
        bases = [b for b in bases if b < 1 << (input_bits - 1)] + [1 << (input_bits - 2)]
    oa_limit = max(1 << 36, 4 * big)

    @st.composite
    def leaf(draw: st.DrawFn) -> tuple[int, int, int]:
        size = draw(st.sampled_from(sizes))
        n = 2 * big // size
        slot = draw(st.sampled_from(sorted({k for k in (0, 1, 2, n // 2, n // 2 + 1, n - 1)
                                            if k < n})))
        iova = draw(st.sampled_from(bases)) + slot * size
        pa = draw(st.integers(0, oa_limit // size - 1)) * size
        return iova, size, pa

    class PageTableMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.mem = PhysicalMemory()
            self.pt = factory(self.mem)
            self.leaves: list[tuple[int, int]] = []
            self.freed: list[tuple[int, int]] = []
            self.pt.flush = FlushOps(lambda a, n: self.leaves.append((a, n)),
                                     lambda a, n: self.freed.append((a, n)))
            self.root_bytes = self.mem.allocated_bytes
            self.model = Model()
            self.probes: set[int] = set()

        @rule(args=leaf(), write=st.booleans())
        def map(self, args: tuple[int, int, int], write: bool) -> None:
            iova, size, pa = args
            self.probes.update({iova, iova + size // 2 + 8, iova + size - 1})
            prot = Prot.READ | (Prot.WRITE if write else 0)
            if self.model.overlaps(iova, iova + size):
                self._refused(lambda: self.pt.map(iova, pa, size, prot), errno.EEXIST)
            else:
                self.pt.map(iova, pa, size, prot)
                self.model.add(iova, iova + size, pa)

        @rule(args=leaf(), count=st.integers(1, 5), write=st.booleans())
        def map_pages(self, args: tuple[int, int, int], count: int, write: bool) -> None:
            iova, size, pa = args
            end = iova + size * count
            if end > 1 << input_bits or (name.startswith("x86") and end > 1 << (input_bits - 1)
                                         and iova < 1 << (input_bits - 1)):
                return
            self.probes.update({iova, end - size // 2, end - 1, end})
            prot = Prot.READ | (Prot.WRITE if write else 0)
            call = partial(self.pt.map_pages, iova, pa, size, count, prot)
            self.leaves.clear()
            self.freed.clear()
            if self.model.overlaps(iova, end):
                self._refused(call, errno.EEXIST)
                assert not self.freed
            else:
                assert call() == size * count
                self.model.add(iova, end, pa)
            assert not self.leaves  # a map changes no leaf; it may free an empty table
            for start, span in self.freed:  # ... that its leaves replaced
                assert iova <= start and start + span <= end and span > sizes[0]

        @rule(args=leaf(), extra=st.integers(1, 3))
        def map_any_size(self, args: tuple[int, int, int], extra: int) -> None:
            """``map`` of a size that is no page size: cut into pages, all or nothing."""
            iova, size, pa = args
            total = size + extra * sizes[0]
            if iova + total > 1 << input_bits:
                return
            self.probes.update({iova + total - 1, iova + total})
            call = partial(self.pt.map, iova, pa, total, Prot.READ)
            if self.model.overlaps(iova, iova + total):
                self._refused(call, errno.EEXIST)
            else:
                call()
                self.model.add(iova, iova + total, pa)

        @rule(args=leaf())
        def unmap(self, args: tuple[int, int, int]) -> None:
            iova, size, _ = args
            self.probes.update({iova - 1, iova, iova + size})
            expected = size if self.model.remove(iova, iova + size) else 0
            self._unmapped(lambda: self.pt.unmap(iova, size), iova, expected, iova + size)

        @rule(args=leaf(), count=st.integers(1, 5))
        def unmap_pages(self, args: tuple[int, int, int], count: int) -> None:
            """Pages are unmapped up to the first that held nothing."""
            iova, size, _ = args
            if iova + size * count > 1 << input_bits:
                return
            k = 0
            while k < count and self.model.overlaps(iova + k * size, iova + (k + 1) * size):
                k += 1
            self.model.remove(iova, iova + k * size)
            self.probes.update({iova + k * size - 1, iova + k * size})
            self._unmapped(lambda: self.pt.unmap_pages(iova, size, count), iova, k * size,
                           iova + size * count)

        def _unmapped(self, call: Callable[[], int], iova: int, expected: int,
                      end: int) -> None:
            """Run an unmap of ``[iova, end)``; check the bytes it returns and the flushes it
            made: the leaves cleared, and tables freed only where the range covers them."""
            tables = self.pt.table_count()
            self.leaves.clear()
            self.freed.clear()
            assert call() == expected
            assert self.leaves == ([(iova, expected)] if expected else [])
            if self.pt.table_count() < tables:  # (a split may add as many as are freed)
                assert self.freed
            if expected == sizes[0]:  # one page: no table lies inside it
                assert self.pt.table_count() >= tables and not self.freed
            for start, span in self.freed:
                assert not self.model.overlaps(start, start + span)
                assert iova <= start and start + span <= end

        @rule(args=leaf(), bad=st.sampled_from(["align", "size", "prot"]))
        def refused_map(self, args: tuple[int, int, int], bad: str) -> None:
            iova, size, pa = args
            if bad == "align":
                self._refused(lambda: self.pt.map(iova + sizes[0] // 2, pa, size, Prot.READ),
                              errno.EINVAL)
            elif bad == "size":
                self._refused(lambda: self.pt.map_pages(iova, pa, size * 3, 1, Prot.READ),
                              errno.EINVAL)
            else:
                self._refused(lambda: self.pt.map(iova, pa, size, Prot.CACHE), errno.EINVAL)

        @rule()
        def unmap_everything(self) -> None:
            for s, e, _ in list(self.model.spans):
                self.model.remove(s, e)
                addr = s
                while addr < e:
                    step = next(z for z in reversed(sizes)
                                if not addr & (z - 1) and addr + z <= e)
                    self._unmapped(lambda: self.pt.unmap(addr, step),  # noqa: B023
                                   addr, step, addr + step)
                    addr += step
            # the tables partial unmaps emptied stay, and hold no leaf
            assert self.pt._leafless(self.pt.root, 0)

        def _refused(self, call: Callable[[], object], code: int) -> None:
            before = self._snapshot()
            with pytest.raises(UAPIError) as info:
                call()
            assert info.value.errno == code
            assert self._snapshot() == before

        def _snapshot(self) -> tuple[int, dict[int, bytes]]:
            pages = {pfn: self.mem.read(pfn << 12, 4096)
                     for pfn in self.mem.backed_page_numbers()}
            return self.mem.allocated_bytes, pages

        @invariant()
        def agrees_with_model(self) -> None:
            for iova in self.probes:
                want = self.model.lookup(iova)
                got = self.pt.iova_to_phys(iova)
                if want is None:
                    assert got == 0
                    if 0 <= iova < 1 << input_bits:
                        with pytest.raises(WalkFault):
                            self.pt.walk(iova, Access.READ)  # type: ignore[attr-defined]
                else:
                    assert got == want
                    assert self.pt.walk(iova, Access.READ).oa == want  # type: ignore[attr-defined]

        @invariant()
        def no_leaf_outside_the_model(self) -> None:
            if not self.model.spans:
                assert self.pt._leafless(self.pt.root, 0)
            # the table memory is exactly the tables the builder holds (none leaked)
            held = self.mem.allocated_bytes - self.root_bytes
            assert held == (self.pt.table_count() - 1) * self.pt._table_size

    PageTableMachine.__name__ = f"PageTableMachine_{name}"
    return PageTableMachine


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_map_unmap_sequences_match_the_model(name: str) -> None:
    run_state_machine_as_test(machine_for(name), settings=settings(stateful_step_count=25))

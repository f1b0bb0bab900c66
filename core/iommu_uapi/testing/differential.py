"""Differential mode: one guest workload on several backends; their answers must agree.

The workload is what a guest driver does: allocate PASIDs, build stage-1 tables, enter a PASID
(bind it, or write its guest PASID-table entry), DMA, change a PTE, invalidate, leave, and DMA
to places that are not mapped. Every backend that can
run it (same guest table format, nesting, the IOTLB cells used) runs the identical sequence on
an identical host (:class:`~.harness.Harness`), and each step's outcome — the physical address,
or the generic fault type and reason — is compared.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..features import CacheCell
from ..translation import TranslationFault
from ..uapi.consts import CacheType, InvGranularity
from .harness import READ, WRITE, Harness, no_guest_reason

__all__ = ["Outcome", "can_run", "compare", "run_workload"]

#: One step's result: ("paddr", address) or ("fault", type, reason) or ("refused", errno).
Outcome = tuple[object, ...]
_CELLS = (CacheCell(CacheType.IOTLB, InvGranularity.PASID),
          CacheCell(CacheType.IOTLB, InvGranularity.ADDR))
_VAS = [0x7000_0000_0000 + (i << 21) + (i << 12) for i in range(6)]


def can_run(h: Harness) -> str | None:
    """None if ``h``'s backend can run the workload, else the reason it cannot."""
    if h.entry is None:
        return no_guest_reason(h.iommu)
    if h.single_context:
        return (f"no guest format with contexts told apart by PASID: {h.format!r} holds a "
                "single context")
    missing = [str(c) for c in _CELLS if c not in h.caps.cache_cells]
    return f"lacks {', '.join(missing)}" if missing else None


def _dma(h: Harness, va: int, pasid: int | None, access: int) -> Outcome:
    try:
        return ("paddr", h.translate(va, pasid, access, h.dev2).paddr)
    except TranslationFault as exc:
        fault = exc.fault
        if fault is None:
            return ("fault", None, None)
        return ("fault", int(fault.type), int(fault.event.reason))


def run_workload(backend: str, profile: str = "linux-5.10") -> list[Outcome]:
    """Run the workload on a fresh host of ``backend`` under ``profile``; returns every step's
    outcome."""
    return _run(backend, profile)[1]


def _run(backend: str, profile: str) -> tuple[tuple[str, int], list[Outcome]]:
    """The workload's outcomes, and the guest format they were produced with (entry, format):
    guests of one format build the same tables at the same guest addresses."""
    h = Harness(backend, profile=profile)
    reason = can_run(h)
    if reason is not None or h.format is None:
        raise LookupError(reason)
    key = (h.format.entry.value, h.format.format)
    out: list[Outcome] = []
    a, b = h.vm.alloc(), h.vm.alloc()
    for va in _VAS[:4]:
        h.gmap(va)
    h.enter(a, h.dev2)
    out += [_dma(h, va + 0x18, a, READ) for va in _VAS]
    out.append(_dma(h, _VAS[0], b, READ))  # b has not entered
    h.enter(b, h.dev2)
    out += [_dma(h, va, b, WRITE) for va in _VAS[:2]]
    h.gunmap(_VAS[1])
    h.gmap(_VAS[1])
    h.invalidate(Harness.inv_info(_CELLS[1], a, _VAS[1]), h.dev2)
    out.append(_dma(h, _VAS[1], a, READ))
    h.gunmap(_VAS[2])
    h.invalidate(Harness.inv_info(_CELLS[0], a), h.dev2)
    out += [_dma(h, va, a, READ) for va in _VAS[:4]]
    h.leave(a, h.dev2)
    out += [_dma(h, _VAS[0], a, READ), _dma(h, _VAS[0], b, READ)]
    out.append(_dma(h, 0x10_0000_0000, None, READ))  # beyond the host domain's mappings
    return key, out


def compare(backends: Iterable[str], profile: str = "linux-5.10"
            ) -> tuple[dict[str, str], list[str]]:
    """Run the workload on each backend that can under ``profile``; returns (backends skipped
    with the reason, differences found as readable lines). Backends whose guests share a guest
    format are compared with each other; no differences means they agree."""
    skipped: dict[str, str] = {}
    groups: dict[tuple[str, int], dict[str, list[Outcome]]] = {}
    for name in backends:
        try:
            key, outcomes = _run(name, profile)
        except LookupError as exc:
            skipped[name] = str(exc)
            continue
        groups.setdefault(key, {})[name] = outcomes
    diffs: list[str] = []
    for results in groups.values():
        names = sorted(results)
        ref = names[0]
        for other in names[1:]:
            for step, (x, y) in enumerate(zip(results[ref], results[other], strict=True)):
                if x != y:
                    diffs.append(f"step {step}: {ref} gives {x}, {other} gives {y}")
    return skipped, diffs

"""Both generations, one model: the same guest workload through the 2020 calls
(:class:`~.harness.Harness`) and through iommufd (:class:`~.iommufd_rig.IommufdRig`) on
identical hosts of one backend, its guest contexts entering the way the backend's guest format
says:

* per PASID (VT-d): 2020 ``sva_bind_gpasid`` / ``cache_invalidate`` / unbind; iommufd one
  nested HWPT per PASID (as a VMM allocates one per guest PASID-table entry) attached at the
  PASID, ``IOMMU_HWPT_INVALIDATE`` on it, detach — an invalidation of a HWPT covers exactly
  what the 2020 invalidation of that PASID covers;
* through a guest PASID table (SMMUv3): 2020 ``attach_pasid_table`` of the guest's CD table,
  the guest writing CDs and sending ``cache_invalidate`` records (PASID cache, IOTLB, device
  TLB); iommufd a nested HWPT per device carrying the guest STE that points at the same CD
  table, and the guest's raw commands (CFGI_CD, TLBI_NH_VA, TLBI_NH_ASID, ATC_INV) through a
  vIOMMU and its vDEVICEs.

After every step the observation is the DMA outcomes of the step, the IOTLB and device-TLB
contents, what the backend's configuration caches hold (context/PASID entries, STEs/CDs) and
the faults reported; :func:`compare_generations` lists where they differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..caches import ConfigCache
from ..features import CacheCell
from ..iommufd import IommuHwptPageResponse, IommuHwptPgfault, PageResponseCode
from ..translation import TranslationFault
from ..uapi.consts import CacheType, InvGranularity
from .harness import READ, WRITE, Harness
from .iommufd_rig import IommufdRig

__all__ = ["Observation", "compare_generations", "config_caches", "run_2020", "run_iommufd"]

#: One step: (DMA outcomes, IOTLB entries, device-TLB entries, configuration-cache keys,
#: faults reported so far)
Observation = tuple[Any, ...]
_VAS = [0x7000_0000_0000 + (i << 21) + (i << 12) for i in range(6)]
_ADDR = CacheCell(CacheType.IOTLB, InvGranularity.ADDR)
_PASID = CacheCell(CacheType.IOTLB, InvGranularity.PASID)
_DEV_ADDR = CacheCell(CacheType.IOTLB | CacheType.DEV_IOTLB, InvGranularity.ADDR)


class _Host(Protocol):
    """What the workload reads of either rig."""

    iommu: Any
    dev: Any
    dev2: Any
    vm: Any

    def gmap(self, va: int, gpa: int | None = None, prot: int = ...) -> int: ...
    def gunmap(self, va: int) -> None: ...


class _Ops(Protocol):
    """The guest's requests, spoken in one generation."""

    def enter(self, pasid: int, dev: Any) -> None: ...
    def leave(self, pasid: int, dev: Any) -> None: ...
    def flush_page(self, pasid: int, dev: Any, va: int, pages: int, devtlb: bool) -> None: ...
    def flush_pasid(self, pasid: int, dev: Any) -> None: ...
    def respond(self, pasid: int, dev: Any, grpid: int) -> None: ...


def _dma(h: _Host, dev: Any, va: int, pasid: int | None, access: int) -> tuple[Any, ...]:
    try:
        t = h.iommu.translate(dev, va, pasid=pasid, access=access)
        return ("paddr", t.paddr, t.table_reads)
    except TranslationFault as exc:
        f = exc.fault
        return ("fault",) if f is None else ("fault", int(f.type), int(f.event.reason))


def _parts(obj: object) -> list[tuple[str, object]]:
    names = getattr(obj, "__dict__", None) or {
        n: getattr(obj, n) for n in getattr(type(obj), "__slots__", ()) if hasattr(obj, n)}
    return sorted(names.items())


def config_caches(backend: object) -> dict[str, ConfigCache[Any, Any]]:
    """The configuration caches a backend's model holds (the :class:`ConfigCache` attributes
    of the backend and of its parts), by attribute path."""
    out: dict[str, ConfigCache[Any, Any]] = {}
    for name, part in _parts(backend):
        if isinstance(part, ConfigCache):
            out[name] = part
            continue
        for sub, obj in _parts(part):
            if isinstance(obj, ConfigCache):
                out[f"{name}.{sub}"] = obj
    return out


def _observe(h: _Host, dmas: list[tuple[Any, ...]]) -> Observation:
    io = h.iommu
    atc = None if h.dev.atc is None else sorted(map(repr, h.dev.atc.entries.items()))
    configs = {name: sorted(map(repr, cache.entries))
               for name, cache in config_caches(io.backend).items()}
    return (dmas, sorted(map(repr, io.iotlb.entries.items())), atc, configs,
            [(d.sid, f.to_bytes()) for d, f in io.fault_log])


def _workload(h: _Host, ops: _Ops) -> list[Observation]:
    out: list[Observation] = []
    a, b = h.vm.alloc(), h.vm.alloc()
    for va in _VAS[:4]:
        h.gmap(va)
    ops.enter(a, h.dev2)
    ops.enter(b, h.dev)
    out.append(_observe(h, [_dma(h, h.dev2, va + 0x18, a, READ) for va in _VAS]
                        + [_dma(h, h.dev, va, b, WRITE) for va in _VAS[:3]]))
    h.gunmap(_VAS[1])
    h.gmap(_VAS[1])
    out.append(_observe(h, [_dma(h, h.dev2, _VAS[1], a, READ)]))  # stale: still cached
    ops.flush_page(a, h.dev2, _VAS[1], 1, False)
    out.append(_observe(h, [_dma(h, h.dev2, _VAS[1], a, READ)]))
    h.gunmap(_VAS[0])
    h.gmap(_VAS[0])
    ops.flush_page(b, h.dev, _VAS[0], 4, True)
    out.append(_observe(h, [_dma(h, h.dev, _VAS[0], b, READ)]))
    h.gunmap(_VAS[2])
    ops.flush_pasid(a, h.dev2)
    out.append(_observe(h, [_dma(h, h.dev2, va, a, READ) for va in _VAS[:4]]))
    if h.dev.pri:  # the device asks for a page; the guest answers the group
        h.iommu.page_request(h.dev, _VAS[2] + 0x40, pasid=b, access=WRITE, grpid=7)
        waiting = len(list(h.iommu.pending_page_requests(h.dev)))
        ops.respond(b, h.dev, 7)
        out.append(_observe(h, [("page requests", waiting,
                                 len(list(h.iommu.pending_page_requests(h.dev))))]))
    ops.leave(a, h.dev2)
    out.append(_observe(h, [_dma(h, h.dev2, _VAS[0], a, READ), _dma(h, h.dev, _VAS[0], b,
                                                                      READ)]))
    ops.leave(b, h.dev)
    out.append(_observe(h, [_dma(h, h.dev, _VAS[0], b, READ),
                            _dma(h, h.dev2, 0x10_0000_0000, None, READ)]))
    return out


class _Gen2020:
    def __init__(self, h: Harness) -> None:
        self.h = h

    def enter(self, pasid: int, dev: Any) -> None:
        self.h.enter(pasid, dev)

    def leave(self, pasid: int, dev: Any) -> None:
        self.h.leave(pasid, dev)

    def flush_page(self, pasid: int, dev: Any, va: int, pages: int, devtlb: bool) -> None:
        info = Harness.inv_info(_DEV_ADDR if devtlb else _ADDR, pasid, va, pages)
        self.h.invalidate(info, dev)

    def flush_pasid(self, pasid: int, dev: Any) -> None:
        self.h.invalidate(Harness.inv_info(_PASID, pasid), dev)

    def respond(self, pasid: int, dev: Any, grpid: int) -> None:
        self.h.iommu.uapi_page_response(dev, self.h.response(grpid, pasid))


class _GenIommufd:
    def __init__(self, r: IommufdRig) -> None:
        self.r = r
        self.objs: dict[int, int] = {}
        #: the fault object the ATS device's contexts report to (the 2020 harness registers
        #: a fault handler for that device)
        self.fault_id, self.fault_fd = r.client.fault_alloc()

    def enter(self, pasid: int, dev: Any) -> None:
        fault_id = self.fault_id if dev is self.r.dev else 0
        self.objs[pasid] = self.r.enter(pasid, dev, fault_id=fault_id)

    def leave(self, pasid: int, dev: Any) -> None:
        self.r.leave(self.objs.pop(pasid), pasid, dev)

    def _run(self, pasid: int, entries: list[Any]) -> None:
        self.r.must_invalidate(self.objs[pasid], entries)

    def flush_page(self, pasid: int, dev: Any, va: int, pages: int, devtlb: bool) -> None:
        r, kit = self.r, self.r.entries
        entries = kit.page(r.tag(pasid), va, pages)
        if devtlb and dev.ats:  # where the kernel does not flush the device TLB itself
            entries += kit.dev_tlb(r.vsids.get(r.dev_id_of(dev), 0), pasid, va, pages)
        self._run(pasid, entries)

    def flush_pasid(self, pasid: int, dev: Any) -> None:
        del dev
        self._run(pasid, self.r.entries.whole(self.r.tag(pasid)))

    def respond(self, pasid: int, dev: Any, grpid: int) -> None:
        del dev
        raw = self.r.fd.read(self.fault_fd, 40 * 64)
        records = [IommuHwptPgfault.from_bytes(raw[i:i + 40]) for i in range(0, len(raw), 40)]
        cookie = next(rec.cookie for rec in records if (rec.pasid, rec.grpid) == (pasid, grpid))
        self.r.fd.write(self.fault_fd, IommuHwptPageResponse(
            cookie=cookie, code=int(PageResponseCode.SUCCESS)).to_bytes())


def run_2020(backend: str, profile: str = "strict") -> list[Observation]:
    """The workload through the 2020 calls on a fresh host of ``backend``."""
    h = Harness(backend, profile=profile)
    return _workload(h, _Gen2020(h))


def run_iommufd(backend: str, profile: str = "strict") -> list[Observation]:
    """The workload through iommufd on a fresh host of ``backend``."""
    r = IommufdRig(backend, profile=profile)
    return _workload(r, _GenIommufd(r))


def compare_generations(backend: str, profile: str = "strict",
                        runs: tuple[Callable[[str, str], list[Observation]], ...] = (
                            run_2020, run_iommufd)) -> list[str]:
    """Run both generations on ``backend`` under ``profile``; the steps where they differ, as
    readable lines (none: the same translations, caches and faults)."""
    old, new = (run(backend, profile) for run in runs)
    names = ("DMA outcomes", "IOTLB", "device TLB", "configuration caches", "faults")
    return [f"step {i}: {name}: 2020 {x!r} / iommufd {y!r}"
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for name, x, y in zip(names, a, b, strict=True) if x != y]

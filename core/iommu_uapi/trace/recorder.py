"""Record what a VMM or a workload does to one IOMMU, as a trace.

A :class:`Recorder` attached to an :class:`~iommu_uapi.iommu.IOMMU` watches its control calls
as an observer (every hook call that succeeded becomes an event, UAPI records as their exact
bytes) and its data path through a recording wrapper: attaching sets an instance attribute
``translate`` that records the DMA and calls the class's method; detaching removes it, so an
IOMMU without a recorder pays nothing. Host PASID allocations are not hook calls: a replay
allocates each bound PASID itself. Guest memory a replay needs (guest page tables) is recorded
with :meth:`Recorder.write`, or snapshotted from a guest RAM range with :meth:`snapshot`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from ..iommu import IOMMU
from ..translation import Translation
from .events import (
    AttachDevice,
    AttachTable,
    Bind,
    DetachDevice,
    DetachTable,
    DeviceAdd,
    DeviceRemove,
    Dma,
    DomainAlloc,
    DomainFree,
    Event,
    Invalidate,
    Map,
    PageRequest,
    PageResponse,
    SetNesting,
    Unbind,
    Unmap,
    Write,
)
from .format import TraceWriter

__all__ = ["HOOK_EVENTS", "Recorder"]

_PAGE = 0x1000


def _bytes(record: Any) -> bytes:
    return bytes(record.to_bytes())


#: The event each recorded hook call becomes (from the hook's keyword arguments).
HOOK_EVENTS: dict[str, Callable[[Mapping[str, Any]], Event]] = {
    "iommu_device_add": lambda k: DeviceAdd(k["dev"].sid, bool(k["dev"].ats),
                                            bool(k["dev"].pri)),
    "iommu_device_remove": lambda k: DeviceRemove(k["dev"].sid),
    "iommu_domain_alloc": lambda k: DomainAlloc(k["domain"].id),
    "iommu_domain_free": lambda k: DomainFree(k["domain"].id),
    "iommu_domain_set_nesting": lambda k: SetNesting(k["domain"].id),
    "iommu_attach_dev": lambda k: AttachDevice(k["domain"].id, k["dev"].sid),
    "iommu_detach_dev": lambda k: DetachDevice(k["domain"].id, k["dev"].sid),
    "iommu_map": lambda k: Map(k["domain"].id, k["iova"], k["paddr"], k["size"], k["prot"]),
    "iommu_unmap": lambda k: Unmap(k["domain"].id, k["iova"], k["size"]),
    # the range calls: one Map/Unmap of the whole range (replayed through the façade's map,
    # which cuts it into the same page sizes)
    "iommu_map_pages": lambda k: Map(k["domain"].id, k["iova"], k["paddr"],
                                     k["pgsize"] * k["pgcount"], k["prot"]),
    "iommu_unmap_pages": lambda k: Unmap(k["domain"].id, k["iova"], k["pgsize"] * k["pgcount"]),
    "iommu_sva_bind_gpasid": lambda k: Bind(k["domain"].id, k["dev"].sid, _bytes(k["data"])),
    "iommu_sva_unbind_gpasid": lambda k: Unbind(k["domain"].id, k["dev"].sid, k["pasid"]),
    "iommu_cache_invalidate": lambda k: Invalidate(k["domain"].id, k["dev"].sid,
                                                   _bytes(k["info"])),
    "iommu_attach_pasid_table": lambda k: AttachTable(k["domain"].id, _bytes(k["cfg"])),
    "iommu_detach_pasid_table": lambda k: DetachTable(k["domain"].id),
    "iommu_page_request": lambda k: PageRequest(
        k["dev"].sid, k["addr"], k["pasid"], k["access"], k["grpid"], bool(k["last"]),
        None if k["private_data"] is None else tuple(k["private_data"])),
    "iommu_page_response": lambda k: PageResponse(k["dev"].sid, _bytes(k["msg"])),
}


class Recorder:
    """Record one IOMMU's control calls and DMAs to ``writer`` (see the module docstring).

    ``clock`` stamps each event (``time.perf_counter_ns`` when ``timed``; untimed otherwise).
    An observer cannot be unregistered from an instance: after :meth:`detach` it records
    nothing more.
    """

    def __init__(self, writer: TraceWriter, *, timed: bool = False) -> None:
        self.writer = writer
        self.iommu: IOMMU | None = None
        self._clock: Callable[[], int] | None = time.perf_counter_ns if timed else None
        self._observing: set[int] = set()

    def _stamp(self, event: Event) -> Event:
        if self._clock is None:
            return event
        return msgspec.structs.replace(event, t=self._clock())

    def attach(self, iommu: IOMMU) -> Recorder:
        """Start recording ``iommu`` (one IOMMU per recorder)."""
        if self.iommu is not None:
            raise RuntimeError("this recorder already records an IOMMU")
        self.iommu = iommu
        if id(iommu) not in self._observing:
            iommu.add_observer(self)
            self._observing.add(id(iommu))
        original = type(iommu).translate
        append = self.writer.append
        clock = self._clock

        def translate(dev: Any, iova: int, *, pasid: int | None = None,
                      access: int = 1) -> Translation:
            append(Dma(dev.sid, iova, pasid, 1, access, clock() if clock else None))
            return original(iommu, dev, iova, pasid=pasid, access=access)

        iommu.translate = translate  # type: ignore[method-assign]
        return self

    def detach(self) -> None:
        """Stop recording; the IOMMU's ``translate`` is the class's again."""
        if self.iommu is not None:
            self.iommu.__dict__.pop("translate", None)
            self.iommu = None

    def after(self, hook: str, kwargs: Mapping[str, Any], result: object,
              error: BaseException | None) -> None:
        """Record a control call that succeeded (an observer of the instance's hook calls)."""
        if self.iommu is None or error is not None:
            return
        make = HOOK_EVENTS.get(hook)
        if make is not None:
            self.writer.append(self._stamp(make(kwargs)))

    def write(self, paddr: int, data: bytes) -> None:
        """Record bytes written to physical memory (a guest's page tables, say)."""
        self.writer.append(self._stamp(Write(paddr, bytes(data))))

    def snapshot(self, paddr: int, size: int) -> int:
        """Record the backed pages of physical memory in ``[paddr, paddr + size)`` as writes
        (guest RAM holding page tables); returns the pages recorded."""
        if self.iommu is None:
            raise RuntimeError("attach the recorder first")
        memory = self.iommu.memory
        recorded = 0
        for pfn in sorted(memory.backed_page_numbers()):
            addr = pfn * _PAGE
            if paddr <= addr < paddr + size:
                self.write(addr, memory.read(addr, _PAGE))
                recorded += 1
        return recorded

"""The events of a trace: what a VMM or a workload did to one IOMMU, in order.

Each event is a small frozen :class:`msgspec.Struct`, encoded as a MessagePack array whose first
element is the event's tag (so a DMA costs a handful of bytes). Control events name devices by
requester ID and domains by the number the recording IOMMU gave them; UAPI calls carry the exact
user bytes (``iommu_cache_invalidate_info``, ``iommu_gpasid_bind_data``, ...). Every event may
carry a time stamp ``t`` in nanoseconds of trace time (None: untimed).
"""

from __future__ import annotations

from typing import Any

import msgspec

from .errors import trace_error

__all__ = [
    "EVENT_TYPES",
    "FORMAT_VERSION",
    "AttachDevice",
    "AttachTable",
    "Bind",
    "DetachDevice",
    "DetachTable",
    "DeviceAdd",
    "DeviceRemove",
    "Dma",
    "DmaRun",
    "DomainAlloc",
    "DomainFree",
    "Event",
    "Header",
    "Invalidate",
    "Map",
    "PageRequest",
    "PageResponse",
    "PasidAlloc",
    "SetNesting",
    "Unbind",
    "Unmap",
    "Write",
]

#: The version of the trace format this module writes and reads.
FORMAT_VERSION = 1


class _Event(msgspec.Struct, frozen=True, gc=False, array_like=True, tag_field="k"):
    pass


class Dma(_Event, frozen=True, gc=False, array_like=True, tag=0):
    """A device's DMA of ``size`` bytes at ``iova`` (one translation per 4 KiB page touched),
    with ``pasid`` (None: a request without PASID) and ``access`` (``IOMMU_FAULT_PERM_*``)."""

    sid: int
    iova: int
    pasid: int | None = None
    size: int = 1
    access: int = 1
    t: int | None = None


class Map(_Event, frozen=True, gc=False, array_like=True, tag=1):
    """``map(domain, iova, paddr, size, prot)``: one range in the domain's host tables."""

    domain: int
    iova: int
    paddr: int
    size: int
    prot: int
    t: int | None = None


class Unmap(_Event, frozen=True, gc=False, array_like=True, tag=2):
    """``unmap(domain, iova, size)``: one range (with the flush the backend's driver makes)."""

    domain: int
    iova: int
    size: int
    t: int | None = None


class Invalidate(_Event, frozen=True, gc=False, array_like=True, tag=3):
    """``uapi_cache_invalidate``: ``data`` is the ``iommu_cache_invalidate_info`` bytes."""

    domain: int
    sid: int
    data: bytes
    t: int | None = None


class Bind(_Event, frozen=True, gc=False, array_like=True, tag=4):
    """``uapi_sva_bind_gpasid``: ``data`` is the ``iommu_gpasid_bind_data`` bytes."""

    domain: int
    sid: int
    data: bytes
    t: int | None = None


class Unbind(_Event, frozen=True, gc=False, array_like=True, tag=5):
    """``sva_unbind_gpasid(domain, dev, pasid)``."""

    domain: int
    sid: int
    pasid: int
    t: int | None = None


class AttachTable(_Event, frozen=True, gc=False, array_like=True, tag=6):
    """``uapi_attach_pasid_table``: ``data`` is the ``iommu_pasid_table_config`` bytes."""

    domain: int
    data: bytes
    t: int | None = None


class DetachTable(_Event, frozen=True, gc=False, array_like=True, tag=7):
    """``detach_pasid_table(domain)``."""

    domain: int
    t: int | None = None


class PageResponse(_Event, frozen=True, gc=False, array_like=True, tag=8):
    """``uapi_page_response``: ``data`` is the ``iommu_page_response`` bytes."""

    sid: int
    data: bytes
    t: int | None = None


class DeviceAdd(_Event, frozen=True, gc=False, array_like=True, tag=9):
    """``add_device(sid, ats=..., pri=...)``."""

    sid: int
    ats: bool = False
    pri: bool = False
    t: int | None = None


class DeviceRemove(_Event, frozen=True, gc=False, array_like=True, tag=10):
    """``remove_device``."""

    sid: int
    t: int | None = None


class DomainAlloc(_Event, frozen=True, gc=False, array_like=True, tag=11):
    """``domain_alloc()``: the recording IOMMU named the new domain ``domain``."""

    domain: int
    t: int | None = None


class DomainFree(_Event, frozen=True, gc=False, array_like=True, tag=12):
    """``domain_free``."""

    domain: int
    t: int | None = None


class SetNesting(_Event, frozen=True, gc=False, array_like=True, tag=13):
    """``set_nesting(domain)``."""

    domain: int
    t: int | None = None


class AttachDevice(_Event, frozen=True, gc=False, array_like=True, tag=14):
    """``attach_device(domain, dev)``."""

    domain: int
    sid: int
    t: int | None = None


class DetachDevice(_Event, frozen=True, gc=False, array_like=True, tag=15):
    """``detach_device(domain, dev)``."""

    domain: int
    sid: int
    t: int | None = None


class PasidAlloc(_Event, frozen=True, gc=False, array_like=True, tag=16):
    """A host PASID allocated to the per-VM set ``pasid_set``."""

    pasid_set: str
    pasid: int
    t: int | None = None


class Write(_Event, frozen=True, gc=False, array_like=True, tag=17):
    """Bytes a guest or VMM wrote to physical memory at ``paddr`` (guest page tables, PASID
    tables): what a replay needs in memory for the walks to find."""

    paddr: int
    data: bytes
    t: int | None = None


class PageRequest(_Event, frozen=True, gc=False, array_like=True, tag=19):
    """A device's PRI page request for ``addr`` (``page_request``); ``grpid`` and ``last``
    group it, ``private_data`` is the pair of private words when present."""

    sid: int
    addr: int
    pasid: int | None = None
    access: int = 1
    grpid: int = 0
    last: bool = True
    private_data: tuple[int, int] | None = None
    t: int | None = None


class DmaRun(_Event, frozen=True, gc=False, array_like=True, tag=18):
    """Consecutive DMAs stored by column, as a writer frames them: ``iova`` lists the DMAs;
    every other field is one value shared by all of them or a list as long as ``iova``.
    ``one_page`` says that no DMA of the run crosses a 4 KiB page. Readers hand out the
    :class:`Dma` events of a run (:meth:`dmas`); a replay walks the columns."""

    iova: list[int]
    sid: int | list[int]
    pasid: int | list[int | None] | None = None
    size: int | list[int] = 1
    access: int | list[int] = 1
    t: int | list[int | None] | None = None
    one_page: bool = True

    def __post_init__(self) -> None:
        """A run whose list columns differ in length from ``iova`` is refused: when decoded
        (the frame does not decode) and when built (``UAPIError``, rule ``trace.corrupt``)."""
        if (self.iova.__class__ is list and self.sid.__class__ is int
                and self.size.__class__ is int
                and self.access.__class__ is int and not isinstance(self.pasid, list)
                and not isinstance(self.t, list)):
            return  # no list column (a writer's run of one DMA, or of a uniform stream)
        if not self.well_formed():
            raise trace_error("trace.corrupt", None, "a DMA run's columns differ in length "
                              "(iova must be a list)")

    def well_formed(self) -> bool:
        """Whether ``iova`` is a list and every list column is as long as it (every run is
        checked as it is built or decoded)."""
        if not isinstance(self.iova, list):
            return False
        n = len(self.iova)
        for v in (self.sid, self.pasid, self.size, self.access, self.t):
            if isinstance(v, list) and len(v) != n:
                return False
        return True

    def column(self, name: str) -> list[object]:
        """Field ``name`` as a list as long as the run."""
        value = getattr(self, name)
        return value if isinstance(value, list) else [value] * len(self.iova)

    def dmas(self) -> list[Dma]:
        """The run's DMAs, in order."""
        return [Dma(*fields) for fields in zip(
            self.column("sid"), self.iova, self.column("pasid"), self.column("size"),
            self.column("access"), self.column("t"), strict=True)]

    @classmethod
    def of(cls, dmas: list[Dma]) -> DmaRun:
        """The run of ``dmas`` (at least one), each column a single value when it can be."""
        def col(values: list[Any]) -> Any:
            first = values[0]
            return first if values.count(first) == len(values) else values

        iovas = [d.iova for d in dmas]
        sizes = [d.size for d in dmas]
        one_page = all((iova & 0xFFF) + size <= 0x1000 for iova, size in
                       zip(iovas, sizes, strict=True))
        return cls(iovas, col([d.sid for d in dmas]), col([d.pasid for d in dmas]), col(sizes),
                   col([d.access for d in dmas]), col([d.t for d in dmas]), one_page)


Event = (Dma | DmaRun | Map | Unmap | Invalidate | Bind | Unbind | AttachTable | DetachTable
         | PageRequest | PageResponse | DeviceAdd | DeviceRemove | DomainAlloc | DomainFree
         | SetNesting | AttachDevice | DetachDevice | PasidAlloc | Write)

#: Every event type by its name in summaries (``trace info``, ``ReplayStats``).
EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    Dma, Map, Unmap, Invalidate, Bind, Unbind, AttachTable, DetachTable, PageRequest,
    PageResponse, DeviceAdd, DeviceRemove, DomainAlloc, DomainFree, SetNesting, AttachDevice,
    DetachDevice, PasidAlloc, Write)}


class Header(msgspec.Struct, frozen=True, gc=False, forbid_unknown_fields=False):
    """A trace's first frame: the format ``version``, the ``backend`` it was recorded on (or
    generated for) and its ``config``, the cache geometry (``cache``), the features its events
    need (``requires``: ``Feature`` names; None: found by a pass over the events), and free-form
    ``meta`` (the workload's parameters)."""

    version: int = FORMAT_VERSION
    backend: str = ""
    config: dict[str, object] = {}
    cache: str | None = None
    requires: list[str] | None = None
    meta: dict[str, object] = {}

"""Replay a trace on any backend and cache geometry, and summarise what the caches did.

:func:`replay` builds an :class:`~iommu_uapi.iommu.IOMMU` on the chosen backend with the chosen
IOTLB geometry, checks upfront that the backend has every feature the trace's events need
(refusing with ``trace.capability`` and naming what is missing), then feeds the events in order:
control events through the façade's kernel-named calls with the recorded user bytes, DMAs through
:meth:`IOMMU.translate` (one translation per 4 KiB page a DMA touches). A control call the
backend refuses is counted (``refused``) and the replay goes on; a DMA that faults is counted
(``faults``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import IO, Any

from ..caches import Geometry
from ..device import Device, Domain
from ..errors import UAPIError
from ..iommu import IOMMU
from ..pasid import PasidSet
from ..translation import TranslationFault
from ..uapi import CacheInvalidateInfo, CacheType, Fault, GpasidBindData, InvGranularity
from .errors import trace_error
from .events import (
    AttachDevice,
    AttachTable,
    Bind,
    DetachDevice,
    DetachTable,
    DeviceAdd,
    DeviceRemove,
    Dma,
    DmaRun,
    DomainAlloc,
    DomainFree,
    Event,
    Invalidate,
    Map,
    PageRequest,
    PageResponse,
    PasidAlloc,
    SetNesting,
    Unbind,
    Unmap,
    Write,
)
from .format import TraceReader
from .machine import (
    REQUIRES,
    backend_caches,
    cache_name,
    check_capabilities,
    header_needs,
    make_iommu,
    required_features,
)
from .stats import CacheStats, ContextStats, ReplayStats, cache_stats, read_stats

#: (re-exported from :mod:`.machine`, where the IOMMU a replay runs on is made)
__all__ = ["REQUIRES", "Replayer", "check_capabilities", "make_iommu", "replay",
           "required_features"]

_HIST = 64
_TOP = _HIST - 1  # the histograms' last bucket counts that many reads or more
_PAGE = 0x1000
_IN_PAGE = _PAGE - 1
#: The PASID set a replay allocates recorded host PASIDs in (bind needs them allocated).
REPLAY_PASID_SET = "trace"

Source = str | os.PathLike[str] | IO[bytes]


#: Where the fields a summary reads sit in the user bytes (from the records' C layouts).
_INV_CACHE = CacheInvalidateInfo.c_layout()["cache"][0]
_INV_GRANU = CacheInvalidateInfo.c_layout()["granularity"][0]
_BIND_HPASID = GpasidBindData.c_layout()["hpasid"]


def _invalidation_kind(data: bytes) -> str:
    """``"IOTLB+DEV_IOTLB/ADDR"``: the caches and granularity of accepted invalidation bytes."""
    cache, granularity = data[_INV_CACHE], data[_INV_GRANU]
    caches = "+".join(str(c.name) for c in CacheType if cache & c) or "none"
    try:
        granu = InvGranularity(granularity).name
    except ValueError:
        granu = str(granularity)
    return f"{caches}/{granu}"


class Replayer:
    """Feeds events to one IOMMU and keeps the counts :class:`ReplayStats` reports.

    Devices are named by requester ID, domains by the number the recording IOMMU gave them
    (mapped here to the domains this IOMMU allocates). ``per_context`` also counts by (device,
    PASID), which costs a dictionary update per translation.
    """

    def __init__(self, iommu: IOMMU, *, per_context: bool = False) -> None:
        self.iommu = iommu
        self.per_context = per_context
        self.devices: dict[int, Device] = {}
        self.domains: dict[int, Domain] = {}
        self.pasid_sets: dict[str, PasidSet] = {}
        self.events = 0
        self.dmas = 0
        self.translations = 0
        self.faults = 0
        #: faults and page requests reported to the consumer of PRI devices
        self.reported = 0
        self.refused: dict[str, int] = {}
        self._invalidations: dict[str, int] = {}
        self._unmaps = 0  # the unmaps' flushes, counted apart (every ring packet has one)
        self.table_hist = [0] * _HIST
        self.config_hist = [0] * _HIST
        #: (sid, PASID) -> [translations, walks, table reads, faults]
        self.contexts: dict[tuple[int, int | None], list[int]] = {}
        self._control: dict[type, Callable[[Any], None]] = {
            Map: self._map, Unmap: self._unmap, Invalidate: self._invalidate,
            Bind: self._bind, Unbind: self._unbind, AttachTable: self._attach_table,
            DetachTable: self._detach_table, PageRequest: self._page_request,
            PageResponse: self._page_response,
            DeviceAdd: self._device_add, DeviceRemove: self._device_remove,
            DomainAlloc: self._domain_alloc, DomainFree: self._domain_free,
            SetNesting: self._set_nesting, AttachDevice: self._attach,
            DetachDevice: self._detach, PasidAlloc: self._pasid_alloc, Write: self._write,
        }

    # -- control events ------------------------------------------------------------------------

    @property
    def invalidations(self) -> dict[str, int]:
        """The invalidation calls made, by kind (``unmap``: the unmaps' flushes)."""
        out = dict(self._invalidations)
        if self._unmaps:
            out["unmap"] = out.get("unmap", 0) + self._unmaps
        return out

    def _map(self, e: Map) -> None:
        self.iommu.map(self.domains[e.domain], e.iova, e.paddr, e.size, e.prot)

    def _unmap(self, e: Unmap) -> None:
        self.iommu.unmap(self.domains[e.domain], e.iova, e.size)
        self._unmaps += 1

    def _invalidate(self, e: Invalidate) -> None:
        self.iommu.uapi_cache_invalidate(self.domains[e.domain], self.devices[e.sid], e.data)
        kind = _invalidation_kind(e.data)  # accepted: the bytes hold the fields
        self._invalidations[kind] = self._invalidations.get(kind, 0) + 1

    def _bind(self, e: Bind) -> None:
        offset, size = _BIND_HPASID
        if len(e.data) >= offset + size:  # else the bind refuses the bytes
            hpasid = int.from_bytes(e.data[offset:offset + size], "little")
            pasids = self.iommu.pasids
            if 0 < hpasid < pasids.limit and hpasid not in pasids:
                self._pasid_alloc(PasidAlloc(REPLAY_PASID_SET, hpasid))
        self.iommu.uapi_sva_bind_gpasid(self.domains[e.domain], self.devices[e.sid], e.data)

    def _unbind(self, e: Unbind) -> None:
        self.iommu.sva_unbind_gpasid(self.domains[e.domain], self.devices[e.sid], e.pasid)

    def _attach_table(self, e: AttachTable) -> None:
        self.iommu.uapi_attach_pasid_table(self.domains[e.domain], e.data)

    def _detach_table(self, e: DetachTable) -> None:
        self.iommu.detach_pasid_table(self.domains[e.domain])

    def _page_request(self, e: PageRequest) -> None:
        self.iommu.page_request(self.devices[e.sid], e.addr, pasid=e.pasid, access=e.access,
                                grpid=e.grpid, last=e.last, private_data=e.private_data)

    def _page_response(self, e: PageResponse) -> None:
        self.iommu.uapi_page_response(self.devices[e.sid], e.data)

    def _device_add(self, e: DeviceAdd) -> None:
        dev = self.iommu.add_device(e.sid, ats=e.ats, pri=e.pri)
        self.devices[e.sid] = dev
        if e.pri:  # the replay is the VMM: it consumes the device's faults and page requests
            self.iommu.register_fault_handler(dev, self._reported)

    def _reported(self, fault: Fault) -> None:
        self.reported += 1

    def _device_remove(self, e: DeviceRemove) -> None:
        self.iommu.remove_device(self.devices.pop(e.sid))

    def _domain_alloc(self, e: DomainAlloc) -> None:
        self.domains[e.domain] = self.iommu.domain_alloc()

    def _domain_free(self, e: DomainFree) -> None:
        self.iommu.domain_free(self.domains.pop(e.domain))

    def _set_nesting(self, e: SetNesting) -> None:
        self.iommu.set_nesting(self.domains[e.domain])

    def _attach(self, e: AttachDevice) -> None:
        self.iommu.attach_device(self.domains[e.domain], self.devices[e.sid])

    def _detach(self, e: DetachDevice) -> None:
        self.iommu.detach_device(self.domains[e.domain], self.devices[e.sid])

    def _pasid_alloc(self, e: PasidAlloc) -> None:
        pasids = self.iommu.pasids
        pasid_set = self.pasid_sets.get(e.pasid_set)
        if pasid_set is None:
            pasid_set = self.iommu.pasid_set(e.pasid_set, quota=pasids.limit - 1)
            self.pasid_sets[e.pasid_set] = pasid_set
        pasids.alloc(pasid_set, e.pasid, e.pasid)

    def _write(self, e: Write) -> None:
        self.iommu.memory.write(e.paddr, e.data)

    def control(self, event: Event) -> None:
        """Apply one control event; a refusal is counted under the event's kind."""
        try:
            self._control[type(event)](event)
        except (UAPIError, KeyError):
            self._refuse(type(event))

    def _refuse(self, cls: type) -> None:
        """Count a refused control event under its kind."""
        kind = cls.__name__
        self.refused[kind] = self.refused.get(kind, 0) + 1

    # -- the data path -------------------------------------------------------------------------

    def _dma_pages(self, dev: Device, e: Dma) -> None:
        """One DMA: one translation per 4 KiB page it touches."""
        first = e.iova & -_PAGE
        last = (e.iova + max(e.size, 1) - 1) & -_PAGE
        for page in range(first, last + _PAGE, _PAGE):
            self._one(dev, max(page, e.iova), e.pasid, e.access)

    def _one(self, dev: Device, iova: int, pasid: int | None, access: int) -> None:
        try:
            tr = self.iommu.translate(dev, iova, pasid=pasid, access=access)
        except (TranslationFault, UAPIError):
            self.faults += 1
            if self.per_context:
                counts = self.contexts.setdefault((getattr(dev, "sid", -1), pasid), [0, 0, 0, 0])
                counts[3] += 1
            return
        reads, config = tr.table_reads, tr.config_reads
        self.table_hist[reads if reads < _TOP else _TOP] += 1
        self.config_hist[config if config < _TOP else _TOP] += 1
        if self.per_context:
            counts = self.contexts.setdefault((dev.sid, pasid), [0, 0, 0, 0])
            counts[0] += 1
            counts[1] += reads > 0
            counts[2] += reads

    def _dma_run(self, run: DmaRun) -> int:
        """Translate a run of DMAs; returns the faults. When the run shares its device, PASID
        and access and no DMA crosses a page, the loop is one translation per IOVA."""
        sid, pasid, access = run.sid, run.pasid, run.access
        if (run.one_page and not self.per_context and sid.__class__ is int
                and access.__class__ is int and pasid.__class__ is not list):
            translate = self.iommu.translate
            dev = self.devices.get(sid)
            table_hist, config_hist = self.table_hist, self.config_hist
            top = _HIST - 1
            faults = free = 0
            for iova in run.iova:
                try:
                    tr = translate(dev, iova, pasid=pasid, access=access)  # type: ignore[arg-type]
                except (TranslationFault, UAPIError):
                    faults += 1
                    continue
                reads, config = tr.table_reads, tr.config_reads
                if reads or config:
                    table_hist[reads if reads < top else top] += 1
                    config_hist[config if config < top else top] += 1
                else:
                    free += 1
            table_hist[0] += free
            config_hist[0] += free
            self.faults += faults
            return faults
        before = self.faults
        for dma in run.dmas():
            self._dma_pages(self.devices.get(dma.sid), dma)  # type: ignore[arg-type]
        return self.faults - before

    def run(self, chunks: Iterable[list[Event]],
            progress: Callable[[int], None] | None = None) -> None:
        """Replay ``chunks`` (lists of events, as :meth:`TraceReader.frames` yields them);
        ``progress(events)`` is called after each chunk."""
        devices, domains, handlers = self.devices, self.domains, self._control
        imap, iunmap, translate = self.iommu.map, self.iommu.unmap, self.iommu.translate
        table_hist, config_hist = self.table_hist, self.config_hist
        plain = not self.per_context
        for chunk in chunks:
            events = len(chunk)
            for event in chunk:
                cls = event.__class__
                if cls is Dma:
                    dma: Dma = event  # type: ignore[assignment]  # (cast() is a call)
                    self.dmas += 1
                    iova, size = dma.iova, dma.size
                    if (plain and iova.__class__ is int and size.__class__ is int
                            and size <= _PAGE - (iova & _IN_PAGE)
                            and dma.access.__class__ is int):
                        # a DMA within one page (a ring's every packet): _dma_pages's one
                        # translation, inline
                        try:
                            tr = translate(devices.get(dma.sid), iova,  # type: ignore[arg-type]
                                           pasid=dma.pasid, access=dma.access)
                        except (TranslationFault, UAPIError):
                            self.faults += 1
                            continue
                        reads, config = tr.table_reads, tr.config_reads
                        table_hist[reads if reads < _TOP else _TOP] += 1
                        config_hist[config if config < _TOP else _TOP] += 1
                    else:
                        self._dma_pages(devices.get(dma.sid), dma)  # type: ignore[arg-type]
                elif cls is DmaRun:
                    run: DmaRun = event  # type: ignore[assignment]
                    n = len(run.iova)
                    self.dmas += n
                    events += n - 1
                    self._dma_run(run)
                elif cls is Map or cls is Unmap:  # _map and _unmap, inline (a ring's packets)
                    try:
                        if cls is Map:
                            m: Map = event  # type: ignore[assignment]
                            imap(domains[m.domain], m.iova, m.paddr, m.size, m.prot)
                        else:
                            u: Unmap = event  # type: ignore[assignment]
                            iunmap(domains[u.domain], u.iova, u.size)
                            self._unmaps += 1
                    except (UAPIError, KeyError):
                        self._refuse(cls)
                else:  # control(event), inline
                    handler = handlers.get(cls)
                    try:
                        if handler is None:
                            raise KeyError(cls)
                        handler(event)
                    except (UAPIError, KeyError):
                        self._refuse(cls)
            self.events += events
            if progress is not None:
                progress(self.events)
        self.translations = sum(self.table_hist) + self.faults

    # -- the summary ---------------------------------------------------------------------------

    def cache_counters(self) -> dict[str, CacheStats]:
        """Every cache's counters: the IOTLB, the device ATCs (summed), and each cache the
        backend keeps as an attribute or in its ``caches`` attribute (configuration and walk
        caches), by attribute name."""
        found: dict[str, CacheStats] = {"iotlb": cache_stats(self.iommu.iotlb)}
        atcs = [d.atc for d in self.iommu.devices.values() if d.atc is not None]
        if atcs:
            found["atc"] = CacheStats(
                sum(a.hits for a in atcs), sum(a.misses for a in atcs),
                sum(a.fills for a in atcs), sum(a.evictions for a in atcs),
                _merge(a.dropped for a in atcs))
        for name, cache in backend_caches(self.iommu.backend):
            if cache is not self.iommu.iotlb and name not in found:
                found[name] = cache_stats(cache)
        return found

    def stats(self, cache: str = "unbounded") -> ReplayStats:
        """The summary so far."""
        contexts = None
        if self.per_context:
            contexts = {f"{sid:#06x}:{'-' if pasid is None else pasid}": ContextStats(*c)
                        for (sid, pasid), c in sorted(self.contexts.items(),
                                                      key=lambda kv: (kv[0][0], kv[0][1] or -1))}
        return ReplayStats(
            backend=self.iommu.backend_name, cache=cache, events=self.events, dmas=self.dmas,
            translations=self.translations, faults=self.faults, refused=dict(self.refused),
            caches=self.cache_counters(), table_reads=read_stats(self.table_hist),
            config_reads=read_stats(self.config_hist),
            invalidations=dict(sorted(self.invalidations.items())), contexts=contexts)


def _merge(dicts: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def replay(source: Source, backend: str, *, cache: str | None = None,
           iotlb: Geometry | None = None, walk: Geometry | None = None,
           per_context: bool = False, progress: Callable[[int, int], None] | None = None,
           **config: Any) -> ReplayStats:
    """Replay the trace ``source`` on ``backend`` with the IOTLB of preset ``cache`` or the
    geometry ``iotlb`` (and walk caches of geometry ``walk``); ``config`` goes to the backend's
    factory (by default the trace header's configuration when the trace was recorded on the
    same backend). ``progress(events, bytes)`` hears how far the replay is, after each frame
    (bytes of the file read so far)."""
    is_path = isinstance(source, (str, os.PathLike))
    start = None if is_path else source.tell()  # type: ignore[union-attr]
    with TraceReader(source) as scan:
        header = scan.header
        need = header_needs(header.requires)
        if need is None:
            if not is_path and not source.seekable():  # type: ignore[union-attr]
                raise trace_error("trace.capability", None, "a trace without 'requires' in "
                                  "its header must be a file or seekable (it is read twice)")
            need = required_features(scan)
    if start is not None:
        source.seek(start)  # type: ignore[union-attr]
    if not config and header.backend == backend:
        config = dict(header.config)
    iommu = make_iommu(backend, cache=cache, iotlb=iotlb, walk=walk, **config)
    with TraceReader(source) as reader:
        check_capabilities(iommu, need, "this trace")
        replayer = Replayer(iommu, per_context=per_context)
        told = None if progress is None else (lambda n: progress(n, reader.position()))
        replayer.run(reader.frames(), told)
    return replayer.stats(cache_name(cache, iotlb, walk))

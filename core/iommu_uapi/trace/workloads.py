"""Deterministic workload generators: the DMA patterns IOTLB studies use, as traces.

Each generator returns a :class:`~.events.Header` (the workload's name and parameters in
``meta``) and an iterator of events, so a trace of any length is written in bounded memory.
Every workload starts with its topology (devices, one domain per device, attached) and runs
untimed unless it says otherwise; the same parameters give the same events.

* ``ring`` - a NIC receive ring of ``ring`` slots holding ``buffer``-byte buffers packed into
  pages; per packet the driver maps the buffer's page, the device makes one DMA, the driver
  unmaps. ``strict``: the unmap (and its invalidation) follows every DMA, so no DMA ever finds
  its page still cached. ``deferred``: unmaps are queued and executed (each with its
  invalidation) every ``batch`` unmaps or, with ``timer``, when ``timer`` ns of trace time have
  passed since the last flush; a page still waiting for its unmap is reused in place (as the
  IOTLB entry of an unflushed page is, in Linux's flush-queue window), so hits grow with the
  batch. ``none``: the ring is mapped once and never unmapped (rIOMMU-style reuse).
* ``stream`` - a buffer of ``pages`` pages mapped once and read front to back, ``per_page``
  DMAs per page (1 - 1/per_page of them hit a warm IOTLB).
* ``random`` - ``dmas`` DMAs uniformly over a working set of ``pages`` pages (``seed``).
* ``cyclic`` - ``dmas`` DMAs over ``pages`` pages in order, round and round: with an N-entry LRU
  IOTLB, no hit for N < pages, every DMA after the first lap for N >= pages.
* ``nested`` - a guest with ``pasids`` PASIDs, each bound (``sva_bind_gpasid``, x86 first-level
  tables in guest memory, VT-d bind format) over the host's stage 2, with ``dmas`` DMAs spread
  over ``pages`` pages per PASID: with 4 KiB stage-2 pages, a cold walk of 4 levels over 4 reads
  (4 + 1)(4 + 1) - 1 = 24 descriptors.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Iterator
from typing import Any

from ..memory import GuestMemory, PhysicalMemory
from ..pgtable.x86 import X86Config, X86PageTable
from ..uapi import GpasidBindData, GpasidBindDataVtd, GpasidBindVendor
from .events import (
    AttachDevice,
    Bind,
    DeviceAdd,
    Dma,
    DomainAlloc,
    Event,
    Map,
    PasidAlloc,
    SetNesting,
    Unmap,
    Write,
)
from .events import Header as Header

__all__ = ["WORKLOADS", "Workload", "workload"]

#: IOVA where each workload's buffers start, and the host physical base of its pages.
IOVA_BASE = 0x1000_0000
PHYS_BASE = 0x1_0000_0000
#: Where the nested guest's RAM lies in host physical memory (GPA 0), and its least size.
GUEST_RAM = 0x4000_0000
GUEST_RAM_SIZE = 0x20_0000
_RW = 3  # IOMMU_READ | IOMMU_WRITE
_WRITE = 2  # IOMMU_FAULT_PERM_WRITE
_READ = 1
_FIRST_SID = 0x0100
_GUEST_VA = 0x7F00_0000_0000

Workload = tuple[Header, Iterator[Event]]


def _topology(devices: int) -> Iterator[Event]:
    for d in range(devices):
        sid = _FIRST_SID + d * 8
        yield DeviceAdd(sid)
        yield DomainAlloc(d + 1)
        yield AttachDevice(d + 1, sid)


def _header(kind: str, **params: Any) -> Header:
    return Header(meta={"workload": kind, **params}, requires=[])


def ring(*, mode: str = "strict", ring: int = 256, buffer: int = 2048, page: int = 4096,
         packets: int = 10_000, devices: int = 1, batch: int = 32, timer: int | None = None,
         interval: int = 100, seed: int = 0) -> Workload:
    """A NIC receive ring (see the module docstring); ``interval`` ns between packets."""
    if mode not in ("strict", "deferred", "none"):
        raise ValueError(f"ring mode {mode!r} is not strict, deferred or none")
    if buffer <= 0 or page <= 0 or page & (page - 1) or ring <= 0 or batch <= 0:
        raise ValueError("ring, buffer and batch must be positive, page a power of two")
    header = _header("ring", mode=mode, ring=ring, buffer=buffer, page=page, packets=packets,
                     devices=devices, batch=batch, timer=timer, interval=interval, seed=seed)

    def events() -> Iterator[Event]:
        yield from _topology(devices)
        span = ring * buffer
        mapped: list[set[int]] = [set() for _ in range(devices)]
        queued: list[list[int]] = [[] for _ in range(devices)]
        last_flush = [0] * devices
        if mode == "none":
            for d in range(devices):
                for off in range(0, span + page - 1, page):
                    yield Map(d + 1, IOVA_BASE + off, PHYS_BASE + d * span + off, page, _RW)
        for k in range(packets):
            d = k % devices
            t = k * interval
            slot = (k // devices) % ring
            iova = IOVA_BASE + slot * buffer
            pg = iova & -page
            sid = _FIRST_SID + d * 8
            if mode == "none":
                yield Dma(sid, iova, None, min(buffer, page - (iova - pg)), _WRITE, t)
                continue
            if pg not in mapped[d]:
                yield Map(d + 1, pg, PHYS_BASE + d * span + (pg - IOVA_BASE), page, _RW, t)
                mapped[d].add(pg)
            yield Dma(sid, iova, None, min(buffer, page - (iova - pg)), _WRITE, t)
            if mode == "strict":
                yield Unmap(d + 1, pg, page, t)
                mapped[d].discard(pg)
                continue
            queued[d].append(pg)
            due = len(queued[d]) >= batch
            if timer is not None:
                due = due or t - last_flush[d] >= timer
            if due:
                for q in dict.fromkeys(queued[d]):
                    yield Unmap(d + 1, q, page, t)
                    mapped[d].discard(q)
                queued[d].clear()
                last_flush[d] = t

    return header, events()


def _map_range(domain: int, iova: int, paddr: int, size: int, page: int) -> Iterator[Event]:
    """``[iova, iova + size)`` mapped one ``page`` at a time (the façade's ``map`` takes one
    page or block per call)."""
    for off in range(0, size, page):
        yield Map(domain, iova + off, paddr + off, page, _RW)


def _mapped_buffer(pages: int, page: int, devices: int) -> Iterator[Event]:
    yield from _topology(devices)
    for d in range(devices):
        yield from _map_range(d + 1, IOVA_BASE, PHYS_BASE + d * pages * page, pages * page, page)


def stream(*, pages: int = 4096, per_page: int = 8, passes: int = 1, page: int = 4096,
           devices: int = 1, seed: int = 0) -> Workload:
    """Read a ``pages``-page buffer front to back ``passes`` times, ``per_page`` DMAs a page."""
    header = _header("stream", pages=pages, per_page=per_page, passes=passes, page=page,
                     devices=devices, seed=seed)
    step = page // per_page

    def events() -> Iterator[Event]:
        yield from _mapped_buffer(pages, page, devices)
        sids = [_FIRST_SID + d * 8 for d in range(devices)]
        for _ in range(passes):
            for p in range(pages):
                base = IOVA_BASE + p * page
                for j in range(per_page):
                    for sid in sids:
                        yield Dma(sid, base + j * step, None, step, _READ)

    return header, events()


def random(*, pages: int = 1024, dmas: int = 100_000, page: int = 4096, devices: int = 1,
           seed: int = 0) -> Workload:
    """``dmas`` DMAs uniformly over ``pages`` pages (``seed`` fixes the sequence)."""
    header = _header("random", pages=pages, dmas=dmas, page=page, devices=devices, seed=seed)

    def events() -> Iterator[Event]:
        yield from _mapped_buffer(pages, page, devices)
        rng = _random.Random(seed)
        for k in range(dmas):
            sid = _FIRST_SID + (k % devices) * 8
            yield Dma(sid, IOVA_BASE + rng.randrange(pages) * page, None, 64, _READ)

    return header, events()


def cyclic(*, pages: int = 64, dmas: int = 10_000, page: int = 4096, devices: int = 1,
           seed: int = 0) -> Workload:
    """``dmas`` DMAs over ``pages`` pages in order, round and round."""
    header = _header("cyclic", pages=pages, dmas=dmas, page=page, devices=devices, seed=seed)

    def events() -> Iterator[Event]:
        yield from _mapped_buffer(pages, page, devices)
        for k in range(dmas):
            sid = _FIRST_SID + (k % devices) * 8
            yield Dma(sid, IOVA_BASE + ((k // devices) % pages) * page, None, 64, _READ)

    return header, events()


def nested(*, pasids: int = 4, pages: int = 16, dmas: int = 10_000, page: int = 4096,
           s2_page: int = 4096, devices: int = 1, seed: int = 0) -> Workload:
    """A guest with ``pasids`` bound PASIDs per device over the host's stage 2, mapped in
    ``s2_page`` pages (4 KiB: four stage-2 levels; 2 MiB: three), see the module docstring;
    DMAs pick a PASID and a page at random (``seed``)."""
    header = Header(meta={"workload": "nested", "pasids": pasids, "pages": pages,
                          "dmas": dmas, "page": page, "s2_page": s2_page, "devices": devices,
                          "seed": seed},
                    requires=["BIND_PGTBL"])

    # guest RAM for the data pages and their tables, in whole 2 MiB blocks
    ram = max(GUEST_RAM_SIZE, -(-(pages * page + 0x10_0000) // 0x20_0000) * 0x20_0000)

    def events() -> Iterator[Event]:
        scratch = PhysicalMemory()
        guest = GuestMemory(scratch)
        guest.add_ram(0, ram, GUEST_RAM)
        gpt = X86PageTable(X86Config(levels=4, haw=48), guest)
        for p in range(pages):
            gpt.map(_GUEST_VA + p * page, guest.alloc(), page, _RW)
        for d in range(devices):
            sid = _FIRST_SID + d * 8
            yield DeviceAdd(sid)
            yield DomainAlloc(d + 1)
            yield SetNesting(d + 1)
            yield AttachDevice(d + 1, sid)
            yield from _map_range(d + 1, 0, GUEST_RAM, ram, s2_page)
        for pfn in sorted(scratch.backed_page_numbers()):
            addr = pfn * 0x1000
            yield Write(addr, scratch.read(addr, 0x1000))
        bound: list[tuple[int, int]] = []
        for d in range(devices):
            sid = _FIRST_SID + d * 8
            for i in range(pasids):
                hpasid = 1 + d * pasids + i
                yield PasidAlloc("guest", hpasid)
                data = GpasidBindData(argsz=72, version=1, format=1, addr_width=48,
                                      gpgd=gpt.root, hpasid=hpasid,
                                      vendor=GpasidBindVendor(vtd=GpasidBindDataVtd()))
                yield Bind(d + 1, sid, data.to_bytes())
                bound.append((sid, hpasid))
        rng = _random.Random(seed)
        for _ in range(dmas):
            sid, hpasid = bound[rng.randrange(len(bound))]
            yield Dma(sid, _GUEST_VA + rng.randrange(pages) * page, hpasid, 64, _READ)

    return header, events()


#: Every workload generator by its command-line name.
WORKLOADS: dict[str, Callable[..., Workload]] = {
    "ring": ring, "stream": stream, "random": random, "cyclic": cyclic, "nested": nested,
}


def workload(kind: str, **params: Any) -> Workload:
    """The workload ``kind`` with ``params`` (``ValueError`` for an unknown kind)."""
    try:
        make = WORKLOADS[kind]
    except KeyError:
        raise ValueError(f"no workload {kind!r}; known: {', '.join(WORKLOADS)}") from None
    return make(**params)

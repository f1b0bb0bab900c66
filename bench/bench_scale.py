"""Cache scaling benchmarks: what one operation costs as the caches fill up. Every row should
cost what the operation touches, never the size of the cache: the ratio largest/smallest
population is printed next to the target (<= 1.5).

* guest page-selective invalidation of one page (``uapi_cache_invalidate`` on VT-d, no leaf hint)
  with N IOTLB entries, then N first-level paging-structure entries, cached under its PASID;
* host page-selective flush of one page (the descriptors ``iommu_unmap`` sends) with N
  second-level IOTLB entries of the domain cached;
* fill (with eviction) and miss of a finite ``TLB(capacity=C)``;
* unmapping a translated buffer page by page, per-page cost at 1k, 4k and 16k pages.

Each table gives min / median / max per population (microseconds per operation).
Run: python bench/bench_scale.py
"""

from __future__ import annotations

import statistics
import timeit
from collections.abc import Callable

from bench_vtd import GUEST_RAM, GVA, RW, nested_host

from iommu_uapi import PhysicalMemory
from iommu_uapi.iommu import IOMMU
from iommu_uapi.tlb import TLB, TLBEntry
from iommu_uapi.uapi import CacheInvalidateInfo, InvAddrInfo, InvGranu
from iommu_uapi.uapi.consts import CacheType, InvAddrFlags, InvGranularity

POPULATIONS = (100, 10_000, 100_000)
REPEAT = 9
Table = list[tuple[int, list[float]]]


def times_us(stmt: str, env: dict[str, object], number: int,
             baseline: str | None = None) -> list[float]:
    """Per-operation times of ``stmt`` over ``REPEAT`` runs, less ``baseline``'s best."""
    base = 0.0
    if baseline is not None:
        base = min(timeit.repeat(baseline, globals=env, number=number, repeat=REPEAT))
    return [(t - base) / number * 1e6
            for t in timeit.repeat(stmt, globals=env, number=number, repeat=REPEAT)]


def show(title: str, unit: str, rows: Table) -> None:
    print(f"\n{title}")
    print(f"  {unit:>10}  {'min':>9}  {'median':>9}  {'max':>9}   (us per operation)")
    for n, runs in rows:
        print(f"  {n:>10}  {min(runs):9.2f}  {statistics.median(runs):9.2f}  {max(runs):9.2f}")
    lo, hi = rows[0][1], rows[-1][1]
    print(f"  ratio largest/smallest: median {statistics.median(hi) / statistics.median(lo):.2f}"
          f", min {min(hi) / min(lo):.2f} (target <= 1.5)")


def guest_psi(populate: str) -> Table:
    """A guest's page-selective invalidation of one page with N entries under its PASID."""
    rows: Table = []
    for n in POPULATIONS:
        iommu, dev, domain, pasid = nested_host()
        did = domain.data.did
        tag = ("fl", did, pasid)
        caches = iommu.backend.caches  # type: ignore[attr-defined]
        far = 0x10_0000_0000         # the population sits away from the invalidated page
        for i in range(n):
            if populate == "iotlb":
                iova = far + (i << 12)
                iommu.iotlb.fill(tag, iova, TLBEntry(iova, 0x1000, GUEST_RAM, 3))
            else:
                caches.fl_psc.fill((did, pasid), 2, far + (i << 21), GUEST_RAM | 6)
        entry = TLBEntry(GVA, 0x1000, GUEST_RAM, 3)
        ubuf = CacheInvalidateInfo(
            argsz=CacheInvalidateInfo.SIZE, version=1, cache=CacheType.IOTLB,
            granularity=InvGranularity.ADDR,
            granu=InvGranu(addr_info=InvAddrInfo(flags=InvAddrFlags.PASID, pasid=pasid,
                                                 addr=GVA, granule_size=0x1000,
                                                 nb_granules=1))).to_bytes()
        env: dict[str, object] = {"fill": iommu.iotlb.fill, "tag": tag, "GVA": GVA,
                                  "entry": entry, "inv": iommu.uapi_cache_invalidate,
                                  "domain": domain, "dev": dev, "ubuf": ubuf,
                                  "log": iommu.backend.queue.log}  # type: ignore[attr-defined]
        rows.append((n, times_us("fill(tag, GVA, entry); inv(domain, dev, ubuf); log.clear()",
                                 env, 2000, "fill(tag, GVA, entry); log.clear()")))
        assert (tag, GVA >> 12) not in iommu.iotlb.entries
    return rows


def host_flush() -> Table:
    """The host's page-selective flush of one unmapped page (IOTLB PSI, G=3) with N
    second-level entries of the domain cached."""
    rows: Table = []
    for n in POPULATIONS:
        mem = PhysicalMemory()
        iommu = IOMMU("vtd", memory=mem)
        dev = iommu.add_device(0x0300)
        domain = iommu.domain_alloc()
        iommu.attach_device(domain, dev)
        iommu.map(domain, 0x1000, 0x9000_0000, 0x1000, RW)
        iommu.translate(dev, 0x1000)
        (tag,) = iommu.iotlb.tags()
        for i in range(n):
            iova = 0x1_0000_0000 + (i << 12)
            iommu.iotlb.fill(tag, iova, TLBEntry(iova, 0x1000, 0x9000_0000, 3))
        backend = iommu.backend
        descs = domain.data.flush_range(backend.cfg, 0x1000, 0x1000, [])  # type: ignore[attr-defined]
        entry = iommu.iotlb.entries[(tag, 1)]
        env: dict[str, object] = {"fill": iommu.iotlb.fill, "tag": tag, "entry": entry,
                                  "run": backend.run, "descs": descs,  # type: ignore[attr-defined]
                                  "log": backend.queue.log}  # type: ignore[attr-defined]
        rows.append((n, times_us("fill(tag, 0x1000, entry); run(descs); log.clear()", env, 2000,
                                 "fill(tag, 0x1000, entry); log.clear()")))
        assert (tag, 1) not in iommu.iotlb.entries and len(iommu.iotlb) == n
    return rows


def finite(op: str) -> Table:
    """Fill (every one evicting) or miss of a finite TLB of capacity C."""
    rows: Table = []
    for c in POPULATIONS:
        tlb = TLB(c)
        for i in range(c):
            tlb.fill((1,), i << 12, TLBEntry(i << 12, 0x1000, 0, 3))
        counter = iter(range(c, 1 << 62))
        env: dict[str, object] = {"fill": tlb.fill, "lookup": tlb.lookup, "E": TLBEntry,
                                  "nxt": counter.__next__}
        if op == "fill":
            rows.append((c, times_us("v = nxt() << 12; fill((1,), v, E(v, 4096, v, 3))", env,
                                     20_000, "v = nxt() << 12; E(v, 4096, v, 3)")))
        else:
            rows.append((c, times_us("lookup((2,), 0x5000)", env, 20_000)))
        assert len(tlb) == c
    return rows


def unmap_translated() -> Table:
    """Per-page cost of unmapping, page by page, an N-page buffer whose pages were all
    translated (each unmap flushes its page)."""
    rows: Table = []
    for n in (1024, 4096, 16384):
        runs = []
        for _ in range(3):
            mem = PhysicalMemory()
            iommu = IOMMU("vtd", memory=mem)
            dev = iommu.add_device(0x0300)
            domain = iommu.domain_alloc()
            iommu.attach_device(domain, dev)
            base = 0x1_0000_0000
            for i in range(n):
                iommu.map(domain, base + (i << 12), 0x8000_0000 + (i << 12), 0x1000, RW)
                iommu.translate(dev, base + (i << 12))
            unmap: Callable[[object, int, int], int] = iommu.unmap  # type: ignore[assignment]
            t = timeit.default_timer()
            for i in range(n):
                unmap(domain, base + (i << 12), 0x1000)
            runs.append((timeit.default_timer() - t) / n * 1e6)
            assert len(iommu.iotlb) == 0
        rows.append((n, runs))
    return rows


def main() -> None:
    show("guest page-selective invalidation of one page, N IOTLB entries under the PASID",
         "entries", guest_psi("iotlb"))
    show("guest page-selective invalidation of one page (no leaf hint), N paging-structure "
         "entries under the PASID", "entries", guest_psi("psc"))
    show("host page-selective flush of one page, N second-level entries of the domain",
         "entries", host_flush())
    show("fill of a full TLB (one eviction each), capacity C", "C", finite("fill"))
    show("miss of a TLB of capacity C", "C", finite("miss"))
    show("unmap of a translated buffer, per page, N pages", "pages", unmap_translated())


if __name__ == "__main__":
    main()

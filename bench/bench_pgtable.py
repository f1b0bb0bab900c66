"""Page-table benchmarks (a script, not a test): walk and map costs, table-memory footprint.

Run: ``python bench/bench_pgtable.py``. Prints medians and the targets they are held to:

- a cold 4-level first-level walk (no translation cache in the walker): <= 1.0 us;
- a cold nested 4-over-4 walk (x86 over VT-d second level, 24 descriptor reads): <= 6 us;
- mapping 1 GiB as 262,144 4 KiB pages: <= 1.5 s, table memory <= 2.5 MiB;
- PhysicalMemory's bookkeeping per backed 4 KiB page.
"""

from __future__ import annotations

import statistics
import sys
import time
import timeit
import tracemalloc

from iommu_uapi.memory import GuestMemory, PhysicalMemory
from iommu_uapi.pgtable import lpae, vtd_sl, x86
from iommu_uapi.pgtable.common import Access, Prot

RW = Prot.READ | Prot.WRITE
GIB = 1 << 30


def median_ns(stmt: str, names: dict[str, object], *, per_run: int, number: int,
              repeat: int = 15) -> float:
    """Median over ``repeat`` runs of ``number`` executions of ``stmt``, in ns per operation
    (``per_run`` operations per execution); timeit's loop adds almost nothing."""
    timer = timeit.Timer(stmt, globals=names)
    return statistics.median(timer.repeat(repeat, number)) / (number * per_run) * 1e9


def verdict(value: float, target: float) -> str:
    return "ok" if value <= target else "MISSED"


def bench_walk() -> None:
    mem = PhysicalMemory()
    pt = x86.X86PageTable(x86.X86Config(), mem)
    iovas = [0x7F00_0000_0000 + i * 0x20_1000 for i in range(64)]
    for i, iova in enumerate(iovas):
        pt.map(iova, 0x1_0000_0000 + i * 4096, 4096, RW)
    names = {"walk": pt.walker.walk, "root": pt.root, "iovas": iovas, "R": Access.READ}
    ns = median_ns("for v in iovas: walk(root, v, R)", names, per_run=len(iovas), number=300)
    print(f"cold 4-level x86 walk:          {ns / 1000:6.3f} us  (target <= 1.0 us: "
          f"{verdict(ns, 1000)})")

    sl = vtd_sl.SLPageTable(vtd_sl.SLConfig(), mem)
    sl.map(0x1000, 0x7_0000_0000, 4096, RW)
    names = {"walk": sl.walker.walk, "root": sl.root, "R": Access.READ}
    ns = median_ns("walk(root, 0x1234, R)", names, per_run=1, number=20_000)
    print(f"cold 4-level second-level walk: {ns / 1000:6.3f} us")

    s1 = lpae.LPAEPageTable(lpae.LPAEConfig(), mem)
    s1.map(0x7F00_0000_0000, 0x7_0000_0000, 4096, RW)
    names = {"walk": s1.walker.walk, "root": s1.root, "R": Access.READ}
    ns = median_ns("walk(root, 0x7F00_0000_0123, R)", names, per_run=1, number=20_000)
    print(f"cold 4-level LPAE walk:         {ns / 1000:6.3f} us")


def bench_nested() -> None:
    host = PhysicalMemory()
    guest = GuestMemory(host)
    ram = 1 << 20
    hpa = guest.add_ram(0x10_0000, ram)
    s2 = vtd_sl.SLPageTable(vtd_sl.SLConfig(sllps=0), host)
    for off in range(0, ram, 4096):
        s2.map(0x10_0000 + off, hpa + off, 4096, RW)
    s2.map(0x4000_0000, 0x7_0000_0000, 4096, RW)
    s1 = x86.X86PageTable(x86.X86Config(), guest)
    s1.map(0x7F12_3456_7000, 0x4000_0000, 4096, RW)
    walker = x86.X86Walker(host, s1.cfg)
    walk, root, translate = walker.walk, s1.root, s2.stage2()
    r = walk(root, 0x7F12_3456_7000, Access.READ, translate)
    assert r.reads + r.s2_reads == 24
    names = {"walk": walk, "root": root, "s2": translate, "R": Access.READ}
    ns = median_ns("walk(root, 0x7F12_3456_7000, R, s2)", names, per_run=1, number=5_000)
    print(f"cold nested 4-over-4 walk:      {ns / 1000:6.3f} us  (24 reads; target <= 6 us: "
          f"{verdict(ns, 6000)})")


def bench_map_1g() -> None:
    times = []
    for _ in range(3):
        mem = PhysicalMemory()
        pt = x86.X86PageTable(x86.X86Config(), mem)
        mapper = pt.map
        start = time.perf_counter()
        for i in range(GIB // 4096):
            mapper(i << 12, 0x1_0000_0000 + (i << 12), 4096, RW)
        times.append(time.perf_counter() - start)
    table_bytes = mem.backed_pages * 4096
    print(f"map 1 GiB as 262,144 4 KiB pages: {statistics.median(times):5.3f} s median "
          f"(target <= 1.5 s: {verdict(statistics.median(times), 1.5)}); table memory "
          f"{table_bytes / 2**20:.2f} MiB in {pt.table_count()} tables (target <= 2.5 MiB: "
          f"{verdict(table_bytes, 2.5 * 2**20)})")

    mem = PhysicalMemory()
    tracemalloc.start()
    pt = x86.X86PageTable(x86.X86Config(), mem)
    base = tracemalloc.take_snapshot()
    for i in range(GIB // 4096):
        pt.map(i << 12, 0x1_0000_0000 + (i << 12), 4096, RW)
    snap = tracemalloc.take_snapshot()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    keep = [tracemalloc.Filter(True, "*pgtable/builder.py")]
    books = sum(s.size_diff for s in snap.filter_traces(keep).compare_to(
        base.filter_traces(keep), "filename"))
    print(f"  builder bookkeeping (entry counts per table): {books / 1024:.1f} KiB; "
          f"tracemalloc peak of the whole run (tables included): {peak / 2**20:.2f} MiB")
    start = time.perf_counter()
    for i in range(GIB // 4096):
        pt.unmap(i << 12, 4096)
    print(f"  unmap the same 262,144 pages: {time.perf_counter() - start:5.3f} s; left "
          f"{mem.allocated_bytes} bytes (the root)")


def bench_memory_overhead() -> None:
    page = bytearray(4096)
    quads = memoryview(page).cast("Q")
    n = 4096
    pages = {i: bytearray(1) for i in range(n)}  # dict slots only: values measured above
    slot = (sys.getsizeof(pages) / n) + sys.getsizeof(1 << 20)  # slot + an int key
    per_page = sys.getsizeof(page) + sys.getsizeof(quads) + 2 * slot
    print(f"PhysicalMemory per backed page: bytearray {sys.getsizeof(page)} B + memoryview "
          f"{sys.getsizeof(quads)} B + 2 dict slots ~{2 * slot:.0f} B = ~{per_page:.0f} B "
          f"({(per_page - 4096) / 4096 * 100:.1f}% over the 4 KiB of data)")


def main() -> None:
    bench_walk()
    bench_nested()
    bench_map_1g()
    bench_memory_overhead()


if __name__ == "__main__":
    main()

"""Data-path benchmarks of the core: IOTLB-hit translate (target <= 0.3 us) and a miss that walks
4-level second-level tables, through the test backend, and what building an ``IOMMU`` costs.
Run: python bench/bench_translate.py (medians of the repeats, with their interquartile range)."""

from __future__ import annotations

import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from minibackend import MiniBackend

from iommu_uapi import PhysicalMemory
from iommu_uapi.iommu import IOMMU
from iommu_uapi.pgtable.common import Prot


def per_call_ns(stmt: str, env: dict[str, object], number: int = 200_000,
                repeat: int = 11) -> tuple[float, float, float]:
    """Median, first and third quartile of the per-call time over the repeats, in ns."""
    runs = [t / number * 1e9 for t in timeit.repeat(stmt, globals=env, number=number,
                                                    repeat=repeat)]
    q1, median, q3 = statistics.quantiles(runs, n=4)
    return median, q1, q3


def show(what: str, spread: tuple[float, float, float], note: str = "", unit: str = "ns"
         ) -> None:
    scale = {"ns": 1.0, "us": 1e-3}[unit]
    median, q1, q3 = (v * scale for v in spread)
    print(f"{what:<34} {median:9.0f} {unit}  (IQR {q1:.0f}-{q3:.0f}){note}")


def main() -> None:
    mem = PhysicalMemory()
    iommu = IOMMU(MiniBackend(mem), memory=mem)
    dev = iommu.add_device(0x0100)
    dom = iommu.domain_alloc()
    iommu.attach_device(dom, dev)
    iommu.map(dom, 0x1000, 0x9000_0000, 0x1000, Prot.READ | Prot.WRITE)
    iommu.translate(dev, 0x1000)
    hit = per_call_ns("translate(dev, 0x1234)", {"translate": iommu.translate, "dev": dev})
    miss = per_call_ns("flush(); translate(dev, 0x1234)",
                       {"translate": iommu.translate, "dev": dev, "flush": iommu.iotlb.flush},
                       number=50_000)
    flush = per_call_ns("flush()", {"flush": iommu.iotlb.flush})[0]
    build = per_call_ns("IOMMU(MiniBackend(PhysicalMemory()))",
                        {"IOMMU": IOMMU, "MiniBackend": MiniBackend,
                         "PhysicalMemory": PhysicalMemory}, number=300)
    show("IOTLB-hit translate", hit, " target <= 300 ns")
    show("IOTLB-miss translate (4-level)", (miss[0] - flush, miss[1] - flush, miss[2] - flush),
         " (the flush subtracted)")
    show("building an IOMMU (test backend)", build, unit="us")


if __name__ == "__main__":
    main()

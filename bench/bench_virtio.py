"""virtio-iommu backend benchmarks: a MAP + UNMAP request pair from bytes to the domain's
mappings and back (target <= 5x a translate miss of the same backend, in the same run) and a
translate hit (target within 1.3x of VT-d's, requests without PASID on both); for reference, a
nested translation through a shared table (cold miss and hit) beside the SMMUv3 backend's with
the same guest. Run: python bench/bench_virtio.py"""

from __future__ import annotations

import statistics
import timeit

from iommu_uapi.device import Device
from iommu_uapi.iommu import IOMMU
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.testing.harness import GUEST_VA, Harness
from iommu_uapi_virtio_iommu.layouts import encode_map, encode_unmap

IOVA, PADDR, RAM = 0x4000_0000, 0x8_0000_0000, 0x20_0000
RW = Prot.READ | Prot.WRITE


def median_us(stmt: str, env: dict[str, object], number: int) -> float:
    runs = timeit.repeat(stmt, globals=env, number=number, repeat=9)
    return statistics.median(runs) / number * 1e6


def host(backend: str) -> tuple[IOMMU, Device]:
    """A domain with 2 MiB mapped 4 KiB by 4 KiB and one device attached."""
    iommu = IOMMU(backend)
    dev = iommu.add_device(0x0300)
    domain = iommu.domain_alloc()
    iommu.attach_device(domain, dev)
    for off in range(0, RAM, 0x1000):
        iommu.map(domain, IOVA + off, PADDR + off, 0x1000, RW)
    return iommu, dev


def main() -> None:
    iommu, dev = host("virtio-iommu")
    device = iommu.backend.device  # type: ignore[attr-defined]
    vid = iommu.domains[1].data.id
    target = IOVA + RAM + 0x1000
    map_req = encode_map(vid, target, target + 0xFFF, PADDR, 3)
    unmap_req = encode_unmap(vid, target, target + 0xFFF)
    env: dict[str, object] = {"handle": device.handle, "map_req": map_req,
                              "unmap_req": unmap_req, "translate": iommu.translate,
                              "dev": dev, "flush": iommu.iotlb.flush, "IOVA": IOVA + 0x5000}
    assert device.handle(map_req, 4).status == 0 and device.handle(unmap_req, 4).status == 0
    pair = median_us("handle(map_req, 4); handle(unmap_req, 4)", env, 5000)
    miss = median_us("flush(); translate(dev, IOVA, access=1)", env, 5000)
    flush = median_us("flush()", env, 20000)
    iommu.translate(dev, IOVA + 0x5000, access=1)
    hit = median_us("translate(dev, IOVA, access=1)", env, 100_000)

    vtd, vdev = host("vtd")
    vtd.translate(vdev, IOVA + 0x5000, access=1)
    vtd_hit = median_us("translate(dev, IOVA, access=1)",
                        {"translate": vtd.translate, "dev": vdev, "IOVA": IOVA + 0x5000},
                        100_000)
    miss_only = miss - flush
    print(f"MAP + UNMAP request pair, bytes to mappings and back: {pair:6.2f} us "
          f"({pair / miss_only:4.2f}x a translate miss; target <= 5x)")
    print(f"translate miss (no PASID):                            {miss_only:6.2f} us")
    print(f"translate hit (no PASID):                             {hit:6.2f} us "
          f"({hit / vtd_hit:4.2f}x VT-d's {vtd_hit:.2f} us; target <= 1.3x)")


def nested(backend: str) -> tuple[float, float]:
    """(IOTLB miss, hit) of a guest PASID entered in the backend's guest table (strict). The
    miss keeps the walk caches warm; the hit of an ATS device is its device TLB's (the full
    path, not the façade's IOTLB fast path)."""
    h = Harness(backend, profile="strict")
    pasid = h.vm.alloc()
    h.gmap(GUEST_VA)
    h.enter(pasid)
    atc = h.dev.atc  # an ATS device answers from its device TLB: flushed too for a miss
    env: dict[str, object] = {"translate": h.iommu.translate, "dev": h.dev, "VA": GUEST_VA,
                              "pasid": pasid, "iotlb": h.iommu.iotlb.flush,
                              "atc": atc.flush if atc is not None else lambda: 0}
    h.iommu.translate(h.dev, GUEST_VA, pasid=pasid, access=1)
    miss = median_us("iotlb(); atc(); translate(dev, VA, pasid=pasid, access=1)", env, 2000)
    flush = median_us("iotlb(); atc()", env, 20000)
    hit = median_us("translate(dev, VA, pasid=pasid, access=1)", env, 100_000)
    return miss - flush, hit


def main_nested() -> None:
    for backend in ("virtio-iommu", "smmuv3"):
        miss, hit = nested(backend)
        print(f"nested (guest PASID) on {backend:12}: IOTLB miss {miss:6.2f} us, hit {hit:5.2f} us")


if __name__ == "__main__":
    main()
    main_nested()

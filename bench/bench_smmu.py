"""SMMUv3 backend benchmarks beside the VT-d figures of the same run: an IOTLB hit of a nested
PASID, a cold nested miss (24 descriptor reads on 4 KiB tables, 4 levels each stage) and a
guest's page-selective ``uapi_cache_invalidate`` from user bytes to the caches (the same record
on both: ADDR granularity, the PASID flag, one 4 KiB granule; the SMMU on its ``strict``
profile, where the PASID flag is executed). Target: each SMMU figure within 1.3x of VT-d's.
Run: python bench/bench_smmu.py"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench_vtd import median_us
from bench_vtd import nested_host as vtd_host

from iommu_uapi import PhysicalMemory
from iommu_uapi.device import Device, Domain
from iommu_uapi.iommu import IOMMU
from iommu_uapi.memory import GuestMemory
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.uapi import CacheInvalidateInfo, InvAddrInfo, InvGranu
from iommu_uapi.uapi.consts import CacheType, InvAddrFlags, InvGranularity
from iommu_uapi_smmu.guest import SmmuGuestFormat

GUEST_RAM, RAM_SIZE, GVA = 0x4000_0000, 0x20_0000, 0x7000_0000
RW = Prot.READ | Prot.WRITE


def smmu_host() -> tuple[IOMMU, Device, Domain, int]:
    """A strict SMMU with a nesting domain (guest RAM mapped at 4 KiB), the guest's CD table
    attached and one PASID whose LPAE stage-1 tables map GVA."""
    mem = PhysicalMemory()
    iommu = IOMMU("smmuv3", memory=mem, profile="strict")
    dev = iommu.add_device(0x0300)
    domain = iommu.domain_alloc(nesting=True)
    iommu.attach_device(domain, dev)
    for off in range(0, RAM_SIZE, 0x1000):
        iommu.map(domain, off, GUEST_RAM + off, 0x1000, RW)
    guest = GuestMemory(mem)
    guest.add_ram(0, RAM_SIZE, GUEST_RAM)
    fmt = SmmuGuestFormat()
    gpt = fmt.tables(guest)
    gpt.map(GVA, guest.alloc(), 0x1000, RW)
    table = fmt.pasid_table(guest)
    iommu.uapi_attach_pasid_table(domain, table.to_bytes())
    pasid = iommu.pasid_set("vm", 4).alloc()
    fmt.write_entry(guest, table, pasid, gpt.root)
    return iommu, dev, domain, pasid


def _inv_bytes(pasid: int) -> bytes:
    return CacheInvalidateInfo(
        argsz=CacheInvalidateInfo.SIZE, version=1, cache=CacheType.IOTLB,
        granularity=InvGranularity.ADDR,
        granu=InvGranu(addr_info=InvAddrInfo(flags=InvAddrFlags.PASID, pasid=pasid, addr=GVA,
                                             granule_size=0x1000, nb_granules=1))).to_bytes()


def measure(iommu: IOMMU, dev: Device, domain: Domain, pasid: int,
            walk_flush: Callable[[], object]) -> dict[str, float]:
    """hit, cold miss and page-selective invalidation of one host (microseconds)."""
    cold = iommu.translate(dev, GVA, pasid=pasid)
    assert cold.table_reads == 24, cold
    env: dict[str, object] = {"iommu": iommu, "dev": dev, "domain": domain,
                              "ubuf": _inv_bytes(pasid), "pasid": pasid, "GVA": GVA,
                              "flush": iommu.iotlb.flush, "translate": iommu.translate}
    ctx = iommu.context_of(dev.sid, pasid)
    assert ctx is not None
    tag = ctx.tag
    entry = iommu.iotlb.entries[(tag, GVA >> 12)]
    env.update(fill=iommu.iotlb.fill, tag=tag, entry=entry)
    env["walk_flush"] = walk_flush
    inv = median_us("fill(tag, GVA, entry); iommu.uapi_cache_invalidate(domain, dev, ubuf)",
                    env, 5000)
    assert (tag, GVA >> 12) not in iommu.iotlb.entries      # the invalidation reached it
    refill = median_us("fill(tag, GVA, entry)", env, 5000)
    miss = median_us("flush(); walk_flush(); translate(dev, GVA, pasid=pasid)", env, 2000)
    flush = median_us("flush(); walk_flush()", env, 20000)
    iommu.iotlb.flush()
    walk_flush()
    assert iommu.translate(dev, GVA, pasid=pasid).table_reads == 24
    assert iommu.translate(dev, GVA, pasid=pasid).table_reads == 0
    hit = median_us("translate(dev, GVA, pasid=pasid, access=1)", env, 100_000)
    return {"hit": hit, "miss": miss - flush, "inv": inv - refill}


def main() -> None:
    vtd = vtd_host()
    backend: Any = vtd[0].backend
    backend.queue.log = _NoLog()
    v = measure(*vtd, backend.caches.fl_psc.invalidate)
    host = smmu_host()
    s = measure(*host, host[0].backend.smmu.walks.flush)
    for key, what in (("hit", "IOTLB hit (nested PASID)"),
                      ("miss", "cold nested miss (24 descriptor reads)"),
                      ("inv", "uapi_cache_invalidate page-selective, bytes to caches")):
        ratio = s[key] / v[key]
        print(f"{what:55s} smmuv3 {s[key]:6.2f} us   vtd {v[key]:6.2f} us   "
              f"ratio {ratio:4.2f} (target <= 1.3)")


class _NoLog(list):  # type: ignore[type-arg]
    """A descriptor log that keeps nothing (the VT-d queue's log would grow per round)."""

    def append(self, item: object) -> None:
        """Drop the record."""


if __name__ == "__main__":
    main()

"""iommufd benchmarks: ``IOMMU_HWPT_INVALIDATE`` on VT-d from bytes to caches, one entry and a
64-entry array, each against the 2020 ``uapi_cache_invalidate`` of the same page in the same
run (target: the 64-entry call <= 0.5x the 2020 call, per entry); and on SMMUv3 the same
through the vIOMMU (64 raw TLBI_NH_VA commands) against the 2020 call of the same page. Run:
python bench/bench_iommufd.py"""

from __future__ import annotations

import statistics
import timeit

from iommu_uapi.features import CacheCell
from iommu_uapi.iommufd import Cmd, IommuHwptInvalidate
from iommu_uapi.testing.harness import Harness
from iommu_uapi.testing.iommufd_rig import IommufdRig
from iommu_uapi.uapi.consts import CacheType, InvGranularity

VA = 0x7000_0000_0000
PASID = 5
TARGET = 0.5
ADDR = CacheCell(CacheType.IOTLB, InvGranularity.ADDR)


def old_generation(backend: str = "vtd", profile: str = "linux-5.10") -> dict[str, object]:
    """A guest context entered on dev2 (a bound PASID, or a CD in the attached table) and the
    ADDR invalidation of one page of it, as bytes."""
    h = Harness(backend, profile=profile)
    h.gmap(VA)
    pasid = h.vm.alloc()
    h.enter(pasid, h.dev2)
    h.translate(VA, pasid, dev=h.dev2)
    info = Harness.inv_info(ADDR, pasid, VA).to_bytes()
    return {"inv": h.iommu.uapi_cache_invalidate, "domain": h.domain, "dev": h.dev2,
            "ubuf": info}


def new_generation(entries: int, backend: str = "vtd", profile: str = "linux-5.10"
                   ) -> dict[str, object]:
    """A guest context entered on dev2 (VT-d: a nested HWPT at a PASID; SMMUv3: a CD, the
    vIOMMU the object) and an array of ``entries`` one-page entries in user memory (VT-d
    ``iommu_hwpt_vtd_s1_invalidate``, SMMUv3 TLBI_NH_VA of the CD's ASID), with the command
    struct that names it."""
    r = IommufdRig(backend, profile=profile)
    r.gmap(VA)
    obj = r.enter(PASID, r.dev2)
    r.translate(VA, PASID, dev=r.dev2)
    base = 0x6000_0000_0000
    r.fd.user.mmap(base, 0x10000)
    (entry,) = r.entries.page(r.tag(PASID), VA, 1)
    r.fd.user.write(base, entry.to_bytes() * entries)
    cmd = IommuHwptInvalidate(size=32, hwpt_id=obj, data_uptr=base, entry_len=entry.SIZE,
                              entry_num=entries, data_type=r.entries.data_type)
    return {"ioctl": r.fd.ioctl, "code": int(Cmd.HWPT_INVALIDATE),
            "buf": bytearray(cmd.to_bytes())}


def _interleaved(old_env: dict[str, object], new_env: dict[str, object], number: int,
                 per: int, rounds: int = 9) -> tuple[float, float, float]:
    """Median us per 2020 call, per iommufd call, and the median of the per-round ratios
    (iommufd per entry / 2020 per call): the two are timed side by side, round after round, so
    a load change on the machine moves both."""
    olds, news, ratios = [], [], []
    for _ in range(rounds):
        o = timeit.timeit("inv(domain, dev, ubuf)", globals=old_env, number=number) / number
        n = timeit.timeit("ioctl(code, buf)", globals=new_env, number=max(1, number // per))
        n /= max(1, number // per)
        olds.append(o * 1e6)
        news.append(n * 1e6)
        ratios.append(n / per / o)
    return statistics.median(olds), statistics.median(news), statistics.median(ratios)


def main() -> None:
    old_env = old_generation()
    old, single, r1 = _interleaved(old_env, new_generation(1), 2000, 1)
    _, batch, r64 = _interleaved(old_env, new_generation(64), 2000, 64)
    print(f"2020 uapi_cache_invalidate (1 page):        {old:7.2f} us per call")
    print(f"iommufd HWPT_INVALIDATE, 1 entry:           {single:7.2f} us per call ({r1:.2f}x)")
    print(f"iommufd HWPT_INVALIDATE, 64 entries:        {batch:7.2f} us per call, "
          f"{batch / 64:.2f} us per entry ({r64:.2f}x, target <= {TARGET}x)")
    smmu_old = old_generation("smmuv3", "strict")
    sold, ssingle, s1 = _interleaved(smmu_old, new_generation(1, "smmuv3", "strict"), 2000, 1)
    _, sbatch, s64 = _interleaved(smmu_old, new_generation(64, "smmuv3", "strict"), 2000, 64)
    print(f"SMMUv3 2020 uapi_cache_invalidate (1 page): {sold:7.2f} us per call")
    print(f"SMMUv3 vIOMMU HWPT_INVALIDATE, 1 command:   {ssingle:7.2f} us per call ({s1:.2f}x)")
    print(f"SMMUv3 vIOMMU HWPT_INVALIDATE, 64 commands: {sbatch:7.2f} us per call, "
          f"{sbatch / 64:.2f} us per entry ({s64:.2f}x)")


if __name__ == "__main__":
    main()

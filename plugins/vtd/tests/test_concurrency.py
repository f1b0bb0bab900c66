"""VT-d under the concurrency contract (docs/concurrency.md): DMA threads on an ATS device
while the control thread binds and unbinds a guest PASID through the invalidation queue, and
remaps the host stage 2 under the guest's buffer. Before, such a race raised ``RuntimeError:
dictionary changed size during iteration`` in the control thread and left the PASID entry
present with no binding record, so every later bind was refused."""

from __future__ import annotations

from collections.abc import Callable

from vtd_rig import GUEST_RAM, GVA, RW, Rig, bind_data

from iommu_uapi.testing.concurrency import FAULT, Race, Values

FAULTS = frozenset({FAULT})


def test_bind_unbind_on_an_ats_device_under_dma() -> None:
    rig = Rig(ats=True)
    pasid = rig.vm.alloc()
    data = bind_data(pasid, rig.gpt.root).to_bytes()
    mapped = frozenset({GUEST_RAM + rig.buf})

    def plan(n: int) -> tuple[Values, Values, Callable[[], None]]:
        if n % 2:
            return mapped, mapped, lambda: rig.iommu.uapi_sva_bind_gpasid(rig.domain, rig.dev,
                                                                          data)
        return FAULTS, FAULTS, lambda: rig.iommu.sva_unbind_gpasid(rig.domain, rig.dev, pasid)

    Race(plan, lambda: rig.iommu.translate(rig.dev, GVA, pasid=pasid).paddr, FAULTS).run(200)
    assert rig.iommu.bound_pasids(rig.dev) == []
    assert rig.pasid_entry(pasid) == bytes(64) or rig.pasid_entry(pasid)[0] & 1 == 0


def test_host_remap_under_nested_dma() -> None:
    # strict: linux-5.10 keeps an ATS device's nested entries after a host unmap (a documented
    # hazard, docs/isolation.md), which this contract does not cover
    rig = Rig(profile="strict", ats=True)
    pasid = rig.bind()
    spare = 0x3_0000_0000

    def plan(n: int) -> tuple[Values, Values, Callable[[], None]]:
        hpa = spare + n * 0x1000 if n % 2 else GUEST_RAM + rig.buf

        def remap() -> None:  # the VMM moves the buffer's guest page in host memory
            rig.iommu.unmap(rig.domain, rig.buf, 0x1000)
            rig.iommu.map(rig.domain, rig.buf, hpa, 0x1000, RW)

        new = frozenset({hpa})
        return new | FAULTS, new, remap

    Race(plan, lambda: rig.iommu.translate(rig.dev, GVA, pasid=pasid).paddr,
         frozenset({GUEST_RAM + rig.buf})).run(200)

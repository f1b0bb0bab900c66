"""Differential mode against VT-d: one guest workload, entered each backend's own way (a VT-d
guest binds its PASIDs, an SMMU guest writes CDs in the table it attached), gives the same
translations and the same generic faults (stage-1 faults, and a write the host's stage 2 makes
read-only). A request to an IPA the host's stage 2 does not map is where the architectures
differ: VT-d has no not-present second-level entry (R = W = 0 is a permission failure, reason
0x86 / 0x85, reported as PERMISSION), the SMMU records a stage-2 F_TRANSLATION (CLASS IN,
reported as PTE_FETCH); the consumer sees the same type, PASID, address and access, and each
side's own fault is asserted on its own. Skipped where the VT-d backend is not installed."""

from __future__ import annotations

import pytest

from iommu_uapi import plugins
from iommu_uapi.features import CacheCell
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.testing.harness import GUEST_RAM_GPA, GUEST_RAM_SIZE, READ, WRITE, Harness
from iommu_uapi.translation import TranslationFault
from iommu_uapi.uapi.consts import (
    CacheType,
    FaultReason,
    FaultType,
    InvGranularity,
    UnrecoverableFlags,
)
from iommu_uapi_smmu.events import AccessEvent, EventClass, EventType

_ADDR = CacheCell(CacheType.IOTLB, InvGranularity.ADDR)
_PASID = CacheCell(CacheType.IOTLB, InvGranularity.PASID)
_VAS = [0x7000_0000_0000 + (i << 21) + (i << 12) for i in range(6)]


def _dma(h: Harness, va: int, pasid: int | None, access: int,
         pages: dict[int, int]) -> tuple[object, ...]:
    """The outcome, a landing address named by the guest page it lies in (the n-th page the
    guest mapped: the backends' guests allocate their own tables in between)."""
    try:
        paddr = h.translate(va, pasid, access, h.dev2).paddr
        return ("page", pages.get(paddr & -4096, paddr & -4096), paddr & 0xFFF)
    except TranslationFault as exc:
        fault = exc.fault
        if fault is None:
            return ("fault", None, None)
        return ("fault", int(fault.type), int(fault.event.reason))


def workload(h: Harness) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    pages: dict[int, int] = {}

    def gmap(va: int) -> None:
        pages[h.hpa(h.gmap(va))] = len(pages)

    def dma(va: int, pasid: int | None, access: int) -> tuple[object, ...]:
        return _dma(h, va, pasid, access, pages)

    a, b = h.vm.alloc(), h.vm.alloc()
    for va in _VAS[:4]:
        gmap(va)
    h.enter(a, h.dev2)
    out += [dma(va + 0x18, a, READ) for va in _VAS]
    h.enter(b, h.dev2)
    out += [dma(va, b, WRITE) for va in _VAS[:2]]
    h.gunmap(_VAS[1])
    gmap(_VAS[1])
    h.invalidate(Harness.inv_info(_ADDR, a, _VAS[1]), h.dev2)
    out.append(dma(_VAS[1], a, READ))
    h.gunmap(_VAS[2])
    h.invalidate(Harness.inv_info(_PASID, a), h.dev2)
    out += [dma(va, a, READ) for va in _VAS[:4]]
    # the host makes a guest page read-only at stage 2: a read lands, a write is a stage-2
    # permission fault on both (VT-d 0x85 NO_WRITE, SMMU F_PERMISSION with S2: PERMISSION)
    gpa = h.gmap(_VAS[4])
    pages[h.hpa(gpa)] = len(pages)
    h.iommu.unmap(h.domain, gpa, 0x1000)
    h.iommu.map(h.domain, gpa, h.hpa(gpa), 0x1000, Prot.READ)
    out += [dma(_VAS[4], b, READ), dma(_VAS[4], b, WRITE)]
    return out


#: A GPA beyond the guest's RAM: the host's stage 2 does not map it.
_UNMAPPED_GPA = GUEST_RAM_GPA + GUEST_RAM_SIZE + 0x10_0000


def _beyond_stage2(backend: str, access: int) -> TranslationFault:
    """A guest PASID whose stage-1 leaf points at a GPA the host's stage 2 does not map."""
    h = Harness(backend, profile="strict")
    pasid = h.vm.alloc()
    h.gmap(_VAS[0], gpa=_UNMAPPED_GPA)
    h.enter(pasid, h.dev2)
    with pytest.raises(TranslationFault) as info:
        h.translate(_VAS[0] + 0x18, pasid, access, h.dev2)
    fault = info.value.fault
    assert fault is not None and fault.type == FaultType.DMA_UNRECOV
    # what the architectures agree on: the request's PASID, address and access
    assert (fault.event.pasid, fault.event.addr, fault.event.perm) == (pasid, _VAS[0] + 0x18,
                                                                       access)
    assert fault.event.flags == UnrecoverableFlags.PASID_VALID | UnrecoverableFlags.ADDR_VALID
    return info.value


@pytest.mark.parametrize("access", [READ, WRITE])
def test_a_request_beyond_the_hosts_stage2_faults_as_each_architecture_records_it(
        access: int) -> None:
    if "vtd" not in plugins.registry().backends:
        pytest.skip("the VT-d backend is not installed")
    from iommu_uapi_vtd.reasons import SmFaultReason

    vtd = _beyond_stage2("vtd", access)
    assert vtd.native.reason == (SmFaultReason.NO_READ if access == READ
                                 else SmFaultReason.NO_WRITE)
    assert vtd.fault is not None and vtd.fault.event.reason == FaultReason.PERMISSION
    smmu = _beyond_stage2("smmuv3", access)
    event = smmu.native
    assert isinstance(event, AccessEvent)
    assert (event.Type, event.S2, event.CLASS, event.IPA, event.RnW) == (
        EventType.F_TRANSLATION, True, EventClass.IN, _UNMAPPED_GPA, access == READ)
    assert smmu.fault is not None and smmu.fault.event.reason == FaultReason.PTE_FETCH


def test_smmuv3_agrees_with_vtd() -> None:
    if "vtd" not in plugins.registry().backends:
        pytest.skip("the VT-d backend is not installed")
    vtd = workload(Harness("vtd", profile="strict"))
    smmu = workload(Harness("smmuv3", profile="strict"))
    assert {o[0] for o in smmu} == {"page", "fault"}
    assert smmu == vtd

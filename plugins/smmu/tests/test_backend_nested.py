"""Nested translation end to end on ``smmuv3``: the guest's CD table and LPAE stage-1 tables in
guest memory, the host's stage 2, the table attached, and DMA through both stages with the exact
descriptor reads (cold: each stage-1 level's table address and the output translated by stage
2), the configuration reads (STE, L1 descriptor, CD and the CD's stage-2 walk) and none on a
TLB hit."""

from __future__ import annotations

import pytest
from backend_rig import VA, Rig

from iommu_uapi.pasid_tables.smmuv3 import S1Fmt
from iommu_uapi.translation import TranslationFault
from iommu_uapi.uapi.consts import FaultReason, FaultType
from iommu_uapi_smmu.cmds import CfgiSte
from iommu_uapi_smmu.iotlb import S2_ONLY

WRITE = 2


def _levels(granule: int, ias: int) -> int:
    g = granule.bit_length() - 1
    return -(-(ias - g) // (g - 3))


#: (granule, IPA bits) -> stage-2 levels walked: the shallowest start with at most 16
#: concatenated tables
S2_LEVELS = {(4096, 48): 4, (16384, 48): 3, (65536, 48): 3, (4096, 40): 3, (16384, 40): 2,
             (65536, 40): 2}


def test_single_cd_4k_four_levels_each_stage_reads_24_cold_and_0_on_a_hit() -> None:
    rig = Rig("linux-5.10")
    gpa = rig.gmap()
    rig.enter(0)
    t = rig.iommu.translate(rig.dev2, VA + 0x123, access=WRITE)
    assert t.paddr == rig.hpa(gpa) + 0x123
    assert t.table_reads == 4 + 4 * 4 + 4
    assert t.config_reads == 1 + 1 + 4  # STE, CD, the CD's IPA through stage 2
    hit = rig.iommu.translate(rig.dev2, VA + 0x456, access=WRITE)
    assert (hit.paddr, hit.table_reads, hit.config_reads) == (rig.hpa(gpa) + 0x456, 0, 0)
    vmid = rig.domain.data.vmid
    assert rig.iommu.iotlb.bucket((vmid, 0))  # the core IOTLB, tagged (VMID, ASID = 0)


@pytest.mark.parametrize(("granule", "ias"), [(4096, 48), (16384, 48), (65536, 48),
                                              (4096, 40), (16384, 40), (65536, 40)])
def test_every_granule_and_stage_2_geometry(granule: int, ias: int) -> None:
    rig = Rig("strict", granule=granule, s2_granule=granule, s2_ias=ias)
    s1 = _levels(granule, 48)
    s2 = rig.backend.geometry.levels
    assert s2 == S2_LEVELS[(granule, ias)]
    gpa = rig.gmap()
    rig.enter(5)
    t = rig.iommu.translate(rig.dev2, VA + 0x10, pasid=5)
    assert t.paddr == rig.hpa(gpa) + 0x10
    assert t.table_reads == s1 + s1 * s2 + s2
    # STE, L1 descriptor and CD, the L1 table's and the L2 table's IPAs through stage 2
    assert t.config_reads == 3 + 2 * s2
    assert rig.iommu.translate(rig.dev2, VA + 0x20, pasid=5).table_reads == 0


def test_three_level_stage_2_with_a_concatenated_root() -> None:
    rig = Rig("linux-5.10", s2_ias=40)
    geo = rig.backend.geometry
    assert (geo.levels, geo.sl0) == (3, 1)  # level 1 start: two 4 KiB tables concatenated
    root = rig.domain.data.pt.root
    assert root & 0x1FFF == 0
    gpa = rig.gmap()
    rig.enter(0)
    t = rig.iommu.translate(rig.dev2, VA)
    assert t.paddr == rig.hpa(gpa) and t.table_reads == 4 + 4 * 3 + 3


def test_requests_without_pasid_take_stage_2_alone_under_s1dss_bypass() -> None:
    rig = Rig("strict")
    t = rig.iommu.translate(rig.dev2, 0x3000)
    assert t.paddr == 0x1_0000_3000 and t.table_reads == 4
    vmid = rig.domain.data.vmid
    assert rig.iommu.iotlb.bucket((vmid, S2_ONLY))


def test_attach_writes_the_nested_ste_and_detach_returns_to_stage_2() -> None:
    rig = Rig("strict", attach=False)
    sid = rig.dev.sid
    assert rig.backend.host.read_ste(sid).Config == 0b110
    rig.iommu.uapi_attach_pasid_table(rig.domain, rig.table.to_bytes())
    ste = rig.backend.host.read_ste(sid)
    assert (ste.Config, ste.S1ContextPtr, ste.S1CDMax, ste.S1Fmt, ste.S1DSS) == (
        0b111, rig.table.base_ptr, 10, S1Fmt.TWO_LEVEL_4K, 1)
    assert rig.domain.data.pt.root == ste.S2TTB and rig.domain.data.vmid == ste.S2VMID
    rig.backend.host.history.clear()
    rig.iommu.uapi_attach_pasid_table(rig.domain, rig.table.to_bytes())  # strict: replaces
    assert {c.SID for c in rig.backend.host.history if isinstance(c, CfgiSte)} == {0x100, 0x208}
    gpa = rig.gmap()
    rig.enter(3)
    assert rig.iommu.translate(rig.dev2, VA, pasid=3).paddr == rig.hpa(gpa)
    rig.iommu.detach_pasid_table(rig.domain)
    assert rig.backend.host.read_ste(sid).Config == 0b110
    with pytest.raises(TranslationFault) as info:
        rig.iommu.translate(rig.dev2, VA, pasid=3)
    assert info.value.fault is not None
    assert rig.iommu.translate(rig.dev2, 0x3000).paddr == 0x1_0000_3000


def test_abort_and_bypass_configs() -> None:
    from backend_rig import table_config

    from iommu_uapi.uapi.consts import PasidConfig

    rig = Rig("linux-5.10", attach=False)
    rig.iommu.uapi_attach_pasid_table(rig.domain,
                                      table_config(config=PasidConfig.ABORT).to_bytes())
    assert rig.backend.host.read_ste(rig.dev.sid).Config == 0
    with pytest.raises(TranslationFault):
        rig.iommu.translate(rig.dev2, 0x3000)
    rig.iommu.uapi_attach_pasid_table(rig.domain,
                                      table_config(config=PasidConfig.BYPASS).to_bytes())
    assert rig.iommu.translate(rig.dev2, 0x3000).paddr == 0x1_0000_3000


def test_a_guest_walk_fault_is_an_smmu_event_and_a_generic_fault() -> None:
    rig = Rig("strict")
    rig.enter(4)
    seen = []
    rig.iommu.register_fault_handler(rig.dev2, seen.append)
    with pytest.raises(TranslationFault) as info:
        rig.iommu.translate(rig.dev2, VA, pasid=4)
    fault = info.value.fault
    assert fault is not None and fault.type == FaultType.DMA_UNRECOV
    assert fault.event.reason == FaultReason.PTE_FETCH and fault.event.pasid == 4
    assert fault.event.addr == VA and seen == [fault]
    event = rig.backend.smmu.events[-1]
    assert (event.Type, event.StreamID, event.SubstreamID) == (0x10, 0x208, 4)


def test_an_invalid_cd_is_c_bad_cd_reported_as_a_bad_pasid_entry() -> None:
    rig = Rig("strict")
    rig.enter(6)
    rig.format.write_entry(rig.guest, rig.table, 6, None)
    with pytest.raises(TranslationFault) as info:
        rig.iommu.translate(rig.dev2, VA, pasid=6)
    assert info.value.fault is not None
    assert info.value.fault.event.reason == FaultReason.BAD_PASID_ENTRY
    assert rig.backend.smmu.events[-1].Type == 0x0A

"""The suite's rig on ``smmuv3`` at ``linux-5.10``: the guest v15 takes, one CD, entered by the
VMM attaching the table once the guest wrote the CD and left by detaching it; its DMA carries no
SubstreamID, and DMA with one is refused by the STE (S1CDMax = 0)."""

from __future__ import annotations

import pytest

from iommu_uapi.testing.harness import GUEST_VA, READ, WRITE, Harness
from iommu_uapi.translation import TranslationFault
from iommu_uapi_smmu.events import EventType
from iommu_uapi_smmu.guest import SMMU_GUEST, SMMU_SINGLE_CD_GUEST


def test_linux_5_10_describes_the_single_cd_guest_and_strict_both() -> None:
    assert Harness("smmuv3").format is SMMU_SINGLE_CD_GUEST
    assert SMMU_SINGLE_CD_GUEST.single_context and not SMMU_GUEST.single_context
    strict = Harness("smmuv3", profile="strict")
    assert strict.format is SMMU_GUEST
    assert Harness("smmuv3", profile="strict",
                   guest_format=SMMU_SINGLE_CD_GUEST).single_context


def test_the_single_cd_enters_by_attach_and_leaves_by_detach() -> None:
    h = Harness("smmuv3")
    data = h.domain.data
    gpa = h.gmap(GUEST_VA)
    assert data.s1 is None and not h.table_attached  # nothing attached until the guest enters
    h.enter(7, h.dev2)
    assert h.table is not None and data.s1 == (h.table.base_ptr, 0, 0, 0)  # S1CDMax = 0
    # the guest's DMA carries no SubstreamID: the rig drops the PASID naming its context
    t = h.translate(GUEST_VA + 0x10, 7, WRITE, h.dev2)
    assert t.paddr == h.hpa(gpa) + 0x10 and t.table_reads == 24
    assert h.iommu.translate(h.dev2, GUEST_VA + 0x10).paddr == h.hpa(gpa) + 0x10
    with pytest.raises(TranslationFault) as info:  # a SubstreamID the STE has no CDs for
        h.iommu.translate(h.dev2, GUEST_VA, pasid=7)
    assert info.value.native.Type == EventType.C_BAD_SUBSTREAMID
    # entering again (a new table root) attaches anew: v15 refuses S1->S1, the rig detaches
    assert h.gpt is not None and h.format is not None
    h.gpt = h.format.tables(h.guest)
    other = h.gmap(GUEST_VA)
    h.enter(7, h.dev2)
    assert h.translate(GUEST_VA, 7, READ, h.dev2).paddr == h.hpa(other)
    h.leave(7, h.dev2)
    assert data.s1 is None and not h.table_attached
    with pytest.raises(TranslationFault):  # stage 2 alone: the VA is no guest RAM
        h.translate(GUEST_VA, 7, READ, h.dev2)

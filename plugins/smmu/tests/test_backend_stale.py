"""Stale entries, command by command: without the invalidation the old translation may persist
(the model keeps it, as hardware may), after it never does."""

from __future__ import annotations

import pytest
from backend_rig import RAM_HPA, RW, VA, Rig, addr_inv, domain_inv, pasid_inv

from iommu_uapi.translation import TranslationFault
from iommu_uapi.uapi.consts import CacheType
from iommu_uapi_smmu.cmds import (
    AtcInv,
    CfgiCd,
    CfgiSte,
    TlbiNhAll,
    TlbiNhAsid,
    TlbiNhVa,
    TlbiNsnhAll,
    TlbiS2Ipa,
)
from iommu_uapi_smmu.domain import stream_entry


def _remap(rig: Rig, va: int = VA) -> int:
    rig.gpt.unmap(va, rig.format.granule)
    return rig.gmap(va)


@pytest.mark.parametrize(("profile", "info", "cmd"), [
    # the remap replaces the level-3 table: the invalidation must reach the walk caches
    ("linux-5.10", addr_inv(VA, archid=0), TlbiNhVa),
    ("linux-5.10", pasid_inv(archid=0), TlbiNhAsid),
    ("linux-5.10", domain_inv(), TlbiNsnhAll),
    ("linux-5.10", addr_inv(VA), TlbiNsnhAll),
    ("strict", addr_inv(VA, pasid=0), TlbiNhVa),
    ("strict", pasid_inv(pasid=0), TlbiNhAsid),
    ("strict", domain_inv(), TlbiNhAll),
], ids=lambda v: getattr(v, "__name__", None) or (v if isinstance(v, str) else ""))
def test_a_guest_pte_change_is_stale_until_the_tlbi(profile: str, info: object,
                                                    cmd: type) -> None:
    rig = Rig(profile, pasid_bits=0)
    old = rig.gmap()
    rig.enter(0)
    assert rig.iommu.translate(rig.dev2, VA).paddr == rig.hpa(old)
    new = _remap(rig)
    assert rig.iommu.translate(rig.dev2, VA).paddr == rig.hpa(old)  # stale
    rig.invalidate(info)  # type: ignore[arg-type]
    assert [type(c) for c in rig.commands()][:1] == [cmd]
    assert rig.iommu.translate(rig.dev2, VA).paddr == rig.hpa(new)


def test_a_new_cd_is_unseen_until_cfgi_cd() -> None:
    rig = Rig("strict")
    rig.gmap()
    rig.enter(2)
    rig.iommu.translate(rig.dev2, VA, pasid=2)
    rig.format.write_entry(rig.guest, rig.table, 2, None)   # the guest disables PASID 2
    rig.invalidate(pasid_inv(pasid=2))                      # its TLB entries go, the CD stays
    assert rig.iommu.translate(rig.dev2, VA, pasid=2).table_reads > 0  # the cached CD walks
    rig.invalidate(pasid_inv(CacheType.PASID, pasid=2))
    assert isinstance(rig.commands()[0], CfgiCd)
    with pytest.raises(TranslationFault):
        rig.iommu.translate(rig.dev2, VA, pasid=2)


def test_a_host_unmap_of_a_nested_domain_flushes_the_vmid() -> None:
    rig = Rig("linux-5.10")
    gpa = rig.gmap()
    rig.enter(0)
    rig.iommu.translate(rig.dev2, VA)
    page = gpa & -4096
    assert rig.iommu.unmap(rig.domain, page, 4096) == 4096
    with pytest.raises(TranslationFault):
        rig.iommu.translate(rig.dev2, VA)
    rig.iommu.map(rig.domain, page, RAM_HPA + 0x10_0000, 4096, RW)
    assert rig.iommu.translate(rig.dev2, VA).paddr == RAM_HPA + 0x10_0000 + (gpa & 0xFFF)


def test_a_host_unmap_of_a_stage_2_stream_is_tlbi_s2_ipa() -> None:
    rig = Rig("linux-5.10", attach=False)
    assert rig.iommu.translate(rig.dev2, 0x5000).paddr == RAM_HPA + 0x5000
    rig.iommu.unmap(rig.domain, 0x5000, 4096)
    assert isinstance(rig.commands()[0], TlbiS2Ipa)
    with pytest.raises(TranslationFault):
        rig.iommu.translate(rig.dev2, 0x5000)
    # TLBI_S2_IPA with Leaf = 0 dropped the walk-cache entries over 0x5000: a full walk
    assert rig.iommu.translate(rig.dev2, 0x6000).table_reads == 4


def test_the_atc_keeps_a_translation_until_atc_inv() -> None:
    rig = Rig("strict")
    old = rig.gmap()
    rig.enter(1)
    assert rig.iommu.translate(rig.dev, VA, pasid=1).paddr == rig.hpa(old)
    new = _remap(rig)
    rig.invalidate(addr_inv(VA, pasid=1))  # the IOTLB only
    assert rig.iommu.translate(rig.dev, VA, pasid=1).paddr == rig.hpa(old)  # the ATC's
    rig.invalidate(addr_inv(VA, cache=CacheType.DEV_IOTLB, pasid=1))
    assert isinstance(rig.commands()[0], AtcInv)
    assert rig.iommu.translate(rig.dev, VA, pasid=1).paddr == rig.hpa(new)


def test_a_new_table_is_unseen_until_cfgi_ste() -> None:
    rig = Rig("linux-5.10", attach=False)
    gpa = rig.gmap()
    rig.enter(0)
    with pytest.raises(TranslationFault):  # stage 2 alone: VA is no IPA of guest RAM
        rig.iommu.translate(rig.dev2, VA)
    rig.domain.data.s1 = (rig.table.base_ptr, 0, 0, 0)
    rig.backend.host.write_ste(rig.dev2.sid, stream_entry(rig.domain.data, ats=False))
    rig.iommu.forget_contexts(rig.dev2.sid)  # the core's view; the SMMU's STE cache stays
    with pytest.raises(TranslationFault):
        rig.iommu.translate(rig.dev2, VA)
    rig.backend.issue([CfgiSte(SID=rig.dev2.sid, Leaf=True)])
    assert rig.iommu.translate(rig.dev2, VA).paddr == rig.hpa(gpa)

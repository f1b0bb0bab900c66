"""Translation through the SMMU model: stage 1, stage 2 (concatenated roots) and nested for every
granule, and the event each fault records (hw-formats 2.3-2.5, 2.7)."""

from __future__ import annotations

import pytest
from msgspec.structs import replace
from smmu_rig import RW, Rig

from iommu_uapi.pgtable.common import Prot
from iommu_uapi.pgtable.lpae import S1Desc, S2Desc
from iommu_uapi.uapi.consts import FaultPerm
from iommu_uapi_smmu.events import AccessEvent, EventClass, EventType, SmmuFault
from iommu_uapi_smmu.idr import SmmuCaps
from iommu_uapi_smmu.registers import Cr0, Gbpa, Reg, StrtabBase, StrtabBaseCfg
from iommu_uapi_smmu.ste import Ste, SteConfig
from iommu_uapi_smmu.strtab import L1Std

GRANULES = [4096, 16384, 65536]
R, W, X, P = (int(FaultPerm.READ), int(FaultPerm.WRITE), int(FaultPerm.EXEC),
              int(FaultPerm.PRIV))
DATA = 0x9_0000_0000


def _fault(rig: Rig, sid: int, addr: int, access: int = R, **kw: object) -> SmmuFault:
    with pytest.raises(SmmuFault) as info:
        rig.smmu.translate(sid, addr, access, **kw)  # type: ignore[arg-type]
    return info.value


@pytest.mark.parametrize("granule", GRANULES)
def test_stage1(granule: int) -> None:
    rig = Rig()
    pt = rig.s1(granule)
    pt.map(0x40_0000, DATA, granule, RW)
    rig.s1_stream(3, {0: rig.cd(pt)})
    t = rig.smmu.translate(3, 0x40_0123, W)
    levels = {4096: 4, 16384: 4, 65536: 3}[granule]
    assert (t.paddr, t.page_size, t.table_reads, t.config_reads) == (
        DATA + 0x123, granule, levels, 2)
    assert rig.smmu.events == []


def test_stage1_translation_fault_event() -> None:
    rig = Rig()
    pt = rig.s1()
    rig.s1_stream(3, {0: rig.cd(pt)})
    fault = _fault(rig, 3, 0x1234_5678, W)
    assert fault.event == AccessEvent(Type=EventType.F_TRANSLATION, StreamID=3,
                                      InputAddr=0x1234_5678, RnW=False)
    assert rig.smmu.events == [fault.event]
    assert fault.abort


def test_stage1_fault_not_recorded_without_r_and_raz_wi_without_a() -> None:
    rig = Rig()
    pt = rig.s1()
    rig.s1_stream(3, {0: rig.cd(pt, R=False, A=False)})
    fault = _fault(rig, 3, 0x1000)
    assert fault.event is None and not fault.abort
    assert rig.smmu.events == []


def test_stage1_permission_and_address_size() -> None:
    rig = Rig()
    pt = rig.s1()
    pt.map(0x1000, DATA, 4096, Prot.READ)
    pt.map(0x2000, 1 << 40, 4096, RW)
    rig.s1_stream(1, {0: rig.cd(pt, IPS=0)})  # 32-bit output
    rig.s1_stream(2, {0: rig.cd(pt)})
    ev = _fault(rig, 2, 0x1008, W | P).event
    assert isinstance(ev, AccessEvent)
    assert (ev.Type, ev.RnW, ev.PnU, ev.InputAddr) == (EventType.F_PERMISSION, False, True,
                                                       0x1008)
    assert _fault(rig, 1, 0x1000).event.Type == EventType.F_ADDR_SIZE  # type: ignore[union-attr]
    rig.s1_stream(3, {0: rig.cd(pt, IPS=0, ASID=3, TTB0=1 << 32)})  # TTB0 beyond 32 bits
    assert _fault(rig, 3, 0x1000).event.Type == EventType.F_ADDR_SIZE  # type: ignore[union-attr]
    assert rig.smmu.translate(2, 0x2000, R).paddr == 1 << 40


def test_ttb1_region_and_tbi() -> None:
    rig = Rig()
    lo, hi = rig.s1(t0sz=25), rig.s1(t0sz=25)
    lo.map(0x1000, DATA, 4096, RW)
    hi.map((1 << 39) - 0x1000, DATA + 0x1000, 4096, RW)  # the top page of the TTB1 half
    cd = rig.cd(lo, EPD1=False, T1SZ=25, TG1=0b10, TTB1=hi.root, TBI1=True)
    rig.s1_stream(4, {0: cd})
    assert rig.smmu.translate(4, 0xFFFF_FFFF_FFFF_F008).paddr == DATA + 0x1008
    assert rig.smmu.translate(4, 0x12FF_FFFF_FFFF_F008).paddr == DATA + 0x1008  # top byte
    assert rig.smmu.translate(4, 0x1010).paddr == DATA + 0x10
    for va in (0xFFFF_FF00_0000_1000, 0x0000_0080_0000_1000, 0x1200_0000_0000_1000):
        ev = _fault(rig, 4, va).event  # outside both regions (TBI0 = 0 for the last)
        assert ev is not None and ev.Type == EventType.F_TRANSLATION


def test_epd0_faults_without_walk() -> None:
    rig = Rig()
    pt = rig.s1()
    pt.map(0x1000, DATA, 4096, RW)
    rig.s1_stream(5, {0: rig.cd(pt, EPD0=True, EPD1=True)})
    ev = _fault(rig, 5, 0x1000).event
    assert ev is not None and ev.Type == EventType.F_TRANSLATION


def test_privcfg_and_instcfg_override_the_transaction() -> None:
    rig = Rig()
    pt = rig.s1()
    pt.map(0x1000, DATA, 4096, Prot.READ | Prot.WRITE | Prot.PRIV)  # EL0 cannot touch it
    rig.s1_stream(6, {0: rig.cd(pt)})
    rig.s1_stream(7, {0: rig.cd(pt, ASID=2)}, PRIVCFG=0b11)
    rig.s1_stream(8, {0: rig.cd(pt, ASID=3)}, PRIVCFG=0b10)
    assert _fault(rig, 6, 0x1000).event.Type == EventType.F_PERMISSION  # type: ignore[union-attr]
    assert rig.smmu.translate(7, 0x1000).paddr == DATA
    assert _fault(rig, 8, 0x1000, R | P).event is not None
    pt.map(0x2000, DATA, 4096, RW | Prot.NOEXEC)
    rig.s1_stream(9, {0: rig.cd(pt, ASID=4)}, INSTCFG=0b11)
    assert _fault(rig, 9, 0x2000).event.InD  # type: ignore[union-attr]


def test_stall_records_a_tagged_event() -> None:
    rig = Rig()
    pt = rig.s1()
    rig.s1_stream(3, {0: rig.cd(pt, S=True, R=False)})
    ev1 = _fault(rig, 3, 0x1000).event
    ev2 = _fault(rig, 3, 0x2000).event
    assert isinstance(ev1, AccessEvent) and isinstance(ev2, AccessEvent)
    assert (ev1.Stall, ev2.Stall) == (True, True)
    assert ev1.STAG != ev2.STAG
    assert set(rig.smmu.stalled) == {(3, ev1.STAG), (3, ev2.STAG)}
    assert rig.smmu.stalled[(3, ev1.STAG)].addr == 0x1000


# -- stage 2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("granule", GRANULES)
def test_stage2_with_concatenated_root(granule: int) -> None:
    rig = Rig()
    s2 = rig.s2(granule)
    ipa = 0x80_0000_0000 - granule  # the top of the 40-bit IPA space: the last root table
    s2.map(ipa, DATA, granule, RW)
    rig.set_ste(10, Ste(V=True, Config=SteConfig.S2_TRANS, **rig.s2_fields(s2)))
    t = rig.smmu.translate(10, ipa + 8, W)
    assert (t.paddr, t.page_size, t.config_reads) == (DATA + 8, granule, 1)
    assert t.table_reads == {4096: 3, 16384: 2, 65536: 2}[granule]
    ev = _fault(rig, 10, 0x1000).event
    assert ev == AccessEvent(Type=EventType.F_TRANSLATION, StreamID=10, S2=True,
                             CLASS=EventClass.IN, InputAddr=0x1000, IPA=0x1000, RnW=True)
    assert _fault(rig, 10, 1 << 40).event is not None  # beyond the 40-bit IPA


def test_stage2_fault_recording_follows_s2r() -> None:
    rig = Rig()
    s2 = rig.s2()
    rig.set_ste(11, Ste(V=True, Config=SteConfig.S2_TRANS, **rig.s2_fields(s2, S2R=False)))
    fault = _fault(rig, 11, 0x1000)
    assert fault.event is None and fault.abort


# -- nested ----------------------------------------------------------------------------------


def _nested(rig: Rig, granule: int, sid: int = 12) -> tuple[int, int]:
    """Nested stream: guest stage-1 tables and CD in guest RAM, stage 2 mapping guest RAM and
    the IPA 0x7000_0000 -> DATA. Returns (CD IPA, stage-1 root IPA)."""
    s2 = rig.s2(granule)
    guest = rig.guest(s2)
    s2.map(0x7000_0000, DATA, granule, RW)
    s1 = rig.s1(granule, mem=guest)
    s1.map(0x1000_0000, 0x7000_0000, granule, RW)
    cd_ipa = guest.alloc()
    guest.write(cd_ipa, rig.cd(s1).to_bytes())
    rig.set_ste(sid, Ste(V=True, Config=SteConfig.NESTED, S1ContextPtr=cd_ipa,
                         **rig.s2_fields(s2)))
    return cd_ipa, s1.root


@pytest.mark.parametrize("granule", GRANULES)
def test_nested(granule: int) -> None:
    rig = Rig()
    _nested(rig, granule)
    t = rig.smmu.translate(12, 0x1000_0010, W)
    assert t.paddr == DATA + 0x10
    s2_levels = {4096: 3, 16384: 2, 65536: 2}[granule]
    s1_levels = {4096: 4, 16384: 4, 65536: 3}[granule]
    # STE + CD, and the CD fetch's stage-2 walk
    assert t.config_reads == 2 + s2_levels
    # each stage-1 level: its descriptor plus a stage-2 walk of its IPA; then the output's
    assert t.table_reads == s1_levels * (1 + s2_levels) + s2_levels


def test_nested_stage2_fault_classes() -> None:
    rig = Rig()
    _nested(rig, 4096)
    ev = _fault(rig, 12, 0x2000_0000).event  # a stage-1 fault: the VA is not mapped
    assert isinstance(ev, AccessEvent)
    assert (ev.Type, ev.S2, ev.IPA) == (EventType.F_TRANSLATION, False, 0)
    # CD: the CD pointer's IPA is not mapped by stage 2
    ste = Ste.from_bytes(rig.mem.read(rig.strtab + 12 * 64, 64))
    rig.set_ste(13, replace(ste, S1ContextPtr=0x6000_0000))
    ev = _fault(rig, 13, 0x1000_0000).event
    assert isinstance(ev, AccessEvent)
    assert (ev.Type, ev.S2, ev.CLASS, ev.IPA) == (EventType.F_TRANSLATION, True,
                                                  EventClass.CD, 0x6000_0000)


def test_nested_stage1_table_and_output_not_mapped_by_stage2() -> None:
    rig = Rig()
    s2 = rig.s2()
    guest = rig.guest(s2)
    s1 = rig.s1(mem=guest)
    s1.map(0x1000_0000, 0x7000_0000, 4096, RW)  # output IPA stage 2 does not map
    cd_ipa = guest.alloc()
    guest.write(cd_ipa, rig.cd(s1).to_bytes())
    rig.set_ste(14, Ste(V=True, Config=SteConfig.NESTED, S1ContextPtr=cd_ipa,
                        **rig.s2_fields(s2)))
    ev = _fault(rig, 14, 0x1000_0000, W).event
    assert isinstance(ev, AccessEvent)
    assert (ev.S2, ev.CLASS, ev.IPA, ev.RnW) == (True, EventClass.IN, 0x7000_0000, False)
    # TT: a stage-1 table pointer outside guest RAM
    cd = rig.cd(s1, TTB0=0x6000_0000)
    guest.write(cd_ipa, cd.to_bytes())
    rig.smmu.invalidate_cd(14, 0)  # the SMMU caches CDs: software invalidates what it changed
    ev = _fault(rig, 14, 0x1000_0000).event
    assert isinstance(ev, AccessEvent)
    assert (ev.S2, ev.CLASS, ev.TTRnW) == (True, EventClass.TT, True)
    assert ev.IPA == 0x6000_0000


def test_ssid_selects_cd_and_s1dss() -> None:
    rig = Rig()
    pts = [rig.s1() for _ in range(4)]
    for i, pt in enumerate(pts):
        pt.map(0x1000, DATA + i * 0x1000, 4096, RW)
    cds = {i: rig.cd(pt, ASID=i + 1) for i, pt in enumerate(pts)}
    for sid, dss in ((20, 0b00), (21, 0b01), (22, 0b10)):
        rig.s1_stream(sid, cds, cdmax=2, S1DSS=dss)
    assert [rig.smmu.translate(20, 0x1000, ssid=s).paddr for s in range(4)] == [
        DATA, DATA + 0x1000, DATA + 0x2000, DATA + 0x3000]
    assert _fault(rig, 20, 0x1000).event.Type == EventType.F_STREAM_DISABLED  # type: ignore[union-attr]
    assert rig.smmu.translate(21, 0x1234).paddr == 0x1234  # stage 1 bypassed
    assert rig.smmu.translate(22, 0x1000).paddr == DATA  # CD 0
    assert _fault(rig, 22, 0x1000, ssid=0).event.Type == EventType.F_STREAM_DISABLED  # type: ignore[union-attr]
    ev = _fault(rig, 20, 0x1000, ssid=4).event
    assert ev is not None and (ev.Type, ev.SSV, ev.SubstreamID) == (
        EventType.C_BAD_SUBSTREAMID, True, 4)


def test_ssid_without_substreams() -> None:
    rig = Rig()
    pt = rig.s1()
    rig.s1_stream(23, {0: rig.cd(pt)})
    assert _fault(rig, 23, 0, ssid=1).event.Type == EventType.C_BAD_SUBSTREAMID  # type: ignore[union-attr]
    rig.set_ste(24, Ste(V=True, Config=SteConfig.BYPASS))
    assert _fault(rig, 24, 0, ssid=1).event.Type == EventType.C_BAD_SUBSTREAMID  # type: ignore[union-attr]


# -- configuration errors ------------------------------------------------------------------


def test_configuration_events() -> None:
    rig = Rig(addr_bits=48)
    rig.set_ste(30, Ste(V=False))
    assert _fault(rig, 30, 0).event.Type == EventType.C_BAD_STE  # type: ignore[union-attr]
    rig.set_ste(31, Ste(V=True, Config=SteConfig.S1_TRANS, S1CDMax=21))
    assert _fault(rig, 31, 0).event.Type == EventType.C_BAD_STE  # type: ignore[union-attr]
    pt = rig.s1()
    rig.s1_stream(32, {0: replace(rig.cd(pt), V=False)})
    assert _fault(rig, 32, 0).event.Type == EventType.C_BAD_CD  # type: ignore[union-attr]
    assert _fault(rig, 256, 0).event.Type == EventType.C_BAD_STREAMID  # type: ignore[union-attr]
    rig.set_ste(33, Ste(V=True, Config=SteConfig.ABORT))
    assert _fault(rig, 33, 0).event is None
    rig.set_ste(34, Ste(V=True, Config=SteConfig.S1_TRANS, S1ContextPtr=1 << 50))
    ev = _fault(rig, 34, 0).event
    assert ev is not None and (ev.Type, ev.FetchAddr) == (  # type: ignore[attr-defined]
        EventType.F_CD_FETCH, 1 << 50)
    assert [e.Type for e in rig.smmu.events] == [
        EventType.C_BAD_STE, EventType.C_BAD_STE, EventType.C_BAD_CD, EventType.C_BAD_STREAMID,
        EventType.F_CD_FETCH]


def test_bad_streamid_recorded_only_with_recinvsid() -> None:
    rig = Rig(recinvsid=False)
    assert _fault(rig, 256, 0).event is None
    assert rig.smmu.events == []


def test_bypass_and_smmu_disabled() -> None:
    rig = Rig()
    rig.set_ste(40, Ste(V=True, Config=SteConfig.BYPASS))
    t = rig.smmu.translate(40, 0xABC_DEF0, W)
    assert (t.paddr, t.table_reads, t.config_reads) == (0xABC_DEF0, 0, 1)
    rig.smmu.regs.write(Reg.CR0, Cr0().to_int())
    assert rig.smmu.translate(999, 0x1234).paddr == 0x1234  # GBPA bypass, no table read
    rig.smmu.regs.write(Reg.GBPA, Gbpa(ABORT=True, UPDATE=True).to_int())
    assert _fault(rig, 999, 0x1234).event is None


def test_ats_request_without_eats() -> None:
    rig = Rig()
    rig.set_ste(41, Ste(V=True, Config=SteConfig.BYPASS))
    ev = _fault(rig, 41, 0x5000, ats=True).event
    assert ev is not None and ev.Type == EventType.F_BAD_ATS_TREQ
    rig.set_ste(42, Ste(V=True, Config=SteConfig.BYPASS, EATS=1))
    assert rig.smmu.translate(42, 0x5000, ats=True).paddr == 0x5000


# -- AFFD, WXN, PAN ----------------------------------------------------------------------------


def _clear_af(rig: Rig, root: int, addr: int, steps: list[tuple[int, int]]) -> int:
    """Clear AF in the leaf mapping ``addr`` (``steps``: (shift, index mask) per level, root
    first); returns the leaf's address."""
    table = root
    for shift, mask in steps[:-1]:
        table = rig.mem.read64(table + ((addr >> shift) & mask) * 8) & 0xFFFF_FFFF_F000
    shift, mask = steps[-1]
    leaf = table + ((addr >> shift) & mask) * 8
    rig.mem.write64(leaf, rig.mem.read64(leaf) & ~0x400)
    return leaf


def test_cd_affd_treats_af_zero_as_set_without_writing_it() -> None:
    rig = Rig()
    pt = rig.s1(t0sz=39)  # 4 KiB, start level 2 (16 entries), then level 3
    pt.map(0x1000, DATA, 4096, RW)
    leaf = _clear_af(rig, pt.root, 0x1000, [(21, 0xF), (12, 0x1FF)])
    rig.s1_stream(50, {0: rig.cd(pt, ASID=1)})
    rig.s1_stream(51, {0: rig.cd(pt, ASID=2, AFFD=True)})
    assert _fault(rig, 50, 0x1000).event.Type == EventType.F_ACCESS  # type: ignore[union-attr]
    assert rig.smmu.translate(51, 0x1000).paddr == DATA
    assert not rig.mem.read64(leaf) & 0x400


def test_s2affd() -> None:
    rig = Rig()
    s2 = rig.s2()  # 4 KiB, 40-bit IPA: two concatenated level-1 tables
    s2.map(0x1000, DATA, 4096, RW)
    _clear_af(rig, s2.root, 0x1000, [(30, 0x3FF), (21, 0x1FF), (12, 0x1FF)])
    rig.set_ste(52, Ste(V=True, Config=SteConfig.S2_TRANS, **rig.s2_fields(s2, vmid=1)))
    rig.set_ste(53, Ste(V=True, Config=SteConfig.S2_TRANS,
                        **rig.s2_fields(s2, vmid=2, S2AFFD=True)))
    ev = _fault(rig, 52, 0x1000).event
    assert isinstance(ev, AccessEvent) and (ev.Type, ev.S2) == (EventType.F_ACCESS, True)
    assert rig.smmu.translate(53, 0x1000).paddr == DATA


def test_wxn_and_pan() -> None:
    rig = Rig()
    pt = rig.s1()
    pt.map(0x1000, DATA, 4096, RW)  # writable, executable, unprivileged-accessible
    pt.map(0x2000, DATA, 4096, RW | Prot.PRIV)
    rig.s1_stream(54, {0: rig.cd(pt, ASID=1)})
    rig.s1_stream(55, {0: rig.cd(pt, ASID=2, WXN=True)})
    rig.s1_stream(56, {0: rig.cd(pt, ASID=3, PAN=True)})
    assert rig.smmu.translate(54, 0x1000, R | X).paddr == DATA
    ev = _fault(rig, 55, 0x1000, R | X).event
    assert ev is not None and (ev.Type, ev.InD) == (EventType.F_PERMISSION, True)  # type: ignore[attr-defined]
    assert _fault(rig, 55, 0x1000, R | X).event is not None  # also from the TLB
    assert rig.smmu.translate(54, 0x1000, R | P).paddr == DATA
    assert _fault(rig, 56, 0x1000, R | P).event.Type == EventType.F_PERMISSION  # type: ignore[union-attr]
    assert rig.smmu.translate(56, 0x1000, R).paddr == DATA  # unprivileged
    assert rig.smmu.translate(56, 0x2000, R | P).paddr == DATA  # a privileged page


def test_httu_sets_access_flag_and_dirty_state() -> None:
    rig = Rig(SmmuCaps(httu=2))
    pt = rig.s1(t0sz=39)
    pt.map(0x1000, DATA, 4096, RW)
    leaf = _clear_af(rig, pt.root, 0x1000, [(21, 0xF), (12, 0x1FF)])
    rig.mem.write64(leaf, rig.mem.read64(leaf) | S1Desc.DBM | S1Desc.AP_RO)  # clean, DBM
    rig.s1_stream(57, {0: rig.cd(pt, ASID=1)})
    rig.s1_stream(58, {0: rig.cd(pt, ASID=2, HA=True, HD=True)})
    assert _fault(rig, 57, 0x1000).event.Type == EventType.F_ACCESS  # type: ignore[union-attr]
    assert rig.smmu.translate(58, 0x1000, R).paddr == DATA
    assert rig.mem.read64(leaf) & S1Desc.AF and rig.mem.read64(leaf) & S1Desc.AP_RO
    assert rig.smmu.translate(58, 0x1000, W).paddr == DATA  # the TLB's read-only entry: rewalk
    assert not rig.mem.read64(leaf) & S1Desc.AP_RO  # dirty


def test_s2_httu_sets_access_flag() -> None:
    rig = Rig(SmmuCaps(httu=1))
    s2 = rig.s2()
    s2.map(0x1000, DATA, 4096, RW)
    leaf = _clear_af(rig, s2.root, 0x1000, [(30, 0x3FF), (21, 0x1FF), (12, 0x1FF)])
    rig.set_ste(59, Ste(V=True, Config=SteConfig.S2_TRANS, **rig.s2_fields(s2, S2HA=True)))
    assert rig.smmu.translate(59, 0x1000).paddr == DATA
    assert rig.mem.read64(leaf) & S2Desc.AF


def test_dirty_state_without_access_flag_update_is_inert() -> None:
    """HD only works with HA: HD = 1, HA = 0 walks as neither (no refusal, no update)."""
    rig = Rig(SmmuCaps(httu=2))
    pt = rig.s1()
    pt.map(0x1000, DATA, 4096, RW)
    s2 = rig.s2()
    s2.map(0x1000, DATA, 4096, RW)
    rig.s1_stream(60, {0: rig.cd(pt, HD=True)})
    rig.set_ste(61, Ste(V=True, Config=SteConfig.S2_TRANS, **rig.s2_fields(s2, S2HD=True)))
    assert rig.smmu.translate(60, 0x1000, W).paddr == DATA
    assert rig.smmu.translate(61, 0x1000, W).paddr == DATA


def test_nested_s1dss_bypass_leaves_stage2() -> None:
    rig = Rig()
    s2 = rig.s2()
    s2.map(0x5000, DATA, 4096, RW)
    guest = rig.guest(s2)
    cds = guest.alloc()
    rig.set_ste(62, Ste(V=True, Config=SteConfig.NESTED, S1ContextPtr=cds, S1CDMax=2,
                        S1DSS=0b01, **rig.s2_fields(s2)))
    t = rig.smmu.translate(62, 0x5010)  # no SubstreamID: stage 1 bypassed, no CD read
    assert (t.paddr, t.config_reads) == (DATA + 0x10, 1)


def test_stage2_stall() -> None:
    rig = Rig()
    s2 = rig.s2()
    rig.set_ste(63, Ste(V=True, Config=SteConfig.S2_TRANS,
                        **rig.s2_fields(s2, S2S=True, S2R=False)))
    ev = _fault(rig, 63, 0x7000).event
    assert isinstance(ev, AccessEvent) and (ev.Stall, ev.S2, ev.IPA) == (True, True, 0x7000)
    assert (63, ev.STAG) in rig.smmu.stalled


def test_two_level_stream_table_through_the_registers() -> None:
    rig = Rig()
    l1, l2 = rig.mem.alloc(), rig.mem.alloc()
    rig.mem.write64(l1 + 2 * 8, L1Std(Span=7, L2Ptr=l2).to_int())  # SIDs 0x200..0x23f
    rig.mem.write(l2 + 5 * 64, Ste(V=True, Config=SteConfig.BYPASS).to_bytes())
    rig.smmu.write_register(Reg.STRTAB_BASE, StrtabBase(ADDR=l1).to_int())
    rig.smmu.write_register(Reg.STRTAB_BASE_CFG,
                            StrtabBaseCfg(LOG2SIZE=16, SPLIT=8, FMT=1).to_int())
    t = rig.smmu.translate(0x205, 0x1234)
    assert (t.paddr, t.config_reads) == (0x1234, 2)
    assert _fault(rig, 0x245, 0).event.Type == EventType.C_BAD_STREAMID  # type: ignore[union-attr]

"""Golden bit images of the SMMUv3 structures, computed by hand from hw-formats.md section 2."""

from __future__ import annotations

import pytest

from iommu_uapi_smmu.cd import Cd
from iommu_uapi_smmu.cdtable import L1Cd
from iommu_uapi_smmu.cmds import (
    AtcInv,
    CfgiAll,
    CfgiCd,
    CfgiCdAll,
    CfgiSte,
    CfgiSteRange,
    Command,
    PrefetchAddr,
    PrefetchConfig,
    PriResp,
    Resume,
    StallTerm,
    Sync,
    TlbiEl2All,
    TlbiEl2Asid,
    TlbiEl2Va,
    TlbiEl2Vaa,
    TlbiNhAll,
    TlbiNhAsid,
    TlbiNhVa,
    TlbiNhVaa,
    TlbiNsnhAll,
    TlbiS2Ipa,
    TlbiS12Vmall,
    decode_command,
)
from iommu_uapi_smmu.events import (
    AccessEvent,
    Event,
    EventClass,
    EventType,
    FetchEvent,
    WalkAbortEvent,
    decode_event,
)
from iommu_uapi_smmu.idr import SmmuCaps, id_registers
from iommu_uapi_smmu.pri import PageRequest
from iommu_uapi_smmu.ste import Ste
from iommu_uapi_smmu.strtab import L1Std


def test_ste_golden() -> None:
    ste = Ste(V=True, Config=0b111, S1Fmt=1, S1ContextPtr=0x8000_1000, S1CDMax=8, S1DSS=2,
              S1STALLD=True, EATS=1, SHCFG=1, S2VMID=0x1234, S2T0SZ=24, S2SL0=1, S2TG=0,
              S2PS=5, S2AA64=True, S2AFFD=True, S2R=True, S2TTB=0x9000_0000)
    assert ste.qwords() == (0x4000_0000_8000_101F, 0x0000_1000_1800_0002,
                            0x042D_0058_0000_1234, 0x0000_0000_9000_0000, 0, 0, 0, 0)
    assert Ste.from_bytes(ste.to_bytes()) == ste


def test_ste_stage2_flags_golden() -> None:
    # S2ENDI 180, S2PTW 182, S2HD 183, S2HA 184, S2S 185 -> dword 2 bits 52, 54, 55, 56, 57
    ste = Ste(S2ENDI=True, S2PTW=True, S2HD=True, S2HA=True, S2S=True, S2TG=2, S2IR0=1,
              S2OR0=2, S2SH0=3)
    assert ste.qwords()[2] == (1 << 52 | 1 << 54 | 1 << 55 | 1 << 56 | 1 << 57
                               | 2 << 46 | 1 << 40 | 2 << 42 | 3 << 44)


def test_ste_dword1_attribute_fields() -> None:
    ste = Ste(S1CIR=1, S1COR=2, S1CSH=3, STRW=2, MemAttr=0xF, MTCFG=True, ALLOCCFG=0xA,
              NSCFG=1, PRIVCFG=2, INSTCFG=3)
    assert ste.qwords()[1] == (1 << 2 | 2 << 4 | 3 << 6 | 2 << 30 | 0xF << 32 | 1 << 36
                               | 0xA << 37 | 1 << 46 | 2 << 48 | 3 << 50)


def test_cd_golden() -> None:
    cd = Cd(T0SZ=16, TG0=0, IR0=1, OR0=1, SH0=3, EPD1=True, V=True, IPS=5, AA64=True, R=True,
            A=True, ASID=0x42, TTB0=0x8000_2000, MAIR0=0x0004_FF44)
    assert cd.qwords() == (0x0042_6205_C000_3510, 0x8000_2000, 0, 0x0004_FF44, 0, 0, 0, 0)
    assert Cd.from_bytes(cd.to_bytes()) == cd


def test_cd_ttb1_half_golden() -> None:
    cd = Cd(T1SZ=25, TG1=0b10, EPD0=True, TBI1=True, HAD1=True, TTB1=0x1_2345_6000,
            MAIR1=0xFF, AMAIR=0x11, ENDI=True, AFFD=True, WXN=True, UWXN=True, PAN=True,
            HD=True, HA=True, S=True, ASET=True)
    qw = cd.qwords()
    assert qw[0] == (25 << 16 | 0b10 << 22 | 1 << 14 | 1 << 15 | 1 << 35 | 1 << 36 | 1 << 37
                     | 1 << 39 | 1 << 40 | 1 << 42 | 1 << 43 | 1 << 44 | 1 << 47)
    assert qw[2] == 1 << 1 | 0x1_2345_6000
    assert qw[3] == 0xFF << 32
    assert qw[4] == 0x11


def test_l1_descriptors_golden() -> None:
    assert L1Std(Span=9, L2Ptr=0x8000_4000).to_int() == 0x8000_4009
    assert L1Cd(V=True, L2Ptr=0x8000_5000).to_int() == 0x8000_5001


# (command, w0, w1): every layout of 2.6.2
COMMAND_GOLDEN: list[tuple[Command, int, int]] = [
    (PrefetchConfig(SSV=True, SSID=5, SID=0x33), 0x0000_0033_0000_5801, 0),
    (PrefetchAddr(SID=1, Size=3, Addr=0x7000), 0x0000_0001_0000_0002, 0x7003),
    (CfgiSte(SID=0x1234, Leaf=True), 0x0000_1234_0000_0003, 1),
    (CfgiSteRange(SID=0x100, Range=4), 0x0000_0100_0000_0004, 4),
    (CfgiAll(), 0x04, 31),
    (CfgiCd(SID=5, SSID=0x10), 0x0000_0005_0001_0005, 0),
    (CfgiCdAll(SID=6), 0x0000_0006_0000_0006, 0),
    (TlbiNhAll(VMID=0x77), 0x0000_0077_0000_0010, 0),
    (TlbiNhAsid(VMID=1, ASID=0xABCD), 0xABCD_0001_0000_0011, 0),
    (TlbiNhVa(VMID=1, ASID=2, Addr=0x1234000, Leaf=True, TG=1, NUM=3, TTL=3),
     0x0002_0001_0000_3012, 0x1234701),
    (TlbiNhVaa(VMID=3, SCALE=5, NUM=1, TG=3, TTL=2, Addr=0x40000),
     0x0000_0003_0050_1013, 0x40E00),
    (TlbiEl2All(), 0x20, 0),
    (TlbiEl2Asid(ASID=9), 0x0009_0000_0000_0021, 0),
    (TlbiEl2Va(ASID=9, Addr=0x5000, Leaf=True), 0x0009_0000_0000_0022, 0x5001),
    (TlbiEl2Vaa(Addr=0x6000), 0x23, 0x6000),
    (TlbiS12Vmall(VMID=0x10), 0x0000_0010_0000_0028, 0),
    (TlbiS2Ipa(VMID=0x10, IPA=0x4000_0000, Leaf=True), 0x0000_0010_0000_002A, 0x4000_0001),
    (TlbiNsnhAll(), 0x30, 0),
    (AtcInv(SID=7, SSV=True, SSID=3, Size=2, Addr=0x10000), 0x0000_0007_0000_3840, 0x10002),
    (AtcInv(SID=7, G=True, SSV=True, Size=52), 0x0000_0007_0000_0A40, 52),
    (PriResp(SID=9, SSV=True, SSID=1, PRGI=0x1FF, Resp=2), 0x0000_0009_0000_1841, 0x21FF),
    (Resume(SID=3, Ac=True, STAG=0xBEEF), 0x0000_0003_0000_1044, 0xBEEF),
    (Resume(SID=3, Ab=True, STAG=1), 0x0000_0003_0000_2044, 1),
    (StallTerm(SID=0xFFFF_FFFF), 0xFFFF_FFFF_0000_0045, 0),
    (Sync(CS=1, MSH=3, MSIAttr=0xF, MSIData=0xCAFE, MSIAddr=0x8000_0040),
     0x0000_CAFE_0FC0_1046, 0x8000_0040),
]


@pytest.mark.parametrize(("cmd", "w0", "w1"), COMMAND_GOLDEN,
                         ids=[f"{type(c).__name__}-{i}" for i, (c, _, _) in
                              enumerate(COMMAND_GOLDEN)])
def test_command_golden(cmd: Command, w0: int, w1: int) -> None:
    assert cmd.qwords() == (w0, w1)
    assert decode_command(cmd.to_bytes()) == cmd


def test_cfgi_ste_range_covers_aligned_sids() -> None:
    assert CfgiSteRange(SID=0x10F, Range=4).sids == range(0x100, 0x120)
    assert CfgiAll().sids == range(0, 1 << 32)


def test_access_event_golden() -> None:
    ev = AccessEvent(Type=EventType.F_TRANSLATION, StreamID=0x11, SSV=True, SubstreamID=0x22,
                     PnU=True, RnW=True, S2=True, CLASS=EventClass.IN,
                     InputAddr=0xFFFF_0000_1234_5000, IPA=0x8765_4000)
    assert ev.qwords() == (0x0000_0011_0002_2810, 0x28A_0000_0000, 0xFFFF_0000_1234_5000,
                           0x8765_4000)
    assert decode_event(ev.to_bytes()) == ev


def test_stall_event_golden() -> None:
    ev = AccessEvent(Type=EventType.F_PERMISSION, StreamID=1, STAG=0x1234, Stall=True,
                     InD=True, CLASS=EventClass.TT, TTRnW=True)
    assert ev.qwords()[1] == 0x1234 | 1 << 31 | 1 << 34 | 1 << 40 | 1 << 44


def test_fetch_event_golden() -> None:
    ev = FetchEvent(Type=EventType.F_STE_FETCH, StreamID=4, FetchAddr=0x8000_0108)
    assert ev.qwords() == (0x0000_0004_0000_0003, 0, 0, 0x8000_0108)
    assert decode_event(ev.to_bytes()) == ev


def test_walk_abort_event_golden() -> None:
    ev = WalkAbortEvent(Type=EventType.F_WALK_EABT, StreamID=2, CLASS=EventClass.TT,
                        TTRnW=True, RnW=True, InputAddr=0x1000, FetchAddr=0xF_FFFF_FFF8)
    assert ev.qwords() == (0x0000_0002_0000_000B, 1 << 35 | 1 << 40 | 1 << 44, 0x1000,
                           0xF_FFFF_FFF8)


@pytest.mark.parametrize("etype", [EventType.C_BAD_STREAMID, EventType.C_BAD_STE,
                                   EventType.C_BAD_SUBSTREAMID, EventType.C_BAD_CD,
                                   EventType.F_STREAM_DISABLED])
def test_configuration_event_golden(etype: EventType) -> None:
    ev = Event(Type=etype, StreamID=1, SSV=True, SubstreamID=0xFFFFF)
    assert ev.qwords() == (0x0000_0001_FFFF_F800 | etype, 0, 0, 0)
    assert decode_event(ev.to_bytes()) == ev


def test_page_request_golden() -> None:
    req = PageRequest(StreamID=0x55, SubstreamID=7, READ=True, WRITE=True, Last=True,
                      SSV=True, PRGI=0x12, Addr=0xDEAD_B000)
    assert req.qwords() == (0xF000_0007_0000_0055, 0xDEAD_B012)
    req2 = PageRequest(PRIV=True, EXEC=True)
    assert req2.qwords() == (1 << 58 | 1 << 59, 0)


def test_default_id_registers() -> None:
    """The server part: IDR0 = S2P S1P TTF=AArch64 COHACC ATS ASID16 MSI SEV PRI VMID16 CD2L
    TTENDIAN=LE ST_LEVEL=2-level; IDR1 SIDSIZE 16 SSIDSIZE 20 and 2^19-entry queues; IDR3 RIL;
    IDR5 OAS 48 with every granule and STALL_MAX 128; IIDR Arm; AIDR SMMUv3.2."""
    regs = id_registers(SmmuCaps())
    assert regs.idr0 == (1 | 1 << 1 | 2 << 2 | 1 << 4 | 1 << 10 | 1 << 12 | 1 << 13 | 1 << 14
                         | 1 << 16 | 1 << 18 | 1 << 19 | 2 << 21 | 1 << 27) == 0x084D_741B
    assert regs.idr1 == 16 | 20 << 6 | 19 << 11 | 19 << 16 | 19 << 21
    assert regs.idr3 == 1 << 10
    assert regs.idr5 == 5 | 1 << 4 | 1 << 5 | 1 << 6 | 128 << 16
    assert (regs.idr2, regs.idr4) == (0, 0)
    assert regs.iidr == 0x43B
    assert regs.aidr == 0x02

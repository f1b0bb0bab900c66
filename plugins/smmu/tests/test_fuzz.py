"""Whatever software writes into an STE or a CD, a transaction either translates or is
terminated with an SmmuFault (and its event): the model never fails in any other way."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from smmu_rig import RW, Rig

from iommu_uapi.translation import Translation
from iommu_uapi_smmu.cd import Cd
from iommu_uapi_smmu.events import EventType, SmmuFault
from iommu_uapi_smmu.idr import SmmuCaps
from iommu_uapi_smmu.ste import Ste

#: Bits of the STE/CD fields the model reads (everything else is RES0 or attributes).
STE_BITS = Ste.defined_mask()
CD_BITS = Cd.defined_mask()


def _run(rig: Rig, sid: int, addr: int, ssid: int | None) -> None:
    try:
        t = rig.smmu.translate(sid, addr, 1, ssid=ssid)
    except SmmuFault as fault:
        if fault.event is not None:
            assert fault.event.Type in set(EventType)
        return
    assert isinstance(t, Translation)


@given(raw=st.integers(0, (1 << 512) - 1), addr=st.integers(0, (1 << 64) - 1),
       ssid=st.none() | st.integers(0, (1 << 20) - 1))
def test_any_ste(raw: int, addr: int, ssid: int | None) -> None:
    rig = Rig()
    rig.mem.write(rig.strtab + 64, (raw & STE_BITS).to_bytes(64, "little"))
    _run(rig, 1, addr, ssid)


@given(raw=st.integers(0, (1 << 512) - 1), addr=st.integers(0, (1 << 48) - 1),
       nested=st.booleans())
def test_any_cd(raw: int, addr: int, nested: bool) -> None:
    rig = Rig()
    pt = rig.s1()
    pt.map(addr & ~0xFFF, 0x9_0000_0000, 4096, RW)
    cd = Cd.from_int(raw & CD_BITS)
    ptr = rig.cd_table({0: cd})
    if nested:
        s2 = rig.s2()
        s2.map(0x10_0000, ptr, 4096, RW)
        rig.set_ste(1, Ste(V=True, Config=0b111, S1ContextPtr=0x10_0000,
                           **rig.s2_fields(s2)))
    else:
        rig.set_ste(1, Ste(V=True, Config=0b101, S1ContextPtr=ptr))
    _run(rig, 1, addr, None)


@given(data=st.data())
def test_near_legal_configurations(data: st.DataObject) -> None:
    """Field values around the legal ranges, over real tables: legality, geometry and walks
    agree (no configuration check passes that the walker then refuses)."""
    rig = Rig(SmmuCaps(httu=data.draw(st.integers(0, 2))))
    s1, s2 = rig.s1(), rig.s2()
    s1.map(0x1000, 0x4000_0000, 4096, RW)
    s2.map(0x4000_0000, 0x9_0000_0000, 4096, RW)
    ints = data.draw
    cd = Cd(V=ints(st.booleans()), AA64=True, T0SZ=ints(st.integers(10, 50)),
            TG0=ints(st.integers(0, 3)), T1SZ=ints(st.integers(10, 50)),
            TG1=ints(st.integers(0, 3)), EPD0=ints(st.booleans()), EPD1=ints(st.booleans()),
            IPS=ints(st.integers(0, 7)), TBI0=ints(st.booleans()), AFFD=ints(st.booleans()),
            R=ints(st.booleans()), A=ints(st.booleans()), S=ints(st.booleans()),
            HA=ints(st.booleans()), HD=ints(st.booleans()),
            ASID=ints(st.integers(0, 0xFFFF)), TTB0=s1.root, TTB1=s1.root)
    cdmax = ints(st.integers(0, 3))
    ptr = rig.cd_table(dict.fromkeys(range(1 << cdmax), cd), cdmax)
    ste = Ste(V=True, Config=ints(st.integers(4, 7)), S1ContextPtr=ptr, S1CDMax=cdmax,
              S1Fmt=ints(st.integers(0, 3)), S1DSS=ints(st.integers(0, 3)),
              S1STALLD=ints(st.booleans()), EATS=ints(st.integers(0, 3)),
              STRW=ints(st.integers(0, 3)), S2VMID=ints(st.integers(0, 0xFFFF)),
              S2T0SZ=ints(st.integers(10, 50)), S2SL0=ints(st.integers(0, 3)),
              S2TG=ints(st.integers(0, 3)), S2PS=ints(st.integers(0, 7)), S2AA64=True,
              S2AFFD=ints(st.booleans()), S2S=ints(st.booleans()), S2R=ints(st.booleans()),
              S2HA=ints(st.booleans()), S2HD=ints(st.booleans()),
              S2TTB=s2.root)
    rig.set_ste(1, ste)
    ssid = ints(st.none() | st.integers(0, 4))
    for addr in (0x1000, 0x4000_0000, 0xFFFF_FFFF_FFFF_F000):
        _run(rig, 1, addr, ssid)

"""Endpoint ATCs (ATS) and their invalidation by CMD_ATC_INV, page requests in the PRI queue and
CMD_PRI_RESP."""

from __future__ import annotations

import pytest
from smmu_rig import RW, Rig
from test_cmdq import QRig

from iommu_uapi.pgtable.lpae import LPAEPageTable
from iommu_uapi_smmu.cmds import AtcInv, CfgiSte, PriResp, TlbiNsnhAll
from iommu_uapi_smmu.events import EventType, SmmuFault
from iommu_uapi_smmu.pri import PageRequest
from iommu_uapi_smmu.registers import QUEUE_OVERFLOW, Cr0, QueueBase, Reg

DATA = 0x9_0000_0000


def _ats_stream(rig: Rig, sid: int = 1) -> list[LPAEPageTable]:
    """An ATS-enabled stage-1 stream with two PASIDs mapping 0x1000-0x3fff."""
    pts = [rig.s1() for _ in range(2)]
    for i, p in enumerate(pts):
        for va in (0x1000, 0x2000, 0x3000):
            p.map(va, DATA + i * 0x10_0000 + va, 4096, RW)
    rig.s1_stream(sid, {i: rig.cd(p, ASID=i + 1) for i, p in enumerate(pts)}, cdmax=1,
                  EATS=1)
    return pts


def _cached(rig: QRig, sid: int, ssid: int | None, vas: tuple[int, ...]) -> list[int]:
    """The VAs the endpoint still translates from its ATC once the SMMU's tables are gone."""
    out = []
    for va in vas:
        try:
            rig.smmu.pcie.translate(sid, va, 1, ssid=ssid)
            out.append(va)
        except SmmuFault:
            pass
    return out


def test_atc_hits_without_the_smmu_until_atc_inv() -> None:
    rig = QRig()
    pts = _ats_stream(rig)
    t = rig.smmu.pcie.translate(1, 0x1010, 1, ssid=1)
    assert t.paddr == DATA + 0x10_1010
    for p in pts:
        p.unmap(0x1000, 4096)
    rig.submit(TlbiNsnhAll())
    hit = rig.smmu.pcie.translate(1, 0x1010, 1, ssid=1)
    assert (hit.paddr, hit.table_reads, hit.config_reads) == (DATA + 0x10_1010, 0, 0)  # stale
    rig.submit(AtcInv(SID=1, SSV=True, SSID=1, Addr=0x1000))
    with pytest.raises(SmmuFault):
        rig.smmu.pcie.translate(1, 0x1010, 1, ssid=1)


def test_atc_inv_with_pasid_spares_other_pasids_and_without_pasid_spares_none() -> None:
    rig = QRig()
    pts = _ats_stream(rig)
    vas = (0x1000, 0x2000, 0x3000)
    for ssid in (0, 1):
        for va in vas:
            rig.smmu.pcie.translate(1, va, 1, ssid=ssid)
    for p in pts:
        for va in vas:
            p.unmap(va, 4096)
    rig.submit(TlbiNsnhAll(), AtcInv(SID=1, SSV=True, SSID=0, Addr=0x2000, Size=1))  # 8 KiB
    assert _cached(rig, 1, 0, vas) == [0x1000]
    assert _cached(rig, 1, 1, vas) == list(vas)
    rig.submit(AtcInv(SID=1, Addr=0, Size=52))  # no PASID, everything
    assert _cached(rig, 1, 1, vas) == []


def test_ats_request_needs_eats() -> None:
    rig = QRig()
    pt = rig.s1()
    pt.map(0x1000, DATA, 4096, RW)
    rig.s1_stream(2, {0: rig.cd(pt)})
    with pytest.raises(SmmuFault) as info:
        rig.smmu.pcie.translate(2, 0x1000, 1)
    assert info.value.event is not None
    assert info.value.event.Type == EventType.F_BAD_ATS_TREQ
    assert rig.smmu.pcie.atcs.get(2) is None


def _priq(rig: QRig, log2: int) -> int:
    base = rig.mem.alloc()
    rig.smmu.write_register(Reg.PRIQ_BASE, QueueBase(LOG2SIZE=log2, ADDR=base).to_int())
    rig.smmu.write_register(Reg.CR0, Cr0(SMMUEN=True, CMDQEN=True, EVENTQEN=True,
                                         PRIQEN=True).to_int())
    return base


def test_page_requests_and_responses() -> None:
    rig = QRig()
    base = _priq(rig, 2)
    first = PageRequest(StreamID=1, SSV=True, SubstreamID=5, READ=True, PRGI=3, Addr=0x4000)
    last = PageRequest(StreamID=1, SSV=True, SubstreamID=5, WRITE=True, Last=True, PRGI=3,
                       Addr=0x5000)
    assert rig.smmu.pcie.page_request(first) and rig.smmu.pcie.page_request(last)
    assert PageRequest.from_bytes(rig.mem.read(base, 16)) == first
    assert PageRequest.from_bytes(rig.mem.read(base + 16, 16)) == last
    assert rig.smmu.regs.read(Reg.PRIQ_PROD) == 2
    assert rig.smmu.pcie.pending == {(1, 5, 3)}
    rig.submit(PriResp(SID=1, SSV=True, SSID=5, PRGI=3, Resp=2))
    assert rig.smmu.pcie.pending == set()
    assert rig.smmu.pcie.responses == [(1, 5, 3, 2)]


def test_pri_queue_overflow_loses_requests() -> None:
    rig = QRig()
    _priq(rig, 0)  # one entry
    req = PageRequest(StreamID=1, Last=True, PRGI=1)
    assert rig.smmu.pcie.page_request(req)
    assert not rig.smmu.pcie.page_request(PageRequest(StreamID=1, Last=True, PRGI=2))
    assert QUEUE_OVERFLOW.get(rig.smmu.regs.read(Reg.PRIQ_PROD))
    assert rig.smmu.pcie.pending == {(1, None, 1)}


def test_page_requests_need_an_enabled_pri_queue() -> None:
    rig = QRig()
    assert not rig.smmu.pcie.page_request(PageRequest(StreamID=1, Last=True))
    assert rig.smmu.pcie.pending == set()


def test_atschk_forbids_translated_traffic_once_ats_is_withdrawn() -> None:
    rig = QRig()
    _ats_stream(rig, sid=3)
    rig.smmu.pcie.translate(3, 0x1000, 1, ssid=0)
    ste = rig.mem.read(rig.strtab + 3 * 64, 64)
    rig.mem.write(rig.strtab + 3 * 64, (int.from_bytes(ste, "little") & ~(3 << 92)).to_bytes(
        64, "little"))  # EATS = 0
    rig.submit(CfgiSte(SID=3))
    assert rig.smmu.pcie.translate(3, 0x1000, 1, ssid=0).table_reads == 0  # unchecked
    rig.smmu.write_register(Reg.CR0, Cr0(SMMUEN=True, CMDQEN=True, EVENTQEN=True,
                                         ATSCHK=True).to_int())
    with pytest.raises(SmmuFault) as info:
        rig.smmu.pcie.translate(3, 0x1000, 1, ssid=0)
    ev = info.value.event
    assert ev is not None and (ev.Type, ev.InputAddr) == (  # type: ignore[attr-defined]
        EventType.F_TRANSL_FORBIDDEN, 0x1000)


def test_ats_request_on_a_disabled_substream_gets_completer_abort_without_event() -> None:
    rig = QRig()
    _ats_stream(rig, sid=4)  # S1CDMax = 1, S1DSS = terminate
    with pytest.raises(SmmuFault) as info:
        rig.smmu.pcie.translate(4, 0x1000, 1)  # no PASID
    assert info.value.event is None and rig.smmu.events == []
    with pytest.raises(SmmuFault) as info:
        rig.smmu.translate(4, 0x1000)  # the same untranslated access records the event
    assert info.value.event is not None
    assert info.value.event.Type == EventType.F_STREAM_DISABLED

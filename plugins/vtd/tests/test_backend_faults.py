"""Faults and page requests through the unit: FRCD records, FPD, generic faults delivered to the
consumer; page request descriptor -> generic fault -> response -> page group response."""

from __future__ import annotations

import errno

import pytest
from vtd_rig import GVA, Rig, errno_of

from iommu_uapi.translation import TranslationFault
from iommu_uapi.uapi import Fault, PageResponse
from iommu_uapi.uapi.consts import (
    FaultPerm,
    FaultReason,
    FaultType,
    PageRequestFlags,
    PageResponseCode,
    PageResponseFlags,
    UnrecoverableFlags,
)
from iommu_uapi_vtd.pasid_entry import PasidEntry
from iommu_uapi_vtd.qi import PageGroupResponse, PasidCacheInv

UNMAPPED = GVA + 0x10_0000


def consumer(rig: Rig) -> list[Fault]:
    got: list[Fault] = []
    rig.iommu.register_fault_handler(rig.dev, got.append)
    return got


def test_not_present_first_level_entry_is_recorded_and_delivered() -> None:
    rig = Rig()
    got = consumer(rig)
    p = rig.bind()
    with pytest.raises(TranslationFault) as info:
        rig.iommu.translate(rig.dev, UNMAPPED + 0x10, pasid=p, access=FaultPerm.WRITE)
    frcd = rig.b.faults.log[-1]
    want = {"FR": 0x71, "SID": rig.dev.sid, "PP": True, "PV": p, "FI": UNMAPPED, "T": False}
    assert {k: v for k, v in frcd.describe().items() if k in want} == want
    assert rig.b.faults.recorder.recorded == 1 and rig.b.status.fault_events == 1
    assert not rig.b.faults.recorder.pending()        # the host driver consumed the record
    assert len(got) == 1 and got[0] == info.value.fault
    ev = got[0].event
    assert (got[0].type, ev.reason, ev.pasid, ev.addr, ev.perm) == (
        FaultType.DMA_UNRECOV, FaultReason.PTE_FETCH, p, UNMAPPED + 0x10, FaultPerm.WRITE)
    assert ev.flags == UnrecoverableFlags.ADDR_VALID | UnrecoverableFlags.PASID_VALID


def test_fault_processing_disabled_suppresses_the_record() -> None:
    rig = Rig()
    got = consumer(rig)
    p = rig.bind()
    addr = rig.b.tables.pasid_entry_addr(rig.dev.sid, p)
    assert addr is not None
    entry = PasidEntry.from_bytes(rig.mem.read(addr, 64))
    fields = {f: getattr(entry, f) for f in entry.LAYOUT}
    rig.mem.write(addr, PasidEntry(**{**fields, "FPD": True}).to_bytes())
    rig.b.run([PasidCacheInv(G=1, DID=entry.DID, PASID=p)])
    with pytest.raises(TranslationFault) as info:
        rig.iommu.translate(rig.dev, UNMAPPED, pasid=p)
    assert info.value.fault is None and info.value.native.reason == 0x71  # type: ignore[attr-defined]
    assert got == [] and rig.b.faults.log == type(rig.b.faults.log)([], 4096)
    assert rig.b.faults.recorder.suppressed == 1


def test_unbound_pasid_is_a_configuration_fault() -> None:
    rig = Rig()
    got = consumer(rig)
    p = rig.vm.alloc()
    with pytest.raises(TranslationFault):
        rig.iommu.translate(rig.dev, GVA + 0x123, pasid=p, access=FaultPerm.WRITE)
    frcd = rig.b.faults.log[-1]
    # the record names the request that met the bad configuration: its page and its access
    record = (frcd.FR, frcd.FI, frcd.T, frcd.PV, frcd.PP)
    assert record == (0x59, GVA, False, p, True)
    ev = got[0].event
    assert (ev.reason, ev.addr, ev.perm) == (FaultReason.PASID_INVALID, GVA + 0x123,
                                             FaultPerm.WRITE)


def test_execute_and_supervisor_requests_need_ere_and_sre() -> None:
    rig = Rig(ers=False)
    consumer(rig)
    p = rig.bind()
    with pytest.raises(TranslationFault):
        rig.iommu.translate(rig.dev, GVA, pasid=p, access=FaultPerm.READ | FaultPerm.PRIV)
    assert rig.b.faults.log[-1].FR == 0x5D
    with pytest.raises(TranslationFault):
        rig.iommu.translate(rig.dev, GVA, pasid=p, access=FaultPerm.EXEC)
    assert rig.b.faults.log[-1].FR == 0x5C


def test_many_faults_never_overflow_while_the_driver_consumes_them() -> None:
    rig = Rig()
    consumer(rig)
    p = rig.bind()
    for i in range(20):
        with pytest.raises(TranslationFault):
            rig.iommu.translate(rig.dev, UNMAPPED + (i << 12), pasid=p)
    assert rig.b.faults.recorder.recorded == 20 and rig.b.faults.recorder.lost == 0


# -- page requests ---------------------------------------------------------------------------------


def response(pasid: int, grpid: int, code: int, *, pasid_valid: bool = True) -> bytes:
    return PageResponse(argsz=PageResponse.SIZE, version=1,
                        flags=PageResponseFlags.PASID_VALID if pasid_valid else 0,
                        pasid=pasid, grpid=grpid, code=code).to_bytes()


@pytest.mark.parametrize(("profile", "rc"), [("linux-5.10", 2), ("strict", 0xF)])
def test_page_request_round_trip(profile: str, rc: int) -> None:
    rig = Rig(profile=profile, ats=True)
    got = consumer(rig)
    p = rig.bind()
    fault = rig.iommu.page_request(rig.dev, GVA + 0x123, pasid=p, grpid=5,
                                   access=FaultPerm.READ | FaultPerm.WRITE,
                                   private_data=(0xAA, 0xBB))
    desc = rig.b.prq.taken[-1]
    want = {"RID": rig.dev.sid, "PP": True, "PASID": p, "PRGI": 5, "LPIG": True, "RD": True,
            "WR": True, "ADDR": GVA, "PDP": True, "PRIV0": 0xAA, "PRIV1": 0xBB}
    assert {k: v for k, v in desc.describe().items() if k in want} == want
    prm = fault.prm
    assert fault.type == FaultType.PAGE_REQ and got == [fault]
    assert prm.flags == (PageRequestFlags.PASID_VALID | PageRequestFlags.RESPONSE_NEEDS_PASID
                         | PageRequestFlags.LAST_PAGE | PageRequestFlags.PRIV_DATA)
    assert prm.addr == (GVA >> 12 if profile == "linux-5.10" else GVA)
    n = rig.b.queue.executed
    rig.iommu.uapi_page_response(rig.dev, response(p, 5, PageResponseCode.FAILURE))
    sent = rig.submitted(n)
    assert len(sent) == 1 and isinstance(sent[0], PageGroupResponse)
    assert sent[0].describe() == {"PP": True, "PDP": True, "RC": rc, "RID": rig.dev.sid,
                                  "PASID": p, "LPIG": True, "PRGI": 5, "PRIV0": 0xAA,
                                  "PRIV1": 0xBB}
    assert rig.b.responses == sent
    assert rig.iommu.pending_page_requests(rig.dev) == []


def test_page_request_without_pre_records_0x47_and_is_eopnotsupp() -> None:
    rig = Rig()                      # no ATS/PRI: PRE clear
    p = rig.bind()
    e = errno_of(lambda: rig.iommu.page_request(rig.dev, GVA, pasid=p))
    assert (e.errno, e.rule) == (errno.EOPNOTSUPP, "vtd.prq.refused")
    assert rig.b.faults.log[-1].FR == 0x47 and rig.b.prq.taken == []


def test_not_last_request_without_private_data_gets_no_descriptor() -> None:
    rig = Rig(ats=True)
    consumer(rig)
    p = rig.bind()
    rig.iommu.page_request(rig.dev, GVA, pasid=p, grpid=1, last=False)
    fault = rig.b.prq.taken[-1]
    assert not fault.LPIG
    rig.iommu.page_request(rig.dev, GVA + 0x1000, pasid=p, grpid=1, last=True)
    n = rig.b.queue.executed
    rig.iommu.uapi_page_response(rig.dev, response(p, 1, PageResponseCode.SUCCESS))
    assert [type(d) for d in rig.submitted(n)] == [PageGroupResponse]


def _pending(rig: Rig, pasid: int | None, grpid: int = 3) -> None:
    consumer(rig)
    rig.iommu.page_request(rig.dev, GVA, pasid=pasid, grpid=grpid)


def test_response_to_a_request_without_pasid_is_einval() -> None:
    rig = Rig(ats=True)
    _pending(rig, None)
    before = rig.state()
    e = errno_of(lambda: rig.iommu.uapi_page_response(
        rig.dev, response(0, 3, 0, pasid_valid=False)))
    assert (e.errno, e.rule) == (errno.EINVAL, "vtd.page_response.no_pasid")
    assert rig.state() == before


def test_response_to_pasid_0_is_einval() -> None:
    rig = Rig(ats=True)
    _pending(rig, 0)
    before = rig.state()
    e = errno_of(lambda: rig.iommu.uapi_page_response(rig.dev, response(0, 3, 0)))
    assert (e.errno, e.rule) == (errno.EINVAL, "vtd.page_response.pasid_range")
    assert rig.state() == before


def test_response_for_an_unbound_pasid_is_enodev() -> None:
    rig = Rig(ats=True)
    p = rig.vm.alloc()
    _pending(rig, p)
    before = rig.state()
    e = errno_of(lambda: rig.iommu.uapi_page_response(rig.dev, response(p, 3, 0)))
    assert (e.errno, e.rule) == (errno.ENODEV, "vtd.page_response.not_bound")
    assert rig.state() == before


def test_strict_refuses_an_unknown_response_code() -> None:
    rig = Rig(profile="strict", ats=True)
    p = rig.bind()
    _pending(rig, p)
    before = rig.state()
    e = errno_of(lambda: rig.b.iommu_page_response(
        dev=rig.dev, fault=rig.iommu.pending_page_requests(rig.dev)[0],
        msg=PageResponse(argsz=24, version=1, flags=1, pasid=p, grpid=3, code=7),
        profile="strict"))
    assert e.errno == errno.EINVAL
    assert rig.state() == before

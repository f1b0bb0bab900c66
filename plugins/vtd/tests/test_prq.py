"""Page requests (hw-formats 1.11, kernel-uapi d.4): descriptor layout, the queue with PRO
overflow, the report the Linux driver makes and the response it sends."""

from __future__ import annotations

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.uapi.consts import FaultPerm, FaultType, PageRequestFlags, PageResponseCode
from iommu_uapi.uapi.fault import FaultPageRequest
from iommu_uapi_vtd.prq import PageRequestDesc, PageRequestQueue, page_group_response, to_uapi_fault
from iommu_uapi_vtd.qi import PageGroupResponse

REQ = PageRequestDesc(PP=True, PDP=False, RID=0x310, PASID=0x1234, EXE=True, PRIV=False,
                      RD=True, WR=True, LPIG=True, PRGI=0x1AB, ADDR=0x7FFF_F000)
F = PageRequestFlags


def test_page_request_descriptor_golden() -> None:
    d = PageRequestDesc(PP=True, PDP=True, RID=0x310, PASID=0x1234, EXE=True, PRIV=True,
                        RD=True, WR=True, LPIG=True, PRGI=0x1AB, ADDR=0x7FFF_F000,
                        PRIV0=0xAA, PRIV1=0xBB)
    assert d.qwords() == (
        1 | 1 << 8 | 1 << 9 | 0x310 << 16 | 0x1234 << 32 | 1 << 52 | 1 << 53,
        1 | 1 << 1 | 1 << 2 | 0x1AB << 3 | 0x7FFF_F000,
        0xAA, 0xBB,
    )
    assert PageRequestDesc.from_bytes(d.to_bytes()) == d


def test_queue_posts_and_software_takes_in_order() -> None:
    mem = PhysicalMemory()
    q = PageRequestQueue(mem)
    assert q.post(REQ) and q.post(PageRequestDesc(RID=1, ADDR=0x1000))
    assert q.pending and q.events == 2 and q.tail == 64
    assert PageRequestDesc.from_bytes(mem.read(q.base, 32)) == REQ
    assert [d.RID for d in q.take()] == [0x310, 1]
    assert q.head == q.tail == 64 and q.take() == []
    q.write_prs(1)
    assert not q.pending


def test_overflow_sets_pro_and_auto_responds_to_last_in_group() -> None:
    auto: list[PageGroupResponse] = []
    q = PageRequestQueue(PhysicalMemory(), auto_response=auto.append)
    for i in range(127):                                   # 128 slots, one stays empty
        assert q.post(PageRequestDesc(RID=i, PRGI=i))
    assert q.full()
    assert not q.post(PageRequestDesc(RID=0x200, PRGI=5))          # not last: no response
    assert q.overflowed and auto == []
    assert not q.post(REQ)
    assert auto == [PageGroupResponse(PP=True, RID=0x310, PASID=0x1234, LPIG=True, PRGI=0x1AB,
                                      RC=0)]
    assert q.overflows == 2 and q.tail == 127 * 32
    assert len(q.take()) == 127
    q.write_prs(2)
    assert not q.overflowed and q.post(REQ) and q.tail == 0     # wrapped


def test_masked_page_request_event() -> None:
    q = PageRequestQueue(PhysicalMemory())
    q.write_pectl(1 << 31)
    q.post(REQ)
    assert q.events == 0 and q.pectl == 3 << 30
    q.write_pectl(0)
    assert q.events == 1 and q.pectl == 0


def test_report_linux_510_keeps_the_page_number_quirk() -> None:
    f = to_uapi_fault(REQ)
    assert f.type == FaultType.PAGE_REQ
    p = f.prm
    assert p.addr == 0x7FFFF                         # page number, not shifted
    assert p.flags == F.LAST_PAGE | F.PASID_VALID | F.RESPONSE_NEEDS_PASID
    assert p.perm == FaultPerm.READ | FaultPerm.WRITE | FaultPerm.EXEC
    assert (p.pasid, p.grpid, p.private_data) == (0x1234, 0x1AB, (0, 0))
    assert to_uapi_fault(REQ, mode="strict").prm.addr == 0x7FFF_F000


def test_private_data_sets_priv_data_and_last_page() -> None:
    d = PageRequestDesc(PDP=True, PRIV=True, RD=True, RID=1, PRGI=3, PRIV0=7, PRIV1=8)
    p = to_uapi_fault(d).prm
    assert p.flags == F.PRIV_DATA | F.LAST_PAGE
    assert p.private_data == (7, 8) and p.perm == FaultPerm.READ | FaultPerm.PRIV


def test_response_linux_510_sends_failure_as_2_and_strict_as_0xf() -> None:
    prm = to_uapi_fault(REQ).prm
    linux = page_group_response(prm, 0x310, PageResponseCode.FAILURE)
    strict = page_group_response(prm, 0x310, PageResponseCode.FAILURE, mode="strict")
    assert linux is not None and strict is not None
    assert linux.RC == 2 and strict.RC == 0xF
    assert linux.qwords() == (9 | 1 << 4 | 2 << 12 | 0x310 << 16 | 0x1234 << 32,
                              0x1AB << 3 | 1 << 2, 0, 0)
    ok = page_group_response(prm, 0x310, PageResponseCode.SUCCESS, mode="strict")
    assert ok is not None and ok.RC == 0


def test_response_only_for_last_page_or_private_data() -> None:
    prm = to_uapi_fault(PageRequestDesc(RID=1, PRGI=2, ADDR=0x1000)).prm
    assert page_group_response(prm, 1, 0) is None
    priv = to_uapi_fault(PageRequestDesc(PDP=True, RID=1, PRGI=2, PRIV0=5, PRIV1=6)).prm
    resp = page_group_response(priv, 1, 0)
    assert resp is not None and resp.PDP and resp.LPIG and (resp.PRIV0, resp.PRIV1) == (5, 6)


def test_linux_510_code_spills_into_the_requester_id() -> None:
    prm = to_uapi_fault(REQ).prm
    resp = page_group_response(prm, 0x310, 0x10)
    assert resp is not None and resp.RC == 0 and resp.RID == 0x311
    with pytest.raises(UAPIError) as exc:
        page_group_response(prm, 0x310, 0x10, mode="strict")
    assert exc.value.errno == 22


@pytest.mark.parametrize(("args", "kw"), [((0x10000, 0), {}), ((1, -1), {}), ((1, 1 << 32), {}),
                                          ((1, 0), {"mode": "linux-9.9"})])
def test_response_refuses_bad_input(args: tuple[int, int], kw: dict[str, str]) -> None:
    with pytest.raises(UAPIError):
        page_group_response(FaultPageRequest(flags=int(F.LAST_PAGE)), *args, **kw)  # type: ignore[arg-type]

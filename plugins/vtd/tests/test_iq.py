"""The invalidation queue against populated caches: each descriptor removes exactly what table
1.9.11 says it reaches; queue errors stop at the bad descriptor and resume after IQE is cleared."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.tlb import TLBEntry
from iommu_uapi_vtd.caches import VtdCaches, iotlb_tag
from iommu_uapi_vtd.context_entry import ContextEntry
from iommu_uapi_vtd.iq import InvalidationQueue
from iommu_uapi_vtd.pasid_entry import PasidEntry, Pgtt
from iommu_uapi_vtd.qi import (
    ContextCacheInv,
    DevTlbInv,
    IecInv,
    InvWait,
    IotlbInv,
    Iqei,
    PageGroupResponse,
    PasidCacheInv,
    PasidDevTlbInv,
    PasidIotlbInv,
    devtlb_size_encoding,
)
from iommu_uapi_vtd.registers import VtdConfig

CFG = VtdConfig()
DEV, DEV2, DEV_FN4 = 0x310, 0x311, 0x314
A, B = 0x10, 0x11          # PASIDs


def _leaf(iova: int, global_: bool = False) -> TLBEntry:
    return TLBEntry(iova, 0x1000, 0x9000_0000 + iova, 3, global_)


def populated() -> VtdCaches:
    c = VtdCaches()
    for itag, iova, g in [(("fl", 5, A), 0x1000, False), (("fl", 5, A), 0x2000, True),
                         (("fl", 5, B), 0x1000, False), (("sl", 5, 0), 0x1000, False),
                         (("sl", 5, 0), 0x400000, False), (("fl", 6, A), 0x1000, False),
                         (("sl", 6, 0), 0x1000, False)]:
        c.iotlb.fill(itag, iova, _leaf(iova, g))
    for ftag, level, iova in [((5, A), 2, 0x1000), ((5, A), 4, 0x1000), ((5, B), 2, 0x1000),
                             ((6, A), 2, 0x1000)]:
        c.fl_psc.fill(ftag, level, iova, 0xAAAA000)
    for stag, level, iova in [((5,), 2, 0x1000), ((5,), 2, 0x400000), ((6,), 2, 0x1000)]:
        c.sl_psc.fill(stag, level, iova, 0xBBBB000)
    for sid, did in [(DEV, 5), (DEV2, 6), (DEV_FN4, 5)]:
        c.context.fill(sid, ContextEntry(P=True))
        c.context.note_did(sid, did)
    for sid, pasid, did in [(DEV, A, 5), (DEV, B, 5), (DEV2, A, 6)]:
        c.pasid.fill(sid, pasid, PasidEntry(P=True, DID=did, PGTT=Pgtt.NESTED), False)
    atc = c.devtlb.enable(DEV)
    for apasid, iova in [(None, 0x1000), (A, 0x1000), (A, 0x9000), (B, 0x1000)]:
        atc.fill((DEV, apasid), iova, _leaf(iova))
    return c


def snapshot(c: VtdCaches) -> dict[str, set[Any]]:
    return {
        "iotlb": {(tag, e.iova) for tag, e in c.iotlb},
        "fl_psc": set(c.fl_psc), "sl_psc": set(c.sl_psc),
        "context": set(c.context.entries), "pasid": set(c.pasid.entries),
        "atc": {(tag, e.iova) for tag, e in c.devtlb.tlbs[DEV]},
    }


def gone_after(desc: object, **queue_kw: Any) -> dict[str, set[Any]]:
    c = populated()
    before = snapshot(c)
    q = InvalidationQueue(PhysicalMemory(), queue_kw.pop("cfg", CFG), c, **queue_kw)
    assert q.run([desc]) == 1  # type: ignore[list-item]
    after = snapshot(c)
    assert all(after[k] <= before[k] for k in before)
    return {k: before[k] - after[k] for k in before if before[k] - after[k]}


# -- type 1 ----------------------------------------------------------------------------------


def test_context_cache_global_domain_and_device() -> None:
    assert gone_after(ContextCacheInv(G=1)) == {"context": {DEV, DEV2, DEV_FN4}}
    assert gone_after(ContextCacheInv(G=2, DID=5)) == {"context": {DEV, DEV_FN4}}
    assert gone_after(ContextCacheInv(G=3, DID=5, SID=DEV)) == {"context": {DEV}}
    # FM=1 ignores SID bit 2: 0x310 and 0x314 are one device's functions
    assert gone_after(ContextCacheInv(G=3, DID=5, SID=DEV, FM=1)) == {"context": {DEV, DEV_FN4}}


# -- type 2 ----------------------------------------------------------------------------------


def test_iotlb_global_reaches_iotlb_and_paging_structure_caches_only() -> None:
    gone = gone_after(IotlbInv(G=1))
    assert set(gone) == {"iotlb", "fl_psc", "sl_psc"}
    assert len(gone["iotlb"]) == 7


def test_iotlb_domain_drops_both_kinds_of_the_did() -> None:
    gone = gone_after(IotlbInv(G=2, DID=5))
    assert gone["iotlb"] == {(("fl", 5, A), 0x1000), (("fl", 5, A), 0x2000),
                             (("fl", 5, B), 0x1000), (("sl", 5, 0), 0x1000),
                             (("sl", 5, 0), 0x400000)}
    assert gone["fl_psc"] == {((5, A), 2, 0), ((5, A), 4, 0), ((5, B), 2, 0)}
    assert gone["sl_psc"] == {((5,), 2, 0), ((5,), 2, 2)}
    assert set(gone) == {"iotlb", "fl_psc", "sl_psc"}


def test_iotlb_page_selective() -> None:
    gone = gone_after(IotlbInv(G=3, DID=5, ADDR=0x400000, AM=0))
    sl_gone = {e for e in gone["iotlb"] if e[0][0] == "sl"}
    assert sl_gone == {(("sl", 5, 0), 0x400000)}          # the SL range only
    assert {e for e in gone["iotlb"] if e[0][0] == "fl"} == {
        (("fl", 5, A), 0x1000), (("fl", 5, A), 0x2000), (("fl", 5, B), 0x1000)}
    assert gone["sl_psc"] == {((5,), 2, 2)}
    assert len(gone["fl_psc"]) == 3


def test_iotlb_page_selective_leaf_only_keeps_paging_structure_caches() -> None:
    gone = gone_after(IotlbInv(G=3, DID=5, ADDR=0x400000, AM=0, IH=True))
    assert set(gone) == {"iotlb"}


# -- type 6 ----------------------------------------------------------------------------------


def test_pasid_iotlb_non_global_spares_global_and_sl_entries() -> None:
    gone = gone_after(PasidIotlbInv(G=2, DID=5, PASID=A))
    assert gone == {"iotlb": {(("fl", 5, A), 0x1000)},
                    "fl_psc": {((5, A), 2, 0), ((5, A), 4, 0)}}


def test_pasid_iotlb_page_selective_includes_global() -> None:
    gone = gone_after(PasidIotlbInv(G=3, DID=5, PASID=A, ADDR=0x2000, AM=0))
    assert gone == {"iotlb": {(("fl", 5, A), 0x2000)},
                    "fl_psc": {((5, A), 2, 0), ((5, A), 4, 0)}}


def test_pasid_iotlb_leaf_only_keeps_the_first_level_paging_structure_cache() -> None:
    gone = gone_after(PasidIotlbInv(G=3, DID=5, PASID=A, ADDR=0x0, AM=2, IH=True))
    assert gone == {"iotlb": {(("fl", 5, A), 0x1000), (("fl", 5, A), 0x2000)}}


def test_pasid_iotlb_never_touches_second_level_only_entries() -> None:
    assert gone_after(PasidIotlbInv(G=2, DID=5, PASID=0)) == {}
    assert iotlb_tag(Pgtt.PASS_THROUGH, 5, 0) == ("sl", 5, 0)
    assert iotlb_tag(Pgtt.NESTED, 5, A) == ("fl", 5, A)


# -- type 7 ----------------------------------------------------------------------------------


def test_pasid_cache_granularities() -> None:
    assert gone_after(PasidCacheInv(G=0, DID=5)) == {"pasid": {(DEV, A), (DEV, B)}}
    assert gone_after(PasidCacheInv(G=1, DID=5, PASID=A)) == {"pasid": {(DEV, A)}}
    assert gone_after(PasidCacheInv(G=1, DID=6, PASID=A)) == {"pasid": {(DEV2, A)}}
    assert gone_after(PasidCacheInv(G=3)) == {"pasid": {(DEV, A), (DEV, B), (DEV2, A)}}


# -- types 3, 8, 4 -------------------------------------------------------------------------------


def test_device_tlb_without_pasid_reaches_every_pasid_of_the_range() -> None:
    # PCIe ATS: a request without a PASID prefix invalidates the entries requested with one too
    assert gone_after(DevTlbInv(SID=DEV, ADDR=0x1000)) == {
        "atc": {((DEV, None), 0x1000), ((DEV, A), 0x1000), ((DEV, B), 0x1000)}}
    assert gone_after(DevTlbInv(SID=DEV, ADDR=0x9000)) == {"atc": {((DEV, A), 0x9000)}}
    assert gone_after(DevTlbInv(SID=DEV2, ADDR=0x1000)) == {}    # no ATC on that device


def test_pasid_device_tlb() -> None:
    addr, s = devtlb_size_encoding(0, 52)
    assert gone_after(PasidDevTlbInv(SID=DEV, PASID=A, ADDR=addr, S=s)) == {
        "atc": {((DEV, A), 0x1000), ((DEV, A), 0x9000)}}
    assert gone_after(PasidDevTlbInv(SID=DEV, PASID=A, ADDR=0x1000, G=True)) == {
        "atc": {((DEV, None), 0x1000), ((DEV, A), 0x1000), ((DEV, B), 0x1000)}}
    addr, s = devtlb_size_encoding(0x8000, 1)
    assert gone_after(PasidDevTlbInv(SID=DEV, PASID=A, ADDR=addr, S=s)) == {
        "atc": {((DEV, A), 0x9000)}}


def test_interrupt_entry_cache_invalidation_is_accepted_without_effect() -> None:
    assert gone_after(IecInv(G=True)) == {}


# -- type 5 and 9 --------------------------------------------------------------------------------


def test_wait_descriptor_writes_status_and_sets_iwc() -> None:
    mem = PhysicalMemory()
    q = InvalidationQueue(mem, CFG, VtdCaches())
    q.run([IotlbInv(G=1), InvWait(SW=True, STDATA=0xC0FFEE, STADDR=0x10004)])
    assert mem.read32(0x10004) == 0xC0FFEE and q.status.ics == 0
    q.run([InvWait(IF=True)])
    assert q.status.ics == 1 and q.status.invalidation_events == 1
    q.status.write_ics(1)
    q.status.write_iectl(1 << 31)      # masked: pending instead of sent
    q.run([InvWait(IF=True, SW=True, STDATA=7, STADDR=0x10008)])
    assert q.status.iectl == 3 << 30 and q.status.invalidation_events == 1
    assert mem.read32(0x10008) == 7
    q.status.write_iectl(0)
    assert q.status.invalidation_events == 2 and q.status.iectl == 0
    assert q.run([InvWait()]) == 1      # neither SW nor IF: a fence


def test_page_group_responses_go_to_the_page_request_model() -> None:
    got: list[PageGroupResponse] = []
    q = InvalidationQueue(PhysicalMemory(), CFG, VtdCaches(), page_response=got.append)
    resp = PageGroupResponse(PP=True, RID=DEV, PASID=A, LPIG=True, PRGI=3)
    q.run([resp])
    assert got == [resp]
    assert [r.descriptor for r in q.log] == [resp] and q.log[0].offset == 0


# -- queue errors ----------------------------------------------------------------------------


def _stopped(q: InvalidationQueue, iqei: Iqei, head: int) -> None:
    assert q.status.fsts_get("IQE") and q.status.iqei == iqei and q.head == head
    assert q.status.fault_events >= 1


@pytest.mark.parametrize(("bad", "iqei"), [
    ((0xA, 0, 0, 0), Iqei.INVALID_TYPE),
    ((1 | 1 << 4, 1, 0, 0), Iqei.RESERVED_FIELD),
    ((6 | 1 << 4, 0, 0, 0), Iqei.RESERVED_FIELD),
    (IotlbInv(G=3, AM=10).qwords(), Iqei.RESERVED_FIELD),
    ((2 | 1 << 4, 0, 5, 0), Iqei.RESERVED_FIELD),
])
def test_malformed_descriptor_stops_the_queue_at_it_and_resume_after_clearing(
        bad: tuple[int, ...], iqei: Iqei) -> None:
    c = populated()
    q = InvalidationQueue(PhysicalMemory(), CFG, c)
    q.submit([PasidCacheInv(G=3), bad, IotlbInv(G=1)])
    assert q.process() == 1
    _stopped(q, iqei, 32)
    assert len(c.pasid) == 0 and len(c.iotlb) == 7        # first ran, third did not
    assert q.process() == 0                               # stays stopped while IQE is set
    q.mem.write(q.base + 32, InvWait().to_bytes())        # software repairs the descriptor
    q.clear_iqe()
    assert q.process() == 2 and len(c.iotlb) == 0 and q.head == q.tail == 96
    assert [type(r.descriptor).__name__ for r in q.log] == ["PasidCacheInv", "InvWait",
                                                            "IotlbInv"]


def test_feature_gated_descriptor_bits() -> None:
    no_pds = msgspec.structs.replace(CFG, pds=False)
    q = InvalidationQueue(PhysicalMemory(), no_pds, VtdCaches())
    q.run([InvWait(PD=True, FN=True)])
    _stopped(q, Iqei.RESERVED_FIELD, 0)
    q = InvalidationQueue(PhysicalMemory(), CFG, VtdCaches())
    assert q.run([InvWait(PD=True, FN=True)]) == 1


def test_misaligned_and_out_of_range_tail() -> None:
    q = InvalidationQueue(PhysicalMemory(), CFG, VtdCaches())
    q.submit([IotlbInv(G=1)])
    q.write_iqt(0x30)
    q.process()
    _stopped(q, Iqei.TAIL_MISALIGNED, 0)
    q.clear_iqe()
    q.write_iqt(0x2000)                                   # beyond a one-page queue
    q.process()
    _stopped(q, Iqei.TAIL_BEYOND_QUEUE, 0)
    q.clear_iqe()
    q.write_iqt(0x20)
    assert q.process() == 1


def test_fetch_error() -> None:
    mem = PhysicalMemory(addr_bits=32)
    q = InvalidationQueue(mem, CFG, VtdCaches())
    q.iqa = (1 << 32) | 1 << 11                           # queue base outside memory
    q.write_iqt(0x20)
    q.process()
    _stopped(q, Iqei.FETCH_ERROR, 0)


def test_width_and_ttm_errors() -> None:
    q = InvalidationQueue(PhysicalMemory(), CFG, VtdCaches(), wide=False)
    q.submit([IotlbInv(G=1), PasidCacheInv(G=3)])
    assert q.process() == 1
    _stopped(q, Iqei.INVALID_WIDTH, 16)
    q = InvalidationQueue(PhysicalMemory(), CFG, VtdCaches(), scalable=False)
    q.run([PasidCacheInv(G=3)])
    _stopped(q, Iqei.INVALID_FOR_TTM, 0)


def test_submit_refuses_what_does_not_fit_and_writes_nothing() -> None:
    q = InvalidationQueue(PhysicalMemory(), CFG, VtdCaches())
    with pytest.raises(UAPIError) as exc:
        q.submit([InvWait()] * 128)                      # 128 slots, one stays empty
    assert exc.value.errno == 28 and q.tail == 0
    with pytest.raises(UAPIError):
        q.submit([IotlbInv(G=1), PasidCacheInv(DID=1 << 16)])
    with pytest.raises(UAPIError):
        q.submit([(1, 2)])
    assert q.tail == 0
    q.submit([InvWait()] * 127)
    assert q.free_slots() == 0 and q.process() == 127
    q.submit([IotlbInv(G=1)] * 3)                         # wraps around
    assert q.process() == 3 and q.head == q.tail == 2 * 32

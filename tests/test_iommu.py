"""The façade end to end through the test backend: topology, translation, IOTLB, nested binds,
invalidation, faults, page requests and responses, PASID free, observers, negotiation."""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from minibackend import MiniBackend

from iommu_uapi import FeatureError, PhysicalMemory, UAPIError
from iommu_uapi.device import Device, Domain
from iommu_uapi.features import CacheCell, Feature
from iommu_uapi.hookspecs import hookimpl
from iommu_uapi.iommu import IOMMU
from iommu_uapi.memory import GuestMemory
from iommu_uapi.observers import CallCounter, CallRecorder, FaultInjector
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.pgtable.x86 import X86Config, X86PageTable
from iommu_uapi.translation import TranslationFault
from iommu_uapi.uapi import (
    CacheInvalidateInfo,
    Fault,
    GpasidBindData,
    GpasidBindDataVtd,
    GpasidBindVendor,
    InvAddrInfo,
    InvGranu,
    InvPasidInfo,
    NestingInfo,
    PageResponse,
)
from iommu_uapi.uapi.consts import (
    CacheType,
    FaultPerm,
    FaultReason,
    FaultType,
    InvAddrFlags,
    InvGranularity,
    InvPasidFlags,
    PageRequestFlags,
    PageResponseCode,
    PageResponseFlags,
)

R, W = FaultPerm.READ, FaultPerm.WRITE
GUEST_RAM = 0x4000_0000  # host physical address of the guest's RAM (GPA 0)
RAM_SIZE = 0x40_0000


def errno_of(call: Callable[[], object]) -> int:
    with pytest.raises(UAPIError) as info:
        call()
    return info.value.errno


class Rig:
    """A host with one nesting domain, two devices, guest RAM mapped at stage 2, and a guest
    building its own first-level tables in guest memory."""

    def __init__(self, **backend: object) -> None:
        self.mem = PhysicalMemory()
        self.backend = MiniBackend(self.mem, **backend)  # type: ignore[arg-type]
        self.iommu = IOMMU(self.backend, memory=self.mem)
        self.dev = self.iommu.add_device(0x0300, ats=True, pri=True)
        self.dev2 = self.iommu.add_device(0x0308)
        self.domain = self.iommu.domain_alloc(nesting=self.backend.nest)
        self.iommu.attach_device(self.domain, self.dev)
        self.iommu.attach_device(self.domain, self.dev2)
        self.guest = GuestMemory(self.mem)
        self.guest.add_ram(0, RAM_SIZE, GUEST_RAM)
        for off in range(0, RAM_SIZE, 0x20_0000):  # the VMM maps guest RAM at stage 2
            self.iommu.map(self.domain, off, GUEST_RAM + off, 0x20_0000, Prot.READ | Prot.WRITE)
        self.gpt = X86PageTable(X86Config(levels=4, haw=48), self.guest)
        self.vm = self.iommu.pasid_set("vm0", quota=16)

    def bind(self, hpasid: int, *, dev: Device | None = None) -> None:
        self.iommu.uapi_sva_bind_gpasid(self.domain, dev or self.dev, bind_bytes(
            hpasid, self.gpt.root))


def bind_bytes(hpasid: int, gpgd: int, **fields: int) -> bytes:
    data = GpasidBindData(argsz=72, version=1, format=1, addr_width=48, gpgd=gpgd, hpasid=hpasid,
                          vendor=GpasidBindVendor(vtd=GpasidBindDataVtd()))
    if fields:
        data = msgspec.structs.replace(data, **fields)
    return data.to_bytes()


def inv_pasid(pasid: int, cache: int = CacheType.IOTLB) -> CacheInvalidateInfo:
    return CacheInvalidateInfo(argsz=32, version=1, cache=cache,
                               granularity=InvGranularity.PASID, granu=InvGranu(
                                   pasid_info=InvPasidInfo(flags=InvPasidFlags.PASID,
                                                           pasid=pasid)))


def inv_addr(pasid: int, addr: int, pages: int, cache: int = CacheType.IOTLB
             ) -> CacheInvalidateInfo:
    return CacheInvalidateInfo(argsz=56, version=1, cache=cache,
                               granularity=InvGranularity.ADDR, granu=InvGranu(
                                   addr_info=InvAddrInfo(flags=InvAddrFlags.PASID, pasid=pasid,
                                                         addr=addr, granule_size=0x1000,
                                                         nb_granules=pages)))


@pytest.fixture
def rig() -> Rig:
    return Rig()


# --- the data path -------------------------------------------------------------------------------


def test_request_without_pasid_walks_stage_2_then_hits_the_iotlb(rig: Rig) -> None:
    first = rig.iommu.translate(rig.dev2, 0x1234, access=R)
    assert (first.paddr, first.page_size, first.table_reads) == (GUEST_RAM + 0x1234, 0x20_0000, 3)
    again = rig.iommu.translate(rig.dev2, 0x1FF0, access=W)
    assert again.paddr == GUEST_RAM + 0x1FF0 and again.table_reads == 0
    assert (rig.iommu.iotlb.hits, rig.iommu.iotlb.misses) == (1, 1)


def test_nested_translation_costs_24_reads_cold_and_none_on_a_hit(rig: Rig) -> None:
    pasid = rig.vm.alloc()
    data_gpa = rig.guest.alloc()
    rig.gpt.map(0x7F00_0000_0000, data_gpa, 0x1000, Prot.READ | Prot.WRITE)
    rig.bind(pasid, dev=rig.dev2)
    # 4 first-level reads; 4 + 4*3 + 4 second-level reads with a 4-level stage 2 (2 MiB leaves
    # end the stage-2 walks at level 2, so each costs 3 here): 4 + 5 * 3 = 19.
    cold = rig.iommu.translate(rig.dev2, 0x7F00_0000_0ABC, pasid=pasid, access=W)
    assert cold.paddr == GUEST_RAM + data_gpa + 0xABC
    assert cold.table_reads == 4 + 5 * 3 and cold.config_reads == 1
    hit = rig.iommu.translate(rig.dev2, 0x7F00_0000_0ABC, pasid=pasid, access=R)
    assert hit.table_reads == 0 and hit.config_reads == 0


def test_guest_pte_change_is_stale_until_invalidated(rig: Rig) -> None:
    pasid = rig.vm.alloc()
    old, new = rig.guest.alloc(), rig.guest.alloc()
    rig.gpt.map(0x10_0000, old, 0x1000, Prot.READ)
    rig.bind(pasid, dev=rig.dev2)
    assert rig.iommu.translate(rig.dev2, 0x10_0000, pasid=pasid).paddr == GUEST_RAM + old
    rig.gpt.unmap(0x10_0000, 0x1000)
    rig.gpt.map(0x10_0000, new, 0x1000, Prot.READ)
    # No invalidation yet: the IOTLB still holds the old translation.
    assert rig.iommu.translate(rig.dev2, 0x10_0000, pasid=pasid).paddr == GUEST_RAM + old
    rig.iommu.cache_invalidate(rig.domain, rig.dev2, inv_addr(pasid, 0x10_0000, 1))
    assert rig.iommu.translate(rig.dev2, 0x10_0000, pasid=pasid).paddr == GUEST_RAM + new


def test_pasid_granular_invalidation_spares_other_pasids(rig: Rig) -> None:
    a, b = rig.vm.alloc(), rig.vm.alloc()
    page = rig.guest.alloc()
    rig.gpt.map(0x2000, page, 0x1000, Prot.READ)
    rig.bind(a, dev=rig.dev2)
    rig.bind(b, dev=rig.dev2)
    rig.iommu.translate(rig.dev2, 0x2000, pasid=a)
    rig.iommu.translate(rig.dev2, 0x2000, pasid=b)
    rig.iommu.cache_invalidate(rig.domain, rig.dev2, inv_pasid(a))
    assert rig.iommu.iotlb.lookup((rig.domain.id, a), 0x2000) is None
    assert rig.iommu.iotlb.lookup((rig.domain.id, b), 0x2000) is not None


def test_device_tlb_is_consulted_first_and_needs_its_own_invalidation(rig: Rig) -> None:
    rig.iommu.translate(rig.dev, 0x3000)
    rig.iommu.iotlb.flush()
    hit = rig.iommu.translate(rig.dev, 0x3000)
    assert hit.table_reads == 0 and rig.dev.atc is not None and rig.dev.atc.hits == 1
    everything = InvAddrInfo(addr=0, granule_size=1 << 30, nb_granules=1)
    rig.iommu.cache_invalidate(rig.domain, rig.dev, CacheInvalidateInfo(
        argsz=56, version=1, cache=CacheType.DEV_IOTLB | CacheType.IOTLB,
        granularity=InvGranularity.ADDR, granu=InvGranu(addr_info=everything)))
    assert len(rig.dev.atc) == 0
    assert rig.iommu.translate(rig.dev, 0x3000).table_reads == 3


def test_fault_is_raised_and_reported_to_the_consumer(rig: Rig) -> None:
    seen: list[Fault] = []
    rig.iommu.register_fault_handler(rig.dev2, seen.append)
    with pytest.raises(TranslationFault) as info:
        rig.iommu.translate(rig.dev2, 0x8000_0000, access=W)
    fault = info.value.fault
    assert fault is not None and fault.type == FaultType.DMA_UNRECOV
    assert fault.event.reason == FaultReason.PERMISSION and fault.event.addr == 0x8000_0000
    assert seen == [fault] and rig.iommu.fault_log[-1] == (rig.dev2, fault)


def test_unbound_pasid_faults_with_pasid_invalid(rig: Rig) -> None:
    with pytest.raises(TranslationFault) as info:
        rig.iommu.translate(rig.dev2, 0x1000, pasid=9)
    assert info.value.fault is not None
    assert info.value.fault.event.reason == FaultReason.PASID_INVALID


def test_bad_data_path_input_is_einval_not_a_crash(rig: Rig) -> None:
    assert errno_of(lambda: rig.iommu.translate(rig.dev2, -1)) == errno.EINVAL
    assert errno_of(lambda: rig.iommu.translate(rig.dev2, 1 << 64)) == errno.EINVAL
    assert errno_of(lambda: rig.iommu.translate(rig.dev2, 0, access=0)) == errno.EINVAL
    assert errno_of(lambda: rig.iommu.translate(rig.dev2, 0, pasid=1 << 20)) == errno.EINVAL
    assert errno_of(lambda: rig.iommu.translate(Device(0x0300), 0)) == errno.ENODEV


@pytest.mark.parametrize("bad", [
    {"access": 0}, {"access": 8}, {"access": 0x10 | R}, {"access": "r"}, {"access": [1]},
    {"access": 1.0}, {"pasid": [4]}, {"pasid": 1.5},
], ids=repr)
def test_bad_input_is_refused_on_an_iotlb_hit_too(rig: Rig, bad: dict[str, Any]) -> None:
    """With the page cached, a bad request still fails cleanly, and counts as no hit."""
    rig.iommu.translate(rig.dev2, 0x1234, access=R)
    hits = rig.iommu.iotlb.hits
    assert errno_of(lambda: rig.iommu.translate(rig.dev2, 0x1234, **bad)) == errno.EINVAL
    assert rig.iommu.iotlb.hits == hits and len(rig.iommu.iotlb) == 1


def test_a_device_of_another_iommu_never_hits_this_iotlb(rig: Rig) -> None:
    rig.iommu.translate(rig.dev2, 0x1234, access=R)
    other = Rig()
    assert errno_of(lambda: rig.iommu.translate(other.dev2, 0x1234)) == errno.ENODEV
    assert errno_of(lambda: other.iommu.translate(rig.dev2, 0x1234)) == errno.ENODEV


def test_hits_follow_invalidation_detach_and_removal(rig: Rig) -> None:
    """The hit path's per-device view of the IOTLB never outlives what it mirrors."""
    io = rig.iommu
    io.translate(rig.dev2, 0x1234, access=R)
    assert io.translate(rig.dev2, 0x1234).table_reads == 0
    io.iotlb.invalidate()
    assert io.translate(rig.dev2, 0x1234).table_reads == 3  # the emptied bucket misses
    io.detach_device(rig.domain, rig.dev2)
    with pytest.raises(TranslationFault):  # no stale hit: the device is not attached
        io.translate(rig.dev2, 0x1234)
    io.attach_device(rig.domain, rig.dev2)
    io.translate(rig.dev2, 0x1234)
    io.remove_device(rig.dev2)
    assert errno_of(lambda: io.translate(rig.dev2, 0x1234)) == errno.ENODEV


# --- configuration caches and binds --------------------------------------------------------------


def test_unbind_is_stale_in_the_config_cache_until_pasid_cache_invalidation(rig: Rig) -> None:
    pasid = rig.vm.alloc()
    page = rig.guest.alloc()
    rig.gpt.map(0x5000, page, 0x1000, Prot.READ)
    rig.bind(pasid, dev=rig.dev2)
    rig.iommu.translate(rig.dev2, 0x5000, pasid=pasid)
    rig.iommu.sva_unbind_gpasid(rig.domain, rig.dev2, pasid)
    with pytest.raises(TranslationFault):
        rig.iommu.translate(rig.dev2, 0x5000, pasid=pasid)


def test_bind_twice_is_ebusy_and_unallocated_pasid_is_enoent(rig: Rig) -> None:
    pasid = rig.vm.alloc()
    rig.bind(pasid)
    assert errno_of(lambda: rig.bind(pasid)) == errno.EBUSY
    assert errno_of(lambda: rig.bind(pasid + 1)) == errno.ENOENT
    assert rig.iommu.bound_pasids(rig.dev) == [pasid]


def test_unbind_user_bytes_run_the_bind_validation(rig: Rig) -> None:
    pasid = rig.vm.alloc()
    rig.bind(pasid)
    bad = bind_bytes(pasid, rig.gpt.root, version=2)
    assert errno_of(lambda: rig.iommu.uapi_sva_unbind_gpasid(rig.domain, rig.dev, bad)) == \
        errno.EINVAL
    assert rig.iommu.bound_pasids(rig.dev) == [pasid]
    rig.iommu.uapi_sva_unbind_gpasid(rig.domain, rig.dev, bind_bytes(pasid, 0))
    assert rig.iommu.bound_pasids(rig.dev) == []
    rig.iommu.sva_unbind_gpasid(rig.domain, rig.dev, pasid)  # not bound: succeeds


def test_free_pasid_tears_down_every_binding_first(rig: Rig) -> None:
    pasid = rig.vm.alloc()
    rig.bind(pasid)
    rig.bind(pasid, dev=rig.dev2)
    rig.iommu.free_pasid(pasid, rig.vm)
    assert rig.iommu.bound_pasids(rig.dev) == [] and rig.iommu.bound_pasids(rig.dev2) == []
    assert pasid not in rig.iommu.pasids


def test_detach_unbinds_then_detaches(rig: Rig) -> None:
    pasid = rig.vm.alloc()
    rig.bind(pasid, dev=rig.dev2)
    rig.iommu.detach_device(rig.domain, rig.dev2)
    assert rig.dev2.domain is None and rig.iommu.bound_pasids(rig.dev2) == []
    assert errno_of(lambda: rig.iommu.detach_device(rig.domain, rig.dev2)) == errno.EINVAL


def test_domain_rules(rig: Rig) -> None:
    assert errno_of(lambda: rig.iommu.domain_free(rig.domain)) == errno.EBUSY
    assert errno_of(lambda: rig.iommu.set_nesting(rig.domain)) == errno.ENODEV
    other = rig.iommu.domain_alloc()
    assert errno_of(lambda: rig.iommu.attach_device(other, rig.dev)) == errno.EBUSY
    rig.iommu.domain_free(other)
    assert errno_of(lambda: rig.iommu.domain_free(other)) == errno.EINVAL
    assert errno_of(lambda: rig.iommu.add_device(0x0300)) == errno.EEXIST
    assert errno_of(lambda: rig.iommu.add_device(0x1_0000)) == errno.EINVAL


# --- page requests and responses (reference c.6) -------------------------------------------------


def respond(rig: Rig, grpid: int, pasid: int | None = None, **kw: int) -> None:
    flags = PageResponseFlags.PASID_VALID if pasid is not None else 0
    msg = PageResponse(argsz=24, version=1, flags=flags, pasid=pasid or 0, grpid=grpid,
                       code=PageResponseCode.SUCCESS)
    if kw:
        msg = msgspec.structs.replace(msg, **kw)
    rig.iommu.uapi_page_response(rig.dev, msg.to_bytes())


def test_page_request_round_trip_matches_grpid_and_pasid(rig: Rig) -> None:
    seen: list[Fault] = []
    rig.iommu.register_fault_handler(rig.dev, seen.append)
    fault = rig.iommu.page_request(rig.dev, 0x7000, pasid=5, access=W, grpid=3)
    assert fault.type == FaultType.PAGE_REQ and seen == [fault]
    assert fault.prm.flags & PageRequestFlags.RESPONSE_NEEDS_PASID
    assert rig.iommu.pending_page_requests(rig.dev) == [fault]
    assert errno_of(lambda: respond(rig, 3)) == errno.EINVAL  # NEEDS_PASID: PASID required
    assert errno_of(lambda: respond(rig, 3, pasid=6)) == errno.EINVAL  # wrong PASID
    assert errno_of(lambda: respond(rig, 4, pasid=5)) == errno.EINVAL  # wrong group
    respond(rig, 3, pasid=5)
    assert rig.iommu.pending_page_requests(rig.dev) == []
    assert rig.backend.responses[-1][1].grpid == 3
    assert errno_of(lambda: respond(rig, 3, pasid=5)) == errno.EINVAL  # nothing pending


def test_response_pasid_is_cleared_when_the_request_had_none(rig: Rig) -> None:
    rig.iommu.register_fault_handler(rig.dev, lambda f: None)
    rig.iommu.page_request(rig.dev, 0x7000, grpid=1)
    respond(rig, 1, pasid=77)
    sent = rig.backend.responses[-1][1]
    assert sent.pasid == 0 and not sent.flags & PageResponseFlags.PASID_VALID


def test_page_response_rules_in_kernel_order(rig: Rig) -> None:
    rig.iommu.page_request(rig.dev, 0x7000, grpid=1)  # no consumer: not kept pending
    assert errno_of(lambda: respond(rig, 1)) == errno.EINVAL
    rig.iommu.register_fault_handler(rig.dev, lambda f: None)
    assert errno_of(lambda: respond(rig, 1)) == errno.EINVAL  # none pending
    rig.iommu.page_request(rig.dev, 0x7000, grpid=1)
    assert errno_of(lambda: respond(rig, 1, version=2)) == errno.EINVAL
    assert errno_of(lambda: respond(rig, 1, flags=2)) == errno.EINVAL
    assert len(rig.iommu.pending_page_requests(rig.dev)) == 1
    assert errno_of(lambda: rig.iommu.unregister_fault_handler(rig.dev)) == errno.EBUSY
    dev3 = rig.iommu.add_device(0x0400, pri=True)
    assert errno_of(lambda: rig.iommu.page_response(dev3, PageResponse(version=1))) == \
        errno.ENODEV


def test_unbind_drains_pending_requests_and_reuse_sees_none(rig: Rig) -> None:
    rig.iommu.register_fault_handler(rig.dev, lambda f: None)
    pasid = rig.vm.alloc()
    rig.bind(pasid)
    rig.iommu.page_request(rig.dev, 0x7000, pasid=pasid, grpid=2)
    rig.iommu.page_request(rig.dev, 0x8000, grpid=3)
    rig.iommu.sva_unbind_gpasid(rig.domain, rig.dev, pasid)
    assert [f.prm.grpid for f in rig.iommu.pending_page_requests(rig.dev)] == [3]
    assert errno_of(lambda: respond(rig, 2, pasid=pasid)) == errno.EINVAL
    rig.bind(pasid)
    assert [f.prm.grpid for f in rig.iommu.pending_page_requests(rig.dev)] == [3]


# --- the ops table, observers, negotiation, nesting info -----------------------------------------


def test_missing_op_is_enodev_before_the_buffer_is_read() -> None:
    class NoInvalidate(MiniBackend):
        iommu_cache_invalidate = None  # type: ignore[assignment]

    mem = PhysicalMemory()
    iommu = IOMMU(NoInvalidate(mem), memory=mem)
    dev = iommu.add_device(1)
    dom = iommu.domain_alloc()
    assert "iommu_cache_invalidate" not in iommu.ops
    assert errno_of(lambda: iommu.uapi_cache_invalidate(dom, dev, b"")) == errno.ENODEV


def test_feature_gate_refuses_bind_when_not_declared() -> None:
    rig = Rig(nest=False)
    assert errno_of(lambda: rig.iommu.uapi_sva_bind_gpasid(rig.domain, rig.dev, b"")) \
        == errno.ENODEV


def test_observers_count_record_and_inject_without_changing_state(rig: Rig) -> None:
    counter, recorder = CallCounter(), CallRecorder()
    injector = FaultInjector("iommu_sva_bind_gpasid", errno.EIO)
    for observer in (injector, counter, recorder):  # later observers wrap earlier ones
        rig.iommu.add_observer(observer)
    pasid = rig.vm.alloc()
    assert errno_of(lambda: rig.bind(pasid)) == errno.EIO
    assert rig.iommu.bound_pasids(rig.dev) == [] and rig.backend.binds == {}
    rig.bind(pasid)
    assert counter.calls["iommu_sva_bind_gpasid"] == 2
    assert counter.errors["iommu_sva_bind_gpasid"] == 1
    assert [c[0] for c in recorder.calls] == ["iommu_sva_bind_gpasid"] * 2
    assert injector.injected == 1 and rig.iommu.bound_pasids(rig.dev) == [pasid]


def test_observers_added_after_calls_see_every_later_call(rig: Rig) -> None:
    """Calls made while nothing observes skip pluggy; an observer added later, wrapper or
    monitor, sees every call from then on."""
    io = rig.iommu
    pasid = rig.vm.alloc()
    rig.bind(pasid, dev=rig.dev2)
    io.cache_invalidate(rig.domain, rig.dev2, inv_pasid(pasid))
    seen: list[CacheInvalidateInfo] = []

    class Wrapper:
        @hookimpl(wrapper=True)
        def iommu_cache_invalidate(self, domain: Domain, dev: Device, info: CacheInvalidateInfo,
                                   profile: str) -> Any:
            seen.append(info)
            return (yield)

    io.add_observer(Wrapper())
    io.cache_invalidate(rig.domain, rig.dev2, inv_pasid(pasid))
    assert seen == [inv_pasid(pasid)]
    counter = CallCounter()
    io.add_observer(counter)
    io.cache_invalidate(rig.domain, rig.dev2, inv_pasid(pasid))
    io.sva_unbind_gpasid(rig.domain, rig.dev2, pasid)
    assert len(seen) == 2 and counter.calls["iommu_cache_invalidate"] == 1
    assert counter.calls["iommu_sva_unbind_gpasid"] == 1


def test_tracing_env_writes_every_hook_call(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("IOMMU_UAPI_TRACE_PLUGINS", "1")
    rig = Rig()
    rig.iommu.map(rig.domain, 0x1000_0000, 0x9000_0000, 0x1000, Prot.READ)
    err = capsys.readouterr().err
    assert "iommu-uapi trace: iommu_map(" in err and "iommu_map -> None" in err


def test_negotiate_refuses_before_the_guest_starts() -> None:
    rig = Rig(cells=frozenset({CacheCell(CacheType.IOTLB, InvGranularity.PASID)}))
    rig.iommu.negotiate(Feature.BIND_PGTBL, [(CacheType.IOTLB, InvGranularity.PASID)])
    with pytest.raises(FeatureError) as err:
        rig.iommu.negotiate(Feature.BIND_PGTBL | Feature.BIND_PASID_TABLE,
                            [(CacheType.IOTLB, InvGranularity.ADDR)])
    assert err.value.missing == ("feature BIND_PASID_TABLE", "cache cell IOTLBxADDR")


def test_unsupported_cell_dropped_in_5_10_and_refused_in_strict() -> None:
    rig = Rig(cells=frozenset({CacheCell(CacheType.IOTLB, InvGranularity.PASID)}))
    rig.iommu.translate(rig.dev2, 0)
    info = inv_addr(1, 0, 1)
    rig.iommu.cache_invalidate(rig.domain, rig.dev2, info)
    assert len(rig.iommu.iotlb) == 1
    assert errno_of(lambda: rig.iommu.cache_invalidate(rig.domain, rig.dev2, info,
                                                       profile="strict")) == errno.EINVAL


def test_nesting_info_size_probe_then_fill(rig: Rig) -> None:
    buf = bytearray(64)
    buf[0:4] = (16).to_bytes(4, "little")
    assert rig.iommu.nesting_info(rig.domain, buf) is None
    assert int.from_bytes(buf[0:4], "little") == 64
    info = rig.iommu.nesting_info(rig.domain, buf)
    assert info is not None and NestingInfo.from_bytes(bytes(buf)) == info
    plain = rig.iommu.domain_alloc()
    assert errno_of(lambda: rig.iommu.nesting_info(plain)) == errno.ENODEV


def test_foreign_objects_are_refused(rig: Rig) -> None:
    other = Rig()
    assert errno_of(lambda: rig.iommu.map(other.domain, 0, 0, 0x1000, 1)) == errno.EINVAL
    assert errno_of(lambda: rig.iommu.attach_device(rig.domain, other.dev)) == errno.ENODEV
    assert errno_of(lambda: rig.iommu.map(Domain(99), 0, 0, 0x1000, 1)) == errno.EINVAL
    assert errno_of(lambda: rig.iommu.map(rig.domain, -1, 0, 0x1000, 1)) == errno.EINVAL


def test_a_hook_the_backend_lacks_is_enodev_by_name_or_through_hooks() -> None:
    """``dispatch.hooks`` reaches what ``dispatch.call`` reaches: the backend's own
    implementation, or for a hook it lacks the ``op.missing`` refusal."""
    from iommu_uapi.dispatch import Dispatch

    class Bare:
        """A backend implementing one hook."""

        @hookimpl
        def iommu_capabilities(self) -> str:
            return "caps"

    d = Dispatch(Bare(), "bare")
    assert d.hooks.iommu_capabilities() == d.call("iommu_capabilities") == "caps"
    for refused in (lambda: d.hooks.iommu_nesting_info(domain=None),
                    lambda: d.call("iommu_nesting_info", domain=None)):
        with pytest.raises(UAPIError) as exc:
            refused()
        assert (exc.value.errno, exc.value.rule) == (errno.ENODEV, "op.missing")

"""The data path: the hit path's input checks, and forgetting exactly the translation contexts
an operation affects (the rest keep hitting without a rebuild)."""

from __future__ import annotations

import errno
import threading
import time
from typing import Any

import pytest
from test_iommu import GUEST_RAM, Rig, errno_of

from iommu_uapi.caches import TLB
from iommu_uapi.errors import UAPIError
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.translation import TranslationFault

VA = 0x7F00_0000_0000


class CountingRig(Rig):
    """The rig, counting the translation contexts the backend builds."""

    def __init__(self, **backend: object) -> None:
        super().__init__(**backend)
        self.builds: list[tuple[int, int | None]] = []
        self.iommu.add_observer(self)

    def before(self, hook: str, kwargs: dict[str, Any]) -> None:
        """Count a context build (an observer of the instance's hook calls)."""
        if hook == "iommu_translation_context":
            self.builds.append((kwargs["dev"].sid, kwargs["pasid"]))

    def bound(self, n: int) -> list[int]:
        """``n`` PASIDs bound on dev2 through one guest table, each translated once."""
        self.gpt.map(VA, self.guest.alloc(), 0x1000, Prot.READ)
        pasids = [self.vm.alloc() for _ in range(n)]
        for pasid in pasids:
            self.bind(pasid, dev=self.dev2)
            self.iommu.translate(self.dev2, VA, pasid=pasid)
        self.iommu.translate(self.dev2, 0x1000)
        self.builds.clear()
        return pasids


@pytest.mark.parametrize("bad", [{"pasid": 4.0}, {"pasid": True}, {"access": True},
                                 {"access": 1.0}], ids=repr)
def test_an_iotlb_hit_needs_plain_int_values(bad: dict[str, Any]) -> None:
    """Values equal to a cached key but of another type never hit: a float is refused as the
    full path refuses it; a bool (an int) is translated by the full path."""
    rig = CountingRig()
    rig.bound(5)
    pasid = 4 if "pasid" in bad else None
    va = VA if pasid is not None else 0x1000
    rig.iommu.translate(rig.dev2, va, pasid=pasid)
    hits = rig.iommu.iotlb.hits
    call = {"pasid": pasid, **bad}
    if isinstance(bad.get("pasid", bad.get("access")), float):
        assert errno_of(lambda: rig.iommu.translate(rig.dev2, va, **call)) == errno.EINVAL
        assert rig.iommu.iotlb.hits == hits
    elif "access" in bad:
        assert rig.iommu.translate(rig.dev2, va, **call).table_reads == 0
    else:  # pasid True is PASID 1, which was bound and translated
        assert rig.iommu.translate(rig.dev2, VA, pasid=True).table_reads == 0


@pytest.mark.parametrize("dev", [[1], {"sid": 0x0308}, None, 0x0308], ids=repr)
def test_a_request_from_something_else_than_a_device_is_enodev(dev: Any) -> None:
    rig = CountingRig()
    rig.iommu.translate(rig.dev2, 0x1000)
    assert errno_of(lambda: rig.iommu.translate(dev, 0x1000)) == errno.ENODEV


def test_unbind_forgets_only_the_unbound_pasids_context() -> None:
    rig = CountingRig()
    pasids = rig.bound(8)
    gone = pasids[3]
    rig.iommu.sva_unbind_gpasid(rig.domain, rig.dev2, gone)
    for pasid in pasids:
        if pasid != gone:
            assert rig.iommu.translate(rig.dev2, VA, pasid=pasid).table_reads == 0
    assert rig.iommu.translate(rig.dev2, 0x1000).table_reads == 0
    assert rig.builds == []
    with pytest.raises(TranslationFault):
        rig.iommu.translate(rig.dev2, VA, pasid=gone)
    assert rig.builds == [(rig.dev2.sid, gone)]


def test_detach_forgets_only_that_devices_contexts() -> None:
    rig = CountingRig()
    rig.bound(2)
    rig.iommu.translate(rig.dev, 0x1000)
    rig.builds.clear()
    rig.iommu.detach_device(rig.domain, rig.dev)
    assert rig.iommu.context_of(rig.dev.sid, None) is None
    assert len(rig.iommu.contexts_of(rig.dev2.sid)) == 3
    rig.iommu.translate(rig.dev2, 0x1000)
    assert rig.builds == []


def test_forget_contexts_names_pasids_and_costs_what_it_drops() -> None:
    rig = CountingRig()
    pasids = rig.bound(4)
    io, sid = rig.iommu, rig.dev2.sid
    assert io.forget_contexts(sid, (pasids[0], None, 0xFFFF)) == 2
    assert set(io.contexts_of(sid)) == set(pasids[1:])
    assert io.translate(rig.dev2, 0x1000).table_reads == 0  # rebuilt; the IOTLB still hits
    assert rig.builds == [(sid, None)]
    assert io.forget_contexts(sid) == 4 and io.contexts_of(sid) == {}
    assert io.forget_contexts(sid) == 0 and io.forget_all_contexts() == 0
    io.translate(rig.dev2, VA, pasid=pasids[1])
    assert io.forget_all_contexts() == 1


def test_a_pasid_cache_invalidation_forgets_only_that_pasid_on_that_device() -> None:
    from iommu_uapi.features import CacheCell
    from iommu_uapi.testing.harness import Harness
    from iommu_uapi.uapi.consts import CacheType, InvGranularity

    rig = CountingRig()
    pasids = rig.bound(3)
    info = Harness.inv_info(CacheCell(CacheType.PASID, InvGranularity.PASID), pasids[0])
    rig.iommu.cache_invalidate(rig.domain, rig.dev2, info)
    assert set(rig.iommu.contexts_of(rig.dev2.sid)) == {None, *pasids[1:]}


@pytest.mark.parametrize(("bad", "rule"), [
    ({"iova": -1}, "translate.iova"), ({"iova": 1 << 64}, "translate.iova"),
    ({"access": 0}, "translate.access"), ({"access": 8}, "translate.access"),
    ({"access": 0x10 | 1}, "translate.access"), ({"access": -1}, "translate.access"),
    ({"pasid": -1}, "translate.pasid"), ({"pasid": 1 << 20}, "translate.pasid"),
], ids=repr)
@pytest.mark.parametrize("cached", [True, False], ids=["context-cached", "cold"])
def test_a_miss_of_plain_ints_out_of_range_is_refused_by_rule(
        bad: dict[str, int], rule: str, cached: bool) -> None:
    """A miss whose values are plain ints skips the type checks, never the range checks: each
    bad value is refused with its rule id, and nothing is built, walked or filled."""
    rig = CountingRig()
    if cached:
        rig.iommu.translate(rig.dev2, 0x1000)
    io = rig.iommu
    before = (io.iotlb.misses, io.iotlb.fills, len(io.iotlb), len(rig.builds), len(io.fault_log))
    call: dict[str, Any] = {"iova": 0x4000, **bad}
    with pytest.raises(UAPIError) as info:
        io.translate(rig.dev2, **call)
    assert (info.value.errno, info.value.rule) == (errno.EINVAL, rule)
    assert (io.iotlb.misses, io.iotlb.fills, len(io.iotlb), len(rig.builds),
            len(io.fault_log)) == before


def test_a_device_removed_while_its_miss_waits_for_the_lock_is_enodev() -> None:
    """A miss checked before its device is removed, then run after: ``device.unknown``, not a
    crash in the cleared context table (nothing but UAPIError or TranslationFault escapes)."""
    rig = CountingRig()
    io, dev = rig.iommu, rig.dev2
    io.translate(dev, 0x1000)
    io.iotlb.invalidate()
    errors: list[BaseException] = []

    def dma() -> None:
        try:
            io.translate(dev, 0x1000)
        except BaseException as exc:  # the test reports whatever escaped
            errors.append(exc)

    with io.lock:
        thread = threading.Thread(target=dma)
        thread.start()
        time.sleep(0.05)  # the DMA has passed its checks and waits for the lock
        io.remove_device(dev)
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], UAPIError)
    assert (errors[0].errno, errors[0].rule) == (errno.ENODEV, "device.unknown")


@pytest.mark.parametrize("pasid", [False, True], ids=["rid", "pasid"])
def test_a_fault_on_a_kept_context_is_reported_as_on_a_new_one(pasid: bool) -> None:
    """A miss that faults is reported to the fault consumer whether its context was just built
    or kept from an earlier DMA (the miss path's inline case), with the same record, and
    fills nothing."""
    rig = CountingRig()
    io, dev = rig.iommu, rig.dev2
    kw: dict[str, Any] = {}
    if pasid:
        rig.gpt.map(VA, rig.guest.alloc(), 0x1000, Prot.READ)
        kw["pasid"] = rig.vm.alloc()
        rig.bind(kw["pasid"], dev=dev)
    good, bad = (VA, VA + 0x1000) if pasid else (0x1000, 0x7000_0000)
    with pytest.raises(TranslationFault):
        io.translate(dev, bad, **kw)  # no context yet: built, then the walk faults
    assert len(io.fault_log) == 1 and len(rig.builds) == 1
    io.translate(dev, good, **kw)
    fills = io.iotlb.fills
    with pytest.raises(TranslationFault):
        io.translate(dev, bad, **kw)  # the context is kept: the inline miss
    assert len(io.fault_log) == 2 and len(rig.builds) == 1
    assert io.fault_log[0] == io.fault_log[1] and io.iotlb.fills == fills


@pytest.mark.parametrize("policy", ["lru", "fifo"])
def test_a_device_tlb_whose_policy_sees_hits_is_told_of_each(policy: str) -> None:
    """An ATS device's hits come from its device TLB: straight from its bucket when the policy
    ignores hits (FIFO), through the TLB when it must see them (LRU), so that LRU keeps the
    page hit last and FIFO the pages filled last."""
    rig = Rig()
    io, dev = rig.iommu, rig.dev
    atc = dev.atc = TLB(2, policy=policy)  # before the device's first DMA
    a, b, c = 0x1000, 0x2000, 0x3000
    for iova in (a, b, a, c):
        assert io.translate(dev, iova + 8).paddr == GUEST_RAM + iova + 8
    assert (atc.hits, atc.misses, atc.evictions) == (1, 3, 1)
    kept = {vpn for (_, vpn) in atc.entries}
    assert kept == ({a >> 12, c >> 12} if policy == "lru" else {b >> 12, c >> 12})
    assert io.iotlb.hits == 0  # every hit was the device TLB's

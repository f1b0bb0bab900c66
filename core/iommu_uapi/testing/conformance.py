"""The conformance suite: test classes every backend runs against itself.

Import them into a test module of your own (``from iommu_uapi.testing.conformance import *``),
or run the packaged copy: ``pytest --pyargs iommu_uapi.testing.suite --iommu-backend NAME``.
Each class is one *area* of the contract. Tests are gated by the backend's declared
:class:`~iommu_uapi.features.Capabilities`, never by its name: a test that needs a feature or a
cache-type x granularity cell the backend does not declare is skipped with a reason naming it.
Tests that need a guest context build it through the guest format the backend describes with
its ``iommu_guest_formats`` hook (:mod:`iommu_uapi.guest`), entering by ``sva_bind_gpasid`` or
through a guest PASID table; only the tests of bind itself ask for the bind entry. The fixtures
(``iommu_backend_name``, ``iommu_guest_format``, ``harness``) may be overridden by a backend's
own conftest or test class.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..abi import SizeDiscipline
from ..errors import FeatureError, UAPIError
from ..features import UNREPORTABLE_OPERATIONS, CacheCell, FailureReport, Feature
from ..guest import GuestEntry
from ..translation import TranslationFault
from ..uapi.consts import CacheType, FaultType, InvGranularity, PageRequestFlags
from ..vfio import VfioContainer
from .assertions import errno_of, need, outcome, refusal, refused_unchanged
from .concurrency import ConcurrencyTests
from .harness import GUEST_VA, READ, WRITE, Harness
from .iommufd_area import IommufdTests
from .isolation import IsolationTests
from .rule_tests import PROFILES, RULE_ENTRY_POINTS, RuleTests
from .sizes import SizeRuleTests

__all__ = [
    "PROFILES",
    "RULE_ENTRY_POINTS",
    "BindLifecycleTests",
    "ConcurrencyTests",
    "FaultTests",
    "FuzzTests",
    "InvalidationTests",
    "IommufdTests",
    "IsolationTests",
    "NegotiationTests",
    "PasidTests",
    "RuleTests",
    "SizeRuleTests",
    "StatefulTests",
    "errno_of",
    "need",
    "outcome",
    "refusal",
    "refused_unchanged",
]

VA = GUEST_VA


def _cells() -> list[CacheCell]:
    return [CacheCell(c, g) for c in CacheType for g in InvGranularity]


class NegotiationTests:
    """Negotiation refuses at setup what the backend cannot do, never at first use."""

    def test_everything_declared_negotiates(self, harness: Harness) -> None:
        caps = harness.caps
        result = harness.iommu.negotiate(caps.features, sorted(caps.cache_cells, key=str))
        assert result.cache_cells == caps.cache_cells

    @pytest.mark.parametrize("feature", list(Feature), ids=lambda f: f.name)
    def test_a_missing_feature_is_refused_by_name(self, harness: Harness,
                                                   feature: Feature) -> None:
        if harness.caps.features & feature:
            pytest.skip(f"backend declares {feature.name}")
        with pytest.raises(FeatureError) as err:
            harness.iommu.negotiate(feature)
        assert err.value.missing == (f"feature {feature.name}",)
        assert harness.iommu.negotiated is None

    @pytest.mark.parametrize("cell", _cells(), ids=str)
    def test_an_undeclared_cell_is_refused_by_name(self, harness: Harness,
                                                    cell: CacheCell) -> None:
        if cell in harness.caps.cache_cells:
            pytest.skip(f"backend declares {cell}")
        with pytest.raises(FeatureError) as err:
            harness.iommu.negotiate(Feature.CACHE_INVLD & harness.caps.features, [cell])
        assert f"cache cell {cell}" in err.value.missing

    def test_failure_reporting_to_the_guest_is_negotiated(self, harness: Harness) -> None:
        """A VMM that must report every host failure of the operations iommu.rst names to the
        guest starts only on a backend whose guest requests carry a status for each (virtio-
        iommu); elsewhere (VT-d's status-less invalidation descriptors) it is refused by name."""
        caps = harness.caps
        silent = [op for op in UNREPORTABLE_OPERATIONS
                  if caps.failure_reporting.get(op) is not FailureReport.STATUS]
        if not silent:
            result = harness.iommu.negotiate(report_failures=UNREPORTABLE_OPERATIONS)
            assert result.capabilities is caps
            return
        with pytest.raises(FeatureError) as err:
            harness.iommu.negotiate(report_failures=UNREPORTABLE_OPERATIONS)
        assert [m.split(" (")[0] for m in err.value.missing] == [
            f"failure reporting of {op}" for op in silent]
        assert harness.iommu.negotiated is None

    @pytest.mark.parametrize("cell", _cells(), ids=str)
    def test_a_negotiated_cell_never_fails_on_valid_input(self, harness: Harness,
                                                          cell: CacheCell) -> None:
        need(harness, Feature.CACHE_INVLD, cell)
        harness.iommu.negotiate(Feature.CACHE_INVLD, [cell])
        for profile in harness.caps.profiles:
            harness.iommu.uapi_cache_invalidate(harness.domain, harness.dev,
                                                Harness.inv_info(cell, 1).to_bytes(),
                                                profile=profile)


class BindLifecycleTests:
    """Guest contexts (bind and unbind, or a guest PASID-table entry): translate only while
    entered, refusals change nothing."""

    def test_bound_pasid_translates_through_both_stages(self, harness: Harness) -> None:
        need(harness, nesting=True)
        pasid = harness.vm.alloc()
        gpa = harness.gmap(VA)
        harness.enter(pasid)
        tr = harness.translate(VA + 0x123, pasid, WRITE)
        assert tr.paddr == harness.hpa(gpa) + 0x123 and tr.table_reads > 0
        assert harness.translate(VA + 0x456, pasid, READ).table_reads == 0

    def test_unbound_pasid_never_translates(self, harness: Harness) -> None:
        need(harness, nesting=True)
        pasid = harness.vm.alloc()
        harness.gmap(VA)
        with pytest.raises(TranslationFault):
            harness.translate(VA, pasid)

    def test_unbind_then_flush_stops_translation_and_rebind_restores(self,
                                                                      harness: Harness) -> None:
        need(harness, nesting=True)
        pasid = harness.vm.alloc()
        gpa = harness.gmap(VA)
        harness.enter(pasid)
        harness.translate(VA, pasid)
        harness.leave(pasid)
        with pytest.raises(TranslationFault):
            harness.translate(VA, pasid)
        harness.enter(pasid)
        assert harness.translate(VA, pasid).paddr == harness.hpa(gpa)

    def test_unbind_of_nothing_succeeds(self, harness: Harness) -> None:
        need(harness, entry=GuestEntry.BIND_GPASID)
        pasid = harness.vm.alloc()
        harness.unbind(pasid)
        harness.iommu.sva_unbind_gpasid(harness.domain, harness.dev, pasid)

    def test_double_bind_and_unallocated_pasid_are_refused_unchanged(self,
                                                                      harness: Harness) -> None:
        need(harness, entry=GuestEntry.BIND_GPASID)
        pasid = harness.vm.alloc()
        harness.gmap(VA)
        harness.bind(pasid)
        assert refused_unchanged(harness, lambda: harness.bind(pasid)) == errno.EBUSY
        assert refused_unchanged(harness, lambda: harness.bind(pasid + 7)) == errno.ENOENT

    def test_free_pasid_tears_down_bindings(self, harness: Harness) -> None:
        need(harness, entry=GuestEntry.BIND_GPASID)
        pasid = harness.vm.alloc()
        harness.gmap(VA)
        harness.bind(pasid)
        harness.bind(pasid, harness.dev2)
        harness.iommu.free_pasid(pasid, harness.vm)
        assert harness.iommu.bound_pasids(harness.dev) == []
        with pytest.raises(TranslationFault):
            harness.translate(VA, pasid, dev=harness.dev2)


class InvalidationTests:
    """Completeness: after an invalidation that covers a change, the change is visible."""

    @pytest.mark.parametrize("granularity", [InvGranularity.PASID, InvGranularity.ADDR],
                             ids=lambda g: g.name)
    def test_iotlb_invalidation_makes_a_guest_pte_change_visible(
            self, harness: Harness, granularity: InvGranularity) -> None:
        cell = CacheCell(CacheType.IOTLB, granularity)
        need(harness, cell=cell, pasids=True)  # the record names the PASID
        pasid = harness.vm.alloc()
        old = harness.gmap(VA)
        harness.enter(pasid, harness.dev2)
        assert harness.translate(VA, pasid, dev=harness.dev2).paddr == harness.hpa(old)
        harness.gunmap(VA)
        new = harness.gmap(VA)
        harness.invalidate(Harness.inv_info(cell, pasid, VA), harness.dev2)
        assert harness.translate(VA, pasid, dev=harness.dev2).paddr == harness.hpa(new)

    def test_device_tlb_invalidation_reaches_the_device(self, harness: Harness) -> None:
        cell = CacheCell(CacheType.DEV_IOTLB, InvGranularity.ADDR)
        need(harness, cell=cell, pasids=True)
        pasid = harness.vm.alloc()
        old = harness.gmap(VA)
        harness.enter(pasid)
        assert harness.translate(VA, pasid).paddr == harness.hpa(old)
        harness.gunmap(VA)
        new = harness.gmap(VA)
        info = Harness.inv_info(CacheCell(CacheType.IOTLB, InvGranularity.ADDR), pasid, VA)
        harness.invalidate(msgspec.structs.replace(info, cache=CacheType.IOTLB |
                                                   CacheType.DEV_IOTLB))
        assert harness.translate(VA, pasid).paddr == harness.hpa(new)

    def test_addr_invalidation_leaves_other_pages_cached(self, harness: Harness) -> None:
        cell = CacheCell(CacheType.IOTLB, InvGranularity.ADDR)
        need(harness, cell=cell, pasids=True)
        pasid = harness.vm.alloc()
        harness.gmap(VA)
        harness.gmap(VA + 0x10_0000)
        harness.enter(pasid, harness.dev2)
        harness.translate(VA, pasid, dev=harness.dev2)
        harness.translate(VA + 0x10_0000, pasid, dev=harness.dev2)
        harness.invalidate(Harness.inv_info(cell, pasid, VA), harness.dev2)
        assert harness.translate(VA + 0x10_0000, pasid, dev=harness.dev2).table_reads == 0
        assert harness.translate(VA, pasid, dev=harness.dev2).table_reads > 0


class FaultTests:
    """Faults and page requests reach the consumer; responses match by group and PASID."""

    def test_dma_fault_reaches_the_consumer(self, harness: Harness) -> None:
        with pytest.raises(TranslationFault) as info:
            harness.translate(0x7FFF_0000_0000, access=WRITE)
        fault = info.value.fault
        assert fault is not None and fault.type == FaultType.DMA_UNRECOV
        assert harness.handled[-1] == fault
        assert fault.event.addr >> 12 == 0x7FFF_0000_0000 >> 12

    def _request(self, h: Harness, pasid: int, grpid: int) -> Any:
        need(h, Feature.PAGE_REQUEST)
        need(h, pasids=True)  # the request carries the PASID
        h.enter(pasid)
        return h.iommu.page_request(h.dev, VA, pasid=pasid, access=WRITE, grpid=grpid)

    def test_page_request_round_trip(self, harness: Harness) -> None:
        pasid = harness.vm.alloc()
        fault = self._request(harness, pasid, 5)
        assert fault.type == FaultType.PAGE_REQ and fault.prm.grpid == 5
        assert fault.prm.flags & PageRequestFlags.PASID_VALID and fault.prm.pasid == pasid
        assert harness.handled[-1] == fault
        harness.iommu.uapi_page_response(harness.dev, harness.response(5, pasid))
        assert harness.iommu.pending_page_requests(harness.dev) == []

    def test_response_must_match_group_and_pasid(self, harness: Harness) -> None:
        pasid = harness.vm.alloc()
        self._request(harness, pasid, 5)
        for data in (harness.response(6, pasid), harness.response(5, pasid + 1)):
            call = partial(harness.iommu.uapi_page_response, harness.dev, data)
            assert refused_unchanged(harness, call) == errno.EINVAL

    def test_response_after_unbind_is_refused_and_reuse_sees_no_old_fault(
            self, harness: Harness) -> None:
        need(harness, entry=GuestEntry.BIND_GPASID)
        pasid = harness.vm.alloc()
        self._request(harness, pasid, 5)
        harness.unbind(pasid)
        assert harness.iommu.pending_page_requests(harness.dev) == []
        assert errno_of(lambda: harness.iommu.uapi_page_response(
            harness.dev, harness.response(5, pasid))) == errno.EINVAL
        harness.bind(pasid)
        assert harness.iommu.pending_page_requests(harness.dev) == []


class PasidTests:
    """PASID allocation: quotas, exhaustion, no leaks."""

    def test_quota_and_free(self, harness: Harness) -> None:
        vm = harness.iommu.pasid_set("small", quota=2)
        a, b = vm.alloc(), vm.alloc()
        assert errno_of(vm.alloc) == errno.EDQUOT
        harness.iommu.free_pasid(a, vm)
        assert vm.alloc() == a and b in harness.iommu.pasids

    def test_bound_then_freed_pasids_leave_nothing_bound(self, harness: Harness) -> None:
        need(harness, entry=GuestEntry.BIND_GPASID)
        harness.gmap(VA)
        pasids = [harness.vm.alloc() for _ in range(4)]
        for pasid in pasids:
            harness.bind(pasid)
        for pasid in pasids:
            harness.iommu.free_pasid(pasid, harness.vm)
        assert harness.iommu.bound_pasids(harness.dev) == [] and len(harness.vm) == 0


def _user_bytes() -> st.SearchStrategy[bytes]:
    argsz = st.sampled_from([0, 15, 16, 24, 31, 32, 40, 55, 56, 64, 72, 0xFFFFFFFF])
    return st.one_of(st.binary(max_size=90), st.tuples(argsz, st.binary(max_size=84)).map(
        lambda t: t[0].to_bytes(4, "little") + t[1]))


#: NESTING_OP headers (bind, unbind, cache invalidation) put before a fuzzed inner record, so
#: that the random bytes reach the IOMMU core through VFIO as often as they are refused by it.
_VFIO_OPS: tuple[bytes, ...] = tuple(struct.pack("<II", 8, op) for op in (0, 1, 2))

_ENTRY_POINTS: dict[str, Callable[[Harness, bytes, SizeDiscipline], object]] = {
    "uapi_cache_invalidate": lambda h, b, d: h.iommu.uapi_cache_invalidate(
        h.domain, h.dev, b, discipline=d),
    "uapi_sva_bind_gpasid": lambda h, b, d: h.iommu.uapi_sva_bind_gpasid(
        h.domain, h.dev2, b, discipline=d),
    "uapi_sva_unbind_gpasid": lambda h, b, d: h.iommu.uapi_sva_unbind_gpasid(
        h.domain, h.dev2, b, discipline=d),
    "uapi_page_response": lambda h, b, d: h.iommu.uapi_page_response(h.dev, b, discipline=d),
    "uapi_attach_pasid_table": lambda h, b, d: h.iommu.uapi_attach_pasid_table(
        h.domain, b, discipline=d),
    "nesting_info": lambda h, b, d: h.iommu.nesting_info(h.domain, bytearray(b)),
    "vfio.nesting_op": lambda h, b, d: VfioContainer(h.iommu, h.domain).nesting_op(
        _VFIO_OPS[len(b) % 3] + b, discipline=d),
    "vfio.set_pasid_table": lambda h, b, d: VfioContainer(h.iommu, h.domain).set_pasid_table(
        b, discipline=d),
    "vfio.cache_invalidate": lambda h, b, d: VfioContainer(h.iommu, h.domain).cache_invalidate(
        (8 + len(b)).to_bytes(4, "little") + bytes(4) + b, discipline=d),
}


class FuzzTests:
    """Random user bytes: only UAPIError escapes, and a refused call changes nothing."""

    @pytest.mark.parametrize("entry", sorted(_ENTRY_POINTS))
    def test_user_bytes_entry_point(self, harness: Harness, entry: str) -> None:
        if entry.startswith("vfio.") or entry == "nesting_info":
            need(harness, nesting=True)  # a VFIO nesting container reads the nesting info
        if entry == "uapi_attach_pasid_table":
            need(harness, Feature.BIND_PASID_TABLE)
        @settings(max_examples=40, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(data=_user_bytes(), discipline=st.sampled_from(list(SizeDiscipline)),
               profile=st.sampled_from(harness.caps.profiles))
        def run(data: bytes, discipline: SizeDiscipline, profile: str) -> None:
            harness.iommu.profile = profile
            before = harness.snapshot()
            try:
                _ENTRY_POINTS[entry](harness, data, discipline)
            except UAPIError:
                assert harness.snapshot() == before
        run()


class StatefulTests:
    """The backend and a reference model in lock-step (see :mod:`.stateful`)."""

    def test_backend_agrees_with_the_model(self, harness: Harness) -> None:
        from hypothesis.stateful import run_state_machine_as_test

        from .stateful import machine_for

        need(harness, pasids=True)
        need(harness, Feature.CACHE_INVLD)
        if harness.format is not None and not harness.format.host_stage2:
            pytest.skip(f"the guest format {harness.format!r} keeps the host from changing "
                        "the domain's stage 2, which the model does under the guest")
        machine = machine_for(harness.iommu.backend_name, harness.iommu.profile, harness.format)
        run_state_machine_as_test(machine, settings=settings(
            max_examples=25, stateful_step_count=30, deadline=None, database=None,
            suppress_health_check=list(HealthCheck)))

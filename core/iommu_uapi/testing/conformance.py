"""The conformance suite: test classes every backend runs against itself.

Import them into a test module of your own (``from iommu_uapi.testing.conformance import *``),
or run the packaged copy: ``pytest --pyargs iommu_uapi.testing.suite --iommu-backend NAME``.
Each class is one *area* of the contract. Tests are gated by the backend's declared
:class:`~iommu_uapi.features.Capabilities`, never by its name: a test that needs a feature or a
cache-type x granularity cell the backend does not declare is skipped with a reason naming it.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..abi import SizeDiscipline
from ..errors import FeatureError, UAPIError
from ..features import CacheCell, Feature
from ..rules import LINUX_5_10, RULES, RULES_BY_ID, STRICT
from ..translation import TranslationFault
from ..uapi import NestingInfo
from ..uapi.consts import CacheType, FaultType, InvGranularity, PageRequestFlags, PasidConfig
from .harness import READ, WRITE, Harness
from .rule_cases import (
    BIND_HPASID,
    RESPONSE_GRPID,
    RULE_CASES,
    nesting_info_bytes,
    pasid_table_bytes,
    with_tail,
)

__all__ = [
    "RULE_ENTRY_POINTS",
    "BindLifecycleTests",
    "FaultTests",
    "FuzzTests",
    "InvalidationTests",
    "IsolationTests",
    "NegotiationTests",
    "PasidTests",
    "RuleTests",
    "SizeRuleTests",
    "StatefulTests",
    "need",
    "outcome",
    "refusal",
    "refused_unchanged",
]

VA = 0x7F12_3450_0000
GUEST_RAM_PROBE = 0x1000  # a GPA mapped in the harness domain only


def need(h: Harness, feature: Feature | None = None, cell: CacheCell | None = None,
         nesting: bool = False) -> None:
    """Skip the running test unless the backend declares ``feature``/``cell``/nesting."""
    if feature is not None and not h.caps.features & feature:
        pytest.skip(f"backend does not declare feature {feature.name}")
    if cell is not None and cell not in h.caps.cache_cells:
        pytest.skip(f"backend does not declare cache cell {cell}")
    if nesting and not h.nesting:
        pytest.skip("backend binds no guest page table format this suite can build "
                    f"(formats {list(h.caps.formats)})")


def errno_of(call: Callable[[], object]) -> int:
    """The errno of the UAPIError ``call`` raises (the test fails if it raises nothing)."""
    with pytest.raises(UAPIError) as info:
        call()
    return info.value.errno


def refusal(h: Harness, call: Callable[[], object]) -> UAPIError:
    """Run ``call``, which must be refused, and check it changed nothing; returns the error."""
    before = h.snapshot()
    with pytest.raises(UAPIError) as info:
        call()
    assert h.snapshot() == before, "a refused call changed state"
    return info.value


def refused_unchanged(h: Harness, call: Callable[[], object]) -> int:
    """Run ``call``, which must be refused, and check it changed nothing; returns the errno."""
    return refusal(h, call).errno


def outcome(call: Callable[[], object]) -> UAPIError | None:
    """Run ``call``: None if it succeeded, else the :class:`UAPIError` it raised. (A backend's
    own refusal may change state where the profile says so: linux-5.10 drops a pending page
    request whatever the driver answers.)"""
    try:
        call()
    except UAPIError as err:
        return err
    return None


#: The size rules of each argsz record (``op.copy_minsz`` ...), by operation.
_SIZE_RULES: dict[str, frozenset[str]] = {
    op: frozenset(r.id for r in RULES if r.operation == op and r.id.split(".")[1] in (
        "copy_minsz", "argsz_minsz", "copy_rest", "tail_nonzero", "argsz_format"))
    for op in {r.operation for r in RULES}
}


def _cells() -> list[CacheCell]:
    return [CacheCell(c, g) for c in CacheType for g in InvGranularity]


class SizeRuleTests:
    """The size discipline of every argsz record, through the backend's entry points."""

    def test_exact_size_invalidation_is_accepted(self, harness: Harness) -> None:
        cell = next(iter(sorted(harness.caps.cache_cells, key=str)), None)
        if cell is None:
            pytest.skip("backend declares no cache cell")
        need(harness, Feature.CACHE_INVLD)
        harness.invalidate(Harness.inv_info(cell, 1))

    def test_argsz_below_minsz_is_einval(self, harness: Harness) -> None:
        need(harness, Feature.CACHE_INVLD)
        data = bytearray(Harness.inv_info(CacheCell(CacheType.IOTLB, InvGranularity.ADDR), 1)
                         .to_bytes())
        data[0:4] = (15).to_bytes(4, "little")
        assert refused_unchanged(harness, lambda: harness.iommu.uapi_cache_invalidate(
            harness.domain, harness.dev, bytes(data))) == errno.EINVAL

    def test_buffer_shorter_than_argsz_claims_is_efault(self, harness: Harness) -> None:
        need(harness, Feature.CACHE_INVLD)
        data = Harness.inv_info(CacheCell(CacheType.IOTLB, InvGranularity.ADDR), 1).to_bytes()
        assert refused_unchanged(harness, lambda: harness.iommu.uapi_cache_invalidate(
            harness.domain, harness.dev, data[:40])) == errno.EFAULT

    def test_newer_larger_struct_tail_ignored_under_argsz_e2big_under_iommufd(
            self, harness: Harness) -> None:
        cell = CacheCell(CacheType.IOTLB, InvGranularity.ADDR)
        need(harness, Feature.CACHE_INVLD, cell)
        data = bytearray(Harness.inv_info(cell, 1).to_bytes() + b"\x5a" * 8)
        data[0:4] = (64).to_bytes(4, "little")
        harness.iommu.uapi_cache_invalidate(harness.domain, harness.dev, bytes(data))
        assert refused_unchanged(harness, lambda: harness.iommu.uapi_cache_invalidate(
            harness.domain, harness.dev, bytes(data), discipline=SizeDiscipline.IOMMUFD)
        ) == errno.E2BIG

    def test_granularity_needs_its_union_member(self, harness: Harness) -> None:
        need(harness, Feature.CACHE_INVLD)
        data = bytearray(Harness.inv_info(CacheCell(CacheType.IOTLB, InvGranularity.ADDR), 1)
                         .to_bytes())
        data[0:4] = (40).to_bytes(4, "little")
        assert refused_unchanged(harness, lambda: harness.iommu.uapi_cache_invalidate(
            harness.domain, harness.dev, bytes(data))) == errno.EINVAL

    def test_bind_argsz_below_minsz_and_bad_version(self, harness: Harness) -> None:
        need(harness, Feature.BIND_PGTBL, nesting=True)
        pasid = harness.vm.alloc()
        short = bytearray(harness.bind_bytes(pasid))
        short[0:4] = (48).to_bytes(4, "little")
        for data in (bytes(short), harness.bind_bytes(pasid, version=2),
                     harness.bind_bytes(pasid, padding=b"\x01" + bytes(7))):
            call = partial(harness.iommu.uapi_sva_bind_gpasid, harness.domain, harness.dev,
                           data)
            assert refused_unchanged(harness, call) == errno.EINVAL


    # -- page response (minsz is the whole v5.10 struct: there is no older, smaller one) ------

    @staticmethod
    def _response(h: Harness, argsz: int, tail: bytes = b"",
                  cut: int | None = None) -> tuple[bytes, bytes]:
        """User bytes answering a fresh page request (with a PASID, as a PRI device sends it):
        argsz patched, ``tail`` appended, the readable buffer cut at ``cut``; and the exact
        response that answers the same request."""
        need(h, Feature.PAGE_REQUEST)
        need(h, Feature.BIND_PGTBL, nesting=True)
        pasid = h.vm.alloc()
        h.bind(pasid)
        grpid = pasid & 0x1FF
        h.iommu.page_request(h.dev, VA, pasid=pasid, access=WRITE, grpid=grpid)
        exact = h.response(grpid, pasid)
        data = bytearray(exact + tail)
        data[0:4] = argsz.to_bytes(4, "little")
        return bytes(data[:cut]), exact

    @staticmethod
    def _expect(h: Harness, sent: tuple[bytes, bytes], rule_id: str | None, profile: str,
                d: SizeDiscipline) -> None:
        """The response is refused by ``rule_id`` where its profile applies it (the request
        stays pending and the exact response then answers it), else it answers the request."""
        data, exact = sent
        call = partial(h.iommu.uapi_page_response, h.dev, data, profile=profile, discipline=d)
        if rule_id is not None and profile in RULES_BY_ID[rule_id].profiles:
            err = refusal(h, call)
            assert (err.errno, err.rule) == (RULES_BY_ID[rule_id].errno, rule_id), (
                f"{profile} {d.name}: {err}")
            call = partial(h.iommu.uapi_page_response, h.dev, exact, profile=profile)
        call()
        assert h.iommu.pending_page_requests(h.dev) == [], f"{profile} {d.name}: not answered"

    def test_page_response_exact_size_is_accepted(self, harness: Harness) -> None:
        for profile in harness.caps.profiles:
            for d in SizeDiscipline:
                self._expect(harness, self._response(harness, 24), None, profile, d)

    def test_page_response_argsz_below_minsz_is_einval_where_argsz_is_read(
            self, harness: Harness) -> None:
        for profile in harness.caps.profiles:
            for d in SizeDiscipline:
                self._expect(harness, self._response(harness, 20), "page_response.argsz_minsz",
                             profile, d)

    def test_page_response_newer_larger_struct(self, harness: Harness) -> None:
        """A zero tail is accepted; a non-zero tail is ignored under ARGSZ and E2BIG under
        IOMMUFD (where the profile reads argsz at all)."""
        for profile in harness.caps.profiles:
            for d in SizeDiscipline:
                self._expect(harness, self._response(harness, 32, bytes(8)), None, profile, d)
                self._expect(harness, self._response(harness, 32, b"\0\x5a" + bytes(6)),
                             "page_response.tail_nonzero" if d is SizeDiscipline.IOMMUFD
                             else None, profile, d)

    def test_page_response_buffer_shorter_than_argsz_is_efault(self, harness: Harness) -> None:
        for profile in harness.caps.profiles:
            for d in SizeDiscipline:
                self._expect(harness, self._response(harness, 24, cut=23),
                             "page_response.copy_minsz", profile, d)
                self._expect(harness, self._response(harness, 32),
                             "page_response.copy_rest" if d is SizeDiscipline.IOMMUFD
                             else None, profile, d)

    # -- PASID-table config (minsz 24 = up to vendor_data; SMMUv3 needs its 32) ------------------

    @staticmethod
    def _attach(h: Harness, data: bytes, rule_id: str | None, profile: str,
                d: SizeDiscipline) -> UAPIError | None:
        """Attach a stage-1-bypass table config from ``data``: refused by ``rule_id`` (changing
        nothing), or not refused by any size rule (then detached again, which never fails)."""
        need(h, Feature.BIND_PASID_TABLE)
        call = partial(h.iommu.uapi_attach_pasid_table, h.domain, data, profile=profile,
                       discipline=d)
        where = f"{profile} {d.name} argsz {int.from_bytes(data[:4], 'little')}/{len(data)}"
        if rule_id is not None:
            err = refusal(h, call)
            assert (err.errno, err.rule) == (RULES_BY_ID[rule_id].errno, rule_id), (
                f"{where}: {err}")
            return err
        later = outcome(call)
        assert later is None or later.rule not in _SIZE_RULES["attach_pasid_table"], (
            f"{where}: {later}")
        h.iommu.detach_pasid_table(h.domain)
        return later

    def test_pasid_table_config_size_cases(self, harness: Harness) -> None:
        """Exact size accepted; argsz < minsz EINVAL; a newer, larger struct accepted with a
        zero tail, its non-zero tail ignored under ARGSZ and E2BIG under IOMMUFD; an older,
        smaller (24-byte) struct refused for format SMMUv3, whose vendor data it lacks."""
        bypass = partial(pasid_table_bytes, config=PasidConfig.BYPASS)
        for profile in harness.caps.profiles:
            for d in SizeDiscipline:
                assert self._attach(harness, bypass(), None, profile, d) is None
                self._attach(harness, bypass(23), "attach_pasid_table.argsz_minsz", profile, d)
                assert self._attach(harness, with_tail(bypass(), bytes(8)), None, profile,
                                    d) is None
                tail = with_tail(bypass(), b"\x5a" + bytes(7))
                self._attach(harness, tail, "attach_pasid_table.tail_nonzero"
                             if d is SizeDiscipline.IOMMUFD else None, profile, d)
                self._attach(harness, bypass(24)[:24], "attach_pasid_table.argsz_format",
                             profile, d)
                self._attach(harness, bypass(24, fmt=0)[:24], None, profile, d)

    def test_pasid_table_config_buffer_shorter_than_argsz_is_efault(
            self, harness: Harness) -> None:
        bypass = partial(pasid_table_bytes, config=PasidConfig.BYPASS)
        for profile in harness.caps.profiles:
            for d in SizeDiscipline:
                self._attach(harness, bypass()[:23], "attach_pasid_table.copy_minsz", profile, d)
                self._attach(harness, bypass()[:31], "attach_pasid_table.copy_rest", profile, d)
                larger = with_tail(bypass(), bytes(8))[:32]
                self._attach(harness, larger, "attach_pasid_table.copy_rest"
                             if d is SizeDiscipline.IOMMUFD else None, profile, d)

    # -- nesting info: the façade writes it back; user space reads it under either discipline --

    def test_nesting_info_exact_size_is_filled(self, harness: Harness) -> None:
        need(harness, nesting=True)
        ubuf = bytearray(NestingInfo.SIZE)
        ubuf[0:4] = NestingInfo.SIZE.to_bytes(4, "little")
        info = harness.iommu.nesting_info(harness.domain, ubuf)
        assert info is not None and bytes(ubuf) == info.to_bytes()
        for d in SizeDiscipline:
            assert NestingInfo.from_user(bytes(ubuf), discipline=d) == info

    @pytest.mark.parametrize("argsz", [0, 4, NestingInfo.MINSZ, NestingInfo.SIZE - 1])
    def test_nesting_info_older_smaller_struct_is_a_size_probe(self, harness: Harness,
                                                              argsz: int) -> None:
        """An argsz below the record's size (an older, smaller struct, or a probe) is answered
        by writing the size into argsz and nothing else."""
        need(harness, nesting=True)
        ubuf = bytearray(b"\xa5" * max(argsz, 4))
        ubuf[0:4] = argsz.to_bytes(4, "little")
        assert harness.iommu.nesting_info(harness.domain, ubuf) is None
        assert ubuf[0:4] == NestingInfo.SIZE.to_bytes(4, "little")
        assert ubuf[4:] == b"\xa5" * (len(ubuf) - 4)

    def test_nesting_info_newer_larger_struct_keeps_its_tail(self, harness: Harness) -> None:
        """argsz above the size: the record is written with argsz = its size; the user's tail
        is not touched, so it decodes under both disciplines."""
        need(harness, nesting=True)
        ubuf = bytearray(bytes(NestingInfo.SIZE) + b"\x5a" * 16)
        ubuf[0:4] = len(ubuf).to_bytes(4, "little")
        info = harness.iommu.nesting_info(harness.domain, ubuf)
        assert info is not None and ubuf[NestingInfo.SIZE:] == b"\x5a" * 16
        assert int.from_bytes(ubuf[0:4], "little") == NestingInfo.SIZE
        for d in SizeDiscipline:
            assert NestingInfo.from_user(bytes(ubuf), discipline=d) == info

    def test_nesting_info_buffer_shorter_than_argsz_is_efault(self, harness: Harness) -> None:
        need(harness, nesting=True)
        cases: list[tuple[Any, str]] = [
            (bytearray(nesting_info_bytes()[:63]), "nesting_info.copy_rest"),
            (bytearray(3), "nesting_info.copy_argsz"),
            (nesting_info_bytes(), "nesting_info.copy_argsz"),  # read-only user memory
        ]
        for ubuf, rule_id in cases:
            before = bytes(ubuf)
            err = refusal(harness, partial(harness.iommu.nesting_info, harness.domain, ubuf))
            assert (err.errno, err.rule) == (errno.EFAULT, rule_id)
            assert bytes(ubuf) == before


Send = Callable[[Harness, bytes, str, SizeDiscipline], object]

#: The façade entry points that take user bytes, as :data:`~.rule_cases.RULE_CASES` names them:
#: the feature each needs from the backend (None: every nesting backend answers it) and how the
#: harness calls it with (bytes, profile, discipline).
RULE_ENTRY_POINTS: dict[str, tuple[Feature | None, Send]] = {
    "uapi_cache_invalidate": (Feature.CACHE_INVLD, lambda h, b, p, d: (
        h.iommu.uapi_cache_invalidate(h.domain, h.dev, b, profile=p, discipline=d))),
    "uapi_sva_bind_gpasid": (Feature.BIND_PGTBL, lambda h, b, p, d: (
        h.iommu.uapi_sva_bind_gpasid(h.domain, h.dev2, b, profile=p, discipline=d))),
    "uapi_sva_unbind_gpasid": (Feature.BIND_PGTBL, lambda h, b, p, d: (
        h.iommu.uapi_sva_unbind_gpasid(h.domain, h.dev2, b, profile=p, discipline=d))),
    "uapi_page_response": (Feature.PAGE_REQUEST, lambda h, b, p, d: (
        h.iommu.uapi_page_response(h.dev, b, profile=p, discipline=d))),
    "uapi_attach_pasid_table": (Feature.BIND_PASID_TABLE, lambda h, b, p, d: (
        h.iommu.uapi_attach_pasid_table(h.domain, b, profile=p, discipline=d))),
    "nesting_info": (None, lambda h, b, p, d: h.iommu.nesting_info(h.domain, bytearray(b))),
}

def _own_bind_pasid(h: Harness) -> None:
    if BIND_HPASID not in h.iommu.pasids:
        h.vm.alloc(BIND_HPASID, BIND_HPASID)


def _pending_request(h: Harness) -> None:
    if not any(f.prm.grpid == RESPONSE_GRPID for f in h.iommu.pending_page_requests(h.dev)):
        h.iommu.page_request(h.dev, VA, grpid=RESPONSE_GRPID)


#: What an entry point needs in place so that a passing neighbour reaches the backend (and a
#: refusal is seen to leave it alone): the host PASID the bind cases name is allocated; a page
#: request of the group the response cases answer is pending.
_READY: dict[str, Callable[[Harness], None]] = {
    "uapi_sva_bind_gpasid": _own_bind_pasid,
    "uapi_sva_unbind_gpasid": _own_bind_pasid,
    "uapi_page_response": _pending_request,
}

#: The built-in validation profiles; a backend runs the ones its capabilities list.
PROFILES = (LINUX_5_10, STRICT)
_DRIVEN = [c.rule for c in RULE_CASES.values() if c.via]


def _nothing(h: Harness) -> None:
    return None


def _message_op(entry: str, operation: str) -> str:
    return "unbind" if entry == "uapi_sva_unbind_gpasid" else operation


class RuleTests:
    """Every core rule, through the backend's user-bytes entry points, in every profile the
    backend supports: the rule's failing bytes are refused with its errno and rule id and
    change nothing; its passing neighbour is not refused by that rule. Rules outside their
    profile (the linux-5.10 quirks) must let the failing bytes past that rule."""

    @pytest.mark.parametrize("profile", PROFILES)
    @pytest.mark.parametrize("rule_id", _DRIVEN)
    def test_rule(self, harness: Harness, rule_id: str, profile: str) -> None:
        if profile not in harness.caps.profiles:
            pytest.skip(f"backend does not declare profile {profile}")
        case, rule = RULE_CASES[rule_id], RULES_BY_ID[rule_id]
        for entry in case.via:
            need(harness, RULE_ENTRY_POINTS[entry][0])
        if "nesting_info" in case.via:
            need(harness, nesting=True)
        sends = [(entry, d) for entry in case.via for d in case.disciplines]

        def send(entry: str, data: bytes, d: SizeDiscipline) -> Callable[[], object]:
            return partial(RULE_ENTRY_POINTS[entry][1], harness, data, profile, d)

        for entry, d in sends:
            where = f"{rule_id} via {entry} ({profile}, {d.name})"
            _READY.get(entry, _nothing)(harness)
            if profile in rule.profiles:
                err = refusal(harness, send(entry, case.bad, d))
                assert (err.errno, err.rule) == (rule.errno, rule_id), f"{where}: got {err}"
                assert err.message.startswith(_message_op(entry, rule.operation) + ": "), where
            else:
                quirk = outcome(send(entry, case.bad, d))
                assert quirk is None or quirk.rule != rule_id, f"{where}: outside its profiles"
        for entry, d in sends:
            _READY.get(entry, _nothing)(harness)
            later = outcome(send(entry, case.good, d))
            assert later is None or later.rule != rule_id, (
                f"{rule_id} via {entry} ({profile}, {d.name}): the passing neighbour was "
                f"refused by the rule: {later}")


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
    """Guest PASID bind and unbind: translate only while bound, refusals change nothing."""

    def test_bound_pasid_translates_through_both_stages(self, harness: Harness) -> None:
        need(harness, Feature.BIND_PGTBL, nesting=True)
        pasid = harness.vm.alloc()
        gpa = harness.gmap(VA)
        harness.bind(pasid)
        tr = harness.translate(VA + 0x123, pasid, WRITE)
        assert tr.paddr == harness.hpa(gpa) + 0x123 and tr.table_reads > 0
        assert harness.translate(VA + 0x456, pasid, READ).table_reads == 0

    def test_unbound_pasid_never_translates(self, harness: Harness) -> None:
        need(harness, Feature.BIND_PGTBL, nesting=True)
        pasid = harness.vm.alloc()
        harness.gmap(VA)
        with pytest.raises(TranslationFault):
            harness.translate(VA, pasid)

    def test_unbind_then_flush_stops_translation_and_rebind_restores(self,
                                                                      harness: Harness) -> None:
        need(harness, Feature.BIND_PGTBL, nesting=True)
        pasid = harness.vm.alloc()
        gpa = harness.gmap(VA)
        harness.bind(pasid)
        harness.translate(VA, pasid)
        harness.unbind(pasid)
        with pytest.raises(TranslationFault):
            harness.translate(VA, pasid)
        harness.bind(pasid)
        assert harness.translate(VA, pasid).paddr == harness.hpa(gpa)

    def test_unbind_of_nothing_succeeds(self, harness: Harness) -> None:
        need(harness, Feature.BIND_PGTBL, nesting=True)
        pasid = harness.vm.alloc()
        harness.unbind(pasid)
        harness.iommu.sva_unbind_gpasid(harness.domain, harness.dev, pasid)

    def test_double_bind_and_unallocated_pasid_are_refused_unchanged(self,
                                                                      harness: Harness) -> None:
        need(harness, Feature.BIND_PGTBL, nesting=True)
        pasid = harness.vm.alloc()
        harness.gmap(VA)
        harness.bind(pasid)
        assert refused_unchanged(harness, lambda: harness.bind(pasid)) == errno.EBUSY
        assert refused_unchanged(harness, lambda: harness.bind(pasid + 7)) == errno.ENOENT

    def test_free_pasid_tears_down_bindings(self, harness: Harness) -> None:
        need(harness, Feature.BIND_PGTBL, nesting=True)
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
        need(harness, Feature.BIND_PGTBL, cell, nesting=True)
        pasid = harness.vm.alloc()
        old = harness.gmap(VA)
        harness.bind(pasid, harness.dev2)
        assert harness.translate(VA, pasid, dev=harness.dev2).paddr == harness.hpa(old)
        harness.gunmap(VA)
        new = harness.gmap(VA)
        harness.invalidate(Harness.inv_info(cell, pasid, VA), harness.dev2)
        assert harness.translate(VA, pasid, dev=harness.dev2).paddr == harness.hpa(new)

    def test_device_tlb_invalidation_reaches_the_device(self, harness: Harness) -> None:
        cell = CacheCell(CacheType.DEV_IOTLB, InvGranularity.ADDR)
        need(harness, Feature.BIND_PGTBL, cell, nesting=True)
        pasid = harness.vm.alloc()
        old = harness.gmap(VA)
        harness.bind(pasid)
        assert harness.translate(VA, pasid).paddr == harness.hpa(old)
        harness.gunmap(VA)
        new = harness.gmap(VA)
        info = Harness.inv_info(CacheCell(CacheType.IOTLB, InvGranularity.ADDR), pasid, VA)
        harness.invalidate(msgspec.structs.replace(info, cache=CacheType.IOTLB |
                                                   CacheType.DEV_IOTLB))
        assert harness.translate(VA, pasid).paddr == harness.hpa(new)

    def test_addr_invalidation_leaves_other_pages_cached(self, harness: Harness) -> None:
        cell = CacheCell(CacheType.IOTLB, InvGranularity.ADDR)
        need(harness, Feature.BIND_PGTBL, cell, nesting=True)
        pasid = harness.vm.alloc()
        harness.gmap(VA)
        harness.gmap(VA + 0x10_0000)
        harness.bind(pasid, harness.dev2)
        harness.translate(VA, pasid, dev=harness.dev2)
        harness.translate(VA + 0x10_0000, pasid, dev=harness.dev2)
        harness.invalidate(Harness.inv_info(cell, pasid, VA), harness.dev2)
        assert harness.translate(VA + 0x10_0000, pasid, dev=harness.dev2).table_reads == 0
        assert harness.translate(VA, pasid, dev=harness.dev2).table_reads > 0


class IsolationTests:
    """Domains and PASIDs do not see each other's translations."""

    def test_domains_are_isolated(self, harness: Harness) -> None:
        other = harness.new_domain()
        dev = harness.iommu.add_device(0x0310)
        harness.iommu.attach_device(other, dev)
        harness.iommu.map(other, 0x4000_0000, 0x2_0000_0000, 0x1000, 3)
        assert harness.iommu.translate(dev, 0x4000_0000).paddr == 0x2_0000_0000
        with pytest.raises(TranslationFault):
            harness.iommu.translate(harness.dev2, 0x4000_0000)
        with pytest.raises(TranslationFault):
            harness.iommu.translate(dev, GUEST_RAM_PROBE)

    def test_pasids_are_isolated(self, harness: Harness) -> None:
        need(harness, Feature.BIND_PGTBL, nesting=True)
        a, b = harness.vm.alloc(), harness.vm.alloc()
        harness.gmap(VA)
        harness.bind(a, harness.dev2)
        harness.translate(VA, a, dev=harness.dev2)
        with pytest.raises(TranslationFault):
            harness.translate(VA, b, dev=harness.dev2)


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
        need(h, Feature.BIND_PGTBL, nesting=True)
        h.bind(pasid)
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
        need(harness, Feature.BIND_PGTBL, nesting=True)
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


_ENTRY_POINTS: dict[str, Callable[[Harness, bytes, SizeDiscipline], object]] = {
    "uapi_cache_invalidate": lambda h, b, d: h.iommu.uapi_cache_invalidate(
        h.domain, h.dev, b, discipline=d),
    "uapi_sva_bind_gpasid": lambda h, b, d: h.iommu.uapi_sva_bind_gpasid(
        h.domain, h.dev2, b, discipline=d),
    "uapi_sva_unbind_gpasid": lambda h, b, d: h.iommu.uapi_sva_unbind_gpasid(
        h.domain, h.dev2, b, discipline=d),
    "uapi_page_response": lambda h, b, d: h.iommu.uapi_page_response(h.dev, b, discipline=d),
}


class FuzzTests:
    """Random user bytes: only UAPIError escapes, and a refused call changes nothing."""

    @pytest.mark.parametrize("entry", sorted(_ENTRY_POINTS))
    def test_user_bytes_entry_point(self, harness: Harness, entry: str) -> None:
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

        need(harness, Feature.BIND_PGTBL, nesting=True)
        need(harness, Feature.CACHE_INVLD)
        run_state_machine_as_test(machine_for(harness.iommu.backend_name), settings=settings(
            max_examples=25, stateful_step_count=30, deadline=None, database=None,
            suppress_health_check=list(HealthCheck)))

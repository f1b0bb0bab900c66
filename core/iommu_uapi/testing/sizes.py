"""Conformance area: the size discipline of every argsz record, through the backend's entry
points (iommu.rst's four compatibility cases, EFAULT, both size disciplines)."""

from __future__ import annotations

import errno
from functools import partial
from typing import Any

import pytest

from ..abi import SizeDiscipline
from ..errors import UAPIError
from ..features import CacheCell, Feature
from ..guest import GuestEntry
from ..rules import RULES, RULES_BY_ID
from ..uapi import NestingInfo
from ..uapi.consts import CacheType, InvGranularity, PasidConfig
from .assertions import need, outcome, refusal, refused_unchanged
from .harness import GUEST_VA as VA
from .harness import WRITE, Harness
from .rule_cases import nesting_info_bytes, pasid_table_bytes, with_tail

__all__ = ["SizeRuleTests"]


#: The size rules of each argsz record (``op.copy_minsz`` ...), by operation.
_SIZE_RULES: dict[str, frozenset[str]] = {
    op: frozenset(r.id for r in RULES if r.operation == op and r.id.split(".")[1] in (
        "copy_minsz", "argsz_minsz", "copy_rest", "tail_nonzero", "argsz_format"))
    for op in {r.operation for r in RULES}
}

_ADDR_CELL = CacheCell(CacheType.IOTLB, InvGranularity.ADDR)


def _addr_inv(argsz: int | None = None, tail: bytes = b"") -> bytes:
    """A page-selective IOTLB invalidation of PASID 1 as user bytes, ``argsz`` overwritten
    and ``tail`` appended when given."""
    data = bytearray(Harness.inv_info(_ADDR_CELL, 1).to_bytes() + tail)
    if argsz is not None:
        data[0:4] = argsz.to_bytes(4, "little")
    return bytes(data)


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
        assert refused_unchanged(harness, lambda: harness.iommu.uapi_cache_invalidate(
            harness.domain, harness.dev, _addr_inv(argsz=15))) == errno.EINVAL

    def test_buffer_shorter_than_argsz_claims_is_efault(self, harness: Harness) -> None:
        need(harness, Feature.CACHE_INVLD)
        assert refused_unchanged(harness, lambda: harness.iommu.uapi_cache_invalidate(
            harness.domain, harness.dev, _addr_inv()[:40])) == errno.EFAULT

    def test_newer_larger_struct_tail_ignored_under_argsz_e2big_under_iommufd(
            self, harness: Harness) -> None:
        need(harness, Feature.CACHE_INVLD, _ADDR_CELL)
        data = _addr_inv(argsz=64, tail=b"\x5a" * 8)
        harness.iommu.uapi_cache_invalidate(harness.domain, harness.dev, data)
        assert refused_unchanged(harness, lambda: harness.iommu.uapi_cache_invalidate(
            harness.domain, harness.dev, data, discipline=SizeDiscipline.IOMMUFD)
        ) == errno.E2BIG

    def test_granularity_needs_its_union_member(self, harness: Harness) -> None:
        need(harness, Feature.CACHE_INVLD)
        assert refused_unchanged(harness, lambda: harness.iommu.uapi_cache_invalidate(
            harness.domain, harness.dev, _addr_inv(argsz=40))) == errno.EINVAL

    def test_bind_argsz_below_minsz_and_bad_version(self, harness: Harness) -> None:
        need(harness, entry=GuestEntry.BIND_GPASID)
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
        need(h, nesting=True)
        pasid = h.vm.alloc()
        h.enter(pasid)
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
        if rule_id is not None and RULES_BY_ID[rule_id].applies_in(profile):
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

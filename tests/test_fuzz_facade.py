"""Bounded fuzz of every user-bytes entry point of the façade: random bytes and argsz give
either success or UAPIError, never another exception, and a refused call changes nothing."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_iommu import Rig

from iommu_uapi import UAPIError
from iommu_uapi.abi import SizeDiscipline


def snapshot(rig: Rig) -> tuple[Any, ...]:
    io = rig.iommu
    return (dict(io.uapi.bindings), dict(io.iotlb.entries), dict(rig.backend.binds),
            [list(io.pending_page_requests(d)) for d in (rig.dev, rig.dev2)],
            len(rig.backend.responses), sorted(io.pasids._owner))


def user_bytes(size: int) -> st.SearchStrategy[bytes]:
    """Random buffers whose first word is often a plausible argsz."""
    argsz = st.sampled_from([0, 8, 16, 24, 31, 32, 40, 55, 56, 57, 64, 72, 80, 0xFFFFFFFF])
    return st.one_of(
        st.binary(max_size=size + 16),
        st.tuples(argsz, st.binary(min_size=0, max_size=size + 12)).map(
            lambda t: t[0].to_bytes(4, "little") + t[1]),
    )


ENTRY_POINTS = {
    "uapi_cache_invalidate": lambda r, b, d: r.iommu.uapi_cache_invalidate(
        r.domain, r.dev2, b, discipline=d),
    "uapi_sva_bind_gpasid": lambda r, b, d: r.iommu.uapi_sva_bind_gpasid(
        r.domain, r.dev2, b, discipline=d),
    "uapi_sva_unbind_gpasid": lambda r, b, d: r.iommu.uapi_sva_unbind_gpasid(
        r.domain, r.dev2, b, discipline=d),
    "uapi_page_response": lambda r, b, d: r.iommu.uapi_page_response(r.dev, b, discipline=d),
}


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(ENTRY_POINTS)), data=user_bytes(72),
       discipline=st.sampled_from(list(SizeDiscipline)),
       profile=st.sampled_from(["linux-5.10", "strict"]))
def test_only_uapi_error_escapes_and_refusals_change_nothing(
        name: str, data: bytes, discipline: SizeDiscipline, profile: str) -> None:
    rig = Rig()
    rig.iommu.profile = profile
    rig.iommu.register_fault_handler(rig.dev, lambda f: None)
    pasid = rig.vm.alloc()
    rig.bind(pasid, dev=rig.dev2)
    rig.iommu.translate(rig.dev2, 0x1000)
    rig.iommu.page_request(rig.dev, 0x2000, pasid=pasid, grpid=1)
    before = snapshot(rig)
    try:
        ENTRY_POINTS[name](rig, data, discipline)
    except UAPIError:
        assert snapshot(rig) == before


@settings(max_examples=100, deadline=None)
@given(argsz=st.integers(0, 200), tail=st.binary(max_size=200))
def test_nesting_info_probe_never_escapes(argsz: int, tail: bytes) -> None:
    rig = Rig()
    buf = bytearray(argsz.to_bytes(4, "little") + tail)
    try:
        info = rig.iommu.nesting_info(rig.domain, buf)
    except UAPIError:
        return
    if argsz < 64:
        assert info is None and buf[:4] == (64).to_bytes(4, "little")
    else:
        assert info is not None and bytes(buf[:64]) == info.to_bytes()

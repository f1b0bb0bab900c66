"""Bounded fuzz of every user-bytes entry point on the vtd backend: only ``UAPIError`` escapes,
and a refused call changes nothing (PASID entries, caches, queue, bindings, memory)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vtd_rig import Rig

from iommu_uapi import UAPIError
from iommu_uapi.uapi import (
    CacheInvalidateInfo,
    GpasidBindData,
    GpasidBindDataVtd,
    GpasidBindVendor,
    InvAddrInfo,
    InvGranu,
    InvPasidInfo,
    PageResponse,
)

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
u8, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF_FFFF)
u64 = st.one_of(st.integers(0, 0x20), st.integers(0, (1 << 20) + 2),
                st.integers(0, (1 << 64) - 1))


@pytest.fixture(scope="module")
def rig() -> Rig:
    r = Rig(ats=True)
    r.bind()
    r.bind()
    r.iommu.register_fault_handler(r.dev, lambda f: None)
    return r


def refuse_or_succeed(rig: Rig, call: Callable[[], object]) -> None:
    pasids = (1, 2, 3)
    before = rig.state(*pasids)
    try:
        call()
    except UAPIError:
        assert rig.state(*pasids) == before


def cut(data: bytes, length: int | None) -> bytes:
    return data if length is None else data[:length]


@FUZZ
@given(cache=u8, granu=u8, argsz=st.integers(0, 100), version=st.integers(0, 2), pflags=u32,
       aflags=u32, pasid=u64, addr=u64, gsize=u64, nb=u64,
       length=st.one_of(st.none(), st.integers(0, 80)),
       profile=st.sampled_from(["linux-5.10", "strict"]))
def test_cache_invalidate_bytes(rig: Rig, cache: int, granu: int, argsz: int, version: int,
                                pflags: int, aflags: int, pasid: int, addr: int, gsize: int,
                                nb: int, length: int | None, profile: str) -> None:
    info = CacheInvalidateInfo(
        argsz=argsz, version=version, cache=cache, granularity=granu,
        granu=InvGranu(pasid_info=InvPasidInfo(flags=pflags, pasid=pasid)) if granu == 1 else
        InvGranu(addr_info=InvAddrInfo(flags=aflags, pasid=pasid, addr=addr, granule_size=gsize,
                                       nb_granules=nb)))
    ubuf = cut(info.to_bytes(), length)
    refuse_or_succeed(rig, lambda: rig.iommu.uapi_cache_invalidate(rig.domain, rig.dev, ubuf,
                                                                   profile=profile))


@FUZZ
@given(argsz=st.integers(0, 100), version=st.integers(0, 2), fmt=st.integers(0, 3),
       width=st.sampled_from([0, 39, 48, 57, 64, 0xFFFF_FFFF]), flags=st.integers(0, 3),
       gpgd=u64, hpasid=u64, vflags=st.one_of(st.integers(0, 0x7F), u64), pat=u32, emt=u32,
       length=st.one_of(st.none(), st.integers(0, 90)), unbind=st.booleans())
def test_bind_and_unbind_bytes(rig: Rig, argsz: int, version: int, fmt: int, width: int,
                               flags: int, gpgd: int, hpasid: int, vflags: int, pat: int,
                               emt: int, length: int | None, unbind: bool) -> None:
    data = GpasidBindData(argsz=argsz, version=version, format=fmt, addr_width=width,
                          flags=flags, gpgd=gpgd, hpasid=hpasid,
                          vendor=GpasidBindVendor(vtd=GpasidBindDataVtd(flags=vflags, pat=pat,
                                                                        emt=emt)))
    ubuf = cut(data.to_bytes(), length)
    op = rig.iommu.uapi_sva_unbind_gpasid if unbind else rig.iommu.uapi_sva_bind_gpasid
    refuse_or_succeed(rig, lambda: op(rig.domain, rig.dev, ubuf))


@FUZZ
@given(argsz=st.integers(0, 40), version=st.integers(0, 2), flags=u32, pasid=u32, grpid=u32,
       code=u32, length=st.one_of(st.none(), st.integers(0, 30)),
       profile=st.sampled_from(["linux-5.10", "strict"]),
       pending=st.sampled_from([None, 0, 1, 2, 7]))
def test_page_response_bytes(rig: Rig, argsz: int, version: int, flags: int, pasid: int,
                             grpid: int, code: int, length: int | None, profile: str,
                             pending: int | None) -> None:
    for fault in rig.iommu.pending_page_requests(rig.dev):   # start from one pending request
        rig.iommu.uapi.fault_params[rig.dev.sid].complete(fault)
    rig.iommu.page_request(rig.dev, 0x7000_0000, pasid=pending, grpid=grpid & 0x1FF)
    msg = PageResponse(argsz=argsz, version=version, flags=flags, pasid=pasid, grpid=grpid,
                       code=code)
    ubuf = cut(msg.to_bytes(), length)
    refuse_or_succeed(rig, lambda: rig.iommu.uapi_page_response(rig.dev, ubuf,
                                                                profile=profile))


@FUZZ
@given(data=st.binary(max_size=120))
def test_raw_bytes_everywhere(rig: Rig, data: bytes) -> None:
    for call in (
        lambda: rig.iommu.uapi_cache_invalidate(rig.domain, rig.dev, data),
        lambda: rig.iommu.uapi_sva_bind_gpasid(rig.domain, rig.dev, data),
        lambda: rig.iommu.uapi_sva_unbind_gpasid(rig.domain, rig.dev, data),
        lambda: rig.iommu.uapi_page_response(rig.dev, data),
        lambda: rig.iommu.nesting_info(rig.domain, bytearray(data)),
    ):
        refuse_or_succeed(rig, call)

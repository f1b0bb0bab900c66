"""Bad user bytes through every user-bytes entry point of ``smmuv3``, in both profiles: only
``UAPIError`` escapes, and a refused call changes nothing (STEs, the guest stage 1, the TLB,
commands issued, memory); ``nesting_info`` and the capabilities."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from backend_rig import VA, Rig
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iommu_uapi.errors import UAPIError
from iommu_uapi.features import FailureReport, Feature
from iommu_uapi.uapi import NestingInfo
from iommu_uapi.uapi.consts import IOMMU_PASID_FORMAT_SMMUV3
from iommu_uapi.vfio import VfioContainer

_ENTRIES: dict[str, Callable[[Rig, bytes], object]] = {
    "uapi_attach_pasid_table": lambda r, b: r.iommu.uapi_attach_pasid_table(r.domain, b),
    "uapi_cache_invalidate": lambda r, b: r.iommu.uapi_cache_invalidate(r.domain, r.dev, b),
    "uapi_sva_bind_gpasid": lambda r, b: r.iommu.uapi_sva_bind_gpasid(r.domain, r.dev, b),
    "uapi_page_response": lambda r, b: r.iommu.uapi_page_response(r.dev, b),
    "nesting_info": lambda r, b: r.iommu.nesting_info(r.domain, bytearray(b)),
    "vfio.set_pasid_table": lambda r, b: VfioContainer(r.iommu, r.domain).set_pasid_table(b),
    "vfio.cache_invalidate": lambda r, b: VfioContainer(r.iommu, r.domain).cache_invalidate(
        struct.pack("<II", 8 + len(b), 0) + b),
}


def _state(rig: Rig) -> tuple[object, ...]:
    host = rig.backend.host
    return (host.read_ste(rig.dev.sid), host.read_ste(rig.dev2.sid), rig.domain.data.s1,
            rig.domain.data.abort, host.issued, dict(rig.iommu.iotlb.entries))


def _records() -> st.SearchStrategy[bytes]:
    argsz = st.sampled_from([0, 16, 20, 24, 31, 32, 40, 56, 64, 0xFFFFFFFF])
    return st.one_of(st.binary(max_size=80), st.tuples(argsz, st.binary(max_size=76)).map(
        lambda t: t[0].to_bytes(4, "little") + t[1]))


@pytest.mark.parametrize("profile", ["linux-5.10", "strict"])
@pytest.mark.parametrize("entry", sorted(_ENTRIES))
def test_bad_user_bytes_are_refused_unchanged(profile: str, entry: str) -> None:
    rig = Rig(profile)
    rig.gmap()
    pasid = 0 if profile == "linux-5.10" else 1   # a single CD, or SubstreamID 1 of a table
    rig.enter(pasid)
    rig.iommu.translate(rig.dev2, VA, pasid=pasid or None)

    @settings(max_examples=40, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=_records())
    def run(data: bytes) -> None:
        before = _state(rig)
        try:
            _ENTRIES[entry](rig, data)
        except UAPIError:
            assert _state(rig) == before
    run()


@pytest.mark.parametrize("profile", ["linux-5.10", "strict"])
def test_nesting_info_and_capabilities(profile: str) -> None:
    rig = Rig(profile, s2_ias=40)
    buf = bytearray(NestingInfo.SIZE)
    buf[:4] = NestingInfo.SIZE.to_bytes(4, "little")
    rig.iommu.nesting_info(rig.domain, buf)
    info = NestingInfo.from_bytes(bytes(buf))
    assert (info.format, info.pasid_bits, info.addr_width) == (IOMMU_PASID_FORMAT_SMMUV3, 20, 40)
    caps = rig.iommu.capabilities
    assert caps.features & Feature.BIND_PASID_TABLE and not caps.features & Feature.BIND_PGTBL
    assert caps.page_sizes == 0x1000 | 0x20_0000 | 0x4000_0000
    assert caps.failure_reporting["cache_invalidate"] is FailureReport.ERROR_INTERRUPT
    assert caps.profiles == (profile,)
    assert len(caps.cache_cells) == (1 if profile == "linux-5.10" else 7)
    assert Rig(profile, s2_granule=65536).iommu.capabilities.page_sizes == 0x1_0000 | 1 << 29

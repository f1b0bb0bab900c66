"""Fuzz of every iommufd entry point: whatever the bytes, the answer is success or a
``UAPIError``, and a refused call changes nothing (except what HWPT_INVALIDATE's partial
completion did and reports in ``entry_num``)."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iommu_uapi.errors import UAPIError
from iommu_uapi.iommufd import Cmd, IommuHwptInvalidate
from iommu_uapi.testing.iommufd_rig import IommufdRig

_CMDS = list(Cmd)


def _rig() -> IommufdRig:
    rig = IommufdRig("vtd")
    rig.gmap(0x7000_0000_0000)
    rig.enter(5, rig.dev2)
    rig.client.fault_alloc()
    return rig


@st.composite
def _struct(draw: st.DrawFn) -> tuple[int, bytearray]:
    code = draw(st.sampled_from(_CMDS))
    size = draw(st.integers(0, 72))
    body = bytearray(draw(st.binary(min_size=size, max_size=size)))
    if size >= 4 and draw(st.booleans()):
        struct.pack_into("<I", body, 0, draw(st.sampled_from([size, 8, 16, 24, 32, 40, 48])))
    ids = draw(st.lists(st.integers(0, 8), min_size=4, max_size=4))
    for off, val in zip((4, 8, 12, 16), ids, strict=True):  # small ids hit real objects
        if size >= off + 4 and draw(st.booleans()):
            struct.pack_into("<I", body, off, val)
    return int(code), body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_struct(), min_size=1, max_size=6))
def test_ioctl_fuzz(calls: list[tuple[int, bytearray]]) -> None:
    rig = _rig()
    for code, buf in calls:
        before = rig.snapshot()
        try:
            rig.fd.ioctl(code, buf)
        except UAPIError as exc:
            assert exc.rule is not None
            if code == Cmd.HWPT_INVALIDATE and len(buf) >= 28:
                handled = IommuHwptInvalidate.from_bytes(bytes(buf[:32]).ljust(32, b"\0"))
                if handled.entry_num:
                    continue  # partial completion reported
            assert rig.snapshot() == before, (hex(code), exc)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=96), st.integers(0, 200))
def test_fault_file_fuzz(data: bytes, count: int) -> None:
    rig = _rig()
    fd = next(iter(rig.fd.files))
    for call in (lambda: rig.fd.write(fd, data), lambda: rig.fd.read(fd, count)):
        before = rig.snapshot()
        try:
            call()
        except UAPIError:
            assert rig.snapshot() == before


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 12), st.integers(0, 12), st.one_of(st.none(), st.integers(0, 1 << 20)))
def test_attach_detach_fuzz(dev_id: int, pt_id: int, pasid: int | None) -> None:
    rig = _rig()
    for call in (lambda: rig.fd.attach(dev_id, pt_id, pasid),
                 lambda: rig.fd.detach(dev_id, pasid)):
        before = rig.snapshot()
        try:
            call()
        except UAPIError:
            assert rig.snapshot() == before

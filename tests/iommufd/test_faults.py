"""Fault objects: page requests of a device attached through a nested HWPT with a fault object
are read as ``iommu_hwpt_pgfault`` records and answered with ``iommu_hwpt_page_response``."""

from __future__ import annotations

import errno

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.iommufd import (
    Cmd,
    IommuFaultAlloc,
    IommuHwptPageResponse,
    IommuHwptPgfault,
    PageResponseCode,
    PgfaultFlags,
)
from iommu_uapi.testing.iommufd_rig import IommufdRig
from iommu_uapi.uapi.consts import FaultPerm

VA = 0x7000_0000_0000


def _setup(rig: IommufdRig, pasid: int = 5) -> tuple[int, int]:
    fault_id, fd = rig.client.fault_alloc()
    rig.gmap(VA)
    rig.enter(pasid, rig.dev, fault_id=fault_id)
    return fault_id, fd


def _records(raw: bytes) -> list[IommuHwptPgfault]:
    return [IommuHwptPgfault.from_bytes(raw[i:i + 40]) for i in range(0, len(raw), 40)]


def test_page_request_is_read_as_a_record(rig: IommufdRig) -> None:
    _, fd = _setup(rig)
    rig.iommu.page_request(rig.dev, VA + 0x40, pasid=5, access=FaultPerm.WRITE, grpid=3)
    (rec,) = _records(rig.fd.read(fd, 80))
    assert (rec.dev_id, rec.pasid, rec.grpid, rec.perm, rec.addr) == (
        rig.dev_id, 5, 3, int(FaultPerm.WRITE), VA)
    assert rec.flags == PgfaultFlags.PASID_VALID | PgfaultFlags.LAST_PAGE
    assert rec.cookie != 0 and rec.length == 4096
    assert rig.fd.read(fd, 40) == b""


def test_response_answers_the_group(rig: IommufdRig) -> None:
    _, fd = _setup(rig)
    rig.iommu.page_request(rig.dev, VA, pasid=5, grpid=3)
    (rec,) = _records(rig.fd.read(fd, 40))
    assert rig.iommu.pending_page_requests(rig.dev)
    resp = IommuHwptPageResponse(cookie=rec.cookie, code=PageResponseCode.SUCCESS)
    assert rig.fd.write(fd, resp.to_bytes()) == 8
    assert not rig.iommu.pending_page_requests(rig.dev)
    sent = rig.iommu.backend.responses[-1]  # type: ignore[attr-defined]
    assert (sent.PRGI, sent.PASID, sent.RC) == (3, 5, 0)


@pytest.mark.parametrize(("cookie", "code", "rule"), [
    (None, 2, "iommufd.fault.code"),
    (12345, 0, "iommufd.fault.cookie"),
])
def test_bad_response_is_refused(rig: IommufdRig, cookie: int | None, code: int,
                                 rule: str) -> None:
    _, fd = _setup(rig)
    rig.iommu.page_request(rig.dev, VA, pasid=5, grpid=3)
    (rec,) = _records(rig.fd.read(fd, 40))
    msg = IommuHwptPageResponse(cookie=rec.cookie if cookie is None else cookie, code=code)
    with pytest.raises(UAPIError) as exc:
        rig.fd.write(fd, msg.to_bytes())
    assert (exc.value.errno, exc.value.rule) == (errno.EINVAL, rule)
    assert rig.iommu.pending_page_requests(rig.dev)


def test_second_bad_response_returns_the_bytes_before_it(rig: IommufdRig) -> None:
    _, fd = _setup(rig)
    rig.iommu.page_request(rig.dev, VA, pasid=5, grpid=3)
    (rec,) = _records(rig.fd.read(fd, 40))
    good = IommuHwptPageResponse(cookie=rec.cookie, code=PageResponseCode.INVALID).to_bytes()
    assert rig.fd.write(fd, good + good) == 8   # the cookie is gone after the first


def test_lengths_that_are_not_whole_records_are_espipe(rig: IommufdRig) -> None:
    _, fd = _setup(rig)
    for call in (lambda: rig.fd.read(fd, 39), lambda: rig.fd.write(fd, bytes(12))):
        with pytest.raises(UAPIError) as exc:
            call()
        assert exc.value.errno == errno.ESPIPE


def test_detach_answers_unanswered_groups_invalid(rig: IommufdRig) -> None:
    _setup(rig)
    rig.iommu.page_request(rig.dev, VA, pasid=5, grpid=3)
    rig.fd.detach(rig.dev_id, 5)
    assert not rig.iommu.pending_page_requests(rig.dev)
    assert rig.iommu.backend.responses[-1].RC == 1  # type: ignore[attr-defined]


def test_fault_object_in_use_cannot_be_destroyed(rig: IommufdRig) -> None:
    fault_id, _ = _setup(rig)
    with pytest.raises(UAPIError) as exc:
        rig.client.destroy(fault_id)
    assert exc.value.errno == errno.EBUSY


def test_fault_alloc_flags_and_unknown_file(rig: IommufdRig) -> None:
    with pytest.raises(UAPIError) as exc:
        rig.fd.ioctl(Cmd.FAULT_QUEUE_ALLOC, bytearray(IommuFaultAlloc(size=16,
                                                                      flags=1).to_bytes()))
    assert exc.value.errno == errno.EOPNOTSUPP
    with pytest.raises(UAPIError) as exc:
        rig.fd.read(99, 40)
    assert exc.value.errno == errno.EBADF

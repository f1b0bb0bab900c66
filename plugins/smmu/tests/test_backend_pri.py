"""Page requests on ``smmuv3``: the PRI-queue record, the generic page-request fault, and
``page_response`` as CMD_PRI_RESP reaching the endpoint; a platform device's stalled
transaction as a page request answered by CMD_RESUME (retry or abort)."""

from __future__ import annotations

import errno

import msgspec
import pytest
from backend_rig import VA, Rig

from iommu_uapi.errors import UAPIError
from iommu_uapi.translation import Translation, TranslationFault
from iommu_uapi.uapi import PageResponse
from iommu_uapi.uapi.consts import FaultType, PageRequestFlags, PageResponseCode
from iommu_uapi_smmu.cmds import PriResp, Resume
from iommu_uapi_smmu.guest import guest_cd


def _response(grpid: int, pasid: int, code: int) -> bytes:
    return PageResponse(argsz=24, version=1, flags=1, pasid=pasid, grpid=grpid,
                        code=code).to_bytes()


@pytest.mark.parametrize(("code", "resp"), [(PageResponseCode.SUCCESS, 0b10),
                                            (PageResponseCode.INVALID, 0b00),
                                            (PageResponseCode.FAILURE, 0b01)])
def test_page_request_round_trip(code: int, resp: int) -> None:
    rig = Rig("strict")
    dev = rig.iommu.add_device(0x0400, pri=True, ats=True)
    rig.iommu.attach_device(rig.domain, dev)
    seen: list[object] = []
    rig.iommu.register_fault_handler(dev, seen.append)
    rig.enter(7)
    fault = rig.iommu.page_request(dev, VA + 0x345, pasid=7, access=2, grpid=9)
    assert fault.type == FaultType.PAGE_REQ
    assert (fault.prm.pasid, fault.prm.grpid, fault.prm.addr, fault.prm.perm) == (7, 9, VA, 2)
    assert fault.prm.flags & PageRequestFlags.PASID_VALID
    assert fault.prm.flags & PageRequestFlags.LAST_PAGE
    assert rig.backend.smmu.pcie.pending == {(0x400, 7, 9)} and seen == [fault]
    rig.iommu.uapi_page_response(dev, _response(9, 7, code))
    assert rig.commands() == [PriResp(SID=0x400, SSV=True, SSID=7, PRGI=9, Resp=resp)]
    assert rig.backend.smmu.pcie.responses[-1] == (0x400, 7, 9, resp)
    assert rig.backend.smmu.pcie.pending == set()


def test_a_device_without_pri_is_refused() -> None:
    rig = Rig("strict")
    with pytest.raises(UAPIError) as info:
        rig.iommu.page_request(rig.dev2, VA, pasid=1, access=1, grpid=1)
    assert (info.value.errno, info.value.rule) == (errno.EOPNOTSUPP, "smmu.pri.refused")


@pytest.mark.parametrize(("code", "resumed"), [(PageResponseCode.SUCCESS, True),
                                               (PageResponseCode.INVALID, False)])
def test_a_stalled_transaction_is_a_page_request_answered_by_resume(code: int,
                                                                    resumed: bool) -> None:
    rig = Rig("strict")
    dev = rig.iommu.add_device(0x0500, pci=False)       # a platform device: it may stall
    rig.iommu.attach_device(rig.domain, dev)
    assert not rig.backend.host.read_ste(0x500).S1STALLD
    assert rig.backend.host.read_ste(rig.dev2.sid).S1STALLD
    seen: list[object] = []
    rig.iommu.register_fault_handler(dev, seen.append)
    stalling = msgspec.structs.replace(guest_cd(rig.gpt.root, 3), S=True)  # CD.S: stall
    rig.guest.write(rig.format.cd_address(rig.guest, rig.table, 3), stalling.to_bytes())
    with pytest.raises(TranslationFault) as info:
        rig.iommu.translate(dev, VA + 0x10, pasid=3, access=2)
    fault = info.value.fault
    assert fault is not None and fault.type == FaultType.PAGE_REQ and seen == [fault]
    stag = fault.prm.grpid
    assert (fault.prm.pasid, fault.prm.addr) == (3, VA) and (0x500, stag) in \
        rig.backend.smmu.stalled
    gpa = rig.gmap()                                      # the guest makes the page present
    rig.iommu.uapi_page_response(dev, _response(stag, 3, code))
    assert rig.commands() == [Resume(SID=0x500, STAG=stag, Ac=resumed, Ab=not resumed)]
    assert (0x500, stag) not in rig.backend.smmu.stalled
    if resumed:
        done = rig.backend.smmu.resumed[-1]
        assert isinstance(done, Translation) and done.paddr == rig.hpa(gpa) + 0x10
    else:
        assert rig.backend.smmu.resumed == []

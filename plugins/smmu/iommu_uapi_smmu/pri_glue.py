"""Page requests on the SMMU: an endpoint's PRI request written to the PRI queue, read back by
the host driver and reported as the generic page-request fault; ``page_response`` answered with
CMD_PRI_RESP (the response codes as ``arm_smmu_page_response`` maps them).

A stalled transaction (a platform device's stream with STE.S1STALLD = 0 whose CD has S = 1) is
the other recoverable fault: its event (Stall = 1, STAG) is reported as a page request whose
group index is the STAG (:func:`~.generic.generic_fault`), and its response is CMD_RESUME:
retry on SUCCESS, abort otherwise.
"""

from __future__ import annotations

import errno

from iommu_uapi.device import Device
from iommu_uapi.errors import UAPIError
from iommu_uapi.uapi import Fault, FaultPageRequest, PageResponse
from iommu_uapi.uapi.consts import FaultPerm, FaultType, PageRequestFlags, PageResponseCode

from .cmds import PriResp, Resume
from .events import ConfigFault
from .host import HostDriver
from .pri import PageRequest
from .smmu import Smmu
from .ste import SteConfig

__all__ = ["PRI_RESP", "page_request", "page_response"]

#: iommu_page_response code -> CMD_PRI_RESP.Resp (DENY 0, FAIL 1, SUCC 2)
PRI_RESP = {int(PageResponseCode.INVALID): 0b00, int(PageResponseCode.FAILURE): 0b01,
            int(PageResponseCode.SUCCESS): 0b10}
_PRGI_MAX = (1 << 9) - 1
_R, _W, _X, _P = (int(FaultPerm.READ), int(FaultPerm.WRITE), int(FaultPerm.EXEC),
                  int(FaultPerm.PRIV))


def page_request(smmu: Smmu, host: HostDriver, dev: Device, pasid: int | None, addr: int,
                 access: int, grpid: int, last: bool) -> Fault:
    """The endpoint ``dev`` asks for the page at ``addr``: refused (EOPNOTSUPP) when it or its
    stream cannot make page requests, else queued, read back and reported."""
    if not isinstance(grpid, int) or not 0 <= grpid <= _PRGI_MAX:
        raise UAPIError(errno.EINVAL, f"page_request: group index {grpid!r} is not 9-bit",
                        rule="smmu.pri.grpid")
    if not (dev.pri and smmu.caps.pri):
        raise UAPIError(errno.EOPNOTSUPP, f"page_request: {dev!r} has no PRI on this SMMU",
                        rule="smmu.pri.refused")
    try:
        stream, _ = smmu.stream_config(dev.sid)
    except ConfigFault as cf:
        raise UAPIError(errno.EOPNOTSUPP, f"page_request: the stream's STE: {cf}",
                        rule="smmu.pri.refused") from None
    if stream.config not in (SteConfig.S1_TRANS, SteConfig.S2_TRANS, SteConfig.NESTED):
        raise UAPIError(errno.EOPNOTSUPP, "page_request: the stream does not translate",
                        rule="smmu.pri.refused")
    req = PageRequest(StreamID=dev.sid, SubstreamID=pasid or 0, SSV=pasid is not None,
                      READ=bool(access & _R), WRITE=bool(access & _W), EXEC=bool(access & _X),
                      PRIV=bool(access & _P), Last=last, PRGI=grpid, Addr=addr & ~0xFFF)
    if not smmu.pcie.page_request(req):
        raise UAPIError(errno.ENOSPC, "page_request: the PRI queue is full or disabled",
                        rule="smmu.pri.overflow")
    taken = host.take_page_requests()[-1]
    flags = PageRequestFlags(0)
    if taken.SSV:
        flags |= PageRequestFlags.PASID_VALID | PageRequestFlags.RESPONSE_NEEDS_PASID
    if taken.Last:
        flags |= PageRequestFlags.LAST_PAGE
    perm = ((_R if taken.READ else 0) | (_W if taken.WRITE else 0)
            | (_X if taken.EXEC else 0) | (_P if taken.PRIV else 0))
    return Fault(type=FaultType.PAGE_REQ, prm=FaultPageRequest(
        flags=flags, pasid=taken.SubstreamID if taken.SSV else 0, grpid=taken.PRGI, perm=perm,
        addr=taken.Addr))


def page_response(smmu: Smmu, dev: Device, fault: Fault,
                  msg: PageResponse) -> PriResp | Resume:
    """The command answering ``fault`` with ``msg``'s code (EINVAL for another code):
    CMD_RESUME for a stalled transaction of ``dev``, else CMD_PRI_RESP."""
    resp = PRI_RESP.get(msg.code)
    if resp is None:
        raise UAPIError(errno.EINVAL, f"page_response: code {msg.code} is not a response code",
                        rule="smmu.page_response.code")
    prm = fault.prm
    if not dev.pci and (dev.sid, prm.grpid) in smmu.stalled:
        ok = msg.code == PageResponseCode.SUCCESS
        return Resume(SID=dev.sid, STAG=prm.grpid, Ac=ok, Ab=not ok)
    ssv = bool(prm.flags & PageRequestFlags.PASID_VALID)
    return PriResp(SID=dev.sid, SSV=ssv, SSID=prm.pasid if ssv else 0, PRGI=prm.grpid,
                   Resp=resp)

"""Page requests through the unit: the hardware's checks and queue, the host driver's report and
response (reference kernel-uapi.md d.4, hw-formats 1.11).

A request is checked against the device's context entry (PRE; a fault such as 0x47 is recorded
and the request refused with ``EOPNOTSUPP``), written as a page request descriptor into the page
request queue, taken back by the host driver and reported as the generic fault of
:func:`~.prq.to_uapi_fault`. A response passes the driver's checks in order and, when the
request ended its group or carried private data, goes back to the device as a page group
response descriptor through the invalidation queue.

The report's mode follows the façade's profile (``iommu.profile``): ``linux-5.10`` keeps the
driver's unshifted page number, ``strict`` reports the byte address; a response uses the profile
of the call.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Container

from iommu_uapi import profiles
from iommu_uapi.device import Device
from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.profiles import Profile
from iommu_uapi.uapi import Fault, PageResponse
from iommu_uapi.uapi.consts import FaultPerm, PageRequestFlags

from .caches import VtdCaches
from .context import FaultSink
from .prq import Mode, PageRequestDesc, PageRequestQueue, page_group_response, to_uapi_fault
from .qi import Descriptor, InvWait, PageGroupResponse
from .reasons import SmFaultReason, VtdFault
from .tables import ScalableTables

__all__ = ["PageRequests", "mode_of"]

_PRGI_MAX = 0x1FF
_U64 = 1 << 64
_PASID_LIMIT = 1 << 20
#: Faults met before the PASID directory: the request cannot be queued. A PASID that is not
#: bound is the software's business (the driver answers it), so PASID-level faults are not.
_CONTEXT_LEVEL = SmFaultReason.PASID_DIR_ACCESS


def mode_of(profile: Mode) -> Profile:
    """The profile whose quirks the conversions follow (any registered profile: its
    ``vtd.prq.*`` and ``vtd.page_response.*`` quirks decide, not its name)."""
    return profiles.get(profile)


class PageRequests:
    """The page request queue of one unit and the driver's handling of it.

    Its collaborators are the unit's parts it uses: ``tables`` and ``caches`` (the checks of a
    request against the device's configuration), ``faults`` (recording a refused request),
    ``run`` (submitting descriptors to the invalidation queue), ``responses`` (where the
    hardware's automatic page group responses go), ``binds`` (the bound (sid, PASID) pairs),
    ``pds`` (ECAP.PDS: a wait descriptor may drain page requests) and ``profile`` (the façade's
    current profile, for the report's mode).
    """

    def __init__(self, memory: PhysicalMemory, *, tables: ScalableTables, caches: VtdCaches,
                 faults: FaultSink, run: Callable[[list[Descriptor]], object],
                 responses: Callable[[PageGroupResponse], None],
                 binds: Container[tuple[int, int]], pds: bool,
                 profile: Callable[[], str]) -> None:
        self.tables = tables
        self.caches = caches
        self.faults = faults
        self.run = run
        self.binds = binds
        self.pds = pds
        self.profile = profile
        self.queue = PageRequestQueue(memory, auto_response=responses)
        #: descriptors the host driver took from the queue, in order
        self.taken: list[PageRequestDesc] = []

    def request(self, dev: Device, pasid: int | None, addr: int, access: int, grpid: int,
                last: bool, private_data: tuple[int, int] | None) -> Fault:
        """A page request from ``dev`` (see the module docstring)."""
        if not isinstance(grpid, int) or not 0 <= grpid <= _PRGI_MAX:
            raise UAPIError(errno.EINVAL, f"page_request: group index {grpid!r} is not 9-bit",
                            rule="vtd.prq.grpid")
        if private_data is not None and (
                len(private_data) != 2
                or any(not isinstance(v, int) or not 0 <= v < _U64 for v in private_data)):
            raise UAPIError(errno.EINVAL, "page_request: private data must be two u64",
                            rule="vtd.prq.private")
        try:
            self.tables.resolve(dev.sid, pasid, addr=addr, access=FaultPerm(access),
                                page_request=True, caches=self.caches)
        except VtdFault as vf:
            if vf.reason < _CONTEXT_LEVEL:
                self.faults.fault(vf)
                raise UAPIError(errno.EOPNOTSUPP, f"page_request: refused by the unit: {vf}",
                                rule="vtd.prq.refused") from None
        priv = private_data or (0, 0)
        desc = PageRequestDesc(
            PP=pasid is not None, PDP=private_data is not None, RID=dev.sid, PASID=pasid or 0,
            EXE=bool(access & FaultPerm.EXEC), PRIV=bool(access & FaultPerm.PRIV),
            RD=bool(access & FaultPerm.READ), WR=bool(access & FaultPerm.WRITE), LPIG=last,
            PRGI=grpid, ADDR=addr & ~0xFFF, PRIV0=priv[0], PRIV1=priv[1])
        if not self.queue.post(desc):
            raise UAPIError(errno.ENOSPC, "page_request: the page request queue overflowed "
                            "(PRS.PRO)", rule="vtd.prq.overflow")
        taken = self.queue.take()
        self.taken.extend(taken)
        return to_uapi_fault(taken[-1], mode=mode_of(self.profile()))

    def respond(self, dev: Device, fault: Fault, msg: PageResponse, profile: str) -> None:
        """``intel_svm_page_response``: the driver's checks, then the page group response."""
        prm = fault.prm
        if not prm.flags & PageRequestFlags.PASID_VALID:
            raise UAPIError(errno.EINVAL, "page_response: the request carried no PASID",
                            rule="vtd.page_response.no_pasid")
        if not 0 < prm.pasid < _PASID_LIMIT:
            raise UAPIError(errno.EINVAL, f"page_response: request PASID {prm.pasid:#x} "
                            "outside 1..0xfffff", rule="vtd.page_response.pasid_range")
        if (dev.sid, prm.pasid) not in self.binds:
            raise UAPIError(errno.ENODEV, f"page_response: {dev!r} is not bound to PASID "
                            f"{prm.pasid:#x}", rule="vtd.page_response.not_bound")
        desc = page_group_response(prm, dev.sid, msg.code, mode=mode_of(profile))
        if desc is not None:
            self.run([desc])

    def drain(self, sid: int, pasid: int) -> None:
        """``intel_svm_drain_prq``: let the hardware drain the requests in flight (a wait
        descriptor with PD where ECAP.PDS allows), then drop what the queue still holds for
        (``sid``, ``pasid``)."""
        self.run([InvWait(PD=self.pds)])
        ours = (sid, True, pasid)
        self.taken.extend(d for d in self.queue.take() if ours != (d.RID, d.PP, d.PASID))

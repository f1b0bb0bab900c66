"""Fault objects (``IOMMU_FAULT_QUEUE_ALLOC``): page requests as ``iommu_hwpt_pgfault`` records
read from the object's file, answered by ``iommu_hwpt_page_response`` records written to it.

A fault object is attached to a nested HWPT at allocation (``FAULT_ID_VALID``); a device
attached to that HWPT reports its page requests here (the façade's fault consumer of the device).
Each group of requests gets a cookie when its last request arrives; a response names the cookie
and answers the whole group through the façade's page response (``SUCCESS`` or ``INVALID``).
A record's address is the one the backend reports under the IOMMU's profile: kernels with
iommufd report the address (profile ``strict``), VT-d under ``linux-5.10`` keeps 5.10's page
number.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from ..rules import fail
from ..uapi import Fault, PageResponse
from ..uapi.consts import FaultType, PageRequestFlags, PageResponseFlags
from .consts import PageResponseCode, PgfaultFlags
from .objects import Obj
from .records import IommuHwptPageResponse, IommuHwptPgfault

if TYPE_CHECKING:
    from ..device import Device
    from ..iommu import IOMMU

__all__ = ["FaultQueue"]

_PGFAULT = IommuHwptPgfault.SIZE
_RESPONSE = IommuHwptPageResponse.SIZE
_CODES = frozenset(int(c) for c in PageResponseCode)
_PAGE = 4096


class FaultQueue(Obj):
    """One fault object: the records not yet read, and the groups waiting for a response."""

    kind = "fault"
    __slots__ = ("fd", "iommu", "next_cookie", "queue", "waiting")

    def __init__(self, obj_id: int, fd: int, iommu: IOMMU) -> None:
        super().__init__(obj_id)
        self.fd = fd
        self.iommu = iommu
        self.queue: deque[IommuHwptPgfault] = deque()
        #: cookie -> (device, the last request of the group)
        self.waiting: dict[int, tuple[Device, Fault]] = {}
        self.next_cookie = 1

    def report(self, dev: Device, dev_id: int, fault: Fault) -> None:
        """The façade's fault consumer for a device attached through this object: page
        requests become records (a group's last one gets the group's cookie)."""
        if fault.type != FaultType.PAGE_REQ:
            return
        prm = fault.prm
        flags = 0
        if prm.flags & PageRequestFlags.PASID_VALID:
            flags |= PgfaultFlags.PASID_VALID
        cookie = 0
        if prm.flags & PageRequestFlags.LAST_PAGE:
            flags |= PgfaultFlags.LAST_PAGE
            cookie = self.next_cookie
            self.next_cookie = self.next_cookie % 0xFFFF_FFFF + 1
            self.waiting[cookie] = (dev, fault)
        self.queue.append(IommuHwptPgfault(
            flags=int(flags), dev_id=dev_id, pasid=prm.pasid, grpid=prm.grpid,
            perm=prm.perm, addr=prm.addr, length=_PAGE, cookie=cookie))

    def read(self, count: int) -> bytes:
        """``read(fault_fd, count)``: as many whole records as fit in ``count`` bytes (a
        length that is not a multiple of the record size: ESPIPE)."""
        if count < 0 or count % _PGFAULT:
            raise fail("iommufd.fault.count", count=count, size=_PGFAULT)
        out = bytearray()
        while self.queue and len(out) + _PGFAULT <= count:
            out += self.queue.popleft().to_bytes()
        return bytes(out)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """``write(fault_fd, responses)``: answer each group in order; returns the bytes
        consumed. A bad code or an unknown cookie stops there: refused (EINVAL) when it is the
        first response, else the bytes before it are returned."""
        n = len(data)
        if n % _RESPONSE:
            raise fail("iommufd.fault.count", count=n, size=_RESPONSE)
        done = 0
        while done < n:
            msg = IommuHwptPageResponse.from_bytes(bytes(data[done:done + _RESPONSE]))
            try:
                self._respond(msg)
            except Exception:
                if done:
                    return done
                raise
            done += _RESPONSE
        return done

    def _respond(self, msg: IommuHwptPageResponse) -> None:
        if msg.code not in _CODES:
            raise fail("iommufd.fault.code", code=msg.code)
        group = self.waiting.get(msg.cookie)
        if group is None:
            raise fail("iommufd.fault.cookie", cookie=msg.cookie)
        dev, fault = group
        prm = fault.prm
        has_pasid = bool(prm.flags & PageRequestFlags.PASID_VALID)
        resp = PageResponse(argsz=PageResponse.SIZE, version=1,
                            flags=int(PageResponseFlags.PASID_VALID) if has_pasid else 0,
                            pasid=prm.pasid if has_pasid else 0, grpid=prm.grpid,
                            code=msg.code)
        self.iommu.page_response(dev, resp)
        del self.waiting[msg.cookie]

    def drop_device(self, dev: Device) -> None:
        """Forget the records and groups of a device that leaves the HWPT (the host answers
        its groups itself)."""
        self.waiting = {c: g for c, g in self.waiting.items() if g[0] is not dev}

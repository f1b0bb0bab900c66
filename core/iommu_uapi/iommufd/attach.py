"""Attaching bound devices to IOAS and HWPTs, as VFIO's device cdev asks iommufd to
(``VFIO_DEVICE_ATTACH_IOMMUFD_PT`` / ``VFIO_DEVICE_DETACH_IOMMUFD_PT``, with a PASID when
``VFIO_DEVICE_ATTACH_PASID`` is given).

* An IOAS: the device attaches to the IOAS's automatic paging HWPT (made on first use, freed
  with its last device).
* A paging HWPT: the device's requests without PASID use its domain (the façade's attach).
* A nested HWPT without PASID: the device is attached to the parent's domain and the backend
  installs the nested configuration for requests without PASID
  (``iommu_hwpt_nested_attach`` with ``pasid=None``).
* A nested HWPT at a PASID: the HWPT was allocated with ``IOMMU_HWPT_ALLOC_PASID``, the device's
  requests without PASID already go to the parent's domain; the backend installs the nested
  configuration for that PASID (on VT-d the entry a guest PASID bind writes).

A device attached through a HWPT that carries a fault object reports its page requests to
that object; detaching answers the device's unanswered groups with ``INVALID``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UAPIError
from ..features import Feature
from ..rules import fail
from ..uapi import Fault
from ..uapi.consts import PageRequestFlags
from .consts import PageResponseCode
from .objects import BoundDevice, Hwpt, Ioas, Obj
from .records import IommuHwptPageResponse
from .store import ObjectStore

if TYPE_CHECKING:
    from ..device import Device
    from .faultq import FaultQueue

__all__ = ["Attach"]


class Attach(ObjectStore):
    """Attach and detach of an :class:`~.fd.IommuFd` (see the module docstring)."""

    if TYPE_CHECKING:
        def _paging(self, ioas: Ioas, *, nest_parent: bool, pasid_ok: bool) -> Hwpt: ...
        def free(self, obj: Obj) -> None: ...

    def attach(self, dev_id: int, pt_id: int, pasid: int | None = None) -> int:
        """Attach device ``dev_id`` (at ``pasid``, None: requests without PASID) to IOAS or
        HWPT ``pt_id``; returns the HWPT id attached."""
        dev: Device = self.get(dev_id, BoundDevice).dev
        pt = self.get(pt_id, Ioas, Hwpt)
        key = (dev_id, pasid)
        held = self.attached.get(key)
        if held is not None:
            raise fail("iommufd.attach.busy", dev_id=dev_id, pasid=pasid, pt_id=held.id)
        made = None
        if isinstance(pt, Ioas):
            if pasid is not None:
                raise fail("iommufd.attach.pasid_paging", pt_id=pt_id)
            if pt.auto_hwpt is None:
                made = pt.auto_hwpt = self._paging(pt, nest_parent=False, pasid_ok=False)
            hwpt = pt.auto_hwpt
        else:
            hwpt = pt
        try:
            if hwpt.nested:
                self._attach_nested(dev, dev_id, hwpt, pasid)
            else:
                if pasid is not None:
                    raise fail("iommufd.attach.pasid_paging", pt_id=pt_id)
                if dev.domain is not None:
                    raise fail("iommufd.attach.busy", dev_id=dev_id, pasid=pasid,
                               pt_id=f"domain {dev.domain.id}")
                self.iommu.attach_device(hwpt.domain, dev)
        except UAPIError:
            if made is not None:
                self.free(made)
            raise
        self.attached[key] = hwpt
        hwpt.users.append((dev, pasid))
        return hwpt.id

    def _attach_nested(self, dev: Device, dev_id: int, hwpt: Hwpt, pasid: int | None) -> None:
        parent = hwpt.parent
        assert parent is not None
        attached_here = False
        if pasid is not None:
            if not hwpt.pasid_ok:
                raise fail("iommufd.attach.pasid_flag", pt_id=hwpt.id)
            if dev.domain is not parent.domain:
                raise fail("iommufd.attach.parent", dev_id=dev_id, parent=parent.id)
        elif dev.domain is None:
            self.iommu.attach_device(parent.domain, dev)
            attached_here = True
        elif dev.domain is not parent.domain:
            raise fail("iommufd.attach.busy", dev_id=dev_id, pasid=pasid,
                       pt_id=f"domain {dev.domain.id}")
        try:
            if hwpt.fault is not None:
                self._route_faults(dev, dev_id)
            self.iommu.dispatch.call("iommu_hwpt_nested_attach", parent=parent.domain, dev=dev,
                                     pasid=pasid, nested=hwpt.state)
        except UAPIError:
            self._unroute_faults(dev, dev_id, pending_ok=True)
            if attached_here:
                self.iommu.detach_device(parent.domain, dev)
            raise
        self.iommu.forget_contexts(dev.sid, (pasid,))

    def detach(self, dev_id: int, pasid: int | None = None) -> None:
        """Detach device ``dev_id`` at ``pasid`` (None: requests without PASID, and then every
        PASID attachment of the device first)."""
        dev: Device = self.get(dev_id, BoundDevice).dev
        hwpt = self.attached.get((dev_id, pasid))
        if hwpt is None:
            raise fail("iommufd.attach.not_attached", dev_id=dev_id, pasid=pasid)
        if pasid is None:
            for other in [p for (d, p) in self.attached if d == dev_id and p is not None]:
                self.detach(dev_id, other)
        if hwpt.fault is not None:
            self._answer_pending(hwpt.fault, dev, pasid)
        if hwpt.nested:
            assert hwpt.parent is not None
            self.iommu.dispatch.call("iommu_hwpt_nested_detach", parent=hwpt.parent.domain,
                                     dev=dev, pasid=pasid, nested=hwpt.state)
            self.iommu.forget_contexts(dev.sid, (pasid,))
        if pasid is None:
            self.iommu.detach_device(hwpt.domain, dev)
        del self.attached[(dev_id, pasid)]
        hwpt.users.remove((dev, pasid))
        if hwpt.fault is not None:
            self._unroute_faults(dev, dev_id, pending_ok=False)
        ioas = hwpt.ioas
        if ioas is not None and ioas.auto_hwpt is hwpt and not hwpt.users:
            self.free(hwpt)

    # -- page requests to fault objects --------------------------------------------------------

    def _queue_for(self, dev_id: int, fault: Fault) -> FaultQueue | None:
        """The fault object of the HWPT the request's (device, PASID) is attached to. A
        backend whose guests own the PASID table (``Feature.BIND_PASID_TABLE``: an SMMUv3 CD
        table) sends the requests of a PASID attached to nothing to the nested HWPT of the
        device's RID, whose guest table holds every PASID (the kernel's
        ``user_pasid_table``)."""
        prm = fault.prm
        pasid = prm.pasid if prm.flags & PageRequestFlags.PASID_VALID else None
        hwpt = self.attached.get((dev_id, pasid))
        if hwpt is None and pasid is not None and self._user_pasid_table():
            rid = self.attached.get((dev_id, None))
            hwpt = rid if rid is not None and rid.nested else None
        return None if hwpt is None else hwpt.fault

    def _user_pasid_table(self) -> bool:
        return bool(self.iommu.capabilities.features & Feature.BIND_PASID_TABLE)

    def _route_faults(self, dev: Device, dev_id: int) -> None:
        """Make this context the device's fault consumer (once per device)."""
        if any(h.fault is not None for (d, _), h in self.attached.items() if d == dev_id):
            return

        def consume(fault: Fault) -> None:
            queue = self._queue_for(dev_id, fault)
            if queue is not None:
                queue.report(dev, dev_id, fault)

        self.iommu.register_fault_handler(dev, consume)

    def _unroute_faults(self, dev: Device, dev_id: int, *, pending_ok: bool) -> None:
        if any(h.fault is not None for (d, _), h in self.attached.items() if d == dev_id):
            return
        param = self.iommu.uapi.fault_params.get(dev.sid)
        if param is None or param.handler is None or (pending_ok and param.pending):
            return
        self.iommu.unregister_fault_handler(dev)

    def _answer_pending(self, queue: FaultQueue, dev: Device, pasid: int | None) -> None:
        """Answer with INVALID the groups of ``dev`` at ``pasid`` nobody answered (detaching
        the RID from a guest-owned PASID table: the groups of every PASID it served)."""
        every = pasid is None and self._user_pasid_table()

        def covered(p: int | None) -> bool:
            return p == pasid or every

        for cookie, (owner, fault) in list(queue.waiting.items()):
            prm = fault.prm
            p = prm.pasid if prm.flags & PageRequestFlags.PASID_VALID else None
            if owner is dev and covered(p):
                queue.write(IommuHwptPageResponse(
                    cookie=cookie, code=int(PageResponseCode.INVALID)).to_bytes())
        dev_id = self._dev_id_of(dev)
        queue.queue = type(queue.queue)(r for r in queue.queue if not (
            r.dev_id == dev_id and covered(r.pasid if r.flags & 1 else None)))

    def _dev_id_of(self, dev: Device) -> int:
        return next(o.id for o in self.objects.values()
                    if isinstance(o, BoundDevice) and o.dev is dev)

"""``IommuFd``: one iommufd context over one :class:`~iommu_uapi.iommu.IOMMU`.

It holds numbered objects as the kernel does (bound devices, IOAS, HWPTs, fault objects,
vIOMMUs, vDEVICEs; ids from 1, the lowest free first) and takes the kernel's commands through
:meth:`IommuFd.ioctl`: ``ioctl(code, buf)`` with ``buf`` the command struct in user memory (a
``bytearray``; its length is how much of it is readable). The struct is copied under the
iommufd size rules, the command runs, and the outputs are written back into ``buf`` as the
kernel writes them back to user memory (``min(size, sizeof)`` bytes). Every ``*_uptr`` points
into the :class:`~.usermem.UserMemory` given at creation. A refusal is a
:class:`~iommu_uapi.errors.UAPIError` with the kernel's errno and an ``iommufd.*`` rule id, and
changes nothing, except what ``IOMMU_HWPT_INVALIDATE``'s partial completion has done and reports.

Devices are bound and attached the way VFIO's device cdev does it (``VFIO_DEVICE_BIND_IOMMUFD``,
``VFIO_DEVICE_ATTACH_IOMMUFD_PT``, ``VFIO_DEVICE_DETACH_IOMMUFD_PT``): :meth:`bind`,
:meth:`attach`, :meth:`detach`. Fault objects are read and written through :meth:`read` and
:meth:`write` on their file number.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..rules import fail
from .commands import Commands
from .objects import BoundDevice, Hwpt, Obj, Vdevice
from .usermem import UserMemory

if TYPE_CHECKING:
    from ..device import Device
    from ..iommu import IOMMU
    from .faultq import FaultQueue

__all__ = ["IommuFd"]

_FIRST_FD = 3


class IommuFd(Commands):
    """An iommufd context over ``iommu``; ``user`` is the VMM's address space (a fresh one
    backed by the IOMMU's memory when not given)."""

    def __init__(self, iommu: IOMMU, user: UserMemory | None = None) -> None:
        self.iommu = iommu
        self.user = user if user is not None else UserMemory(iommu.memory)
        self.objects: dict[int, Obj] = {}
        #: fault object files by file number
        self.files: dict[int, FaultQueue] = {}
        #: (dev_id, PASID or None) -> the HWPT attached there
        self.attached: dict[tuple[int, int | None], Hwpt] = {}
        self._handlers: dict[int, Callable[[Any], None]] = self.command_table()

    def __repr__(self) -> str:
        return f"IommuFd({self.iommu.backend_name!r}, objects={len(self.objects)})"

    # -- the ioctl entry point -----------------------------------------------------------------

    def ioctl(self, code: int, buf: bytearray | memoryview | bytes) -> None:
        """Run iommufd command ``code`` (:class:`~.consts.Cmd`) on the struct in ``buf``;
        outputs are written back into ``buf``. ENOTTY for a code that is not a command; a
        ``buf`` that is not a byte buffer is unreadable memory (EFAULT), a read-only one
        (``bytes``, a read-only view) refuses the write-back with EFAULT."""
        handler = self._handlers.get(code) if isinstance(code, int) else None
        if handler is None:
            raise fail("iommufd.ioctl.unknown", code=code if isinstance(code, int) else -1)
        handler(buf)

    # -- VFIO's device cdev: bind, attach, detach ----------------------------------------------

    def bind(self, dev: Device) -> int:
        """``VFIO_DEVICE_BIND_IOMMUFD``: ``dev`` (a device of the IOMMU) gets a ``dev_id``."""
        self.iommu._dev(dev)
        for obj in self.objects.values():
            if isinstance(obj, BoundDevice) and obj.dev is dev:
                raise fail("iommufd.bind.busy", dev=repr(dev), id=obj.id)
        bound: BoundDevice = self._add(lambda i: BoundDevice(i, dev))
        return bound.id

    def unbind(self, dev_id: int) -> None:
        """Unbind a device: detached from everything first; its vDEVICE must be gone."""
        bound: BoundDevice = self.get(dev_id, BoundDevice)
        for other in self.objects.values():
            if isinstance(other, Vdevice) and other.dev is bound.dev:
                raise fail("iommufd.object.busy", id=dev_id, users=f"vDEVICE {other.id}")
        for (did, pasid) in sorted(self.attached, key=lambda k: (k[1] is None, k[1] or 0)):
            if did == dev_id:
                self.detach(dev_id, pasid)
        del self.objects[dev_id]

    def read(self, fd: int, count: int) -> bytes:
        """``read`` on a fault object's file: whole ``iommu_hwpt_pgfault`` records."""
        return self._file(fd).read(count)

    def write(self, fd: int, data: bytes | bytearray | memoryview) -> int:
        """``write`` on a fault object's file: ``iommu_hwpt_page_response`` records; returns
        the bytes consumed."""
        return self._file(fd).write(data)

    def _file(self, fd: int) -> FaultQueue:
        queue = self.files.get(fd)
        if queue is None:
            raise fail("iommufd.fault.fd", fd=fd)
        return queue

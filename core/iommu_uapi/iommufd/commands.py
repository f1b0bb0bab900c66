"""The iommufd commands behind :meth:`~.fd.IommuFd.ioctl`, one method per command code.

Each handler copies its struct (:class:`~.records._Sized.from_user`), applies the command's
rules in the kernel's order, acts, and writes the outputs back with :meth:`Commands._respond`
(``min(size, sizeof)`` bytes, as ``iommufd_ucmd_respond``); a write-back that fails undoes an
allocation and is EFAULT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from ..abi import CRecord
from ..errors import UAPIError
from ..features import Feature
from ..rules import fail
from .attach import Attach
from .consts import Cmd, HwCap, HwInfoType, HwptAllocFlags, HwptDataType, HwptInvalidateDataType
from .faultq import FaultQueue
from .invalidate import copy_entries
from .ioas import ioas_map, ioas_unmap, mirror
from .objects import BoundDevice, Hwpt, Ioas, Obj, Vdevice, Viommu
from .records import (
    IommuDestroy,
    IommuFaultAlloc,
    IommuHwInfo,
    IommuHwptAlloc,
    IommuHwptArmSmmuv3,
    IommuHwptInvalidate,
    IommuHwptVtdS1,
    IommuIoasAlloc,
    IommuIoasMap,
    IommuIoasUnmap,
    IommuVdeviceAlloc,
    IommuViommuAlloc,
    copy_struct,
)

if TYPE_CHECKING:
    from .usermem import UserMemory

__all__ = ["NESTED_DATA", "Commands"]

_NESTED_FLAGS = int(HwptAllocFlags.FAULT_ID_VALID | HwptAllocFlags.PASID)
#: HWPT data_type -> the vendor struct of a nested HWPT
NESTED_DATA: dict[int, type[CRecord]] = {
    int(HwptDataType.VTD_S1): IommuHwptVtdS1,
    int(HwptDataType.ARM_SMMUV3): IommuHwptArmSmmuv3,
}
#: nested HWPT data_type -> the invalidation data_type it takes
_INVALIDATE_TYPE = {int(HwptDataType.VTD_S1): int(HwptInvalidateDataType.VTD_S1)}
_VIOMMU_INVALIDATE_TYPE = int(HwptInvalidateDataType.VIOMMU_ARM_SMMUV3)
_ENTRY_NUM = IommuHwptInvalidate.c_layout()["entry_num"]
#: refusals of HWPT_INVALIDATE's own fields: like every later one, answered with entry_num 0
_ANSWERED = frozenset({"iommufd.hwpt_invalidate.reserved", "iommufd.hwpt_invalidate.array"})


def _view(buf: Any) -> memoryview:
    try:
        return memoryview(buf).cast("B")
    except (TypeError, ValueError, BufferError):
        raise fail("iommufd.ioctl.buffer", kind=type(buf).__name__) from None


class Commands(Attach):
    """The command handlers of an :class:`~.fd.IommuFd` (see the module docstring)."""

    user: UserMemory

    def command_table(self) -> dict[int, Callable[[Any], None]]:
        """Command code -> handler."""
        return {
            Cmd.DESTROY: self._destroy, Cmd.IOAS_ALLOC: self._ioas_alloc,
            Cmd.IOAS_MAP: self._ioas_map, Cmd.IOAS_UNMAP: self._ioas_unmap,
            Cmd.GET_HW_INFO: self._hw_info, Cmd.HWPT_ALLOC: self._hwpt_alloc,
            Cmd.HWPT_INVALIDATE: self._hwpt_invalidate,
            Cmd.FAULT_QUEUE_ALLOC: self._fault_alloc, Cmd.VIOMMU_ALLOC: self._viommu_alloc,
            Cmd.VDEVICE_ALLOC: self._vdevice_alloc,
        }

    def _respond(self, view: memoryview, rec: CRecord, undo: Callable[[], None] | None = None
                 ) -> None:
        """Write ``rec`` back over the user's struct (``min(size, sizeof)`` bytes)."""
        size = int.from_bytes(view[:4], "little")
        data = rec.to_bytes()[:min(size, rec.SIZE)]
        if view.readonly:
            if undo is not None:
                undo()
            raise fail("iommufd.user.write", n=len(data), addr=0)
        view[:len(data)] = data

    # -- objects -------------------------------------------------------------------------------

    def _destroy(self, buf: Any) -> None:
        view = _view(buf)
        cmd = IommuDestroy.from_user(view)
        obj = self.get(cmd.id, Obj)
        users = self.users_of(obj)
        if isinstance(obj, BoundDevice) or users:
            raise fail("iommufd.object.busy", id=cmd.id, users=", ".join(users) or "VFIO")
        self.free(obj)

    def free(self, obj: Obj) -> None:
        """Release ``obj`` (nothing refers to it)."""
        if isinstance(obj, Hwpt) and not obj.nested:
            if obj.ioas is not None:
                obj.ioas.hwpts.remove(obj)
                if obj.ioas.auto_hwpt is obj:
                    obj.ioas.auto_hwpt = None
            self.iommu.domain_free(obj.domain)
        elif isinstance(obj, FaultQueue):
            del self.files[obj.fd]
        elif isinstance(obj, Vdevice):
            del obj.viommu.vdevs[obj.virt_id]
        del self.objects[obj.id]

    def _ioas_alloc(self, buf: Any) -> None:
        view = _view(buf)
        cmd = IommuIoasAlloc.from_user(view)
        ioas: Ioas = self._add(Ioas)
        self._respond(view, msgspec.structs.replace(cmd, out_ioas_id=ioas.id),
                      lambda: self.free(ioas))

    def _ioas_map(self, buf: Any) -> None:
        view = _view(buf)
        cmd = IommuIoasMap.from_user(view)
        ioas: Ioas = self.get(cmd.ioas_id, Ioas)
        iova = ioas_map(self.iommu, self.user, ioas, cmd.flags, cmd.reserved, cmd.user_va,
                        cmd.length, cmd.iova)

        def undo() -> None:
            ioas_unmap(self.iommu, ioas, iova, cmd.length)

        self._respond(view, msgspec.structs.replace(cmd, iova=iova), undo)

    def _ioas_unmap(self, buf: Any) -> None:
        view = _view(buf)
        cmd = IommuIoasUnmap.from_user(view)
        ioas: Ioas = self.get(cmd.ioas_id, Ioas)
        if view.readonly:  # the length is written back: nothing is unmapped when it cannot be
            raise fail("iommufd.user.write", n=IommuIoasUnmap.SIZE, addr=0)
        unmapped = ioas_unmap(self.iommu, ioas, cmd.iova, cmd.length)
        self._respond(view, msgspec.structs.replace(cmd, length=unmapped))

    # -- IOMMU_GET_HW_INFO ---------------------------------------------------------------------

    def _hw_info(self, buf: Any) -> None:
        view = _view(buf)
        cmd = IommuHwInfo.from_user(view)
        dev = self.get(cmd.dev_id, BoundDevice).dev
        if "iommu_hw_info" in self.iommu.ops:
            dtype, rec = self.iommu.dispatch.call("iommu_hw_info", dev=dev)
            data = rec.to_bytes()
        else:
            dtype, data = int(HwInfoType.NONE), b""
        copy_len = min(cmd.data_len, len(data))
        if not self.user.writable(cmd.data_uptr, cmd.data_len):
            raise fail("iommufd.user.write", n=cmd.data_len, addr=cmd.data_uptr)
        if view.readonly:
            raise fail("iommufd.user.write", n=IommuHwInfo.SIZE, addr=0)
        self.user.write(cmd.data_uptr, data[:copy_len] + bytes(cmd.data_len - copy_len))
        caps = self.iommu.capabilities
        log2 = 0
        if caps.features & Feature.SYSWIDE_PASID and caps.pasid_bits and dev.max_pasids > 1:
            log2 = min(dev.max_pasids.bit_length() - 1, caps.pasid_bits)
        out_caps = int(HwCap.PCI_ATS_ENABLED) if dev.ats else 0
        data_len = cmd.data_len if copy_len < cmd.data_len else len(data)
        self._respond(view, msgspec.structs.replace(
            cmd, data_len=data_len, out_data_type=int(dtype), out_max_pasid_log2=log2,
            out_capabilities=out_caps))

    # -- IOMMU_HWPT_ALLOC ----------------------------------------------------------------------

    def _hwpt_alloc(self, buf: Any) -> None:
        view = _view(buf)
        cmd = IommuHwptAlloc.from_user(view)
        nested_data = cmd.data_type != HwptDataType.NONE
        dev = self.get(cmd.dev_id, BoundDevice).dev
        pt = self.get(cmd.pt_id, Ioas, Hwpt, Viommu)
        if isinstance(pt, Ioas):
            if nested_data:
                raise fail("iommufd.hwpt_alloc.paging_data", data_type=cmd.data_type)
            if cmd.flags & HwptAllocFlags.FAULT_ID_VALID:
                raise fail("iommufd.hwpt_alloc.fault_paging")
            hwpt = self._paging(pt, nest_parent=bool(cmd.flags & HwptAllocFlags.NEST_PARENT),
                                pasid_ok=bool(cmd.flags & HwptAllocFlags.PASID))
        else:
            hwpt = self._nested(cmd, dev, pt)
        self._respond(view, msgspec.structs.replace(cmd, out_hwpt_id=hwpt.id),
                      lambda: self.free(hwpt))

    def _paging(self, ioas: Ioas, *, nest_parent: bool, pasid_ok: bool) -> Hwpt:
        """A paging HWPT over ``ioas``: a host domain (in nesting mode for a nesting parent)
        mapping every area of the IOAS."""
        domain = self.iommu.domain_alloc(nesting=nest_parent)
        hwpt = Hwpt(self._new_id(), domain, ioas=ioas, nest_parent=nest_parent,
                    pasid_ok=pasid_ok)
        try:
            mirror(self.iommu, hwpt, ioas)
        except UAPIError:
            self.iommu.domain_free(domain)
            raise
        self.objects[hwpt.id] = hwpt
        return hwpt

    def _nested(self, cmd: IommuHwptAlloc, dev: Any, pt: Hwpt | Viommu) -> Hwpt:
        if cmd.flags & ~_NESTED_FLAGS:
            raise fail("iommufd.hwpt_alloc.flags", flags=cmd.flags)
        parent = pt.parent if isinstance(pt, Viommu) else pt
        if parent.nested or not parent.nest_parent:
            raise fail("iommufd.hwpt_alloc.parent", pt_id=cmd.pt_id)
        cls = NESTED_DATA.get(cmd.data_type)
        if cls is None:
            raise fail("iommufd.hwpt_alloc.data_type", data_type=cmd.data_type)
        fault = None
        if cmd.flags & HwptAllocFlags.FAULT_ID_VALID:
            fault = self.get(cmd.fault_id, FaultQueue)
        raw = self.user.read(cmd.data_uptr, cmd.data_len)
        data = copy_struct(cls, raw, f"iommufd.{cls.OP}")  # type: ignore[attr-defined]
        if "iommu_hwpt_nested_alloc" not in self.iommu.ops:
            raise fail("iommufd.hwpt_alloc.nested_type", backend=self.iommu.backend_name,
                       data_type=cmd.data_type)
        state = self.iommu.dispatch.call("iommu_hwpt_nested_alloc", parent=parent.domain,
                                         dev=dev, data_type=cmd.data_type, data=data)
        hwpt = Hwpt(self._new_id(), parent.domain, parent=parent, data_type=cmd.data_type,
                    state=state, fault=fault, pasid_ok=bool(cmd.flags & HwptAllocFlags.PASID))
        self.objects[hwpt.id] = hwpt
        return hwpt

    # -- IOMMU_HWPT_INVALIDATE -----------------------------------------------------------------

    def _hwpt_invalidate(self, buf: Any) -> None:
        view = _view(buf)
        handled = 0
        error: UAPIError | None = None
        try:
            cmd = IommuHwptInvalidate.from_user(view)
        except UAPIError as exc:
            if exc.rule not in _ANSWERED:  # the struct itself could not be copied
                raise
            error = exc
        else:
            try:
                handled, error = self._invalidate(cmd)
            except UAPIError as exc:
                error = exc
        off, _ = _ENTRY_NUM
        if view.readonly:
            raise fail("iommufd.user.write", n=4, addr=off)
        view[off:off + 4] = handled.to_bytes(4, "little")
        if error is not None:
            raise error

    def _invalidate(self, cmd: IommuHwptInvalidate) -> tuple[int, UAPIError | None]:
        obj = self.get(cmd.hwpt_id, Hwpt, Viommu)
        if isinstance(obj, Viommu) or not obj.nested:
            if isinstance(obj, Viommu):
                want = _VIOMMU_INVALIDATE_TYPE
            else:
                raise fail("iommufd.hwpt_invalidate.object", id=cmd.hwpt_id,
                           kind="paging HWPT")
        else:
            want = _INVALIDATE_TYPE.get(obj.data_type, -1)
            if want < 0:
                raise fail("iommufd.hwpt_invalidate.object", id=cmd.hwpt_id,
                           kind=f"nested HWPT of data_type {obj.data_type} (invalidated "
                                "through its vIOMMU)")
        entries, copy_error = copy_entries(self.user, cmd, want)
        if not entries:
            return 0, copy_error
        if isinstance(obj, Viommu):
            handled, error = self.iommu.dispatch.call(
                "iommu_viommu_invalidate", parent=obj.parent.domain, viommu=obj.state,
                vdevs={v: d.dev for v, d in obj.vdevs.items()}, entries=entries)
        else:
            assert obj.parent is not None
            handled, error = self.iommu.dispatch.call(
                "iommu_hwpt_invalidate", parent=obj.parent.domain, nested=obj.state,
                data_type=want, targets=tuple(obj.users), entries=entries)
        return handled, error if error is not None else copy_error

    # -- faults, vIOMMU, vDEVICE ---------------------------------------------------------------

    def _fault_alloc(self, buf: Any) -> None:
        view = _view(buf)
        cmd = IommuFaultAlloc.from_user(view)
        fd = self._new_fd()
        queue: FaultQueue = self._add(lambda i: FaultQueue(i, fd, self.iommu))
        self.files[fd] = queue
        self._respond(view, msgspec.structs.replace(cmd, out_fault_id=queue.id, out_fault_fd=fd),
                      lambda: self.free(queue))

    def _viommu_alloc(self, buf: Any) -> None:
        view = _view(buf)
        cmd = IommuViommuAlloc.from_user(view)
        dev = self.get(cmd.dev_id, BoundDevice).dev
        parent: Hwpt = self.get(cmd.hwpt_id, Hwpt)
        if parent.nested or not parent.nest_parent:
            raise fail("iommufd.hwpt_alloc.parent", pt_id=cmd.hwpt_id)
        if "iommu_viommu_alloc" not in self.iommu.ops or cmd.type == 0:
            raise fail("iommufd.viommu_alloc.type", type=cmd.type,
                       backend=self.iommu.backend_name)
        state = self.iommu.dispatch.call("iommu_viommu_alloc", parent=parent.domain, dev=dev,
                                         viommu_type=cmd.type)
        viommu: Viommu = self._add(lambda i: Viommu(i, cmd.type, parent, state))
        self._respond(view, msgspec.structs.replace(cmd, out_viommu_id=viommu.id),
                      lambda: self.free(viommu))

    def _vdevice_alloc(self, buf: Any) -> None:
        view = _view(buf)
        cmd = IommuVdeviceAlloc.from_user(view)
        viommu: Viommu = self.get(cmd.viommu_id, Viommu)
        dev = self.get(cmd.dev_id, BoundDevice).dev
        taken = any(isinstance(o, Vdevice) and o.dev is dev for o in self.objects.values())
        if taken or cmd.virt_id in viommu.vdevs:
            raise fail("iommufd.vdevice_alloc.virt_id", virt_id=cmd.virt_id, dev_id=cmd.dev_id)
        vdev: Vdevice = self._add(lambda i: Vdevice(i, viommu, dev, cmd.virt_id))
        viommu.vdevs[cmd.virt_id] = vdev
        self._respond(view, msgspec.structs.replace(cmd, out_vdevice_id=vdev.id),
                      lambda: self.free(vdev))

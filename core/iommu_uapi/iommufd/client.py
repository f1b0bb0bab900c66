"""A VMM's typed view of an :class:`~.fd.IommuFd`: each command built as its record, its
vendor data and arrays placed in a scratch area of user memory, the ioctl made with the exact
bytes, the outputs decoded from what the kernel wrote back.

This is what QEMU's ``iommufd_backend_*`` helpers do; tests, the differential runner and the
benchmarks speak iommufd through it, and anyone can go down to :meth:`Client.ioctl` with bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from ..abi import CRecord
from ..errors import UAPIError
from .consts import Cmd, HwptDataType, HwptInvalidateDataType, IoasMapFlags
from .fd import IommuFd
from .records import (
    IommuDestroy,
    IommuFaultAlloc,
    IommuHwInfo,
    IommuHwptAlloc,
    IommuHwptInvalidate,
    IommuIoasAlloc,
    IommuIoasMap,
    IommuIoasUnmap,
    IommuVdeviceAlloc,
    IommuViommuAlloc,
)

__all__ = ["SCRATCH_SIZE", "SCRATCH_VA", "Client"]

R = TypeVar("R", bound=CRecord)
#: Where the client keeps the user buffers it points ``*_uptr`` at, and how large that is.
SCRATCH_VA = 0x7F00_0000_0000
SCRATCH_SIZE = 1 << 20
_RW = int(IoasMapFlags.READABLE | IoasMapFlags.WRITEABLE)


class Client:
    """Typed iommufd calls on ``fd`` (see the module docstring)."""

    def __init__(self, fd: IommuFd, scratch_va: int = SCRATCH_VA,
                 scratch_size: int = SCRATCH_SIZE) -> None:
        self.fd = fd
        self.scratch_va = scratch_va
        self.scratch_size = scratch_size
        self._used = 0
        fd.user.mmap(scratch_va, scratch_size)

    def ioctl(self, code: int, rec: R) -> R:
        """Send ``rec``'s bytes (``size`` set to the struct's size when 0) and decode what the
        kernel wrote back."""
        if getattr(rec, "size", None) == 0:
            rec = type(rec).from_bytes(rec.SIZE.to_bytes(4, "little") + rec.to_bytes()[4:])
        buf = bytearray(rec.to_bytes())
        try:
            self.fd.ioctl(code, buf)
        finally:
            self._used = 0
        return type(rec).from_bytes(buf)

    def put(self, data: bytes) -> int:
        """Copy ``data`` into the scratch area; returns its user address (valid until the next
        :meth:`ioctl`)."""
        va = self.scratch_va + self._used
        self._used += -(-len(data) // 8) * 8
        if self._used > self.scratch_size:
            raise ValueError("scratch area full")
        self.fd.user.write(va, data)
        return va

    # -- commands ------------------------------------------------------------------------------

    def ioas_alloc(self) -> int:
        """``IOMMU_IOAS_ALLOC``: a new IOAS id."""
        return self.ioctl(Cmd.IOAS_ALLOC, IommuIoasAlloc()).out_ioas_id

    def ioas_map(self, ioas_id: int, user_va: int, length: int, iova: int | None = None,
                 flags: int = _RW) -> int:
        """``IOMMU_IOAS_MAP`` (``FIXED_IOVA`` when ``iova`` is given); returns the IOVA."""
        if iova is not None:
            flags |= IoasMapFlags.FIXED_IOVA
        out = self.ioctl(Cmd.IOAS_MAP, IommuIoasMap(flags=flags, ioas_id=ioas_id,
                                                    user_va=user_va, length=length,
                                                    iova=iova or 0))
        return out.iova

    def ioas_unmap(self, ioas_id: int, iova: int, length: int) -> int:
        """``IOMMU_IOAS_UNMAP``; returns the bytes unmapped."""
        return self.ioctl(Cmd.IOAS_UNMAP, IommuIoasUnmap(ioas_id=ioas_id, iova=iova,
                                                         length=length)).length

    def hw_info(self, dev_id: int, data_len: int = 64) -> tuple[IommuHwInfo, bytes]:
        """``IOMMU_GET_HW_INFO`` with a ``data_len`` buffer; returns the struct written back and
        the buffer's bytes."""
        va = self.put(bytes(data_len)) if data_len else 0
        out = self.ioctl(Cmd.GET_HW_INFO, IommuHwInfo(dev_id=dev_id, data_len=data_len,
                                                      data_uptr=va))
        return out, self.fd.user.read(va, data_len) if data_len else b""

    def hwpt_alloc(self, dev_id: int, pt_id: int, flags: int = 0, data: CRecord | None = None,
                   data_type: int = HwptDataType.NONE, fault_id: int = 0) -> int:
        """``IOMMU_HWPT_ALLOC``; ``data`` is the vendor struct of ``data_type``."""
        raw = b"" if data is None else data.to_bytes()
        va = self.put(raw) if raw else 0
        return self.ioctl(Cmd.HWPT_ALLOC, IommuHwptAlloc(
            flags=flags, dev_id=dev_id, pt_id=pt_id, data_type=data_type, data_len=len(raw),
            data_uptr=va, fault_id=fault_id)).out_hwpt_id

    def invalidate(self, hwpt_id: int, entries: Sequence[CRecord],
                   data_type: int = HwptInvalidateDataType.VTD_S1,
                   entry_len: int | None = None) -> tuple[int, UAPIError | None]:
        """``IOMMU_HWPT_INVALIDATE`` with ``entries``; returns the ``entry_num`` written back
        and the refusal (None when every entry was handled)."""
        raw = b"".join(e.to_bytes() for e in entries)
        length = entry_len if entry_len is not None else (entries[0].SIZE if entries else 0)
        va = self.put(raw) if raw else 0
        cmd = IommuHwptInvalidate(size=IommuHwptInvalidate.SIZE, hwpt_id=hwpt_id, data_uptr=va,
                                  data_type=data_type, entry_len=length,
                                  entry_num=len(entries))
        buf = bytearray(cmd.to_bytes())
        try:
            self.fd.ioctl(Cmd.HWPT_INVALIDATE, buf)
            error = None
        except UAPIError as exc:
            error = exc
        finally:
            self._used = 0
        return IommuHwptInvalidate.from_bytes(buf).entry_num, error

    def fault_alloc(self) -> tuple[int, int]:
        """``IOMMU_FAULT_QUEUE_ALLOC``: (fault id, fault file)."""
        out = self.ioctl(Cmd.FAULT_QUEUE_ALLOC, IommuFaultAlloc())
        return out.out_fault_id, out.out_fault_fd

    def viommu_alloc(self, dev_id: int, hwpt_id: int, viommu_type: int) -> int:
        """``IOMMU_VIOMMU_ALLOC``: a new vIOMMU id."""
        return self.ioctl(Cmd.VIOMMU_ALLOC, IommuViommuAlloc(
            type=viommu_type, dev_id=dev_id, hwpt_id=hwpt_id)).out_viommu_id

    def vdevice_alloc(self, viommu_id: int, dev_id: int, virt_id: int) -> int:
        """``IOMMU_VDEVICE_ALLOC``: a new vDEVICE id."""
        return self.ioctl(Cmd.VDEVICE_ALLOC, IommuVdeviceAlloc(
            viommu_id=viommu_id, dev_id=dev_id, virt_id=virt_id)).out_vdevice_id

    def destroy(self, obj_id: int) -> None:
        """``IOMMU_DESTROY``."""
        self.ioctl(Cmd.DESTROY, IommuDestroy(id=obj_id))

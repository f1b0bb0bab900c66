"""Every iommufd struct of reference kernel-uapi.md f as a record with its exact C layout.

Two kinds of ``from_user``:

* the ioctl structs, whose first u32 is ``size``: :func:`copy_from_user` under the iommufd
  discipline (``size`` below the kernel's minimum EINVAL, a larger ``size`` needs a zero tail,
  else E2BIG, bytes the user did not give zero-extended);
* the vendor data, array entries and fault records, whose length travels next to the pointer
  (``data_len``, ``entry_len``, the ``read``/``write`` length): :func:`copy_struct`, the same
  discipline with the length given by the buffer.
"""

from __future__ import annotations

from typing import Annotated, Any, Self, TypeVar

import msgspec

from ..abi import U32, U64, CRecord, SizeDiscipline, copy_from_user, cstruct
from ..rules import fail
from . import rules as _rules  # noqa: F401  (the iommufd.* rules)
from .consts import HwptAllocFlags, IoasMapFlags

__all__ = [
    "RECORDS",
    "IommuDestroy",
    "IommuFaultAlloc",
    "IommuHwInfo",
    "IommuHwInfoArmSmmuv3",
    "IommuHwInfoVtd",
    "IommuHwptAlloc",
    "IommuHwptArmSmmuv3",
    "IommuHwptInvalidate",
    "IommuHwptPageResponse",
    "IommuHwptPgfault",
    "IommuHwptVtdS1",
    "IommuHwptVtdS1Invalidate",
    "IommuIoasAlloc",
    "IommuIoasMap",
    "IommuIoasUnmap",
    "IommuVdeviceAlloc",
    "IommuViommuAlloc",
    "IommuViommuArmSmmuv3Invalidate",
    "copy_struct",
]

U32x6 = Annotated[tuple[U32, U32, U32, U32, U32, U32],
                  msgspec.Meta(extra={"ctype": "u32", "count": 6})]
U64x2 = Annotated[tuple[U64, U64], msgspec.Meta(extra={"ctype": "u64", "count": 2})]
Pad3 = Annotated[bytes, msgspec.Meta(min_length=3, max_length=3, extra={"count": 3})]
R = TypeVar("R", bound=CRecord)
_MAP_FLAGS = int(IoasMapFlags.FIXED_IOVA | IoasMapFlags.WRITEABLE | IoasMapFlags.READABLE)
_ALLOC_FLAGS = int(HwptAllocFlags.NEST_PARENT | HwptAllocFlags.FAULT_ID_VALID
                   | HwptAllocFlags.PASID)


def copy_struct(cls: type[R], buf: bytes | bytearray | memoryview, op: str,
                            minsz: int | None = None) -> R:
    """``copy_struct_from_user`` of a record whose length is ``len(buf)`` (given beside the
    pointer): shorter than ``minsz`` (default the record's ``MINSZ``) EINVAL
    (``op.len_min``), longer with a non-zero byte past the record E2BIG
    (``op.tail_nonzero``), shorter zero-extended."""
    size = cls.SIZE
    need = cls.MINSZ if minsz is None else minsz
    have = len(buf)
    if have < need:
        raise fail(f"{op}.len_min", len=have, minsz=need)
    if have > size:
        tail = bytes(buf[size:])
        if tail.count(0) != len(tail):
            index = size + next(i for i, b in enumerate(tail) if b)
            raise fail(f"{op}.tail_nonzero", len=have, size=size, index=index)
        return cls._cdecode(bytes(buf[:size]), 0)  # type: ignore[no-any-return]
    if have < size:
        return cls._cdecode(bytes(buf) + bytes(size - have), 0)  # type: ignore[no-any-return]
    return cls._cdecode(bytes(buf), 0)  # type: ignore[no-any-return]


class _Sized(CRecord, frozen=True, gc=False):
    """An ioctl struct: ``size`` first, copied by the iommufd discipline."""

    OP = ""

    @classmethod
    def from_user(cls, buf: bytes | bytearray | memoryview, profile: Any = None,
                  discipline: SizeDiscipline = SizeDiscipline.IOMMUFD) -> Self:
        """What ``iommufd_fops_ioctl`` does before the handler: ``size`` readable (EFAULT),
        ``size`` at least the minimum (EINVAL), ``copy_struct_from_user`` of the rest (a
        non-zero tail E2BIG, unreadable bytes EFAULT). The profile does not apply: iommufd
        has one set of rules; the discipline is always iommufd's."""
        del profile, discipline
        rec = copy_from_user(cls, buf, f"iommufd.{cls.OP}", SizeDiscipline.IOMMUFD)
        rec.check()
        return rec

    def check(self) -> None:
        """The command's checks of its own fields, before any object is looked up (the
        kernel's order): unknown flags or a non-zero reserved field EOPNOTSUPP, inconsistent
        fields EINVAL."""


class _Data(CRecord, frozen=True, gc=False):
    """A record whose length travels beside its pointer."""

    OP = ""

    @classmethod
    def from_user(cls, buf: bytes | bytearray | memoryview, profile: Any = None,
                  discipline: SizeDiscipline = SizeDiscipline.IOMMUFD) -> Self:
        """:func:`copy_struct` with the buffer's length as the user's length."""
        del profile, discipline
        return copy_struct(cls, buf, f"iommufd.{cls.OP}")


# -- objects ----------------------------------------------------------------------------------


@cstruct(cname="iommu_destroy", minsz=8)
class IommuDestroy(_Sized, frozen=True, gc=False):
    """``IOMMU_DESTROY``: free object ``id``."""

    OP = "destroy"
    size: U32 = 0
    id: U32 = 0


@cstruct(cname="iommu_ioas_alloc", minsz=12)
class IommuIoasAlloc(_Sized, frozen=True, gc=False):
    """``IOMMU_IOAS_ALLOC``: a new I/O address space; its id written to ``out_ioas_id``."""

    OP = "ioas_alloc"
    size: U32 = 0
    flags: U32 = 0
    out_ioas_id: U32 = 0

    def check(self) -> None:
        if self.flags:
            raise fail("iommufd.ioas_alloc.flags", flags=self.flags)


@cstruct(cname="iommu_ioas_map", minsz=40)
class IommuIoasMap(_Sized, frozen=True, gc=False):
    """``IOMMU_IOAS_MAP``: map ``length`` bytes of user memory at ``user_va`` at ``iova``
    (``FIXED_IOVA``; otherwise the IOAS picks and writes ``iova`` back)."""

    OP = "ioas_map"
    size: U32 = 0
    flags: U32 = 0
    ioas_id: U32 = 0
    reserved: U32 = 0
    user_va: U64 = 0
    length: U64 = 0
    iova: U64 = 0

    def check(self) -> None:
        if self.flags & ~_MAP_FLAGS or self.reserved:
            raise fail("iommufd.ioas_map.flags", flags=self.flags, reserved=self.reserved)


@cstruct(cname="iommu_ioas_unmap", minsz=24)
class IommuIoasUnmap(_Sized, frozen=True, gc=False):
    """``IOMMU_IOAS_UNMAP``: unmap the whole mappings inside ``[iova, iova + length)``
    (``iova`` 0 and ``length`` U64_MAX: everything); ``length`` written back with the bytes
    unmapped."""

    OP = "ioas_unmap"
    size: U32 = 0
    ioas_id: U32 = 0
    iova: U64 = 0
    length: U64 = 0


# -- hardware information ---------------------------------------------------------------------


@cstruct(cname="iommu_hw_info", minsz=32)
class IommuHwInfo(_Sized, frozen=True, gc=False):
    """``IOMMU_GET_HW_INFO``: the vendor struct of the IOMMU behind ``dev_id``, written at
    ``data_uptr`` (``data_len`` bytes; written back with the kernel's length)."""

    OP = "hw_info"
    size: U32 = 0
    flags: U32 = 0
    dev_id: U32 = 0
    data_len: U32 = 0
    data_uptr: U64 = 0
    out_data_type: U32 = 0
    out_max_pasid_log2: Annotated[int, msgspec.Meta(ge=0, le=0xFF, extra={"ctype": "u8"})] = 0
    reserved: Pad3 = bytes(3)
    out_capabilities: U64 = 0

    def check(self) -> None:
        if self.flags or self.reserved != bytes(3):
            raise fail("iommufd.hw_info.flags", flags=self.flags,
                       reserved=bytes(self.reserved).hex())


@cstruct(cname="iommu_hw_info_vtd")
class IommuHwInfoVtd(_Data, frozen=True, gc=False):
    """``struct iommu_hw_info_vtd``: the unit's CAP and ECAP registers."""

    OP = "hw_info_vtd"
    flags: U32 = 0
    reserved: U32 = 0
    cap_reg: U64 = 0
    ecap_reg: U64 = 0


@cstruct(cname="iommu_hw_info_arm_smmuv3")
class IommuHwInfoArmSmmuv3(_Data, frozen=True, gc=False):
    """``struct iommu_hw_info_arm_smmuv3``: SMMU_IDR0..5, SMMU_IIDR, SMMU_AIDR."""

    OP = "hw_info_arm_smmuv3"
    flags: U32 = 0
    reserved: U32 = 0
    idr: U32x6 = (0, 0, 0, 0, 0, 0)
    iidr: U32 = 0
    aidr: U32 = 0


# -- hardware page tables ---------------------------------------------------------------------


@cstruct(cname="iommu_hwpt_alloc", minsz=24)
class IommuHwptAlloc(_Sized, frozen=True, gc=False):
    """``IOMMU_HWPT_ALLOC``: a paging HWPT over IOAS ``pt_id`` or a nested one over parent
    HWPT (or vIOMMU) ``pt_id`` with ``data_len`` bytes of ``data_type`` vendor data."""

    OP = "hwpt_alloc"
    size: U32 = 0
    flags: U32 = 0
    dev_id: U32 = 0
    pt_id: U32 = 0
    out_hwpt_id: U32 = 0
    reserved: U32 = 0
    data_type: U32 = 0
    data_len: U32 = 0
    data_uptr: U64 = 0
    fault_id: U32 = 0
    reserved2: U32 = 0

    def check(self) -> None:
        if self.flags & ~_ALLOC_FLAGS or self.reserved or self.reserved2:
            raise fail("iommufd.hwpt_alloc.flags", flags=self.flags)
        nested = self.data_type != 0
        if (not nested and self.data_len) or (nested and not self.data_uptr):
            raise fail("iommufd.hwpt_alloc.data", data_type=self.data_type,
                       data_len=self.data_len, flags=self.flags)


@cstruct(cname="iommu_hwpt_vtd_s1")
class IommuHwptVtdS1(_Data, frozen=True, gc=False):
    """``struct iommu_hwpt_vtd_s1``: the guest's first-level table (a GPA), its address width
    (48 or 57) and ``VtdS1Flags``."""

    OP = "hwpt_vtd_s1"
    flags: U64 = 0
    pgtbl_addr: U64 = 0
    addr_width: U32 = 0
    reserved: U32 = 0


@cstruct(cname="iommu_hwpt_arm_smmuv3")
class IommuHwptArmSmmuv3(_Data, frozen=True, gc=False):
    """``struct iommu_hwpt_arm_smmuv3``: the guest STE's words 0 and 1."""

    OP = "hwpt_arm_smmuv3"
    ste: U64x2 = (0, 0)


# -- invalidation -----------------------------------------------------------------------------


@cstruct(cname="iommu_hwpt_invalidate", minsz=32)
class IommuHwptInvalidate(_Sized, frozen=True, gc=False):
    """``IOMMU_HWPT_INVALIDATE``: ``entry_num`` entries of ``entry_len`` bytes at
    ``data_uptr`` for nested HWPT (or vIOMMU) ``hwpt_id``; ``entry_num`` written back with the
    number handled."""

    OP = "hwpt_invalidate"
    size: U32 = 0
    hwpt_id: U32 = 0
    data_uptr: U64 = 0
    data_type: U32 = 0
    entry_len: U32 = 0
    entry_num: U32 = 0
    reserved: U32 = 0

    def check(self) -> None:
        if self.reserved:
            raise fail("iommufd.hwpt_invalidate.reserved", reserved=self.reserved)
        if self.entry_num and (not self.data_uptr or not self.entry_len):
            raise fail("iommufd.hwpt_invalidate.array", entry_num=self.entry_num,
                       data_uptr=self.data_uptr, entry_len=self.entry_len)


@cstruct(cname="iommu_hwpt_vtd_s1_invalidate")
class IommuHwptVtdS1Invalidate(_Data, frozen=True, gc=False):
    """``struct iommu_hwpt_vtd_s1_invalidate``: ``npages`` 4 KiB pages from ``addr`` (0 and
    U64_MAX: everything), ``LEAF`` when only leaf entries changed."""

    OP = "hwpt_vtd_s1_invalidate"
    addr: U64 = 0
    npages: U64 = 0
    flags: U32 = 0
    reserved: U32 = 0


@cstruct(cname="iommu_viommu_arm_smmuv3_invalidate")
class IommuViommuArmSmmuv3Invalidate(_Data, frozen=True, gc=False):
    """``struct iommu_viommu_arm_smmuv3_invalidate``: one raw 16-byte CMDQ command."""

    OP = "viommu_arm_smmuv3_invalidate"
    cmd: U64x2 = (0, 0)


# -- vIOMMU and vDEVICE -----------------------------------------------------------------------


@cstruct(cname="iommu_viommu_alloc", minsz=24)
class IommuViommuAlloc(_Sized, frozen=True, gc=False):
    """``IOMMU_VIOMMU_ALLOC``: a virtual IOMMU of ``type`` over nesting parent ``hwpt_id``."""

    OP = "viommu_alloc"
    size: U32 = 0
    flags: U32 = 0
    type: U32 = 0
    dev_id: U32 = 0
    hwpt_id: U32 = 0
    out_viommu_id: U32 = 0

    def check(self) -> None:
        if self.flags:
            raise fail("iommufd.viommu_alloc.flags", flags=self.flags)


@cstruct(cname="iommu_vdevice_alloc", minsz=24)
class IommuVdeviceAlloc(_Sized, frozen=True, gc=False):
    """``IOMMU_VDEVICE_ALLOC``: device ``dev_id`` seen by the guest through ``viommu_id`` as
    ``virt_id`` (a virtual StreamID on SMMUv3)."""

    OP = "vdevice_alloc"
    size: U32 = 0
    viommu_id: U32 = 0
    dev_id: U32 = 0
    out_vdevice_id: U32 = 0
    virt_id: U64 = 0


# -- faults -----------------------------------------------------------------------------------


@cstruct(cname="iommu_fault_alloc", minsz=16)
class IommuFaultAlloc(_Sized, frozen=True, gc=False):
    """``IOMMU_FAULT_QUEUE_ALLOC``: a fault object; its id and file written back."""

    OP = "fault_alloc"
    size: U32 = 0
    flags: U32 = 0
    out_fault_id: U32 = 0
    out_fault_fd: U32 = 0

    def check(self) -> None:
        if self.flags:
            raise fail("iommufd.fault_alloc.flags", flags=self.flags)


@cstruct(cname="iommu_hwpt_pgfault")
class IommuHwptPgfault(_Data, frozen=True, gc=False):
    """``struct iommu_hwpt_pgfault``: one page request read from a fault object."""

    OP = "hwpt_pgfault"
    flags: U32 = 0
    dev_id: U32 = 0
    pasid: U32 = 0
    grpid: U32 = 0
    perm: U32 = 0
    reserved: U32 = 0
    addr: U64 = 0
    length: U32 = 0
    cookie: U32 = 0


@cstruct(cname="iommu_hwpt_page_response")
class IommuHwptPageResponse(_Data, frozen=True, gc=False):
    """``struct iommu_hwpt_page_response``: answer the group of ``cookie`` with ``code``."""

    OP = "hwpt_page_response"
    cookie: U32 = 0
    code: U32 = 0


#: Every iommufd record, for tools and tests that iterate over them.
RECORDS: tuple[type[CRecord], ...] = (
    IommuDestroy, IommuIoasAlloc, IommuIoasMap, IommuIoasUnmap, IommuHwInfo, IommuHwInfoVtd,
    IommuHwInfoArmSmmuv3, IommuHwptAlloc, IommuHwptVtdS1, IommuHwptArmSmmuv3,
    IommuHwptInvalidate, IommuHwptVtdS1Invalidate, IommuViommuArmSmmuv3Invalidate,
    IommuViommuAlloc, IommuVdeviceAlloc, IommuFaultAlloc, IommuHwptPgfault,
    IommuHwptPageResponse,
)

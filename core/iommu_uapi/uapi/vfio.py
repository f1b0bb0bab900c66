"""The VFIO ioctl wrappers that carry IOMMU UAPI records (reference b.2).

Each is ``{argsz; flags; data}``: VFIO checks its own header and passes the bytes after it on to
the IOMMU core, which checks the inner record's own argsz. ``from_user`` returns the wrapper and
those inner user bytes.
"""

from __future__ import annotations

import struct
from typing import Self

import msgspec

from ..abi import U16, U32, CRecord, SizeDiscipline, cstruct
from ..profiles import ProfileLike
from ..rules import fail
from .cache_invalidate import CacheInvalidateInfo
from .consts import VFIO_IOMMU_TYPE1_INFO_CAP_NESTING, VFIO_NESTING_OP_MASK, NestingOp
from .nesting import NestingInfo
from .pasid_table import PasidTableConfig

__all__ = [
    "VfioInfoCapHeader",
    "VfioInfoCapNesting",
    "VfioIommuType1CacheInvalidate",
    "VfioIommuType1NestingOp",
    "VfioIommuType1SetPasidTable",
]

_HEADER = struct.Struct("<II").unpack_from
_VFIO_MINSZ = 8
_NESTING_OPS = frozenset(int(op) for op in NestingOp)


def _header(buf: bytes | bytearray | memoryview, op: str) -> tuple[memoryview, int, int]:
    """Copy the 8-byte VFIO header: EFAULT if unreadable, EINVAL if argsz < 8."""
    try:
        view = memoryview(buf).cast("B")
    except (TypeError, ValueError, BufferError):
        raise fail(f"{op}.copy_minsz", have=0) from None
    if len(view) < _VFIO_MINSZ:
        raise fail(f"{op}.copy_minsz", have=len(view))
    argsz, flags = _HEADER(view, 0)
    if argsz < _VFIO_MINSZ:
        raise fail(f"{op}.argsz_minsz", argsz=argsz)
    return view, argsz, flags


def _inner(cls: type[CRecord], view: memoryview) -> CRecord:
    """The inner record as far as the user's bytes go (zero-extended), without rules."""
    data = bytes(view[_VFIO_MINSZ : _VFIO_MINSZ + cls.SIZE])
    return cls.from_bytes(data + bytes(cls.SIZE - len(data)))


@cstruct(cname="vfio_iommu_type1_nesting_op")
class VfioIommuType1NestingOp(CRecord, frozen=True, gc=False):
    """``VFIO_IOMMU_NESTING_OP`` header (Yi Liu v8): the op (``NestingOp``) in ``flags`` bits
    15:0; the data (bind data or a cache invalidation) follows at offset 8."""

    argsz: U32 = 0
    flags: U32 = 0

    @property
    def op(self) -> int:
        """The nesting op: ``flags & VFIO_NESTING_OP_MASK``."""
        return self.flags & VFIO_NESTING_OP_MASK

    @classmethod
    def from_user(
        cls,
        buf: bytes | bytearray | memoryview,
        profile: ProfileLike = "linux-5.10",
        discipline: SizeDiscipline = SizeDiscipline.ARGSZ,
    ) -> tuple[Self, memoryview]:
        """VFIO's checks: minsz 8, no flag above bit 15, a known op; returns the header and the
        inner user bytes (``buf[8:]``). The argsz is not compared with the inner record's."""
        del profile, discipline  # VFIO's header rules are the same under every profile
        view, argsz, flags = _header(buf, "nesting_op")
        if flags & ~VFIO_NESTING_OP_MASK:
            raise fail("nesting_op.flags", flags=flags)
        if flags & VFIO_NESTING_OP_MASK not in _NESTING_OPS:
            raise fail("nesting_op.op", op=flags & VFIO_NESTING_OP_MASK)
        return cls(argsz, flags), view[_VFIO_MINSZ:]


@cstruct(cname="vfio_iommu_type1_set_pasid_table")
class VfioIommuType1SetPasidTable(CRecord, frozen=True, gc=False):
    """``VFIO_IOMMU_SET_PASID_TABLE`` (Auger v13): ``flags`` SET (attach ``config``) or UNSET
    (detach)."""

    argsz: U32 = 0
    flags: U32 = 0
    config: PasidTableConfig = msgspec.field(default_factory=PasidTableConfig)

    @classmethod
    def from_user(
        cls,
        buf: bytes | bytearray | memoryview,
        profile: ProfileLike = "linux-5.10",
        discipline: SizeDiscipline = SizeDiscipline.ARGSZ,
    ) -> tuple[Self, memoryview]:
        """VFIO's checks: minsz 8, flags exactly SET or exactly UNSET. ``config`` in the returned
        wrapper is the plain decode of whatever bytes follow (zero-extended); the IOMMU core
        copies and checks it from the returned inner bytes."""
        del profile, discipline  # VFIO's header rules are the same under every profile
        view, argsz, flags = _header(buf, "set_pasid_table")
        if flags not in (1, 2):
            raise fail("set_pasid_table.flags", flags=flags)
        config = _inner(PasidTableConfig, view)
        return cls(argsz, flags, config), view[_VFIO_MINSZ:]  # type: ignore[arg-type]


@cstruct(cname="vfio_iommu_type1_cache_invalidate")
class VfioIommuType1CacheInvalidate(CRecord, frozen=True, gc=False):
    """``VFIO_IOMMU_CACHE_INVALIDATE`` (Auger v13): ``flags`` 0 and the invalidation ``info``."""

    argsz: U32 = 0
    flags: U32 = 0
    info: CacheInvalidateInfo = msgspec.field(default_factory=CacheInvalidateInfo)

    @classmethod
    def from_user(
        cls,
        buf: bytes | bytearray | memoryview,
        profile: ProfileLike = "linux-5.10",
        discipline: SizeDiscipline = SizeDiscipline.ARGSZ,
    ) -> tuple[Self, memoryview]:
        """VFIO's checks: minsz 8, flags 0. ``info`` in the returned wrapper is the plain decode
        of the bytes that follow; the IOMMU core checks it from the returned inner bytes."""
        del profile, discipline  # VFIO's header rules are the same under every profile
        view, argsz, flags = _header(buf, "vfio_cache_invalidate")
        if flags != 0:
            raise fail("vfio_cache_invalidate.flags", flags=flags)
        info = _inner(CacheInvalidateInfo, view)
        return cls(argsz, flags, info), view[_VFIO_MINSZ:]  # type: ignore[arg-type]


@cstruct(cname="vfio_info_cap_header")
class VfioInfoCapHeader(CRecord, frozen=True, gc=False):
    """A VFIO capability chain header: capability ``id``, ``version``, offset of the ``next``."""

    id: U16 = 0
    version: U16 = 0
    next: U32 = 0


@cstruct(cname="vfio_iommu_type1_info_cap_nesting")
class VfioInfoCapNesting(CRecord, frozen=True, gc=False):
    """The nesting capability of ``VFIO_IOMMU_GET_INFO`` (Yi Liu v8): header plus ``info``."""

    header: VfioInfoCapHeader = msgspec.field(default_factory=VfioInfoCapHeader)
    info: NestingInfo = msgspec.field(default_factory=NestingInfo)

    @classmethod
    def for_info(cls, info: NestingInfo, next: int = 0) -> VfioInfoCapNesting:
        """The capability carrying ``info`` (id 4, version 1)."""
        return cls(VfioInfoCapHeader(VFIO_IOMMU_TYPE1_INFO_CAP_NESTING, 1, next), info)

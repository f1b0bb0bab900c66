"""``struct iommu_nesting_info`` (Yi Liu v8): what a nesting-capable domain reports (b.2).

The kernel fills it; a user reads it back. A buffer whose argsz is below 64 is a size probe:
the kernel writes the size it needs into argsz and succeeds (:func:`nesting_info_probe`).
"""

from __future__ import annotations

import struct

import msgspec

from ..abi import U16, U32, U64, CRecord, Pad12, SizeDiscipline, copy_from_user, cstruct, cunion
from ..profiles import ProfileLike
from ..rules import fail

__all__ = ["NestingInfo", "NestingInfoVendor", "NestingInfoVtd", "nesting_info_probe"]


@cstruct(cname="iommu_nesting_info_vtd")
class NestingInfoVtd(CRecord, frozen=True, gc=False):
    """VT-d nesting details: the capability and extended capability bits a guest may rely on."""

    flags: U32 = 0
    padding: Pad12 = bytes(12)
    cap_reg: U64 = 0
    ecap_reg: U64 = 0


@cunion(cname="vendor")
class NestingInfoVendor(CRecord, frozen=True, gc=False):
    """The ``vendor`` union of nesting info: ``vtd`` for format INTEL_VTD."""

    vtd: NestingInfoVtd = msgspec.field(default_factory=NestingInfoVtd)


@cstruct(cname="iommu_nesting_info", minsz="vendor")
class NestingInfo(CRecord, frozen=True, gc=False):
    """Nesting support of a domain: PASID ``format``, ``features`` (``NestingFeature``),
    stage-1 output ``addr_width`` and ``pasid_bits``, and vendor details."""

    argsz: U32 = 0
    flags: U32 = 0
    format: U32 = 0
    features: U32 = 0
    addr_width: U16 = 0
    pasid_bits: U16 = 0
    padding: Pad12 = bytes(12)
    vendor: NestingInfoVendor = msgspec.field(default_factory=NestingInfoVendor)

    @classmethod
    def from_user(
        cls,
        buf: bytes | bytearray | memoryview,
        profile: ProfileLike = "linux-5.10",
        discipline: SizeDiscipline = SizeDiscipline.ARGSZ,
    ) -> NestingInfo:
        """Read a nesting-info buffer under the size discipline (the core checks no content;
        ``profile`` is accepted for symmetry)."""
        del profile
        return copy_from_user(cls, buf, "nesting_info", discipline)


_ARGSZ = struct.Struct("<I")


def nesting_info_probe(ubuf: bytearray) -> bool:
    """The size probe of ``DOMAIN_ATTR_NESTING``: if the user's argsz is below 64, write 64 into
    it and return False (answered); otherwise return True (the caller fills the 64 bytes).

    EFAULT (``nesting_info.copy_argsz``) if argsz cannot be read and written, and
    (``nesting_info.copy_rest``) if argsz claims 64 bytes the buffer does not have.
    """
    try:
        view = memoryview(ubuf).cast("B")
    except (TypeError, ValueError, BufferError):
        raise fail("nesting_info.copy_argsz", have=0) from None
    if view.readonly or len(view) < 4:
        raise fail("nesting_info.copy_argsz", have=len(view))
    argsz: int = _ARGSZ.unpack_from(view, 0)[0]
    if argsz < NestingInfo.SIZE:
        _ARGSZ.pack_into(view, 0, NestingInfo.SIZE)
        return False
    if len(view) < NestingInfo.SIZE:
        raise fail("nesting_info.copy_rest", need=NestingInfo.SIZE, argsz=argsz, have=len(view))
    return True

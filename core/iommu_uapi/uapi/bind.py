"""``struct iommu_gpasid_bind_data`` and its vendor union (reference a.3, c.3-c.5, d.1).

Binding a guest PASID installs the guest's first-level page table (``gpgd``, a guest physical
address) for host PASID ``hpasid`` in nested mode; the vendor union carries VT-d PASID-entry
attributes.
"""

from __future__ import annotations

import msgspec

from .. import checks as _checks
from ..abi import U32, U64, CRecord, Pad8, SizeDiscipline, copy_from_user, cstruct, cunion
from ..profiles import ProfileLike

__all__ = ["GpasidBindData", "GpasidBindDataVtd", "GpasidBindVendor"]


@cstruct(cname="iommu_gpasid_bind_data_vtd")
class GpasidBindDataVtd(CRecord, frozen=True, gc=False):
    """VT-d bind attributes: ``flags`` (``VtdGpasidFlags``: SRE, EAFE, memory-type bits),
    ``pat`` (page attribute table) and ``emt`` (extended memory type)."""

    flags: U64 = 0
    pat: U32 = 0
    emt: U32 = 0


@cunion(cname="vendor")
class GpasidBindVendor(CRecord, frozen=True, gc=False):
    """The ``vendor`` union of a bind: ``vtd`` for format INTEL_VTD."""

    vtd: GpasidBindDataVtd = msgspec.field(default_factory=GpasidBindDataVtd)


@cstruct(cname="iommu_gpasid_bind_data", minsz="vendor")
class GpasidBindData(CRecord, frozen=True, gc=False):
    """Bind guest page table ``gpgd`` (guest VA width ``addr_width``) to host PASID ``hpasid``;
    ``gpasid`` is the guest's PASID when ``flags`` has ``GpasidBindFlags.VAL``."""

    argsz: U32 = 0
    version: U32 = 0
    format: U32 = 0
    addr_width: U32 = 0
    flags: U64 = 0
    gpgd: U64 = 0
    hpasid: U64 = 0
    gpasid: U64 = 0
    padding: Pad8 = bytes(8)
    vendor: GpasidBindVendor = msgspec.field(default_factory=GpasidBindVendor)

    @classmethod
    def from_user(
        cls,
        buf: bytes | bytearray | memoryview,
        profile: ProfileLike = "linux-5.10",
        discipline: SizeDiscipline = SizeDiscipline.ARGSZ,
        operation: str = "bind",
    ) -> GpasidBindData:
        """What ``iommu_uapi_sva_bind_gpasid()`` (``operation="bind"``) or the user unbind
        (``operation="unbind"``: the same validation, reported as unbind) does before calling
        the driver (c.3-c.5)."""
        prof = _checks.profile_of(profile)
        head = _checks.unbind_argsz if operation == "unbind" else _checks.bind_argsz
        data = copy_from_user(cls, buf, "bind", discipline, head, prof, operation)
        _checks.bind_content(data, prof, operation)
        return data

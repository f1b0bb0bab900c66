"""The guest side of VT-d nesting: what a guest's driver builds and what its VMM sends.

A VT-d guest (Linux's ``intel-iommu`` in the guest, scalable mode with first-level
translation) builds IA-32e (x86 4-level) first-level tables in guest memory; the VMM binds them
to a host PASID of the device with ``sva_bind_gpasid``, sending ``iommu_gpasid_bind_data`` with
the Intel vendor data (format ``IOMMU_PASID_FORMAT_INTEL_VTD``, argsz up to the end of
``vendor.vtd``). The backend's ``iommu_guest_formats`` hook returns :data:`VTD_GUEST`.
"""

from __future__ import annotations

from iommu_uapi.guest import GuestEntry, GuestFormat, GuestTables
from iommu_uapi.memory import GuestMemory
from iommu_uapi.pgtable.x86 import X86Config, X86PageTable
from iommu_uapi.uapi import GpasidBindData, GpasidBindDataVtd, GpasidBindVendor
from iommu_uapi.uapi.consts import PasidFormat

__all__ = ["BIND_ARGSZ_MIN", "VTD_GUEST", "VtdGuestFormat"]

#: offsetofend(struct iommu_gpasid_bind_data, vendor.vtd): the driver's argsz minimum.
BIND_ARGSZ_MIN = 72
#: The guest's first-level paging: 4 levels, 48-bit input addresses.
_GUEST_LEVELS, _GUEST_WIDTH = 4, 48


class VtdGuestFormat(GuestFormat):
    """First-level x86 tables bound by ``sva_bind_gpasid`` with Intel vendor data."""

    def __init__(self) -> None:
        # first-level leaves carry the x86 G bit; the IOTLB keeps them through non-global
        # PASID-based invalidations
        super().__init__(int(PasidFormat.INTEL_VTD), GuestEntry.BIND_GPASID, global_pages=True)

    def tables(self, guest: GuestMemory) -> GuestTables:
        """Empty 4-level first-level tables in guest memory."""
        return X86PageTable(X86Config(levels=_GUEST_LEVELS, haw=_GUEST_WIDTH), guest)

    def bind_data(self, hpasid: int, root: int) -> GpasidBindData:
        """The bind record for the tables at GPA ``root`` (no vendor flags)."""
        return GpasidBindData(argsz=BIND_ARGSZ_MIN, version=1, format=self.format,
                              addr_width=_GUEST_WIDTH, gpgd=root, hpasid=hpasid,
                              vendor=GpasidBindVendor(vtd=GpasidBindDataVtd()))


#: The one guest format a VT-d unit accepts.
VTD_GUEST = VtdGuestFormat()

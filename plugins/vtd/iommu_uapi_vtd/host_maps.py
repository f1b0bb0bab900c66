"""The host's stage-2 mapping hooks of :class:`~.backend.VtdBackend` (a base class of it):
``iommu_map``/``iommu_unmap`` and their page-range forms, ``iommu_iova_to_phys``, and the
flush after an unmap as ``intel_iommu``'s ``iommu_flush_iotlb_psi`` and
``iommu_flush_dev_iotlb`` issue it.

A one-page map or unmap reaches the domain's own paths (:meth:`~.domain.VtdDomain.
bind_host_paths`, the façade's ``Domain.map_one``/``unmap_one``), which these hooks call too.
"""

from __future__ import annotations

from collections.abc import Container
from typing import TYPE_CHECKING

from iommu_uapi.device import Domain
from iommu_uapi.hookspecs import hookimpl

from .domain import VtdDomain
from .hazards import UNMAP_KEEPS_NESTED_ATC, has_hazard
from .invalidate import DevTlbTarget
from .qi import Descriptor, DevTlbInv, devtlb_size_encoding
from .registers import VtdConfig

if TYPE_CHECKING:
    from .sync_queue import SyncQueue

__all__ = ["WHOLE_SPACE_ORDER", "VtdHostMappings"]

#: a device-TLB invalidation of the whole 64-bit space, in pages (the S encoding's order)
WHOLE_SPACE_ORDER = 64 - 12


class VtdHostMappings:
    """The host mapping hooks (see the module docstring)."""

    cfg: VtdConfig
    queue: SyncQueue
    bound_per_sid: dict[int, int]

    if TYPE_CHECKING:
        def _profile(self) -> str: ...

    @hookimpl
    def iommu_map(self, domain: Domain, iova: int, paddr: int, size: int, prot: int) -> None:
        domain.data.map(iova, paddr, size, prot)

    @hookimpl
    def iommu_map_pages(self, domain: Domain, iova: int, paddr: int, pgsize: int, pgcount: int,
                        prot: int) -> int:
        return int(domain.data.map_pages(iova, paddr, pgsize, pgcount, prot))

    @hookimpl
    def iommu_unmap(self, domain: Domain, iova: int, size: int) -> int:
        return int(domain.data.unmap(iova, size))  # with its flush (VtdDomain.bind_host_paths)

    @hookimpl
    def iommu_unmap_pages(self, domain: Domain, iova: int, pgsize: int, pgcount: int) -> int:
        return self._flush_unmapped(domain, iova,
                                    domain.data.unmap_pages(iova, pgsize, pgcount))

    def _flush_unmapped(self, domain: Domain, iova: int, unmapped: int) -> int:
        """Flush ``[iova, iova + unmapped)`` of ``domain`` with one range invalidation (and one
        per ATS device), as ``iommu_unmap``'s gather is synced once."""
        data: VtdDomain = domain.data
        if unmapped:
            if data.atc_devices:  # device-TLB invalidations too
                self._flush_with_devtlbs(domain, iova, unmapped)
            else:  # the IOTLB invalidation alone, from the domain's template
                data.flush_unmapped(iova, unmapped)
        return unmapped

    def _flush_with_devtlbs(self, domain: Domain, iova: int, unmapped: int) -> None:
        targets = [DevTlbTarget(d.sid) for d in domain.devices if d.ats]
        descs = domain.data.flush_range(self.cfg, iova, unmapped, targets)
        if not has_hazard(self._profile(), UNMAP_KEEPS_NESTED_ATC):
            descs += _nested_atc_flush(targets, self.bound_per_sid)
        self.queue.run(descs)

    @hookimpl
    def iommu_iova_to_phys(self, domain: Domain, iova: int) -> int:
        return int(domain.data.pt.iova_to_phys(iova))


def _nested_atc_flush(targets: list[DevTlbTarget], nested: Container[int]
                      ) -> list[Descriptor]:
    """A whole-space device-TLB invalidation (type 3: by PCIe, every PASID's entries) for each
    ATS device with a guest PASID bound: its ATC keeps nested translations by guest address, so
    no range of the stage-2 change names them (Linux 6.8's parent-domain flush does the same)."""
    addr, s = devtlb_size_encoding(0, WHOLE_SPACE_ORDER)
    return [DevTlbInv(MIP=t.qdep & 0x1F, SID=t.sid, PFSID_LO=t.pfsid & 0xF,
                      PFSID_HI=t.pfsid >> 4, S=s, ADDR=addr) for t in targets if t.sid in nested]

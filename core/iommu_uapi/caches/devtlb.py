"""Device TLBs: the address-translation caches (ATCs) of ATS-enabled devices behind one IOMMU.

Each device's ATC is a :class:`~.iotlb.TLB` with the device's own tags (a PASID, or None for
requests without one). An invalidation request reaches one device and names its range with the
PCIe ATS encoding (:mod:`iommu_uapi.hw.ats`); it costs what the device's TLB holds in that range.

Which entries a request reaches is PCIe's rule, not the IOMMU's (:func:`ats_selection`): a
request without a PASID prefix invalidates every entry of the range, including those the device
requested with a PASID. A device cannot tell a "no-PASID entries only" request apart, so an
IOMMU model that drops only the entries requested without PASID keeps PASID translations the
host believes gone (Linux's arm-smmu-v3 driver states the same next to its ``CMD_ATC_INV``
construction: there is no way to invalidate only the entries without PASID).
"""

from __future__ import annotations

from collections.abc import Hashable

from ..hw.ats import ats_range
from .iotlb import TLB
from .replacement import Geometry
from .tags import Tag

__all__ = ["DeviceTlbs", "ats_selection"]


def ats_selection(pasid: int | None, global_invalidate: bool = False) -> Tag:
    """The ATC tags (``(pasid,)``, or a prefix of them) a PCIe ATS Invalidate Request selects:
    without a PASID prefix (``pasid`` None) every entry, whatever PASID it was requested with;
    with a PASID prefix and Global Invalidate set every PASID's entries too; else the entries
    of ``pasid`` alone."""
    return () if pasid is None or global_invalidate else (pasid,)


class DeviceTlbs:
    """The ATCs of the ATS-enabled devices, by device id (a requester or stream id)."""

    tlbs: dict[Hashable, TLB]

    def __init__(self, geometry: Geometry | None = None) -> None:
        self.tlbs = {}
        self.geometry = geometry

    def enable(self, dev: Hashable, capacity: int | None = None) -> TLB:
        """Give device ``dev`` an ATC (ATS enabled: of ``capacity`` entries, else of this
        collection's geometry); returns it."""
        tlb = self.tlbs.get(dev)
        if tlb is None:
            geometry = self.geometry if capacity is None else Geometry(capacity)
            tlb = self.tlbs[dev] = TLB(geometry=geometry or Geometry())
        return tlb

    def attach(self, dev: Hashable, atc: TLB) -> None:
        """Use ``atc`` as the ATC of ``dev``."""
        self.tlbs[dev] = atc

    def detach(self, dev: Hashable) -> None:
        """Forget the ATC of ``dev`` (ATS disabled, device gone)."""
        self.tlbs.pop(dev, None)

    def get(self, dev: Hashable) -> TLB | None:
        """The ATC of ``dev``, or None when the device has no ATS."""
        return self.tlbs.get(dev)

    def invalidate(self, dev: Hashable, prefix: Tag, addr: int, size: int) -> int:
        """Drop ``dev``'s ATC entries under ``prefix`` overlapping ``[addr, addr + size)``."""
        tlb = self.tlbs.get(dev)
        return 0 if tlb is None else tlb.invalidate(prefix, addr, size)

    def invalidate_request(self, dev: Hashable, prefix: Tag, addr: int, s: bool) -> int:
        """Execute an ATS invalidation request: the range ``addr``/``s`` names
        (:func:`~iommu_uapi.hw.ats.ats_range`) under ``prefix`` of ``dev``'s ATC."""
        base, size = ats_range(addr, s)
        return self.invalidate(dev, prefix, base, size)

    def ats_invalidate(self, dev: Hashable, pasid: int | None, addr: int, s: bool, *,
                       global_invalidate: bool = False) -> int:
        """Execute a PCIe ATS Invalidate Request as the device does: with the PASID prefix
        ``pasid`` (None: no prefix) and the Global Invalidate bit, over the range ``addr``/``s``
        names; the entries it reaches are :func:`ats_selection`'s."""
        return self.invalidate_request(dev, ats_selection(pasid, global_invalidate), addr, s)

    @property
    def hits(self) -> int:
        """Hits over every device's ATC."""
        return sum(t.hits for t in self.tlbs.values())

    @property
    def misses(self) -> int:
        """Misses over every device's ATC."""
        return sum(t.misses for t in self.tlbs.values())

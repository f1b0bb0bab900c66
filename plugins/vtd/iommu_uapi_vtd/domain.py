"""A host domain of the VT-d unit: its domain id, its second-level tables, and the host driver's
bookkeeping around them (``max_addr``, the nesting attribute, the IOTLB flush after an unmap).

The second level's AW is the one Linux gives every domain on a unit (``iommu->agaw``): the
largest SAGAW value whose width does not exceed ``ceil((MGAW - 30) / 9)`` levels; the domain's
address width (``gaw``) is that table width capped at MGAW.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

import msgspec

from iommu_uapi.errors import UAPIError
from iommu_uapi.hw.ats import ats_size_encoding
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable.vtd_sl import SLPageTable

from .context import sl_config
from .invalidate import DevTlbTarget
from .qi import Descriptor, DevTlbInv, IotlbGranularity, IotlbInv
from .registers import VtdConfig

if TYPE_CHECKING:
    from .sync_queue import SyncQueue

__all__ = ["VtdDomain", "domain_aw"]

_PAGE_SHIFT = 12
_replace = msgspec.structs.replace
# where a page-selective IOTLB invalidation holds AM and ADDR (ADDR's bits from its unit up)
_AM_SHIFT = IotlbInv.LAYOUT["AM"].shift
_ADDR_SHIFT, _ADDR_UNIT = IotlbInv.LAYOUT["ADDR"].shift, IotlbInv.LAYOUT["ADDR"].unit


def _unbound(*_: int) -> NoReturn:
    raise RuntimeError("a domain maps, unmaps and flushes after bind_queue and bind_host_paths")


def domain_aw(cfg: VtdConfig) -> int:
    """The second-level AW (1, 2, 3) of every domain on a unit with ``cfg``; ``EINVAL`` when
    SAGAW offers none that fits MGAW (Linux then does not use the unit)."""
    top = -(-(cfg.mgaw - 30) // 9)
    for aw in range(min(top, 3), 0, -1):
        if cfg.aw_supported(aw):
            return aw
    raise UAPIError(errno.EINVAL, f"vtd: SAGAW {cfg.sagaw:#x} has no width within MGAW "
                    f"{cfg.mgaw}", rule="vtd.agaw")


class VtdDomain:
    """Backend state of one host domain (``Domain.data``)."""

    __slots__ = ("_dsi", "_limit", "_mamv", "_psi", "atc_devices", "aw", "did", "flush_unmapped",
                 "gaw", "map", "max_addr", "mem", "nesting", "pt", "unmap")

    def __init__(self, did: int, cfg: VtdConfig, aw: int, mem: PhysicalMemory) -> None:
        self.did = did
        self.aw = aw
        self.gaw = min(30 + 9 * aw, cfg.mgaw)
        self._limit = 1 << self.gaw
        self.pt = SLPageTable(sl_config(cfg, aw), mem)
        self.mem = mem
        self.nesting = False
        #: the end of the highest mapping, as the driver tracks it (a bind's gpgd must be below)
        self.max_addr = 0
        # the domain's IOTLB invalidations after an unmap: domain-selective, and (with PSI) the
        # page-selective template whose address fields each flush fills in
        self._dsi = IotlbInv(G=IotlbGranularity.DOMAIN, DID=did, DW=cfg.dwd, DR=cfg.drd)
        self._psi = IotlbInv(G=IotlbGranularity.PAGE, DID=did, DW=cfg.dwd, DR=cfg.drd)
        self._mamv = cfg.mamv if cfg.psi else -1
        #: how many attached devices have a device TLB the unit invalidates (ATS with DT): an
        #: unmap's flush then invalidates their device TLBs too (kept by attach and detach)
        self.atc_devices = 0
        #: run :meth:`iotlb_flush`'s invalidation of what an unmap removed (``(iova, size)``,
        #: size > 0) on the unit's queue: set by :meth:`bind_queue`
        self.flush_unmapped: Callable[[int, int], None] = _unbound
        #: the host's map and unmap of the domain (with the unmap's flush): set by
        #: :meth:`bind_host_paths`
        self.map: Callable[[int, int, int, int], None] = _unbound
        self.unmap: Callable[[int, int], int] = _unbound

    def map_pages(self, iova: int, paddr: int, pgsize: int, pgcount: int, prot: int) -> int:
        """Map ``pgcount`` pages of ``pgsize``; ``EINVAL`` beyond the domain's width."""
        size = pgsize * pgcount
        self._fits("map_pages", iova, size)
        self.pt.map_pages(iova, paddr, pgsize, pgcount, prot)
        self._mapped(iova, size)
        return size

    def _fits(self, op: str, iova: int, size: int) -> None:
        if iova + size > 1 << self.gaw:
            raise UAPIError(errno.EINVAL, f"{op}: [{iova:#x}, {iova + size:#x}) beyond the "
                            f"domain's {self.gaw}-bit width", rule="vtd.map.width")

    def _mapped(self, iova: int, size: int) -> None:
        if iova + size > self.max_addr:
            self.max_addr = iova + size

    def unmap_pages(self, iova: int, pgsize: int, pgcount: int) -> int:
        """Unmap ``pgcount`` pages of ``pgsize``; returns the bytes unmapped."""
        return self._unmapped(iova, pgsize * pgcount,
                              int(self.pt.unmap_pages(iova, pgsize, pgcount)))

    def _unmapped(self, iova: int, size: int, unmapped: int) -> int:
        if unmapped and self.max_addr == iova + size:
            self.max_addr = iova
        return unmapped

    def iotlb_flush(self, iova: int, size: int) -> tuple[IotlbInv, IotlbInv]:
        """``iommu_flush_iotlb_psi`` after an unmap of ``[iova, iova + size)``: one
        page-selective IOTLB invalidation covering the range (the smallest naturally aligned
        block of pages that holds it: address mask ``AM`` up to MAMV), domain-selective when
        PSI is missing or the range needs a mask above MAMV; with its template (the same
        descriptor with the address fields zero), built once for the domain."""
        first, last = iova >> _PAGE_SHIFT, (iova + max(size, 1) - 1) >> _PAGE_SHIFT
        mask = (first ^ last).bit_length()  # the block of 2**mask pages holding both ends
        if mask > self._mamv:  # beyond MAMV, or no PSI (-1)
            return self._dsi, self._dsi
        return (_replace(self._psi, AM=mask, ADDR=(first >> mask) << (_PAGE_SHIFT + mask)),
                self._psi)

    def bind_host_paths(self, devtlb_flush: Callable[[int, int], None]) -> None:
        """Set :attr:`map` ``(iova, paddr, size, prot)`` and :attr:`unmap` ``(iova, size) ->
        bytes unmapped``: what the backend's ``iommu_map``/``iommu_unmap`` do, and what the
        façade calls for one page (``Domain.map_one``/``unmap_one``, without the hook's layer).
        Any size aligned to 4 KiB: the map cuts the range into the largest pages that fit
        (``EINVAL`` beyond the domain's width); the unmap flushes what it removed with one
        range invalidation, through :attr:`flush_unmapped`, or with ``devtlb_flush(iova,
        size)`` (the backend's, with device-TLB invalidations) while an attached device has a
        device TLB. Both keep ``max_addr`` as the driver does. Call after :meth:`bind_queue`."""
        pt, limit = self.pt, self._limit

        def map_range(iova: int, paddr: int, size: int, prot: int) -> None:
            end = iova + size
            if end > limit:
                self._fits("map", iova, size)
            pt.map(iova, paddr, size, prot)
            if end > self.max_addr:
                self.max_addr = end

        def unmap_range(iova: int, size: int) -> int:
            unmapped: int = pt.unmap(iova, size)
            if unmapped:
                if self.max_addr == iova + size:
                    self.max_addr = iova
                if self.atc_devices:
                    devtlb_flush(iova, unmapped)
                else:
                    self.flush_unmapped(iova, unmapped)
            return unmapped
        self.map, self.unmap = map_range, unmap_range

    def bind_queue(self, queue: SyncQueue) -> None:
        """Flush through ``queue`` (the unit's, whose geometry is fixed for its life):
        :attr:`flush_unmapped` runs the page-selective invalidation on the template's
        one-descriptor path bound once (:meth:`SyncQueue.placed_runner`), its address bits
        placed from ints (AM is within MAMV, ADDR a page address below 2**64: they fit) and the
        descriptor itself built for the log and the effect; anything else goes the way of
        :meth:`SyncQueue.run_one`."""
        dsi, psi, mamv, run_one = self._dsi, self._psi, self._mamv, queue.run_one
        run = queue.placed_runner(psi) if mamv >= 0 else None

        def flush_unmapped(iova: int, size: int) -> None:
            first, last = iova >> _PAGE_SHIFT, (iova + size - 1) >> _PAGE_SHIFT
            mask = (first ^ last).bit_length()  # as iotlb_flush
            if mask > mamv:  # beyond MAMV, or no PSI (-1)
                run_one(dsi, dsi)
                return
            addr = (first >> mask) << (_PAGE_SHIFT + mask)
            d = _replace(psi, AM=mask, ADDR=addr)
            if run is None or addr >> 64 or \
                    not run(d, mask << _AM_SHIFT | addr >> _ADDR_UNIT << _ADDR_SHIFT):
                run_one(d, psi)
        self.flush_unmapped = flush_unmapped

    def flush_range(self, cfg: VtdConfig, iova: int, size: int,
                    devtlbs: list[DevTlbTarget]) -> list[Descriptor]:
        """``iommu_flush_iotlb_psi`` and ``iommu_flush_dev_iotlb`` after an unmap: the IOTLB
        invalidation of :meth:`iotlb_flush`, then a device-TLB invalidation of the same block
        per ATS device (``cfg`` is the unit's, whose PSI and MAMV the domain was built with)."""
        out: list[Descriptor] = [self.iotlb_flush(iova, size)[0]]
        if devtlbs:
            first, last = iova >> _PAGE_SHIFT, (iova + max(size, 1) - 1) >> _PAGE_SHIFT
            mask = (first ^ last).bit_length()
            for t in devtlbs:
                addr, s = ats_size_encoding(iova, mask)
                out.append(DevTlbInv(MIP=t.qdep & 0x1F, SID=t.sid, PFSID_LO=t.pfsid & 0xF,
                                     PFSID_HI=t.pfsid >> 4, S=s, ADDR=addr))
        return out

    def release(self) -> None:
        """Free every table of the domain, the root included (the domain is being freed)."""
        self.pt.free_tables()

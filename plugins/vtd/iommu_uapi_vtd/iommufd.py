"""The VT-d side of iommufd (reference kernel-uapi.md f): ``iommu_hw_info_vtd``, nested HWPTs
of type ``VTD_S1`` and their ``iommu_hwpt_vtd_s1_invalidate`` entries.

Everything reuses the hardware actions of the 2020 calls, because the hardware does the same:

* a nested HWPT attached at a PASID is the nested PASID entry of a guest PASID bind
  (``nested_entry_for``: first level at ``pgtbl_addr`` over the parent's second level, FLPM from
  ``addr_width``, SRE/EAFE checked against ECAP; WPE set as ``pasid_set_wpe`` does), written and
  flushed by :meth:`~.backend.VtdBackend.install_nested`; detached as an unbind
  (:meth:`~.backend.VtdBackend.remove_nested`);
* attached without PASID it replaces the RID_PASID entry (the second-level entry of the
  parent) and is replaced back by it on detach, flushing the PASID cache, the PASID-IOTLB and
  the device TLB as ``intel_pasid_replace_*`` does;
* an invalidation entry issues the descriptors a guest ``cache_invalidate`` of the same range
  issues (:mod:`.invalidate`): PASID-based IOTLB invalidation, page-selective with AM and IH
  from LEAF, or non-global for the whole PASID (``addr`` 0, ``npages`` U64_MAX), plus the
  device TLB when ATS is on, for every (device, PASID) the HWPT is attached at.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from iommu_uapi.abi import CRecord
from iommu_uapi.device import Device, Domain
from iommu_uapi.errors import UAPIError
from iommu_uapi.hookspecs import hookimpl
from iommu_uapi.hw.ats import ats_size_encoding
from iommu_uapi.iommufd import (
    HwInfoType,
    HwptDataType,
    IommuHwInfoVtd,
    IommuHwptVtdS1,
    IommuHwptVtdS1Invalidate,
    VtdS1Flags,
    VtdS1InvalidateFlags,
)
from iommu_uapi.rules import fail
from iommu_uapi.uapi import GpasidBindData, GpasidBindDataVtd, GpasidBindVendor
from iommu_uapi.uapi.consts import PasidFormat, VtdGpasidFlags

from .gpasid import nested_entry_for
from .invalidate import QI_GRAN_NONG_PASID, QI_GRAN_PSI_PASID, DevTlbTarget, _pasid_iotlb
from .pasid_entry import PasidEntry, second_level_entry
from .qi import (
    Descriptor,
    DevTlbInv,
    PasidCacheGranularity,
    PasidCacheInv,
    PasidIotlbGranularity,
    PasidIotlbInv,
)

if TYPE_CHECKING:
    from iommu_uapi.iommu import IOMMU

    from .registers import VtdConfig
    from .tables import ScalableTables

__all__ = ["VtdIommufd", "VtdNested"]

_S1_FLAGS = int(VtdS1Flags.SRE | VtdS1Flags.EAFE | VtdS1Flags.WPE)
#: VTD_S1 flags that have a guest-bind counterpart (WPE has none in 5.10's bind data)
_BIND_FLAGS = ((int(VtdS1Flags.SRE), int(VtdGpasidFlags.SRE)),
               (int(VtdS1Flags.EAFE), int(VtdGpasidFlags.EAFE)))
_LEAF = int(VtdS1InvalidateFlags.LEAF)
_U64_MAX = (1 << 64) - 1
_PAGE_MASK = 0xFFF
_WHOLE_SPACE_ORDER = 64 - 12


class VtdNested:
    """A nested HWPT of the VT-d unit: the guest's ``iommu_hwpt_vtd_s1``."""

    __slots__ = ("s1",)

    def __init__(self, s1: IommuHwptVtdS1) -> None:
        self.s1 = s1

    def bind_data(self, hpasid: int) -> GpasidBindData:
        """The guest-bind record that installs the same first level at ``hpasid``."""
        flags = 0
        for s1_bit, bind_bit in _BIND_FLAGS:
            if self.s1.flags & s1_bit:
                flags |= bind_bit
        return GpasidBindData(
            argsz=GpasidBindData.SIZE, version=1, format=int(PasidFormat.INTEL_VTD),
            addr_width=self.s1.addr_width, gpgd=self.s1.pgtbl_addr, hpasid=hpasid,
            vendor=GpasidBindVendor(vtd=GpasidBindDataVtd(flags=flags)))


class _RidReplace:
    """The tables as ``nested_entry_for`` reads them for a RID attach: the present RID_PASID
    entry is replaced, not refused."""

    __slots__ = ()

    @staticmethod
    def read_pasid(sid: int, pasid: int) -> None:
        del sid, pasid


_RID: list[int] = []


def _rid_pasid() -> int:
    """The backend's RID_PASID (imported on first use: the backend module imports this one)."""
    if not _RID:
        from .backend import RID_PASID

        _RID.append(RID_PASID)
    return _RID[0]


class VtdIommufd:
    """The iommufd hooks of :class:`~.backend.VtdBackend` (a base class of it)."""

    cap: int
    ecap: int
    cfg: VtdConfig
    tables: ScalableTables
    iommu: IOMMU | None

    if TYPE_CHECKING:
        def run(self, descriptors: list[Descriptor]) -> bool: ...
        def _devtlb_target(self, dev: Device) -> DevTlbTarget | None: ...
        def install_nested(self, domain: Domain, dev: Device, hpasid: int,
                           entry: PasidEntry) -> None: ...
        def remove_nested(self, domain: Domain, dev: Device, pasid: int) -> None: ...

    @hookimpl
    def iommu_hw_info(self, dev: Device) -> tuple[int, CRecord]:
        del dev
        return int(HwInfoType.INTEL_VTD), IommuHwInfoVtd(cap_reg=self.cap, ecap_reg=self.ecap)

    @hookimpl
    def iommu_hwpt_nested_alloc(self, parent: Domain, dev: Device, data_type: int,
                                data: CRecord) -> VtdNested:
        del dev
        if data_type != HwptDataType.VTD_S1 or not isinstance(data, IommuHwptVtdS1):
            raise fail("iommufd.hwpt_alloc.nested_type", backend="vtd", data_type=data_type)
        if not parent.data.nesting:
            raise fail("iommufd.hwpt_alloc.parent", pt_id=f"domain {parent.id}")
        if data.flags & ~_S1_FLAGS or data.reserved:
            raise fail("iommufd.hwpt_alloc.vtd_s1_flags", flags=data.flags,
                       reserved=data.reserved)
        return VtdNested(data)

    @hookimpl
    def iommu_hwpt_nested_attach(self, parent: Domain, dev: Device, pasid: int | None,
                                 nested: VtdNested) -> None:
        rid = pasid is None
        hpasid = _rid_pasid() if pasid is None else pasid
        tables = _RidReplace() if rid else self.tables
        entry = nested_entry_for(self.cfg, tables, parent, dev,  # type: ignore[arg-type]
                                 nested.bind_data(hpasid))
        if nested.s1.flags & VtdS1Flags.WPE:
            entry = msgspec.structs.replace(entry, WPE=True)
        if rid:
            self._replace_rid(dev, entry)
        else:
            self.install_nested(parent, dev, hpasid, entry)

    @hookimpl
    def iommu_hwpt_nested_detach(self, parent: Domain, dev: Device, pasid: int | None,
                                 nested: VtdNested) -> None:
        del nested
        if pasid is None:
            d = parent.data
            self._replace_rid(dev, second_level_entry(self.cfg, did=d.did, slptptr=d.pt.root,
                                                      aw=d.aw))
        else:
            self.remove_nested(parent, dev, pasid)

    def _replace_rid(self, dev: Device, entry: PasidEntry) -> None:
        """Replace the present RID_PASID entry and flush what cached the old one."""
        rid = _rid_pasid()
        self.tables.set_pasid(dev.sid, rid, entry)
        descs: list[Descriptor] = [
            PasidCacheInv(G=PasidCacheGranularity.PASID, DID=entry.DID, PASID=rid),
            PasidIotlbInv(G=PasidIotlbGranularity.NON_GLOBAL, DID=entry.DID, PASID=rid)]
        if self._devtlb_target(dev) is not None:
            descs.append(_rid_devtlb(dev.sid, 0, _WHOLE_SPACE_ORDER))
        self.run(descs)

    @hookimpl
    def iommu_hwpt_invalidate(self, parent: Domain, nested: VtdNested, data_type: int,
                              targets: Sequence[tuple[Device, int | None]],
                              entries: Sequence[CRecord]) -> tuple[int, UAPIError | None]:
        del nested, data_type
        did = parent.data.did
        mamv = self.cfg.mamv
        rid = _rid_pasid()
        sites = [(rid if p is None else p, p is None, self._devtlb_target(d), d.sid)
                 for d, p in targets]
        descs: list[Descriptor] = []
        handled = 0
        error: UAPIError | None = None
        for e in entries:
            assert isinstance(e, IommuHwptVtdS1Invalidate)
            addr, npages, flags = e.addr, e.npages, e.flags
            if flags & ~_LEAF or e.reserved:
                error = fail("iommufd.vtd_s1_invalidate.flags", index=handled, flags=flags,
                             reserved=e.reserved)
                break
            if addr & _PAGE_MASK or (npages == _U64_MAX and addr):
                error = fail("iommufd.vtd_s1_invalidate.addr", index=handled, addr=addr,
                             npages=npages)
                break
            whole = npages == _U64_MAX
            order = _WHOLE_SPACE_ORDER if whole else (0 if npages <= 1
                                                      else (npages - 1).bit_length())
            for pasid, is_rid, devtlb, sid in sites:
                if whole:
                    descs.append(PasidIotlbInv(G=QI_GRAN_NONG_PASID, DID=did, PASID=pasid))
                else:
                    descs.append(_pasid_iotlb(did, pasid, QI_GRAN_PSI_PASID, addr, order,
                                              bool(flags & _LEAF), mamv, False))
                if devtlb is not None:
                    descs.append(_rid_devtlb(sid, addr, order) if is_rid
                                 else devtlb.pasid_descriptor(pasid, addr, order))
            handled += 1
        if descs:
            self.run(descs)
        return handled, error


def _rid_devtlb(sid: int, addr: int, order: int) -> DevTlbInv:
    """Device-TLB invalidation without PASID of 2^order pages at ``addr``."""
    a, s = ats_size_encoding(addr, order)
    return DevTlbInv(SID=sid, PFSID_LO=sid & 0xF, PFSID_HI=sid >> 4, S=s, ADDR=a)



"""The driver's checks of a guest PASID bind (reference kernel-uapi.md d.1), in its order and
with its errnos: ``intel_svm_bind_gpasid``'s (:func:`check_bind`), then
``intel_pasid_setup_nested``'s, which also build the nested PASID entry to write
(:func:`nested_entry_for`)."""

from __future__ import annotations

import errno
from collections.abc import Container

from iommu_uapi.device import Device, Domain
from iommu_uapi.errors import ENOTSUPP, UAPIError
from iommu_uapi.pasid import PasidSpace
from iommu_uapi.uapi import GpasidBindData
from iommu_uapi.uapi.consts import IOMMU_SVA_VTD_GPASID_MTS_MASK, PasidFormat, VtdGpasidFlags

from .domain import VtdDomain
from .guest import BIND_ARGSZ_MIN
from .pasid_entry import Flpm, PasidEntry, nested_entry
from .registers import VtdConfig
from .tables import ScalableTables

__all__ = ["PASID_MAX", "check_bind", "nested_entry_for"]

#: PASID_MAX of the driver: a device must support 2^20 PASIDs for a guest bind.
PASID_MAX = 1 << 20
_VTD_FLAGS_VALID = (1 << 6) - 1            # IOMMU_SVA_VTD_GPASID_LAST - 1
_ADDR_WIDTH_FLPM = {48: Flpm.LEVEL4, 57: Flpm.LEVEL5}


def _einval(message: str, rule: str) -> UAPIError:
    return UAPIError(errno.EINVAL, message, rule=rule)


def check_bind(dev: Device, domain: Domain, data: GpasidBindData, argsz: int,
               pasids: PasidSpace, binds: Container[tuple[int, int]]) -> None:
    """``intel_svm_bind_gpasid``'s checks of binding ``data`` on ``dev`` in ``domain``:
    format, argsz, vendor flags, the device, the host PASID (allocated in ``pasids``) and
    whether (sid, PASID) is already in ``binds``."""
    flags = data.vendor.vtd.flags
    if data.format != PasidFormat.INTEL_VTD:
        raise _einval(f"bind: format {data.format} is not INTEL_VTD", "vtd.bind.format")
    if argsz < BIND_ARGSZ_MIN:
        raise _einval(f"bind: argsz {argsz} < {BIND_ARGSZ_MIN} (end of vendor.vtd)",
                      "vtd.bind.argsz")
    if flags & ~_VTD_FLAGS_VALID:
        raise _einval(f"bind: vendor.vtd.flags {flags:#x} outside {_VTD_FLAGS_VALID:#x}",
                      "vtd.bind.vtd_flags")
    if not dev.pci:
        raise UAPIError(ENOTSUPP, f"bind: {dev!r} is not a PCI device",
                        rule="vtd.bind.not_pci")
    if dev.max_pasids != PASID_MAX:
        raise _einval(f"bind: device supports {dev.max_pasids} PASIDs, not {PASID_MAX}",
                      "vtd.bind.max_pasids")
    hpasid = data.hpasid
    if not 0 < hpasid < PASID_MAX:
        raise _einval(f"bind: hpasid {hpasid:#x} outside 1..{PASID_MAX - 1:#x}",
                      "vtd.bind.hpasid")
    if dev.domain is not domain:
        raise _einval(f"bind: {dev!r} is not attached to domain {domain.id}",
                      "vtd.bind.not_attached")
    pasids.owner(hpasid)     # EINVAL out of range, ENOENT not allocated
    if (dev.sid, hpasid) in binds:
        raise UAPIError(errno.EBUSY, f"bind: {dev!r} is already bound to pasid "
                        f"{hpasid:#x}", rule="vtd.bind.busy")


def nested_entry_for(cfg: VtdConfig, tables: ScalableTables, domain: Domain, dev: Device,
                     data: GpasidBindData) -> PasidEntry:
    """``intel_pasid_setup_nested``'s checks, in order; returns the nested PASID entry (first
    level at ``data.gpgd`` over the domain's second level) to write."""
    d: VtdDomain = domain.data
    flags = data.vendor.vtd.flags
    if not cfg.nest:
        raise _einval("bind: the unit has no nested translation (ECAP.NEST)",
                      "vtd.bind.no_nest")
    if not d.nesting:
        raise _einval(f"bind: domain {domain.id} is not in nesting mode",
                      "vtd.bind.not_nesting")
    current = tables.read_pasid(dev.sid, data.hpasid)
    if current is not None and current.P:
        raise UAPIError(errno.EBUSY, f"bind: the PASID entry of {data.hpasid:#x} is "
                        "present", rule="vtd.bind.entry_present")
    flpm = _ADDR_WIDTH_FLPM.get(data.addr_width)
    if flpm is None or (flpm == Flpm.LEVEL5 and not cfg.fl5lp):
        raise _einval(f"bind: addr_width {data.addr_width} is not 48 (or 57 with "
                      "CAP.FL5LP)", "vtd.bind.addr_width")
    if data.gpgd > d.max_addr:
        raise _einval(f"bind: gpgd {data.gpgd:#x} beyond the domain's highest mapped "
                      f"address {d.max_addr:#x}", "vtd.bind.gpgd")
    sre = bool(flags & VtdGpasidFlags.SRE)
    eafe = bool(flags & VtdGpasidFlags.EAFE)
    if sre and not cfg.srs:
        raise _einval("bind: SRE without ECAP.SRS", "vtd.bind.sre")
    if eafe and not cfg.eafs:
        raise _einval("bind: EAFE without ECAP.EAFS", "vtd.bind.eafe")
    if flags & IOMMU_SVA_VTD_GPASID_MTS_MASK:
        raise _einval(f"bind: memory-type flags {flags & IOMMU_SVA_VTD_GPASID_MTS_MASK:#x}"
                      ": no memory type support", "vtd.bind.memory_type")
    return nested_entry(cfg, did=d.did, flptptr=data.gpgd & ~0xFFF, slptptr=d.pt.root,
                        aw=d.aw, flpm=flpm, sre=sre, eafe=eafe)

"""The ``vtd`` backend: one Intel VT-d unit in scalable mode behind the iommu-uapi core.

The unit's state is its hardware model: CAP/ECAP from a :class:`~.registers.VtdConfig`; root,
context, PASID-directory and PASID tables in the IOMMU's physical memory
(:class:`~.tables.ScalableTables`); its caches (:func:`~.linked_caches.linked_caches`, sharing
the core's IOTLB and device ATCs); the invalidation queue executing real descriptors; the fault
recording registers; the page request queue. The hooks below do what the Linux 5.10 driver does
on each operation, in its order and with its errnos (reference kernel-uapi.md d.1-d.4), and
reach the hardware only through memory and queued descriptors.

Configuration (``IOMMU("vtd", five_level=True, caching_mode=True, nd=2, ...)``): the keywords of
:func:`~.registers.modern_server` and every :class:`~.registers.VtdConfig` field.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from functools import partial
from typing import Any

from iommu_uapi.device import Device, Domain
from iommu_uapi.errors import UAPIError
from iommu_uapi.features import Capabilities, FailureReport, Feature
from iommu_uapi.guest import GuestFormat
from iommu_uapi.hookspecs import hookimpl
from iommu_uapi.iommu import IOMMU
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.plugins import BackendSpec
from iommu_uapi.tlb import TLB
from iommu_uapi.uapi import CacheInvalidateInfo, Fault, GpasidBindData, NestingInfo, PageResponse
from iommu_uapi.uapi.consts import (
    FaultPerm,
    NestingFeature,
    PasidFormat,
)
from iommu_uapi.uapi.nesting import NestingInfoVendor, NestingInfoVtd

from .context import FaultSink, VtdContext, build_context
from .domain import VtdDomain, domain_aw
from .faults import FaultRecorder
from .gpasid import check_bind, nested_entry_for
from .guest import BIND_ARGSZ_MIN, VTD_GUEST
from .hazards import UNBIND_KEEPS_GLOBALS, has_hazard
from .host_maps import WHOLE_SPACE_ORDER, VtdHostMappings
from .invalidate import SUPPORTED_CELLS, DevTlbTarget, guest_invalidation
from .iommufd import VtdIommufd
from .linked_caches import AtcDeviceTlbs, forget_contexts, linked_caches
from .pasid_entry import PasidEntry, second_level_entry
from .prq_glue import PageRequests
from .qi import (
    ContextCacheGranularity,
    ContextCacheInv,
    Descriptor,
    DevTlbInv,
    IotlbGranularity,
    IotlbInv,
    PageGroupResponse,
    PasidCacheGranularity,
    PasidCacheInv,
    PasidIotlbGranularity,
    PasidIotlbInv,
    devtlb_size_encoding,
)
from .reasons import VtdFault
from .registers import Cap, Ecap, VtdConfig, cap_value, ecap_value, modern_server
from .rules import VTD_TABLE
from .status import StatusRegisters
from .sync_queue import SyncQueue
from .tables import ScalableTables

__all__ = ["BIND_ARGSZ_MIN", "RID_PASID", "VtdBackend", "iommu_register_backends"]

#: The PASID Linux programs as RID_PASID (requests without PASID).
RID_PASID = 0
_FL_CAP_MASK = Cap.LAYOUT["FL1GP"].mask | Cap.LAYOUT["FL5LP"].mask
_NESTING_ECAP_MASK = (Ecap.LAYOUT["PRS"].mask | Ecap.LAYOUT["ERS"].mask | Ecap.LAYOUT["SRS"].mask
                      | Ecap.LAYOUT["EAFS"].mask | Ecap.LAYOUT["PASID"].mask)
_CONFIG_KEYS = frozenset(VtdConfig.__struct_fields__) | {"five_level", "caching_mode"}
_PAGE_SIZES = {0: 0x20_0000, 1: 0x4000_0000}   # SLLPS bit -> leaf size


def _einval(message: str, rule: str) -> UAPIError:
    return UAPIError(errno.EINVAL, message, rule=rule)


class VtdBackend(VtdIommufd, VtdHostMappings):
    """One VT-d unit (see the module docstring). ``memory`` is where its tables live."""

    name = "vtd"

    def __init__(self, memory: PhysicalMemory, **config: Any) -> None:
        unknown = sorted(set(config) - _CONFIG_KEYS)
        if unknown:
            raise _einval(f"vtd: unknown configuration key(s) {', '.join(unknown)}",
                          "vtd.config-key")
        self.cfg: VtdConfig = modern_server(**config)
        self.cap = cap_value(self.cfg)
        self.ecap = ecap_value(self.cfg)
        self.memory = memory
        self.aw = domain_aw(self.cfg)
        self.iommu: IOMMU | None = None
        self.status = StatusRegisters()
        self.tables = ScalableTables(memory, self.cfg)
        self.caches = linked_caches(TLB(), self._config_dropped)
        self.devtlb: AtcDeviceTlbs = self.caches.devtlb  # type: ignore[assignment]
        #: page group responses that reached the devices, in order
        self.responses: list[PageGroupResponse] = []
        self.queue = SyncQueue(memory, self.cfg, self.caches, status=self.status,
                               page_response=self.responses.append)
        self.faults = FaultSink(FaultRecorder(self.cfg, self.status))
        self.binds: dict[tuple[int, int], Domain] = {}
        #: how many guest PASIDs each device (by requester ID) has bound, kept with ``binds``:
        #: an unmap's flush asks it per ATS device, never scanning every bind
        self.bound_per_sid: dict[int, int] = {}
        self.prq = PageRequests(memory, tables=self.tables, caches=self.caches,
                                faults=self.faults, run=self.run,
                                responses=self.responses.append, binds=self.binds,
                                pds=bool(self.cfg.pds), profile=self._profile)
        self._dids: set[int] = set()
        self.capabilities = self._capabilities()

    def __repr__(self) -> str:
        return f"VtdBackend(cap={self.cap:#x}, ecap={self.ecap:#x})"

    # -- plumbing ------------------------------------------------------------------------------

    def _config_dropped(self, sid: int | None, pasid: int | None) -> None:
        if self.iommu is not None:
            forget_contexts(self.iommu, sid, pasid)

    def _profile(self) -> str:
        return self.iommu.profile if self.iommu is not None else "linux-5.10"

    def run(self, descriptors: list[Descriptor]) -> bool:
        """Submit ``descriptors`` to the invalidation queue and let the hardware execute them
        (``qi_submit_sync``); False when the hardware refused one and it was lost (see
        :class:`~.sync_queue.SyncQueue`)."""
        return self.queue.run(descriptors) == 0

    def _devtlb_target(self, dev: Device) -> DevTlbTarget | None:
        return DevTlbTarget(dev.sid) if dev.ats and self.cfg.dt else None

    # -- life cycle and description ---------------------------------------------------------------

    @hookimpl
    def iommu_instance_init(self, iommu: IOMMU) -> None:
        self.iommu = iommu
        self.caches.iotlb = iommu.iotlb

    def _capabilities(self) -> Capabilities:
        cfg = self.cfg
        features = Feature.SYSWIDE_PASID if cfg.pasid else Feature(0)
        if cfg.smts and cfg.nest and cfg.pasid:
            features |= Feature.BIND_PGTBL | Feature.CACHE_INVLD
        if cfg.prs:
            features |= Feature.PAGE_REQUEST
        sizes = 0x1000
        for b, size in _PAGE_SIZES.items():
            if cfg.sllps >> b & 1:
                sizes |= size
        return Capabilities(
            features=features, formats=(int(PasidFormat.INTEL_VTD),),
            pasid_bits=cfg.pasid_bits,
            input_address_widths=(48, 57) if cfg.fl5lp else (48,),
            output_address_width=cfg.mgaw, page_sizes=sizes, cache_cells=SUPPORTED_CELLS,
            failure_reporting={"cache_invalidate": FailureReport.NONE,
                               "sva_unbind_gpasid": FailureReport.NONE,
                               "free_pasid": FailureReport.NONE},
            profiles=("linux-5.10", "strict"))

    @hookimpl
    def iommu_capabilities(self) -> Capabilities:
        return self.capabilities

    @hookimpl
    def iommu_nesting_info(self, domain: Domain) -> NestingInfo:
        if not domain.nesting:
            raise UAPIError(errno.ENODEV, "nesting_info: domain is not in nesting mode",
                            rule="vtd.nesting_info.not_nesting")
        vtd = NestingInfoVtd(cap_reg=self.cap & _FL_CAP_MASK,
                             ecap_reg=self.ecap & _NESTING_ECAP_MASK)
        return NestingInfo(argsz=NestingInfo.SIZE, format=int(PasidFormat.INTEL_VTD),
                           features=int(NestingFeature.BIND_PGTBL | NestingFeature.CACHE_INVLD),
                           addr_width=domain.data.gaw, pasid_bits=self.cfg.pasid_bits,
                           vendor=NestingInfoVendor(vtd=vtd))

    @hookimpl
    def iommu_guest_formats(self) -> Sequence[GuestFormat]:
        return (VTD_GUEST,) if self.capabilities.features & Feature.BIND_PGTBL else ()

    # -- devices and domains -------------------------------------------------------------------

    @hookimpl
    def iommu_device_add(self, dev: Device) -> None:
        if dev.atc is not None:
            self.devtlb.attach(dev.sid, dev.atc)

    @hookimpl
    def iommu_device_remove(self, dev: Device) -> None:
        self.devtlb.detach(dev.sid)

    @hookimpl
    def iommu_domain_alloc(self, domain: Domain) -> None:
        did = next((d for d in range(1, self.cfg.domains) if d not in self._dids), None)
        if did is None:
            raise UAPIError(errno.ENOSPC, f"domain_alloc: all {self.cfg.domains - 1} domain "
                            "ids are in use (DID 0 is reserved)", rule="vtd.did-exhausted")
        data = domain.data = VtdDomain(did, self.cfg, self.aw, self.memory)
        data.bind_queue(self.queue)
        data.bind_host_paths(partial(self._flush_with_devtlbs, domain))
        domain.map_one, domain.unmap_one = data.map, data.unmap  # the façade's one-page paths
        self._dids.add(did)

    @hookimpl
    def iommu_domain_free(self, domain: Domain) -> None:
        data: VtdDomain = domain.data
        data.release()
        self._dids.discard(data.did)

    @hookimpl
    def iommu_domain_set_nesting(self, domain: Domain) -> None:
        if not (self.cfg.smts and self.cfg.nest):
            raise UAPIError(errno.ENODEV, "set_nesting: the unit lacks scalable mode or nested "
                            "translation (ECAP.SMTS, ECAP.NEST)", rule="vtd.nesting.unsupported")
        if domain.devices:
            raise UAPIError(errno.ENODEV, "set_nesting: devices are already attached",
                            rule="vtd.nesting.attached")
        domain.data.nesting = True

    @hookimpl
    def iommu_attach_dev(self, domain: Domain, dev: Device) -> None:
        data: VtdDomain = domain.data
        cfg = self.cfg
        dte = dev.ats and cfg.dt
        # A PRI function needs ATS: PRE without DTE is an invalid context entry (0x43).
        pre = dev.pri and cfg.prs and dte
        self.tables.setup_device(dev.sid, pdts=_pdts(dev.max_pasids, cfg.pasid_bits),
                                 dte=dte, pre=pre, rid_pasid=RID_PASID)
        self.tables.set_pasid(dev.sid, RID_PASID, second_level_entry(
            cfg, did=data.did, slptptr=data.pt.root, aw=data.aw))
        if cfg.cm:  # hardware that caches not-present entries caches them under DID 0
            self.run([ContextCacheInv(G=ContextCacheGranularity.DEVICE, DID=0, SID=dev.sid),
                      _dsi(cfg, data.did),
                      PasidCacheInv(G=PasidCacheGranularity.PASID, DID=data.did,
                                    PASID=RID_PASID),
                      PasidIotlbInv(G=PasidIotlbGranularity.NON_GLOBAL, DID=data.did,
                                    PASID=RID_PASID)])
        data.atc_devices += bool(dte)

    @hookimpl
    def iommu_detach_dev(self, domain: Domain, dev: Device) -> None:
        data: VtdDomain = domain.data
        self._tear_down(dev, RID_PASID, data.did)
        self.tables.teardown_device(dev.sid)
        self.run([ContextCacheInv(G=ContextCacheGranularity.DEVICE, DID=data.did, SID=dev.sid),
                  _dsi(self.cfg, data.did)])
        data.atc_devices -= bool(dev.ats and self.cfg.dt)

    def _tear_down(self, dev: Device, pasid: int, did: int, *,
                   iotlb: Descriptor | None = None) -> None:
        """``intel_pasid_tear_down_entry``: clear the entry, flush PASID cache and PASID-IOTLB
        (or ``iotlb`` instead), and (without caching mode) the device TLB."""
        self.tables.clear_pasid(dev.sid, pasid)
        descs: list[Descriptor] = [
            PasidCacheInv(G=PasidCacheGranularity.PASID, DID=did, PASID=pasid),
            iotlb or PasidIotlbInv(G=PasidIotlbGranularity.NON_GLOBAL, DID=did, PASID=pasid)]
        target = self._devtlb_target(dev)
        if target is not None and not self.cfg.cm:
            if pasid == RID_PASID:
                addr, s = devtlb_size_encoding(0, WHOLE_SPACE_ORDER)
                descs.append(DevTlbInv(SID=dev.sid, PFSID_LO=dev.sid & 0xF,
                                       PFSID_HI=dev.sid >> 4, S=s, ADDR=addr))
            else:
                descs.append(target.pasid_descriptor(pasid, 0, WHOLE_SPACE_ORDER))
        self.run(descs)

    # -- guest PASID bind and unbind (d.1, d.2) ------------------------------------------------

    @hookimpl
    def iommu_sva_bind_gpasid(self, domain: Domain, dev: Device, data: GpasidBindData,
                              argsz: int, profile: str) -> None:
        assert self.iommu is not None
        check_bind(dev, domain, data, argsz, self.iommu.pasids, self.binds)
        entry = nested_entry_for(self.cfg, self.tables, domain, dev, data)
        self.install_nested(domain, dev, data.hpasid, entry)

    def install_nested(self, domain: Domain, dev: Device, hpasid: int, entry: PasidEntry) -> None:
        """Write the nested PASID entry of (dev, hpasid) over a non-present one and flush as
        ``intel_pasid_setup_nested`` does; the PASID is then bound to ``domain``."""
        self.tables.set_pasid(dev.sid, hpasid, entry)
        descs: list[Descriptor] = [
            PasidCacheInv(G=PasidCacheGranularity.PASID, DID=entry.DID, PASID=hpasid)]
        if self.cfg.cm:
            descs.append(PasidIotlbInv(G=PasidIotlbGranularity.NON_GLOBAL, DID=entry.DID,
                                       PASID=hpasid))
        self.run(descs)
        self.binds[(dev.sid, hpasid)] = domain
        self.bound_per_sid[dev.sid] = self.bound_per_sid.get(dev.sid, 0) + 1

    @hookimpl
    def iommu_sva_unbind_gpasid(self, domain: Domain, dev: Device, pasid: int) -> None:
        assert self.iommu is not None
        self.iommu.pasids.owner(pasid)      # EINVAL out of range, ENOENT not allocated
        self.remove_nested(domain, dev, pasid)

    def remove_nested(self, domain: Domain, dev: Device, pasid: int) -> None:
        """Tear down the bound PASID entry of (dev, pasid) as ``intel_svm_unbind_gpasid``
        does, and drain its page requests; nothing when it is not bound."""
        if self.binds.pop((dev.sid, pasid), None) is None:
            return
        left = self.bound_per_sid[dev.sid] - 1
        if left:
            self.bound_per_sid[dev.sid] = left
        else:
            del self.bound_per_sid[dev.sid]
        entry = self.tables.read_pasid(dev.sid, pasid)
        did = entry.DID if entry is not None else domain.data.did
        # The non-global PASID flush of 5.10 spares the PASID's global entries; a
        # domain-selective one drops them (no PASID-based descriptor reaches every global entry
        # of a PASID: page-selective ones stop at CAP.MAMV). See hazards.py.
        keeps = has_hazard(self._profile(), UNBIND_KEEPS_GLOBALS)
        self._tear_down(dev, pasid, did, iotlb=None if keeps else _dsi(self.cfg, did))
        self.prq.drain(dev.sid, pasid)

    # -- guest cache invalidation (d.3) --------------------------------------------------------

    @hookimpl
    def iommu_cache_invalidate(self, domain: Domain, dev: Device, info: CacheInvalidateInfo,
                               profile: str) -> None:
        if not dev.pci:
            raise UAPIError(errno.ENODEV, f"cache_invalidate: {dev!r} is not a PCI device",
                            rule="vtd.cache_invalidate.not_pci")
        data: VtdDomain = domain.data
        if not data.nesting:
            raise _einval(f"cache_invalidate: domain {domain.id} is not in nesting mode",
                          "vtd.cache_invalidate.not_nesting")
        if dev.domain is None:
            raise _einval(f"cache_invalidate: {dev!r} is not attached",
                          "vtd.cache_invalidate.not_attached")
        descs = guest_invalidation(info, did=data.did,
                                   devtlb=self._devtlb_target(dev) if dev.ats else None,
                                   mamv=self.cfg.mamv, profile=profile)
        if descs:
            self.queue.run(descs)  # a lost descriptor is not reported (qi_submit_sync)

    # -- page requests (d.4) -------------------------------------------------------------------

    @hookimpl
    def iommu_page_request(self, dev: Device, pasid: int | None, addr: int, access: int,
                           grpid: int, last: bool, private_data: tuple[int, int] | None
                           ) -> Fault:
        return self.prq.request(dev, pasid, addr, access, grpid, last, private_data)

    @hookimpl
    def iommu_page_response(self, dev: Device, fault: Fault, msg: PageResponse,
                            profile: str) -> None:
        self.prq.respond(dev, fault, msg, profile)

    # -- the data path -------------------------------------------------------------------------

    @hookimpl
    def iommu_translation_context(self, dev: Device, pasid: int | None, iova: int,
                                  access: int) -> VtdContext:
        try:
            resolved = self.tables.resolve(dev.sid, pasid, caches=self.caches)
        except VtdFault as vf:
            # the fault-recording registers take the address and access of the request that
            # met the bad configuration
            vf.addr, vf.access = iova, FaultPerm(access)
            raise self.faults.fault(vf) from None
        return build_context(self.cfg, self.memory, dev.sid, pasid, resolved, dev.atc,
                             self.faults, self.caches.fl_psc)


def _dsi(cfg: VtdConfig, did: int) -> IotlbInv:
    """Domain-selective IOTLB invalidation (with write/read draining where reported)."""
    return IotlbInv(G=IotlbGranularity.DOMAIN, DID=did, DW=cfg.dwd, DR=cfg.drd)


def _pdts(max_pasids: int, pasid_bits: int) -> int:
    """The PASID-directory size Linux gives a device (``intel_pasid_alloc_table`` and
    ``context_get_sm_pds``): a directory of at least one page covering its PASIDs."""
    max_pasid = min(max_pasids, 1 << pasid_bits)
    dir_bytes = max(4096, 1 << max(0, (max(max_pasid >> 3, 1) - 1).bit_length()))
    entries = dir_bytes * 8 >> 6
    return min(7, max(0, entries.bit_length() - 1 - 7))


@hookimpl
def iommu_register_backends(register: Any) -> None:
    """Register the ``vtd`` backend."""
    register(BackendSpec(name="vtd", factory=VtdBackend,
                         description="Intel VT-d, scalable mode: nested translation, queued "
                                     "invalidation, fault recording, page requests",
                         rules=VTD_TABLE))

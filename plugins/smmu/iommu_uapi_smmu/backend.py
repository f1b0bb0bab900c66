"""The ``smmuv3`` backend: one Arm SMMUv3 behind the iommu-uapi core, nested the way Eric
Auger's v15 series did it (reference kernel-uapi.md b.1, c.7, d.5).

The state is the hardware model (:class:`~.smmu.Smmu`) programmed by a host driver
(:class:`~.host.HostDriver`: stream table, command and event queues in memory). Each host domain
has a VMID and LPAE stage-2 tables; attaching a stream writes its STE (stage 2 only, or nested
once the guest's CD table is attached) and issues CFGI_STE and CMD_SYNC. The SMMU's TLB is the
core's IOTLB, tagged ``(VMID, ASID)``; its STE and CD caches are the model's configuration
caches, and a CFGI_* command also forgets the core's translation contexts built from what it
drops. Translation contexts (:mod:`.context`) walk straight in the model.

``sva_bind_gpasid`` does not exist on the SMMU: the hook is not implemented, so the core refuses
it (ENODEV) and negotiation never offers BIND_PGTBL. Capabilities follow the instance's profile:
``linux-5.10`` promises the domain-wide IOTLB invalidation alone (v15 refuses the PASID flag
and every cache but the IOTLB: the quirks ``smmu.quirk.pasid_flag_refused`` and
``smmu.quirk.iotlb_only`` of :data:`~.rules.SMMU_TABLE`), ``strict`` every cell the header
defines.

Configuration (``IOMMU("smmuv3", s2_granule=16384, s2_ias=40, ril=False, ...)``): the stage-2
granule and input size of every domain, and any :class:`~.idr.SmmuCaps` field.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Sequence
from typing import Any

from iommu_uapi import profiles
from iommu_uapi.device import Device, Domain
from iommu_uapi.errors import UAPIError
from iommu_uapi.features import CacheCell, Capabilities, FailureReport, Feature
from iommu_uapi.guest import GuestFormat
from iommu_uapi.hookspecs import hookimpl
from iommu_uapi.iommu import IOMMU
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.plugins import BackendSpec
from iommu_uapi.uapi import (
    CacheInvalidateInfo,
    Fault,
    NestingInfo,
    PageResponse,
    PasidTableConfig,
)
from iommu_uapi.uapi.consts import (
    IOMMU_PASID_FORMAT_SMMUV3,
    CacheType,
    InvGranularity,
    NestingFeature,
)

from .cmds import AtcInv, CfgiSte, Command, TlbiS2Ipa, TlbiS12Vmall
from .context import SmmuContext, build_context
from .domain import SmmuDomain, s2_geometry, stream_entry
from .guest import SMMU_GUEST, SMMU_SINGLE_CD_GUEST
from .host import HostDriver
from .idr import SmmuCaps, StallModel
from .iommufd import SmmuIommufd
from .issue import GuestInvalidations, prepare
from .nested import check_attach
from .pri_glue import page_request, page_response
from .rules import SMMU_TABLE
from .smmu import Smmu
from .ste import Ste

__all__ = ["SmmuBackend", "iommu_register_backends"]

_BACKEND_KEYS = frozenset({"s2_granule", "s2_ias"})
_CAPS_KEYS = frozenset(SmmuCaps.__struct_fields__)
_PAGE = 4096
_ATC_ALL = 52
_NONE: frozenset[int] = frozenset()

#: The cells executed on every valid record of a NESTED domain, and those a profile's quirk
#: refuses. v15 refuses a record with the PASID flag (ENOENT) and every cache but the IOTLB
#: (ENOENT): of the cells the header defines only the domain-wide IOTLB invalidation never fails.
_CELLS_STRICT = frozenset({
    CacheCell(CacheType.IOTLB, InvGranularity.DOMAIN),
    CacheCell(CacheType.IOTLB, InvGranularity.PASID),
    CacheCell(CacheType.IOTLB, InvGranularity.ADDR),
    CacheCell(CacheType.PASID, InvGranularity.DOMAIN),
    CacheCell(CacheType.PASID, InvGranularity.PASID),
})
_CELLS_ATS = frozenset({CacheCell(CacheType.DEV_IOTLB, InvGranularity.PASID),
                        CacheCell(CacheType.DEV_IOTLB, InvGranularity.ADDR)})
_CELLS_REFUSED = {
    "smmu.quirk.iotlb_only": frozenset(c for c in _CELLS_STRICT | _CELLS_ATS
                                       if c.cache != CacheType.IOTLB),
    "smmu.quirk.pasid_flag_refused": frozenset({CacheCell(CacheType.IOTLB, InvGranularity.PASID),
                                                CacheCell(CacheType.IOTLB, InvGranularity.ADDR)}),
}
#: How a failure of each operation reaches an SMMU guest: command errors on its own queue.
_FAILURES = {op: FailureReport.ERROR_INTERRUPT for op in (
    "cache_invalidate", "attach_pasid_table", "detach_pasid_table", "page_response")}


class SmmuBackend(SmmuIommufd):
    """One SMMUv3 (see the module docstring). ``memory`` is where its tables live."""

    name = "smmuv3"

    def __init__(self, memory: PhysicalMemory, **config: Any) -> None:
        unknown = sorted(set(config) - _BACKEND_KEYS - _CAPS_KEYS)
        if unknown:
            raise UAPIError(errno.EINVAL, "smmuv3: unknown configuration key(s) "
                            f"{', '.join(unknown)}",
                            rule="smmu.config-key")
        self.caps = SmmuCaps(**{k: v for k, v in config.items() if k in _CAPS_KEYS})
        granule = int(config.get("s2_granule", 4096))
        ias = int(config.get("s2_ias", 48))
        if granule not in self.caps.granules or not 32 <= ias <= self.caps.oas:
            raise UAPIError(errno.EINVAL, f"smmuv3: stage-2 granule {granule} / IPA size {ias} "
                            "not supported",
                            rule="smmu.config-key")
        self.geometry = s2_geometry(granule, ias)
        self.memory = memory
        self.smmu = Smmu(memory, self.caps)
        self.host = HostDriver(self.smmu, memory)
        self.iommu: IOMMU | None = None
        self._vmids: set[int] = set()
        #: ASIDs the SMMU used per (VMID, SubstreamID): what a PASID-selective flush reaches
        self.asids: dict[tuple[int, int], frozenset[int]] = {}
        self.profile: str = profiles.DEFAULT
        #: the guest's invalidations, prepared per distinct request
        self.invalidations = GuestInvalidations(self.host, self.caps.ril, self.asids)

    def __repr__(self) -> str:
        return f"SmmuBackend({self.caps!r})"

    # -- plumbing ------------------------------------------------------------------------------

    def issue(self, cmds: Iterable[Command]) -> bool:
        """Issue ``cmds`` and a CMD_SYNC; the core's contexts built from configuration a
        CFGI_* dropped are forgotten with it."""
        return prepare(self.host, cmds).issue(self.host, self.iommu)

    # -- life cycle and description -----------------------------------------------------------

    @hookimpl
    def iommu_instance_init(self, iommu: IOMMU) -> None:
        self.iommu = iommu
        self.profile = iommu.profile
        self.smmu.tlb.tlb = iommu.iotlb

    @hookimpl
    def iommu_capabilities(self) -> Capabilities:
        caps = self.caps
        profile = profiles.get(self.profile)
        features = Feature.SYSWIDE_PASID if caps.ssidsize else Feature(0)
        cells: frozenset[CacheCell] = frozenset()
        if caps.s1p and caps.s2p:
            features |= Feature.BIND_PASID_TABLE | Feature.CACHE_INVLD
            cells = _CELLS_STRICT | (_CELLS_ATS if caps.ats else frozenset())
            for quirk, refused in _CELLS_REFUSED.items():
                if profile.quirk(quirk):
                    cells -= refused
        if caps.pri or caps.stall_model == StallModel.STALL_AND_TERMINATE:
            features |= Feature.PAGE_REQUEST
        sizes = 0
        for block in self.geometry_sizes():
            sizes |= block
        return Capabilities(
            features=features, formats=(IOMMU_PASID_FORMAT_SMMUV3,),
            pasid_bits=caps.ssidsize, input_address_widths=(48,),
            output_address_width=caps.oas, page_sizes=sizes, cache_cells=cells,
            failure_reporting=dict(_FAILURES), profiles=(self.profile,))

    def geometry_sizes(self) -> tuple[int, ...]:
        """The stage-2 page and block sizes of the domains' granule."""
        g = self.geometry.granule
        shift = g.bit_length() - 1
        per = shift - 3
        return tuple(1 << (shift + per * n) for n in range(3 if g == 4096 else 2))

    @hookimpl
    def iommu_nesting_info(self, domain: Domain) -> NestingInfo:
        if not domain.nesting:
            raise UAPIError(errno.ENODEV, "nesting_info: domain is not in nesting mode",
                            rule="smmu.nesting_info.not_nesting")
        return NestingInfo(argsz=NestingInfo.SIZE, format=IOMMU_PASID_FORMAT_SMMUV3,
                           features=int(NestingFeature.CACHE_INVLD),
                           addr_width=domain.data.geometry.ias, pasid_bits=self.caps.ssidsize)

    @hookimpl
    def iommu_guest_formats(self) -> Sequence[GuestFormat]:
        if not (self.caps.s1p and self.caps.s2p):
            return ()
        if profiles.get(self.profile).quirk("smmu.quirk.single_cd"):
            return (SMMU_SINGLE_CD_GUEST,)
        # strict: a CD per SubstreamID when the SMMU has substreams, and the single CD
        return (SMMU_GUEST, SMMU_SINGLE_CD_GUEST) if self.caps.ssidsize else \
            (SMMU_SINGLE_CD_GUEST,)

    # -- devices and domains ------------------------------------------------------------------

    @hookimpl
    def iommu_device_add(self, dev: Device) -> None:
        if dev.atc is not None and self.caps.ats:
            self.smmu.pcie.atcs.attach(dev.sid, dev.atc)

    @hookimpl
    def iommu_device_remove(self, dev: Device) -> None:
        self.smmu.pcie.atcs.detach(dev.sid)

    @hookimpl
    def iommu_domain_alloc(self, domain: Domain) -> None:
        limit = 1 << (16 if self.caps.vmid16 else 8)
        vmid = next((v for v in range(1, limit) if v not in self._vmids), None)
        if vmid is None:
            raise UAPIError(errno.ENOSPC, "domain_alloc: every VMID is in use",
                            rule="smmu.vmid-exhausted")
        domain.data = SmmuDomain(vmid, self.memory, self.geometry, self.caps.oas)
        self._vmids.add(vmid)

    @hookimpl
    def iommu_domain_free(self, domain: Domain) -> None:
        data: SmmuDomain = domain.data
        self.issue([TlbiS12Vmall(VMID=data.vmid)])
        data.release()
        self._vmids.discard(data.vmid)
        for key in [k for k in self.asids if k[0] == data.vmid]:
            del self.asids[key]

    @hookimpl
    def iommu_domain_set_nesting(self, domain: Domain) -> None:
        if not (self.caps.s1p and self.caps.s2p):
            raise UAPIError(errno.ENODEV, "set_nesting: the SMMU lacks stage 1 or stage 2",
                            rule="smmu.nesting.unsupported")
        if domain.devices:
            raise UAPIError(errno.ENODEV, "set_nesting: devices are already attached",
                            rule="smmu.nesting.attached")
        domain.data.nesting = True

    def _install(self, domain: Domain, devices: Iterable[Device]) -> None:
        """Write the STE of each stream of ``domain`` and invalidate it (CFGI_STE, SYNC)."""
        data: SmmuDomain = domain.data
        cmds: list[Command] = []
        for dev in devices:
            self.host.write_ste(dev.sid, stream_entry(data, ats=dev.ats and self.caps.ats,
                                                      stall=self._stalls(dev), sid=dev.sid))
            cmds.append(CfgiSte(SID=dev.sid, Leaf=True))
        self.issue(cmds)

    def _stalls(self, dev: Device) -> bool:
        """A platform (non-PCI) device may stall its faulting transactions, when the SMMU
        offers stall-and-terminate (``arm_smmu_master.stall_enabled``); PCI functions use PRI."""
        return not dev.pci and self.caps.stall_model == StallModel.STALL_AND_TERMINATE

    @hookimpl
    def iommu_attach_dev(self, domain: Domain, dev: Device) -> None:
        domain.data.finalised = True
        self._install(domain, [dev])

    @hookimpl
    def iommu_detach_dev(self, domain: Domain, dev: Device) -> None:
        domain.data.streams.pop(dev.sid, None)
        self.host.write_ste(dev.sid, Ste())
        cmds: list[Command] = [CfgiSte(SID=dev.sid, Leaf=True)]
        if dev.ats and self.caps.ats:
            cmds.append(AtcInv(SID=dev.sid, Size=_ATC_ALL))
        self.issue(cmds)

    @hookimpl
    def iommu_map(self, domain: Domain, iova: int, paddr: int, size: int, prot: int) -> None:
        domain.data.map(iova, paddr, size, prot)

    @hookimpl
    def iommu_unmap(self, domain: Domain, iova: int, size: int) -> int:
        data: SmmuDomain = domain.data
        unmapped = data.unmap(iova, size)
        if unmapped:
            # Nested entries are held by guest VA: no IPA names them, so a nested domain drops
            # the whole VMID; a stage-2 domain the IPA range.
            cmds: list[Command] = ([TlbiS12Vmall(VMID=data.vmid)] if data.guest_stage1
                                   else _s2_ipa(data.vmid, iova, unmapped))
            cmds += [AtcInv(SID=d.sid, Size=_ATC_ALL) for d in domain.devices
                     if d.ats and self.caps.ats]
            self.issue(cmds)
        return unmapped

    @hookimpl
    def iommu_iova_to_phys(self, domain: Domain, iova: int) -> int:
        return int(domain.data.pt.iova_to_phys(iova))

    # -- the guest PASID table (c.7, d.5) -------------------------------------------------------

    @hookimpl
    def iommu_attach_pasid_table(self, domain: Domain, cfg: PasidTableConfig,
                                 profile: str) -> None:
        data: SmmuDomain = domain.data
        data.s1, data.abort = check_attach(data, cfg, self.caps, profile)
        self._install(domain, domain.devices)
        self._flush_guest(data, domain)

    @hookimpl
    def iommu_detach_pasid_table(self, domain: Domain) -> None:
        data: SmmuDomain = domain.data
        if not data.nesting:
            return
        data.s1 = None
        data.abort = False
        self._install(domain, domain.devices)
        self._flush_guest(data, domain)

    def _flush_guest(self, data: SmmuDomain, domain: Domain) -> None:
        """The guest's translations go with its table: the VMID's entries and the ATCs."""
        cmds: list[Command] = [TlbiS12Vmall(VMID=data.vmid)]
        cmds += [AtcInv(SID=d.sid, Size=_ATC_ALL) for d in domain.devices
                 if d.ats and self.caps.ats]
        self.issue(cmds)
        for key in [k for k in self.asids if k[0] == data.vmid]:
            del self.asids[key]

    # -- guest cache invalidation (d.5) ---------------------------------------------------------

    @hookimpl
    def iommu_cache_invalidate(self, domain: Domain, dev: Device, info: CacheInvalidateInfo,
                               profile: str) -> None:
        data: SmmuDomain = domain.data
        if not data.nesting:
            raise UAPIError(errno.EINVAL, f"cache_invalidate: domain {domain.id} is not NESTED",
                            rule="smmu.inv.not_nested")
        if not data.finalised:
            raise UAPIError(errno.EINVAL, "cache_invalidate: no SMMU is bound to the domain yet",
                            rule="smmu.inv.not_finalised")
        atc = dev.sid if dev.ats and self.caps.ats else None
        self.invalidations.prepare(domain, dev, info, profile, atc).issue(self.host, self.iommu)

    # -- page requests ----------------------------------------------------------------------------

    @hookimpl
    def iommu_page_request(self, dev: Device, pasid: int | None, addr: int, access: int,
                           grpid: int, last: bool, private_data: tuple[int, int] | None
                           ) -> Fault:
        return page_request(self.smmu, self.host, dev, pasid, addr, access, grpid, last)

    @hookimpl
    def iommu_page_response(self, dev: Device, fault: Fault, msg: PageResponse,
                            profile: str) -> None:
        self.issue([page_response(self.smmu, dev, fault, msg)])

    # -- the data path -------------------------------------------------------------------------

    @hookimpl
    def iommu_translation_context(self, dev: Device, pasid: int | None, iova: int,
                                  access: int) -> SmmuContext:
        ctx = build_context(self.smmu, dev.sid, pasid, iova, access, dev.atc)
        if ctx.s1 is not None:
            key = (ctx.stream.vmid, pasid or 0)
            held = self.asids.get(key, _NONE)
            if ctx.asid not in held:
                self.asids[key] = held | {ctx.asid}
        return ctx


def _s2_ipa(vmid: int, iova: int, size: int) -> list[Command]:
    """TLBI_S2_IPA per 4 KiB page of the range, Leaf = 0: the unmap may free the tables it
    empties, so the walk-cache entries over the range go too."""
    return [TlbiS2Ipa(VMID=vmid, IPA=iova + off, Leaf=False) for off in range(0, size, _PAGE)]


@hookimpl
def iommu_register_backends(register: Any) -> None:
    """Register the ``smmuv3`` backend."""
    register(BackendSpec(name="smmuv3", factory=SmmuBackend,
                         description="Arm SMMUv3: nested stage 1 from a guest CD table over "
                                     "stage 2, command queue, events", rules=SMMU_TABLE))

"""The simple backend: one stage of translation per domain, an IOTLB, domain-wide flushes.

Each domain owns real page tables in the IOMMU's physical memory (the VT-d second-level format
from iommu_uapi.pgtable, 4 levels, 48-bit). Devices attach to one domain; DMA without PASID walks
its tables; the core IOTLB caches the leaves under the tag (domain id,). The only invalidation
it executes is IOTLB x DOMAIN, and that is all it declares.
"""

from __future__ import annotations

import errno
from typing import Any

from iommu_uapi import profiles
from iommu_uapi.device import Device, Domain
from iommu_uapi.features import CacheCell, Capabilities, FailureReport, Feature
from iommu_uapi.hookspecs import hookimpl
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable.common import WalkFault
from iommu_uapi.pgtable.vtd_sl import SLConfig, SLPageTable
from iommu_uapi.plugins import BackendSpec
from iommu_uapi.ruletable import Rule, RuleTable, fail
from iommu_uapi.tlb import TLBEntry
from iommu_uapi.translation import TranslationFault
from iommu_uapi.uapi import CacheInvalidateInfo, Fault, FaultUnrecoverable
from iommu_uapi.uapi.consts import (
    CacheType,
    FaultReason,
    FaultType,
    InvGranularity,
    UnrecoverableFlags,
)

DOMAIN_FLUSH = CacheCell(CacheType.IOTLB, InvGranularity.DOMAIN)

#: The backend's own refusals (section 7), handed over with its spec (section 8).
RULES = RuleTable("simple", [
    Rule("simple.config", "simple", errno.EINVAL, "the factory takes no configuration",
         "unknown configuration {keys}"),
    Rule("simple.cell", "cache_invalidate", errno.EINVAL,
         "a cache type x granularity cell the unit does not execute",
         "only {cell} is executed", profiles=(profiles.STRICT,)),
], title="simple backend rules")


class Context:
    """The data path of one device: walk the domain's tables (no hook call per DMA)."""

    def __init__(self, domain: Domain) -> None:
        self.tag = (domain.id,)          # IOTLB entries of this domain
        self.config_reads = 0            # configuration-structure reads made to build it
        self.atc = None                  # the device TLB to consult first, if ATS
        self._root = domain.data.root
        self._walker = domain.data.walker

    def walk(self, iova: int, access: int) -> tuple[TLBEntry, int]:
        try:
            res = self._walker.walk(self._root, iova, access)
        except WalkFault as wf:          # the walker's generic reason and native detail
            fault = Fault(type=FaultType.DMA_UNRECOV, event=FaultUnrecoverable(
                reason=wf.reason, flags=UnrecoverableFlags.ADDR_VALID, perm=access, addr=iova))
            raise TranslationFault(fault, wf, str(wf)) from None
        base = iova & -res.page_size
        return TLBEntry(base, res.page_size, res.oa & -res.page_size, res.perm), res.reads


class Backend:
    """One simple IOMMU instance."""

    name = "simple"

    def __init__(self, memory: PhysicalMemory, **config: Any) -> None:
        if config:
            raise fail("simple.config", keys=sorted(config))
        self.memory = memory
        self.cfg = SLConfig(aw=2, haw=48)
        self.iommu: Any = None

    @hookimpl
    def iommu_instance_init(self, iommu: Any) -> None:
        self.iommu = iommu

    @hookimpl
    def iommu_device_add(self, dev: Device) -> None:
        dev.data = None                  # not attached to a domain yet

    @hookimpl
    def iommu_device_remove(self, dev: Device) -> None:
        dev.data = None

    @hookimpl
    def iommu_domain_alloc(self, domain: Domain) -> None:
        domain.data = SLPageTable(self.cfg, self.memory)

    @hookimpl
    def iommu_domain_free(self, domain: Domain) -> None:
        self.iommu.iotlb.invalidate((domain.id,))
        self.memory.free(domain.data.root)

    @hookimpl
    def iommu_attach_dev(self, domain: Domain, dev: Device) -> None:
        dev.data = domain

    @hookimpl
    def iommu_detach_dev(self, domain: Domain, dev: Device) -> None:
        dev.data = None

    @hookimpl
    def iommu_map(self, domain: Domain, iova: int, paddr: int, size: int, prot: int) -> None:
        domain.data.map(iova, paddr, size, prot)

    @hookimpl
    def iommu_unmap(self, domain: Domain, iova: int, size: int) -> int:
        unmapped = int(domain.data.unmap(iova, size))
        self.iommu.iotlb.invalidate((domain.id,), iova, size)   # the host driver flushes
        return unmapped

    @hookimpl
    def iommu_iova_to_phys(self, domain: Domain, iova: int) -> int:
        return int(domain.data.iova_to_phys(iova))

    @hookimpl
    def iommu_translation_context(self, dev: Device, pasid: int | None) -> Context:
        if dev.data is None or pasid is not None:
            fault = Fault(type=FaultType.DMA_UNRECOV, event=FaultUnrecoverable(
                reason=FaultReason.PASID_INVALID if pasid is not None else
                FaultReason.UNKNOWN))
            raise TranslationFault(fault, None, "no translation for this request")
        return Context(dev.data)

    @hookimpl
    def iommu_capabilities(self) -> Capabilities:
        return Capabilities(features=Feature.CACHE_INVLD, output_address_width=48,
                            page_sizes=0x1000 | 0x20_0000 | 0x4000_0000,
                            cache_cells=frozenset({DOMAIN_FLUSH}),
                            failure_reporting={"cache_invalidate": FailureReport.NONE})

    @hookimpl
    def iommu_cache_invalidate(self, domain: Domain, dev: Device, info: CacheInvalidateInfo,
                               profile: str) -> None:
        if info.cache & CacheType.IOTLB and info.granularity == InvGranularity.DOMAIN:
            self.iommu.iotlb.invalidate((domain.id,))
            return
        if "simple.cell" in profiles.get(profile).rules:
            raise fail("simple.cell", cell="IOTLB x DOMAIN")


@hookimpl
def iommu_register_backends(register: Any) -> None:
    """Register the simple backend."""
    register(BackendSpec(name="simple", factory=Backend,
                         description="single-stage IOMMU (tutorial)", rules=RULES))

"""A small, test-only IOMMU backend that exercises every room of the core.

It is real in the ways the core needs: host domains have VT-d second-level tables in physical
memory; a bound guest PASID walks the guest's x86 first-level tables through them (nested, with
the exact descriptor reads); the IOTLB is the core's, tagged (domain id, PASID); a configuration
cache of binds makes a missing PASID-cache invalidation visible; invalidations act on the IOTLB
and on ATS devices' device TLBs; faults and page requests produce the generic records.

With ``pasid_table=True`` (the registered ``mini``; ``mini-table`` has no guest PASID bind,
only the table: ``bind=False``) it also takes a guest PASID table, SMMU style: each domain has
a 16-byte configuration entry in memory (:class:`DomainEntry`) saying whether stage 1
translates through the guest's table, is bypassed, or aborts every request; the guest's table
holds one :class:`GuestPasidEntry` per PASID, read through stage 2 when a context is built. It
has no other hardware structures and no native commands: those belong to real backends.

Its guest side (``iommu_guest_formats``): x86 4-level tables in guest memory, bound with
``sva_bind_gpasid`` (:class:`MiniBindFormat`) and, with a PASID table, entered through the
table (:class:`MiniTableFormat`).
"""

from __future__ import annotations

import errno
import functools
from collections.abc import Sequence
from enum import IntEnum
from typing import Any

from iommu_uapi import profiles
from iommu_uapi.caches.devtlb import ats_selection
from iommu_uapi.device import Device, Domain
from iommu_uapi.errors import UAPIError
from iommu_uapi.features import CacheCell, Capabilities, FailureReport, Feature
from iommu_uapi.guest import GuestEntry, GuestFormat, GuestTables
from iommu_uapi.hookspecs import hookimpl
from iommu_uapi.iommu import IOMMU
from iommu_uapi.memory import GuestMemory, PhysicalMemory
from iommu_uapi.pgtable.common import WalkFault
from iommu_uapi.pgtable.vtd_sl import SLConfig, SLPageTable
from iommu_uapi.pgtable.x86 import X86Config, X86PageTable, X86Walker
from iommu_uapi.plugins import BackendSpec
from iommu_uapi.ruletable import Rule, RuleTable, fail, register_table
from iommu_uapi.tlb import TLB, TLBEntry
from iommu_uapi.translation import TranslationFault
from iommu_uapi.uapi import (
    CacheInvalidateInfo,
    Fault,
    FaultPageRequest,
    FaultUnrecoverable,
    GpasidBindData,
    GpasidBindDataVtd,
    GpasidBindVendor,
    NestingInfo,
    PageResponse,
    PasidSmmuv3,
    PasidTableConfig,
    PasidTableVendor,
)
from iommu_uapi.uapi.consts import (
    IOMMU_PASID_FORMAT_SMMUV3,
    CacheType,
    FaultReason,
    FaultType,
    InvAddrFlags,
    InvGranularity,
    InvPasidFlags,
    PageRequestFlags,
    PasidConfig,
    UnrecoverableFlags,
)

#: The test backend's own refusal: a cell it does not execute, refused where the profile says.
MINI_TABLE = register_table(RuleTable("mini", [
    Rule("mini.cache_invalidate.cell", "cache_invalidate", errno.EINVAL,
         "a cache type x granularity cell the backend does not execute (linux-5.10 skips it)",
         "{cell} not supported", profiles=(profiles.STRICT,)),
], title="Test backend rules"))

#: Every cell the header's table allows.
HEADER_CELLS = frozenset({
    CacheCell(CacheType.IOTLB, InvGranularity.DOMAIN),
    CacheCell(CacheType.IOTLB, InvGranularity.PASID),
    CacheCell(CacheType.IOTLB, InvGranularity.ADDR),
    CacheCell(CacheType.DEV_IOTLB, InvGranularity.PASID),
    CacheCell(CacheType.DEV_IOTLB, InvGranularity.ADDR),
    CacheCell(CacheType.PASID, InvGranularity.DOMAIN),
    CacheCell(CacheType.PASID, InvGranularity.PASID),
})


class DomainEntry(IntEnum):
    """The per-domain configuration entry (two u64 words): word 0 holds the stage-1 ``config``
    (0 = no guest table, else ``PasidConfig``) and the guest table's GPA; word 1 its PASID bits.
    """

    CONFIG_MASK = 0x3
    TABLE_MASK = 0xFFFF_FFFF_F000
    SIZE = 16


class GuestPasidEntry(IntEnum):
    """One u64 per PASID in the guest's table: bit 0 valid, bits 47:12 the GPA of an x86
    4-level first-level table."""

    VALID = 1 << 0
    ROOT_MASK = 0xFFFF_FFFF_F000
    SIZE = 8


class MiniBindFormat(GuestFormat):
    """x86 4-level guest tables bound by ``sva_bind_gpasid`` (format 1, the bind record's only
    vendor layout)."""

    def __init__(self) -> None:
        super().__init__(1, GuestEntry.BIND_GPASID)

    def tables(self, guest: GuestMemory) -> GuestTables:
        return X86PageTable(X86Config(levels=4, haw=48), guest)

    def bind_data(self, hpasid: int, root: int) -> GpasidBindData:
        return GpasidBindData(argsz=GpasidBindData.SIZE, version=1, format=self.format,
                              addr_width=48, gpgd=root, hpasid=hpasid,
                              vendor=GpasidBindVendor(vtd=GpasidBindDataVtd()))


class MiniTableFormat(GuestFormat):
    """x86 4-level guest tables entered through a guest PASID table of
    :class:`GuestPasidEntry` words (one guest page: 512 PASIDs)."""

    PASID_BITS = 9

    def __init__(self) -> None:
        super().__init__(IOMMU_PASID_FORMAT_SMMUV3, GuestEntry.PASID_TABLE)

    def tables(self, guest: GuestMemory) -> GuestTables:
        return X86PageTable(X86Config(levels=4, haw=48), guest)

    def pasid_table(self, guest: GuestMemory) -> PasidTableConfig:
        return PasidTableConfig(argsz=PasidTableConfig.SIZE, version=1, base_ptr=guest.alloc(),
                                format=self.format, pasid_bits=self.PASID_BITS,
                                config=PasidConfig.TRANSLATE,
                                vendor_data=PasidTableVendor(PasidSmmuv3(version=1)))

    def write_entry(self, guest: GuestMemory, cfg: PasidTableConfig, pasid: int,
                    root: int | None) -> None:
        word = 0 if root is None else root & GuestPasidEntry.ROOT_MASK | GuestPasidEntry.VALID
        guest.write64(cfg.base_ptr + pasid * GuestPasidEntry.SIZE, word)


def _abort(pasid: int | None, reason: FaultReason, message: str) -> TranslationFault:
    flags = UnrecoverableFlags.PASID_VALID if pasid is not None else UnrecoverableFlags(0)
    fault = Fault(type=FaultType.DMA_UNRECOV, event=FaultUnrecoverable(
        reason=reason, flags=flags, pasid=pasid or 0))
    return TranslationFault(fault, None, message)


class MiniContext:
    """Translation context: walk stage 2 (no PASID) or stage 1 over stage 2 (bound PASID)."""

    def __init__(self, tag: tuple[Any, ...], walk: Any, atc: TLB | None, pasid: int | None,
                 config_reads: int) -> None:
        self.tag = tag
        self._walk = walk
        self.atc = atc
        self.pasid = pasid
        self.config_reads = config_reads

    def walk(self, iova: int, access: int) -> tuple[TLBEntry, int]:
        try:
            res = self._walk(iova, access)
        except WalkFault as wf:
            flags = UnrecoverableFlags.ADDR_VALID
            if self.pasid is not None:
                flags |= UnrecoverableFlags.PASID_VALID
            fault = Fault(type=FaultType.DMA_UNRECOV, event=FaultUnrecoverable(
                reason=wf.reason, flags=flags, pasid=self.pasid or 0, perm=access, addr=iova))
            raise TranslationFault(fault, wf, str(wf)) from None
        size = res.page_size
        base = iova & -size
        return TLBEntry(base, size, res.oa & -size, res.perm, res.global_), res.reads + res.s2_reads


class MiniBackend:
    """The test backend (see the module docstring). ``nest=False`` declares no nesting;
    ``pasid_table=True`` declares and implements guest PASID tables."""

    name = "mini"

    def __init__(self, memory: PhysicalMemory, *, nest: bool = True,
                 cells: frozenset[CacheCell] = HEADER_CELLS, pasid_table: bool = False,
                 bind: bool = True) -> None:
        self.memory = memory
        self.nest = nest
        self.bind = bind
        self.cells = cells
        self.pasid_table = pasid_table
        self.entries: dict[int, int] = {}  # domain id -> address of its DomainEntry
        self.iommu: IOMMU | None = None
        self.binds: dict[tuple[int, int], tuple[Domain, int, int]] = {}
        self.bind_cache: dict[tuple[int, int], tuple[Domain, int, int] | None] = {}
        self.responses: list[tuple[Device, PageResponse]] = []
        self.sl_cfg = SLConfig(aw=2, haw=48)

    def _iotlb(self) -> TLB:
        assert self.iommu is not None
        return self.iommu.iotlb

    @hookimpl
    def iommu_instance_init(self, iommu: IOMMU) -> None:
        self.iommu = iommu

    @hookimpl
    def iommu_capabilities(self) -> Capabilities:
        features = Feature.CACHE_INVLD | Feature.PAGE_REQUEST | Feature.SYSWIDE_PASID
        if self.nest and self.bind:
            features |= Feature.BIND_PGTBL
        if self.pasid_table:
            features |= Feature.BIND_PASID_TABLE
        return Capabilities(features=features, formats=(1,), pasid_bits=20,
                            input_address_widths=(48,), output_address_width=48,
                            page_sizes=0x1000 | 0x20_0000 | 0x4000_0000,
                            cache_cells=self.cells,
                            failure_reporting={"cache_invalidate": FailureReport.NONE})

    @hookimpl
    def iommu_guest_formats(self) -> Sequence[GuestFormat]:
        formats: list[GuestFormat] = []
        if self.nest and self.bind:
            formats.append(MiniBindFormat())
        if self.nest and self.pasid_table:
            formats.append(MiniTableFormat())
        return formats

    @hookimpl
    def iommu_device_add(self, dev: Device) -> None:
        dev.data = "mini"

    @hookimpl
    def iommu_device_remove(self, dev: Device) -> None:
        dev.data = None

    @hookimpl
    def iommu_domain_alloc(self, domain: Domain) -> None:
        domain.data = SLPageTable(self.sl_cfg, self.memory)
        if self.pasid_table:
            self.entries[domain.id] = self.memory.alloc()  # a page per entry: alloc's unit

    @hookimpl
    def iommu_domain_free(self, domain: Domain) -> None:
        self._iotlb().invalidate((domain.id,))
        self.memory.free(domain.data.root)
        if domain.id in self.entries:
            self.memory.free(self.entries.pop(domain.id))

    @hookimpl
    def iommu_domain_set_nesting(self, domain: Domain) -> None:
        if not self.nest or domain.devices:
            raise UAPIError(errno.ENODEV, "set_nesting: not supported or devices attached")

    @hookimpl
    def iommu_attach_dev(self, domain: Domain, dev: Device) -> None:
        pass

    @hookimpl
    def iommu_detach_dev(self, domain: Domain, dev: Device) -> None:
        self._iotlb().invalidate((domain.id,))

    @hookimpl
    def iommu_map(self, domain: Domain, iova: int, paddr: int, size: int, prot: int) -> None:
        domain.data.map(iova, paddr, size, prot)

    @hookimpl
    def iommu_unmap(self, domain: Domain, iova: int, size: int) -> int:
        unmapped = int(domain.data.unmap(iova, size))
        # The host driver flushes what it unmapped; nested entries derive from stage 2, so the
        # whole domain goes (as a VT-d DID-selective invalidation does).
        self._iotlb().invalidate((domain.id,))
        # and every ATS device's whole ATC (by PCIe, a request without PASID reaches every
        # PASID): a nested entry sits at a guest address no stage-2 range names
        for dev in domain.devices:
            if dev.atc is not None:
                dev.atc.invalidate(ats_selection(None))
        return unmapped

    @hookimpl
    def iommu_iova_to_phys(self, domain: Domain, iova: int) -> int:
        return int(domain.data.iova_to_phys(iova))

    @hookimpl
    def iommu_sva_bind_gpasid(self, domain: Domain, dev: Device, data: GpasidBindData,
                              argsz: int, profile: str) -> None:
        assert self.iommu is not None
        if not domain.nesting:
            raise UAPIError(errno.EINVAL, "bind: domain not in nesting mode")
        if data.format != 1:
            raise UAPIError(errno.EINVAL, f"bind: format {data.format} is not INTEL_VTD")
        if dev.domain is not domain:
            raise UAPIError(errno.EINVAL, "bind: device not attached to the domain")
        if self._table_config(domain):
            raise UAPIError(errno.EBUSY, "bind: the domain has a guest PASID table")
        if data.addr_width != 48:
            raise UAPIError(errno.EINVAL, f"bind: addr_width {data.addr_width} not 48")
        self.iommu.pasids.owner(data.hpasid)
        key = (dev.sid, data.hpasid)
        if key in self.binds:
            raise UAPIError(errno.EBUSY, f"bind: pasid {data.hpasid} already bound")
        self.binds[key] = (domain, data.gpgd, data.addr_width)
        self.bind_cache.pop(key, None)

    @hookimpl
    def iommu_sva_unbind_gpasid(self, domain: Domain, dev: Device, pasid: int) -> None:
        assert self.iommu is not None
        self.iommu.pasids.owner(pasid)
        if self.binds.pop((dev.sid, pasid), None) is not None:
            self.bind_cache.pop((dev.sid, pasid), None)
            self._iotlb().invalidate((domain.id, pasid))

    @hookimpl
    def iommu_cache_invalidate(self, domain: Domain, dev: Device, info: CacheInvalidateInfo,
                               profile: str) -> None:
        assert self.iommu is not None
        granu = info.granularity
        pasid: int | None = None
        addr = size = None
        if granu == InvGranularity.PASID and info.granu.pasid_info.flags & InvPasidFlags.PASID:
            pasid = info.granu.pasid_info.pasid
        if granu == InvGranularity.ADDR:
            ai = info.granu.addr_info
            if ai.flags & InvAddrFlags.PASID:
                pasid = ai.pasid
            addr, size = ai.addr, ai.granule_size * ai.nb_granules
        for bit in CacheType:
            if not info.cache & bit:
                continue
            if CacheCell(bit, InvGranularity(granu)) not in self.cells:
                if "mini.cache_invalidate.cell" in profiles.get(profile).rules:
                    raise fail("mini.cache_invalidate.cell",
                               cell=f"{bit.name} x {InvGranularity(granu).name}")
                continue
            if bit == CacheType.PASID:
                self._invalidate_pasid_cache(domain, dev, pasid)
                continue
            tlb = self._iotlb() if bit == CacheType.IOTLB else dev.atc
            if tlb is None:
                continue
            prefix: tuple[Any, ...] = (domain.id,) if bit == CacheType.IOTLB else ()
            if pasid is not None:
                prefix = (*prefix, pasid) if prefix else (pasid,)
            tlb.invalidate(prefix, addr, size)

    def _invalidate_pasid_cache(self, domain: Domain, dev: Device, pasid: int | None) -> None:
        """Drop ``dev``'s cached configuration of ``pasid`` (None: of every PASID) and forget
        exactly the translation contexts built from it."""
        assert self.iommu is not None
        if self._table_config(domain):  # contexts read the guest table's entries
            gone = [p for p in self.iommu.contexts_of(dev.sid)
                    if p is not None and (pasid is None or p == pasid)]
        else:
            gone = [p for s, p in self.bind_cache if s == dev.sid and pasid in (None, p)]
            for p in gone:
                del self.bind_cache[(dev.sid, p)]
        self.iommu.forget_contexts(dev.sid, gone)

    # -- guest PASID table ----------------------------------------------------------------------

    def _table_config(self, domain: Domain) -> int:
        addr = self.entries.get(domain.id)
        return 0 if addr is None else self.memory.read64(addr) & DomainEntry.CONFIG_MASK

    @hookimpl
    def iommu_attach_pasid_table(self, domain: Domain, cfg: PasidTableConfig,
                                 profile: str) -> None:
        if not self.pasid_table:
            raise UAPIError(errno.ENODEV, "attach_pasid_table: no PASID-table support")
        if not domain.nesting:
            raise UAPIError(errno.EINVAL, "attach_pasid_table: domain not in nesting mode")
        if cfg.format != IOMMU_PASID_FORMAT_SMMUV3:
            raise UAPIError(errno.EINVAL, f"attach_pasid_table: format {cfg.format} unknown")
        if cfg.config == PasidConfig.TRANSLATE and (cfg.base_ptr & ~DomainEntry.TABLE_MASK or
                                                    cfg.pasid_bits > 20):
            raise UAPIError(errno.EINVAL, f"attach_pasid_table: table {cfg.base_ptr:#x} with "
                            f"{cfg.pasid_bits} PASID bits")
        if any(bound[0] is domain for bound in self.binds.values()):
            raise UAPIError(errno.EBUSY, "attach_pasid_table: guest PASIDs are bound")
        addr = self.entries[domain.id]
        base = cfg.base_ptr if cfg.config == PasidConfig.TRANSLATE else 0
        self.memory.write64(addr, base | cfg.config)
        self.memory.write64(addr + 8, cfg.pasid_bits)
        self._iotlb().invalidate((domain.id,))

    @hookimpl
    def iommu_detach_pasid_table(self, domain: Domain) -> None:
        addr = self.entries.get(domain.id)
        if addr is not None:
            self.memory.write64(addr, 0)
            self.memory.write64(addr + 8, 0)
        self._iotlb().invalidate((domain.id,))

    def _table_context(self, dev: Device, domain: Domain, pasid: int | None,
                       word0: int) -> MiniContext:
        """Requests of a device whose domain has a guest PASID table (config != 0)."""
        config = word0 & DomainEntry.CONFIG_MASK
        s2 = domain.data.walker
        if config == PasidConfig.ABORT:
            raise _abort(pasid, FaultReason.BAD_PASID_ENTRY, "stage 1 aborts")
        if pasid is None:  # substream-less requests bypass stage 1
            walk = lambda iova, access: s2.walk(domain.data.root, iova, access)  # noqa: E731
            return MiniContext((domain.id, None), walk, dev.atc, None, 1)
        bits = self.memory.read64(self.entries[domain.id] + 8)
        if config == PasidConfig.BYPASS or pasid >> bits:
            raise _abort(pasid, FaultReason.PASID_INVALID, f"pasid {pasid} outside the table")
        stage2 = domain.data.stage2()
        try:
            where = stage2((word0 & DomainEntry.TABLE_MASK) + pasid * GuestPasidEntry.SIZE, 1)
        except WalkFault:
            raise _abort(pasid, FaultReason.PASID_FETCH, "guest PASID table not mapped") from None
        entry = self.memory.read64(where.oa)
        if not entry & GuestPasidEntry.VALID:
            raise _abort(pasid, FaultReason.PASID_INVALID, f"pasid {pasid} entry not valid")
        fl = X86Walker(self.memory, X86Config(levels=4, haw=48))
        root = entry & GuestPasidEntry.ROOT_MASK
        walk = lambda iova, access: fl.walk(root, iova, access, stage2)  # noqa: E731
        return MiniContext((domain.id, pasid), walk, dev.atc, pasid, 2)

    @hookimpl
    def iommu_page_request(self, dev: Device, pasid: int | None, addr: int, access: int,
                           grpid: int, last: bool, private_data: tuple[int, int] | None
                           ) -> Fault:
        if not dev.pri:
            raise UAPIError(errno.EOPNOTSUPP, "page_request: device has no PRI")
        flags = PageRequestFlags(0)
        if pasid is not None:
            flags |= PageRequestFlags.PASID_VALID | PageRequestFlags.RESPONSE_NEEDS_PASID
        if last:
            flags |= PageRequestFlags.LAST_PAGE
        if private_data is not None:
            flags |= PageRequestFlags.PRIV_DATA
        return Fault(type=FaultType.PAGE_REQ, prm=FaultPageRequest(
            flags=flags, pasid=pasid or 0, grpid=grpid, perm=access, addr=addr,
            private_data=private_data or (0, 0)))

    @hookimpl
    def iommu_page_response(self, dev: Device, fault: Fault, msg: PageResponse,
                            profile: str) -> None:
        self.responses.append((dev, msg))

    @hookimpl
    def iommu_nesting_info(self, domain: Domain) -> NestingInfo:
        if not domain.nesting:
            raise UAPIError(errno.ENODEV, "nesting_info: domain not in nesting mode")
        return NestingInfo(argsz=NestingInfo.SIZE, format=1, features=3, addr_width=48,
                           pasid_bits=20)

    @hookimpl
    def iommu_translation_context(self, dev: Device, pasid: int | None) -> MiniContext:
        domain = dev.domain
        if domain is None:
            fault = Fault(type=FaultType.DMA_UNRECOV, event=FaultUnrecoverable(
                reason=FaultReason.BAD_PASID_ENTRY))
            raise TranslationFault(fault, None, f"{dev!r} is not attached")
        if domain.id in self.entries:
            word0 = self.memory.read64(self.entries[domain.id])
            if word0 & DomainEntry.CONFIG_MASK:
                return self._table_context(dev, domain, pasid, word0)
        s2 = domain.data.walker
        if pasid is None:
            walk = lambda iova, access: s2.walk(domain.data.root, iova, access)  # noqa: E731
            return MiniContext((domain.id, None), walk, dev.atc, None, 0)
        key = (dev.sid, pasid)
        reads = 0
        if key not in self.bind_cache:  # the configuration cache: filled on a miss
            self.bind_cache[key] = self.binds.get(key)
            reads = 1
        bound = self.bind_cache[key]
        if bound is None:
            fault = Fault(type=FaultType.DMA_UNRECOV, event=FaultUnrecoverable(
                reason=FaultReason.PASID_INVALID, flags=UnrecoverableFlags.PASID_VALID,
                pasid=pasid))
            raise TranslationFault(fault, None, f"pasid {pasid} not bound")
        bdomain, gpgd, _ = bound
        fl = X86Walker(self.memory, X86Config(levels=4, haw=48))
        stage2 = bdomain.data.stage2()
        walk = lambda iova, access: fl.walk(gpgd, iova, access, stage2)  # noqa: E731
        return MiniContext((bdomain.id, pasid), walk, dev.atc, pasid, reads)


@hookimpl
def iommu_register_backends(register: Any) -> None:
    """Register the test backend as ``mini``."""
    register(BackendSpec(name="mini", factory=functools.partial(MiniBackend, pasid_table=True),
                         description="test-only backend", rules=MINI_TABLE))


class table_plugin:
    """Registers ``mini-table``: the test backend whose guests enter only through a guest PASID
    table (no guest PASID bind)."""

    @staticmethod
    @hookimpl
    def iommu_register_backends(register: Any) -> None:
        """Register ``mini-table``."""
        register(BackendSpec(name="mini-table",
                             factory=functools.partial(MiniBackend, pasid_table=True, bind=False),
                             description="test-only backend, guest PASID tables only",
                             rules=MINI_TABLE))

"""Nested translation of a table-sharing domain (:mod:`.tables`): the guest's CD table and
LPAE stage-1 tables, walked over the domain's mappings as stage 2.

The CD is fetched with the core's SMMUv3 CD-table reader
(:class:`~iommu_uapi.pasid_tables.smmuv3.CdTableReader`) when the context of (endpoint, PASID)
is built, every table address translated by the stage 2 of :func:`stage2_of`; the stage-1 walk
is the core's :class:`~iommu_uapi.pgtable.lpae.LPAEWalker` with that stage 2. A fault on the way
is reported as the device reports every fault: a 24-byte record on the event queue (R_MAPPING,
R_UNKNOWN for a bad CD) and the generic ``iommu_fault`` with the PASID.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pasid_tables.smmuv3 import CdFetchError, CdTableReader, half_config
from iommu_uapi.pgtable.common import FaultKind, Stage2Translate, WalkFault, WalkResult
from iommu_uapi.pgtable.lpae import LPAEWalker
from iommu_uapi.tlb import TLB, TLBEntry
from iommu_uapi.translation import TranslationFault
from iommu_uapi.uapi import Fault, FaultUnrecoverable
from iommu_uapi.uapi.consts import FaultPerm, FaultReason, FaultType, UnrecoverableFlags

from .context import MappingContext
from .events import FaultFlags, FaultRecord
from .events import FaultReason as Reason
from .profiles import Quirk
from .tables import S1Dss, SharedTable
from .translate import _leaf

if TYPE_CHECKING:
    from .device import VirtioIommuDevice
    from .domains import Domain

__all__ = ["NestedContext", "nested_context", "stage2_of"]

_RWX: Final = int(FaultPerm.READ | FaultPerm.WRITE | FaultPerm.EXEC)
_ACCESS: Final = _RWX | int(FaultPerm.PRIV)
#: The output size of the guest's stage 1 (IPS capped to it).
S1_OAS: Final = 48


def stage2_of(domain: Domain) -> Stage2Translate:
    """The domain's mappings as a stage-2 translate function: the leaf of the mapping covering
    the IPA, or a stage-2 translation (no mapping) or permission fault."""
    mappings = domain.mappings

    def s2(ipa: int, access: int) -> WalkResult:
        mapping = mappings.find(ipa)
        if mapping is None:
            raise WalkFault(FaultKind.NOT_PRESENT, stage=2, level=3, addr=ipa, access=access,
                            message="no mapping of the domain covers it")
        leaf = _leaf(mapping, ipa)
        denied = access & _RWX & ~leaf.perm
        if denied:
            raise WalkFault(FaultKind.PERMISSION, stage=2, level=3, addr=ipa, access=access,
                            denied=denied, message="the mapping does not allow the access")
        return WalkResult(leaf.paddr + ipa - leaf.iova, leaf.size, leaf.perm, 3, 0)

    return s2


def _report(dev: VirtioIommuDevice, endpoint: int, pasid: int, iova: int, access: int,
            reason: FaultReason, why: str, *, rule: str) -> TranslationFault:
    """Report a nested fault (event record and generic fault with the PASID)."""
    native = Reason.UNKNOWN if rule == "virtio.dma.cd" else Reason.MAPPING
    record = FaultRecord(native, FaultFlags.ADDRESS, endpoint, iova)
    stop = dev.events.push(record.to_bytes(),
                           break_on_small=bool(dev.profile.quirk(
                               Quirk.ERRORS_BREAK_DEVICE)))
    if stop == "virtio.event.small_buffer":
        dev.broken = stop
    generic = Fault(type=FaultType.DMA_UNRECOV, event=FaultUnrecoverable(
        reason=reason, flags=UnrecoverableFlags.ADDR_VALID | UnrecoverableFlags.PASID_VALID,
        pasid=pasid, perm=access & _ACCESS, addr=iova))
    dev.fault_param(endpoint).report(generic)
    return TranslationFault(generic, record, f"[{rule}] endpoint {endpoint} PASID {pasid:#x}"
                                             f" at {iova:#x}: {why}")


class NestedContext:
    """Requests of ``endpoint`` with ``pasid`` on a table-sharing domain: the CD fetched at
    build time, the stage-1 walk per IOTLB miss, tagged ``(domain, PASID)``."""

    __slots__ = ("atc", "config_reads", "dev", "endpoint", "pasid", "s2", "tag", "walkers")

    def __init__(self, dev: VirtioIommuDevice, memory: PhysicalMemory, endpoint: int,
                 domain: Domain, table: SharedTable, pasid: int, iova: int,
                 access: int) -> None:
        self.dev = dev
        self.endpoint = endpoint
        self.pasid = pasid
        self.s2 = stage2_of(domain)
        self.tag: tuple[int, int] = (domain.id, pasid)
        self.atc: TLB | None = None
        reader = CdTableReader(memory, table.s1contextptr, table.s1cdmax, table.s1fmt, self.s2)
        try:
            fetch = reader.fetch(pasid)
        except CdFetchError as err:
            reason = FaultReason.PASID_INVALID if err.walk is None and err.fetch_addr is None \
                else FaultReason.PASID_FETCH
            raise _report(dev, endpoint, pasid, iova, access, reason, str(err),
                          rule="virtio.dma.cd") from None
        cd = fetch.cd
        self.config_reads = fetch.config_reads + fetch.s2_reads
        if not cd.V or not cd.AA64:
            raise _report(dev, endpoint, pasid, iova, access, FaultReason.BAD_PASID_ENTRY,
                          "CD not valid (V = 0 or AArch32)", rule="virtio.dma.cd")
        #: by VA half: (TTBx, walker), None when the half is disabled or its TGx reserved
        self.walkers: list[tuple[int, LPAEWalker] | None] = []
        for n in (0, 1):
            _, granule, epd, ttb = cd.half(n)
            if epd or granule is None:
                self.walkers.append(None)
                continue
            self.walkers.append((ttb, LPAEWalker(memory, half_config(cd, n, oas=S1_OAS))))

    def walk(self, iova: int, access: int, /) -> tuple[TLBEntry, int]:
        """Walk stage 1 over stage 2; the leaf (both stages' smaller page) and the reads."""
        half = self.walkers[iova >> 55 & 1]
        if half is None:
            raise _report(self.dev, self.endpoint, self.pasid, iova, access,
                          FaultReason.OOR_ADDRESS, "VA half disabled (EPDx)",
                          rule="virtio.dma.walk")
        ttb, walker = half
        try:
            r = walker.walk(ttb, iova, access, self.s2)
        except WalkFault as fault:
            raise _report(self.dev, self.endpoint, self.pasid, iova, access, fault.reason,
                          str(fault), rule="virtio.dma.walk") from None
        base = iova & -r.page_size
        return TLBEntry(base, r.page_size, r.oa - (iova - base), r.perm), r.reads + r.s2_reads


def nested_context(dev: VirtioIommuDevice, memory: PhysicalMemory, endpoint: int,
                   domain: Domain, pasid: int | None, iova: int,
                   access: int) -> NestedContext | MappingContext | None:
    """The context of ``endpoint`` on table-sharing ``domain`` for ``pasid`` (None: without
    PASID, by the table's S1DSS); None when the domain shares no table."""
    table = domain.table
    if table is None:
        return None
    if pasid is None:
        if table.s1dss == S1Dss.BYPASS:
            return MappingContext(dev, endpoint, domain)
        if table.s1dss == S1Dss.TERMINATE:
            raise _report(dev, endpoint, 0, iova, access, FaultReason.PASID_INVALID,
                          "request without PASID and S1DSS terminate", rule="virtio.dma.cd")
        pasid = 0
    return NestedContext(dev, memory, endpoint, domain, table, pasid, iova, access)

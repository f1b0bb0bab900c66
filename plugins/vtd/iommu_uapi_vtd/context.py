"""The translation context of one (device, PASID): what the IOMMU uses on an IOTLB miss.

:func:`build_context` turns the entries :meth:`~.tables.ScalableTables.resolve` found (through
the context and PASID caches) into a :class:`VtdContext` for the core's data path: the IOTLB tag
of the PASID entry (``iotlb_tag(PGTT, DID, PASID)``), the device TLB when the context entry has
DTE, and a ``walk`` bound to the tables the PASID entry names:

=====================  ==========================================================================
PGTT                   walk
=====================  ==========================================================================
1 first level          x86 walker over FLPTPTR (an HPA)
2 second level         second-level walker over SLPTPTR
3 nested               x86 walker over FLPTPTR (a GPA), every table and the output translated by
                       the second-level tables at SLPTPTR; the leaf's permissions are FL & SL
4 pass-through         identity, 4 KiB at a time, below the host address width
=====================  ==========================================================================

A second-level context is a :class:`SecondLevelContext`: an IOTLB miss calls the walker's
compiled common case for the request's access directly (one call, no bound-method layers) and
takes the general path only where it returns None.
First-level and nested walks go through the first-level paging-structure cache
(:class:`~.fl_walk.CachedFirstLevel`): a walk under a cached table entry starts below it.

A walk fault, or a request the PASID entry does not enable (execute without ERE, supervisor
without SRE), is recorded by :class:`FaultSink` in the fault-recording registers (FPD honoured)
and raised as :class:`~iommu_uapi.translation.TranslationFault`. First-level accessed/dirty
updates are not written back (the walkers' ``update_ad`` stays off), so a cold nested walk makes
exactly the reads of the two table trees.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import partial

from iommu_uapi.caches.iotlb import Fields
from iommu_uapi.pgtable.common import FaultKind, TableMemory, WalkFault, WalkResult
from iommu_uapi.pgtable.compiled import FieldsFast
from iommu_uapi.pgtable.vtd_sl import SLConfig, SLWalker, stage2
from iommu_uapi.pgtable.x86 import X86Config, X86Walker
from iommu_uapi.tlb import TLB
from iommu_uapi.translation import TranslationFault
from iommu_uapi.uapi.consts import FaultPerm

from .caches import PagingStructureCache, iotlb_tag
from .faults import FaultRecorder, Frcd, to_uapi_fault
from .fl_walk import CachedFirstLevel
from .pasid_entry import PasidEntry, Pgtt
from .reasons import SmFaultReason, VtdFault
from .registers import VtdConfig
from .tables import Resolved
from .walk_reasons import sm_reason

__all__ = ["FaultSink", "SecondLevelContext", "VtdContext", "build_context", "sl_config"]

_EXEC, _PRIV = int(FaultPerm.EXEC), int(FaultPerm.PRIV)
_RWX = int(FaultPerm.READ | FaultPerm.WRITE | FaultPerm.EXEC)
#: The table-walker formats address fields up to bit 51; wider host widths walk as 52-bit.
_WALK_HAW_MAX = 52

Walk = Callable[[int, int], WalkResult]
#: A walk that returns the leaf as the IOTLB entry's fields and the descriptor reads.
FieldsWalk = Callable[[int, int], tuple[Fields, int]]


class FaultSink:
    """Primary fault recording plus what the host driver does with a record.

    ``record`` writes the fault into an FRCD (unless an FPD bit suppresses it); the host driver's
    fault handler then reads the record, reports the generic fault and clears F, so the
    registers never overflow while the driver keeps up. ``log`` keeps the records read.
    """

    def __init__(self, recorder: FaultRecorder) -> None:
        self.recorder = recorder
        self.log: deque[Frcd] = deque(maxlen=4096)

    def fault(self, vf: VtdFault, message: str = "") -> TranslationFault:
        """Record ``vf`` and return the translation fault to raise (its generic record is None
        when fault processing is disabled for it)."""
        rec = self.recorder
        slot = rec.index
        if not rec.record(vf):
            return TranslationFault(None, vf, message or str(vf))
        self.log.append(rec.read(slot))
        rec.clear(slot)
        return TranslationFault(to_uapi_fault(vf), vf, message or str(vf))


def sl_config(cfg: VtdConfig, aw: int, *, slee: bool = False, slade: bool = False) -> SLConfig:
    """The second-level walk/build configuration of AW ``aw`` under the capability set."""
    return SLConfig(aw=aw, haw=min(cfg.haw, _WALK_HAW_MAX), sllps=cfg.sllps, sc=cfg.sc,
                    dt=cfg.dt, slee=slee, slade=slade)


def _fl_config(cfg: VtdConfig, entry: PasidEntry) -> X86Config:
    return X86Config(levels=entry.fl_levels, haw=min(cfg.haw, _WALK_HAW_MAX), fl1gp=cfg.fl1gp,
                     wpe=entry.WPE, eafe=entry.EAFE)


class VtdContext:
    """The data path's view of one (device, PASID): ``tag``, ``config_reads``, ``atc`` and
    ``walk(iova, access) -> (the leaf's TLBEntry fields, descriptor reads)``."""

    __slots__ = ("_deny", "_fields", "_walk", "add_access", "atc", "config_reads", "entry", "fpd",
                 "pasid", "request_pasid", "sid", "sink", "tag")

    def __init__(self, sid: int, request_pasid: int | None, resolved: Resolved, walk: Walk,
                 atc: TLB | None, sink: FaultSink, add_access: int,
                 fields: FieldsWalk | None = None) -> None:
        entry = resolved.entry
        self.sid = sid
        self.request_pasid = request_pasid
        self.pasid = resolved.pasid
        self.entry = entry
        self.tag = iotlb_tag(entry.PGTT, entry.DID, resolved.pasid)
        self.config_reads = resolved.config_reads
        self.atc = atc
        self.fpd = resolved.fpd
        self.sink = sink
        self.add_access = add_access
        self._walk = walk
        # the same walk giving the entry's fields directly, where the walker offers it
        self._fields = fields
        # request kinds the PASID entry refuses: execute without ERE, supervisor without SRE
        self._deny = (0 if entry.ERE else _EXEC) | (0 if entry.SRE else _PRIV)

    def walk(self, iova: int, access: int) -> tuple[Fields, int]:
        """Translate ``iova`` for ``access``; raises ``TranslationFault`` (recorded)."""
        access |= self.add_access
        if access & self._deny:
            reason = (SmFaultReason.ERE_CLEAR if access & self._deny & _EXEC
                      else SmFaultReason.SRE_CLEAR)
            raise self._fault(reason, iova, access, "")
        try:
            if self._fields is not None:
                return self._fields(iova, access)
            res = self._walk(iova, access)
        except WalkFault as wf:
            raise self._fault(sm_reason(wf), iova, access, str(wf)) from None
        size = res.page_size
        # the entry's fields as a plain tuple (TLBEntry's order): the IOTLB stores it as is
        return ((iova & -size, size, res.oa & -size, res.perm, res.global_),
                res.reads + res.s2_reads)

    def _fault(self, reason: SmFaultReason, iova: int, access: int,
               message: str) -> TranslationFault:
        vf = VtdFault(reason, self.sid, self.request_pasid, iova, access=FaultPerm(access),
                      fpd=self.fpd)
        return self.sink.fault(vf, message)


#: Access values a context keeps a compiled walk for.
_ACCESSES = frozenset(range(16))


def _full_path(root: int, iova: int) -> None:
    """The fast walk of a request only the full path can serve: none."""
    return None


class SecondLevelContext(VtdContext):
    """A second-level context (PGTT 2): an IOTLB miss runs the walker's compiled common case
    (:meth:`~iommu_uapi.pgtable.vtd_sl.SLWalker.fields_walk`) over SLPTPTR first, and the checks
    and full walk of :meth:`VtdContext.walk` only where it returns None (a fault, a request the
    PASID entry refuses, an entry the common case does not cover, a memory without a page
    view): the same entries, reads and fault records."""

    __slots__ = ("_fast", "_root", "_sl")

    def __init__(self, sid: int, request_pasid: int | None, resolved: Resolved, sl: SLWalker,
                 atc: TLB | None, sink: FaultSink, add_access: int) -> None:
        root = resolved.entry.SLPTPTR
        super().__init__(sid, request_pasid, resolved, partial(sl.walk, root), atc, sink,
                         add_access, partial(sl.full_fields, root))
        self._root = root
        self._sl = sl
        # per request access, as first requested: the compiled walk to run (see _bind)
        self._fast: dict[int, FieldsFast] = {}

    def walk(self, iova: int, access: int) -> tuple[Fields, int]:
        """Translate ``iova`` for ``access``; raises ``TranslationFault`` (recorded)."""
        try:
            fast = self._fast[access]
        except KeyError:  # the first request with this access
            fast = self._bind(access)
        entry = fast(self._root, iova)
        if entry is None:
            return VtdContext.walk(self, iova, access)
        return entry

    def _bind(self, access: int) -> FieldsFast:
        """The compiled walk of requests with ``access`` (kept for the access values 0..15):
        the walker's for the access the tables see (with the context's added PRIV) where the
        PASID entry allows it, else none (the general path refuses the request)."""
        if access not in _ACCESSES:
            return _full_path
        seen = access | self.add_access
        fast = _full_path if seen & self._deny else self._sl.fields_walk(seen)
        self._fast[access] = fast
        return fast


def _pass_through(haw: int) -> Walk:
    limit = 1 << haw

    def walk(iova: int, access: int) -> WalkResult:
        if iova >= limit:
            raise WalkFault(FaultKind.INPUT_RANGE, stage=2, level=0, addr=iova, access=access,
                            message=f"pass-through input {iova:#x} beyond the host width")
        return WalkResult(iova, 0x1000, _RWX, 1, 0, 0, False)

    return walk


def _walk_of(cfg: VtdConfig, mem: TableMemory, entry: PasidEntry, pasid: int,
             fl_psc: PagingStructureCache | None) -> Walk:
    """The walk of the tables a first-level, nested or pass-through ``entry`` names."""
    pgtt = entry.PGTT
    if pgtt == Pgtt.PASS_THROUGH:
        return _pass_through(cfg.haw)
    fl = X86Walker(mem, _fl_config(cfg, entry))
    s2 = None if pgtt == Pgtt.FIRST_LEVEL else stage2(
        mem, entry.SLPTPTR, sl_config(cfg, entry.AW, slee=entry.SLEE))
    if fl_psc is not None:
        return CachedFirstLevel(fl, entry.FLPTPTR, s2, fl_psc, (entry.DID, pasid))
    return partial(fl.walk, entry.FLPTPTR, s2=s2)


def build_context(cfg: VtdConfig, mem: TableMemory, sid: int, pasid: int | None, resolved: Resolved,
                  atc: TLB | None, sink: FaultSink,
                  fl_psc: PagingStructureCache | None = None) -> VtdContext:
    """The translation context of requests from ``sid`` with ``pasid`` (None: without PASID,
    through RID_PASID) using the entries ``resolved`` found. ``atc`` is the device TLB to
    consult, when the context entry enables it (DTE); ``fl_psc`` the first-level
    paging-structure cache first-level and nested walks go through (None: none)."""
    add = _PRIV if pasid is None and resolved.context.RID_PRIV else 0
    entry = resolved.entry
    dev_tlb = atc if resolved.context.DTE else None
    if entry.PGTT == Pgtt.SECOND_LEVEL:
        sl = SLWalker(mem, sl_config(cfg, entry.AW, slee=entry.SLEE))
        return SecondLevelContext(sid, pasid, resolved, sl, dev_tlb, sink, add)
    walk = _walk_of(cfg, mem, entry, resolved.pasid, fl_psc)
    return VtdContext(sid, pasid, resolved, walk, dev_tlb, sink, add)

"""One SMMUv3: capability set, registers, memory, and the translation of incoming transactions.

:meth:`Smmu.translate` follows a transaction the way the SMMU does: SMMUEN and GBPA; the STE of
its StreamID (stream table, C_BAD_STREAMID, F_STE_FETCH, C_BAD_STE); the STE's Config (abort,
bypass, stage 1, stage 2, nested) and PRIVCFG/INSTCFG overrides; for stage 1 the CD selected by
the SubstreamID or, without one, by S1DSS (C_BAD_SUBSTREAMID, F_STREAM_DISABLED, F_CD_FETCH,
C_BAD_CD, stage-2 faults on the CD's IPA); the walks; and for a fault the event record, recorded
or not per CD.R / STE.S2R (configuration errors and aborts always), stalled per CD.S / STE.S2S,
aborted or RAZ/WI per CD.A. Recorded events are appended to :attr:`Smmu.events` and written
to the event queue when it is enabled.

The SMMU caches what it reads, in the core's caches: decoded STEs by StreamID and CDs by
(StreamID, SSID) in configuration caches until a CFGI command drops them, leaf translations in
its TLB (:mod:`.iotlb`) and the table descriptors its walks read in walk caches per stage and
granule (:mod:`.walkcache`) until a TLBI does. Software drives it through
:meth:`Smmu.write_register`: a write of CMDQ_PROD (or of GERRORN acknowledging a command-queue
error) makes it consume the command queue (:mod:`.cmdq`).
"""

from __future__ import annotations

from typing import Any

from msgspec.structs import replace

from iommu_uapi.caches import ConfigCache, TLBEntry
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable.common import RWX, FaultKind, WalkFault, WalkResult
from iommu_uapi.translation import Translation
from iommu_uapi.uapi.consts import FaultPerm

from .ats import PcieSide
from .cmd_codec import CommandDecoder
from .cmdq import consume
from .config import Stage1, StreamConfig
from .events import (
    TRANSLATION_FAULTS,
    AccessEvent,
    ConfigFault,
    Event,
    EventType,
    SmmuFault,
    walk_event_type,
)
from .idr import SmmuCaps
from .iotlb import S2_ONLY, SmmuTlb
from .irq import Interrupts
from .queues import CMDQ, EVENTQ, Queues
from .registers import Cr0, Gerror, Reg, RegisterFile, StrtabBase, StrtabBaseCfg
from .reports import Txn, config_event, walk_event
from .ste import Eats, S1Dss, SteConfig
from .strtab import StreamTable
from .walkcache import SmmuWalkCaches

__all__ = ["Smmu"]

_PRIV, _EXEC = int(FaultPerm.PRIV), int(FaultPerm.EXEC)
_SMMUEN = Cr0.LAYOUT["SMMUEN"].mask
_ALL = RWX | _PRIV
#: STE.PRIVCFG / INSTCFG: 0b10 forces the attribute off, 0b11 on; 0b0x uses the incoming one.
_FORCE = {0b10: False, 0b11: True}


class Smmu:
    """An SMMUv3 described by ``caps`` (default: the server part of :class:`SmmuCaps`) whose
    tables live in ``mem``. Software programs it through :attr:`regs`."""

    def __init__(self, mem: PhysicalMemory, caps: SmmuCaps | None = None) -> None:
        self.caps = caps or SmmuCaps()
        self.mem = mem
        self.regs = RegisterFile(self.caps)
        #: The command, event and PRI queues.
        #: The interrupts signalled (wired counts and MSIs).
        self.irqs = Interrupts(self.regs, mem)
        self.queues = Queues(self.regs, mem, lambda: self.irqs.signal("gerror"))
        #: Events recorded, oldest first.
        self.events: list[Event] = []
        #: Stalled transactions awaiting CMD_RESUME / CMD_STALL_TERM, by (StreamID, STAG).
        self.stalled: dict[tuple[int, int], Txn] = {}
        #: Outcome of each CMD_RESUME retry, oldest first (a Translation or the SmmuFault).
        self.resumed: list[Translation | SmmuFault] = []
        self.tlb: SmmuTlb = SmmuTlb()
        #: The stage-1 and stage-2 walk caches (:mod:`.walkcache`).
        self.walks: SmmuWalkCaches = SmmuWalkCaches()
        #: The endpoints' ATCs and page-request groups.
        self.pcie: PcieSide = PcieSide(self)
        #: Why the command queue last stopped (empty until an error).
        self.cmdq_error = ""
        self._next_stag = 0
        #: Decoded STEs by StreamID.
        self.ste_cache: ConfigCache[int, StreamConfig] = ConfigCache()
        #: Command images already decoded and checked, with their handlers (see
        #: :mod:`.cmdq`; the capability set is fixed for the SMMU's life).
        self.decoded_commands: dict[bytes, tuple[Any, Any]] = {}
        #: a batch's images (a tuple) -> their decoded commands and handlers (see run_batch)
        self.decoded_batches: dict[tuple[bytes, ...], list[tuple[Any, Any]]] = {}
        #: How the images fetched from the command queue are decoded and checked.
        self.decoder = CommandDecoder(self.caps)
        #: Decoded CDs by (StreamID, SSID), labelled ("sid", StreamID).
        self.cd_cache: ConfigCache[tuple[int, int], Stage1] = ConfigCache()

    # -- software's view ----------------------------------------------------------------------

    def write_register(self, offset: int, value: int) -> None:
        """An MMIO write: stored per :class:`~.registers.RegisterFile`; a new CMDQ_PROD, an
        enabled queue or an acknowledged error makes the SMMU consume commands."""
        self.regs.write(offset, value)
        reg = Reg(offset) if offset.__class__ is not Reg else offset
        self.queues.write(reg, value)
        if reg is Reg.GERRORN and self.queues.cmdq.stopped and \
                not self.regs.active_gerrors() & Gerror.CMDQ_ERR:
            self.queues.cmdq.acknowledge()
            self.queues.mirror(CMDQ)
        if reg in (Reg.CMDQ_PROD, Reg.CR0, Reg.GERRORN):
            consume(self)

    # -- configuration ------------------------------------------------------------------------

    def stream_table(self) -> StreamTable:
        """The stream table STRTAB_BASE / STRTAB_BASE_CFG describe."""
        base = StrtabBase.from_int(self.regs.read(Reg.STRTAB_BASE))
        cfg = StrtabBaseCfg.from_int(self.regs.read(Reg.STRTAB_BASE_CFG))
        return StreamTable(self.mem, base.ADDR, cfg, self.caps)

    def stream_config(self, sid: int) -> tuple[StreamConfig, int]:
        """The decoded STE of ``sid`` (from the STE cache, else fetched and cached) and the
        configuration reads that took; raises :class:`ConfigFault` (C_BAD_STREAMID,
        F_STE_FETCH, C_BAD_STE)."""
        stream = self.ste_cache.lookup(sid)
        if stream is not None:
            return stream, 0
        ste, reads = self.stream_table().fetch(sid)
        stream = StreamConfig(sid, ste, self.caps, self.mem, self.walks)
        self.ste_cache.fill(sid, stream)
        return stream, reads

    def stage1_config(self, stream: StreamConfig, index: int) -> tuple[Stage1, int]:
        """The CD ``index`` of ``stream`` (from the CD cache, else fetched and cached) and the
        configuration reads that took, stage-2 reads of a nested fetch included."""
        key = (stream.sid, index)
        s1 = self.cd_cache.lookup(key)
        if s1 is not None:
            return s1, 0
        s1, reads, s2_reads = stream.stage1(index)
        self.cd_cache.fill(key, s1, (("sid", stream.sid),))
        return s1, reads + s2_reads

    # -- configuration cache invalidation (CFGI_*) ------------------------------------------

    def invalidate_ste(self, sid: int) -> None:
        """CFGI_STE: drop the cached STE of ``sid`` and the CDs cached through it."""
        self.ste_cache.drop(sid)
        self.cd_cache.drop_label(("sid", sid))

    def invalidate_ste_range(self, sids: range) -> None:
        """CFGI_STE_RANGE / CFGI_ALL: drop the cached STEs (and their CDs) of ``sids``,
        visiting the range or the cache, whichever is smaller."""
        if len(self.ste_cache) < len(sids):
            self.ste_cache.drop(*[sid for sid in self.ste_cache if sid in sids])
        else:
            self.ste_cache.drop(*sids)
        if len(self.cd_cache) < len(sids):
            self.cd_cache.drop_where(lambda key, _: key[0] in sids)
        else:
            self.cd_cache.drop_label(*[("sid", sid) for sid in sids])

    def invalidate_cd(self, sid: int, ssid: int | None) -> None:
        """CFGI_CD (``ssid``) / CFGI_CD_ALL (None): drop cached CDs of ``sid``."""
        if ssid is None:
            self.cd_cache.drop_label(("sid", sid))
        else:
            self.cd_cache.drop((sid, ssid))

    # -- stalls (RESUME, STALL_TERM) ----------------------------------------------------------

    def resume(self, sid: int, stag: int, *, retry: bool, abort: bool) -> None:
        """CMD_RESUME: retry the stalled transaction (its outcome appended to
        :attr:`resumed`) or terminate it (abort or RAZ/WI: nothing more happens)."""
        txn = self.stalled.pop((sid, stag), None)
        if txn is None or not retry:
            return
        try:
            self.resumed.append(self.translate(txn.sid, txn.addr, txn.access, ssid=txn.ssid))
        except SmmuFault as fault:
            self.resumed.append(fault)

    def stall_term(self, sid: int) -> None:
        """CMD_STALL_TERM: terminate every stalled transaction of ``sid``."""
        for key in [k for k in self.stalled if k[0] == sid]:
            del self.stalled[key]

    # -- the data path ------------------------------------------------------------------------

    def translate(self, sid: int, addr: int, access: int = int(FaultPerm.READ), *,
                  ssid: int | None = None, ats: bool = False) -> Translation:
        """Translate one transaction of StreamID ``sid`` (SubstreamID ``ssid``) at ``addr``
        for ``access`` (``FaultPerm`` bits); ``ats``: an ATS translation request. Returns the
        :class:`~iommu_uapi.translation.Translation` or raises :class:`SmmuFault` carrying the
        event recorded (None when silent)."""
        regs = self.regs
        if not regs.value(Reg.CR0) & _SMMUEN:
            if regs.gbpa.ABORT:
                raise SmmuFault(None, "SMMUEN = 0 and GBPA.ABORT: transaction aborted")
            return Translation(addr, 4096, _ALL, 0, 0)
        txn = Txn(sid, ssid, addr, access)
        try:
            stream, reads = self.stream_config(sid)
        except ConfigFault as cf:
            raise self._config_fault(txn, cf) from None
        ste = stream.ste
        if ste.PRIVCFG & 2 or ste.INSTCFG & 2:
            access = self._overrides(ste.PRIVCFG, ste.INSTCFG, access)
            txn = Txn(sid, ssid, addr, access)
        if ats and ste.EATS == Eats.ABORT:
            raise self._record(AccessEvent(Type=EventType.F_BAD_ATS_TREQ, StreamID=sid,
                                           SSV=ssid is not None, SubstreamID=ssid or 0,
                                           InputAddr=addr), "ATS request but STE.EATS = 0")
        if stream.config == SteConfig.ABORT:
            raise SmmuFault(None, f"StreamID {sid:#x}: STE Config aborts")
        if ssid is not None and not (ste.stage1 and ste.S1CDMax and self.caps.ssidsize):
            raise self._config_fault(txn, ConfigFault(
                EventType.C_BAD_SUBSTREAMID, f"SubstreamID {ssid:#x} but the STE has no "
                "substreams"))
        if stream.config == SteConfig.BYPASS:
            return Translation(addr, 4096, _ALL, 0, reads)
        s1: Stage1 | None = None
        if ste.stage1:
            index = self._cd_index(txn, stream, ats)
            if index is not None:
                try:
                    s1, cd_reads = self.stage1_config(stream, index)
                except ConfigFault as cf:
                    raise self._config_fault(txn, cf, stream) from None
                reads += cd_reads
        if s1 is None and stream.s2 is None:  # S1DSS bypass on a stage-1-only stream
            return Translation(addr, 4096, _ALL, 0, reads)
        if s1 is None:
            vmid, asid, key = stream.vmid, S2_ONLY, addr
        else:
            vmid, asid, key = stream.vmid, s1.asid, s1.tlb_key(addr)
        hit = self.tlb.lookup(vmid, asid, key)
        if hit is not None and not (access & RWX & ~hit.perm) and (
                access & _PRIV or not hit.perm & _PRIV):
            self._post_checks(txn, s1, stream, hit.perm)
            return Translation(hit.paddr | (addr & (hit.size - 1)), hit.size, hit.perm, 0,
                               reads)
        try:
            if s1 is not None:
                res = self.walk_stage1(s1, stream, key, addr, access)
            else:
                assert stream.s2_walk is not None
                res = stream.s2_walk(addr, access)
        except WalkFault as fault:
            raise self._walk_fault(txn, fault, s1, stream) from None
        size = res.page_size
        self.tlb.fill(vmid, asid, key, TLBEntry(key & -size, size, res.oa & -size, res.perm,
                                                res.global_))
        self._post_checks(txn, s1, stream, res.perm)
        return Translation(res.oa, size, res.perm, res.reads + res.s2_reads, reads)

    def walk_stage1(self, s1: Stage1, stream: StreamConfig, key: int, addr: int,
                    access: int) -> WalkResult:
        """The stage-1 walk of ``addr`` (``key`` its TLB form) over the stream's stage 2,
        through the walk caches (uncached when CD.HA updates Access flags); raises
        :class:`WalkFault`."""
        half, va = s1.select(addr, access)
        walker = half.walker
        assert walker is not None
        if s1.ha:
            return walker.walk(half.root, va, access, stream.s2, True)
        return self.walks.walk_stage1(walker, half.root, (stream.vmid, s1.asid), key, va,
                                      access, stream.s2_walk)

    def _post_checks(self, txn: Txn, s1: Stage1 | None, stream: StreamConfig,
                     perm: int) -> None:
        """The CD's WXN/PAN on the permissions of a translation (walked or from the TLB)."""
        why = None if s1 is None else s1.denies(txn.access, perm)
        if why is not None:
            fault = WalkFault(FaultKind.PERMISSION, stage=1, level=3, addr=txn.addr,
                              access=txn.access, denied=txn.access & RWX,
                              message=why)
            raise self._walk_fault(txn, fault, s1, stream)

    def check_translated(self, sid: int, addr: int, access: int, *,
                         ssid: int | None = None) -> None:
        """A translated (ATS) transaction arriving from ``sid``: with CR0.ATSCHK the STE must
        allow ATS (else F_TRANSL_FORBIDDEN); without it the SMMU passes it unchecked."""
        if not self.regs.cr0.ATSCHK:
            return
        txn = Txn(sid, ssid, addr, access)
        try:
            stream, _ = self.stream_config(sid)
        except ConfigFault as cf:
            raise self._config_fault(txn, cf) from None
        if stream.ste.EATS == Eats.ABORT or stream.config == SteConfig.ABORT:
            raise self._record(AccessEvent(Type=EventType.F_TRANSL_FORBIDDEN, StreamID=sid,
                                           SSV=ssid is not None, SubstreamID=ssid or 0,
                                           RnW=not access & int(FaultPerm.WRITE),
                                           InputAddr=addr),
                               "translated transaction but STE.EATS = 0 (CR0.ATSCHK)")

    @staticmethod
    def _overrides(privcfg: int, instcfg: int, access: int) -> int:
        priv = _FORCE.get(privcfg)
        if priv is not None:
            access = access | _PRIV if priv else access & ~_PRIV
        inst = _FORCE.get(instcfg)
        if inst is not None:
            access = access | _EXEC if inst else access & ~_EXEC
        return access

    def _cd_index(self, txn: Txn, stream: StreamConfig, ats: bool) -> int | None:
        """The CD a stage-1 transaction uses (None: S1DSS bypasses stage 1). A stream the
        S1DSS disables terminates with F_STREAM_DISABLED; an ATS translation request there
        gets a Completer Abort and records nothing."""
        ste = stream.ste
        if not ste.S1CDMax:
            return 0
        dss = ste.s1dss
        if txn.ssid is None:
            if dss == S1Dss.TERMINATE:
                raise self._disabled(txn, ats, "traffic without SubstreamID and S1DSS = "
                                                "terminate")
            return 0 if dss == S1Dss.SSID0 else None
        if txn.ssid == 0 and dss == S1Dss.SSID0:
            raise self._disabled(txn, ats, "SubstreamID 0 while S1DSS = SSID0 gives CD 0 to "
                                           "traffic without SubstreamID")
        return txn.ssid

    def _disabled(self, txn: Txn, ats: bool, why: str) -> SmmuFault:
        if ats:
            return SmmuFault(None, f"ATS translation request: {why} (Completer Abort)")
        return self._config_fault(txn, ConfigFault(EventType.F_STREAM_DISABLED, why))

    # -- faults -------------------------------------------------------------------------------

    def _record(self, event: Event, message: str, *, abort: bool = True) -> SmmuFault:
        self.events.append(event)
        if self.queues.produce(EVENTQ, event):
            self.irqs.signal("eventq")
        return SmmuFault(event, message, abort=abort)

    def _config_fault(self, txn: Txn, cf: ConfigFault,
                      stream: StreamConfig | None = None) -> SmmuFault:
        event = config_event(txn, cf)
        if cf.walk is not None and stream is not None:
            return self._translation_fault(txn, event, str(cf), stall=stream.stall_s2,
                                           record=stream.record_s2, abort=True)
        if cf.type == EventType.C_BAD_STREAMID and not self.regs.cr2.RECINVSID:
            return SmmuFault(None, str(cf))
        return self._record(event, str(cf))

    def _walk_fault(self, txn: Txn, fault: WalkFault, s1: Stage1 | None,
                    stream: StreamConfig) -> SmmuFault:
        event = walk_event(txn, fault)
        if walk_event_type(fault) not in TRANSLATION_FAULTS:
            return self._record(event, str(fault))
        if fault.stage == 1 and s1 is not None:
            return self._translation_fault(txn, event, str(fault), stall=s1.stall,
                                           record=s1.record, abort=s1.abort)
        return self._translation_fault(txn, event, str(fault), stall=stream.stall_s2,
                                       record=stream.record_s2, abort=True)

    def _translation_fault(self, txn: Txn, event: Event, message: str, *, stall: bool,
                           record: bool, abort: bool) -> SmmuFault:
        """A translation-class fault: stalled (always recorded, Stall = 1 with a STAG),
        else recorded when R/S2R, terminated as abort or RAZ/WI."""
        if stall and isinstance(event, AccessEvent):
            stag = self._next_stag
            self._next_stag = (stag + 1) & 0xFFFF
            self.stalled[(txn.sid, stag)] = txn
            return self._record(replace(event, Stall=True, STAG=stag), message + " (stalled)")
        if record:
            return self._record(event, message, abort=abort)
        return SmmuFault(None, message, abort=abort)

"""The scalable-mode configuration tables in memory, and the IOMMU's lookup through them.

:class:`ScalableTables` owns a root table, the context tables, PASID directories and PASID
tables, all allocated from a :class:`~iommu_uapi.memory.PhysicalMemory` and written in their real
bit layout. Its *software* side (``setup_device``, ``set_pasid``, ``clear_pasid``, ...) is what a
driver does; its *hardware* side, :meth:`ScalableTables.resolve`, reads the entries back from
memory the way the IOMMU does for a request and raises :class:`~.reasons.VtdFault` with the
scalable-mode fault reason of the first problem it meets.
"""

from __future__ import annotations

import errno
from typing import NamedTuple

import msgspec

from iommu_uapi.errors import MemoryAccessError, UAPIError
from iommu_uapi.memory import PAGE_SIZE, PhysicalMemory
from iommu_uapi.uapi.consts import FaultPerm

from .caches import VtdCaches
from .context_entry import (
    CONTEXT_ENTRY_SIZE,
    CONTEXT_INDEX,
    ContextEntry,
    check_context_entry,
)
from .pasid_dir import (
    DIR_INDEX,
    PASID_DIR_ENTRY_SIZE,
    TABLE_INDEX,
    PasidDirEntry,
    check_pasid_dir_entry,
)
from .pasid_entry import PASID_ENTRY_SIZE, PasidEntry, check_pasid_entry
from .reasons import AddressType, SmFaultReason, VtdFault
from .registers import VtdConfig
from .root_entry import ROOT_ENTRY_SIZE, UPPER_DEVFN, RootEntry, Rtaddr, Ttm, check_root_entry

__all__ = ["EntryFault", "Resolved", "ScalableTables", "sid_of"]

#: Source id = bus << 8 | devfn.
SID_BUS = 8
_MAX_PDTS = 7


class EntryFault(Exception):
    """A configuration entry could not be used: ``reason``, and the FPD of the entry that
    faulted when it was readable."""

    reason: SmFaultReason
    fpd: bool

    def __init__(self, reason: SmFaultReason, fpd: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fpd = fpd


def sid_of(bus: int, devfn: int) -> int:
    """The PCI requester id of (bus, devfn)."""
    return (bus << SID_BUS) | devfn


class Resolved(NamedTuple):
    """What the IOMMU found for a request: the entries it will translate with.

    ``pasid`` is the PASID the translation is tagged with (RID_PASID for a request without
    PASID); ``config_reads`` counts the entries read from memory (root, context, directory, PASID
    entry: 4 without caches);
    ``fpd`` says whether a fault-processing-disable bit was set on the path.
    """

    context: ContextEntry
    entry: PasidEntry
    pasid: int
    config_reads: int
    fpd: bool


class ScalableTables:
    """Root, context, PASID-directory and PASID tables of one IOMMU in scalable mode."""

    mem: PhysicalMemory
    cfg: VtdConfig
    root: int

    def __init__(self, mem: PhysicalMemory, cfg: VtdConfig) -> None:
        self.mem = mem
        self.cfg = cfg
        self.root = mem.alloc(PAGE_SIZE)

    @property
    def rtaddr(self) -> int:
        """The RTADDR register value software latches with SRTP (scalable mode)."""
        return Rtaddr(TTM=Ttm.SCALABLE, RTA=self.root).to_int()

    # -- argument checks (software side) ---------------------------------------------------

    def _check_sid(self, sid: int) -> None:
        if not isinstance(sid, int) or not 0 <= sid <= 0xFFFF:
            raise UAPIError(errno.EINVAL, f"vtd tables: source id {sid!r} is not 16-bit",
                            rule="vtd.sid")

    def _check_pasid(self, pasid: int) -> None:
        if not isinstance(pasid, int) or not 0 <= pasid < (1 << self.cfg.pasid_bits):
            raise UAPIError(errno.EINVAL, f"vtd tables: PASID {pasid!r} outside the "
                            f"{self.cfg.pasid_bits}-bit PASID space", rule="vtd.pasid")

    # -- root and context entries -------------------------------------------------------------

    def _root_entry_addr(self, sid: int) -> int:
        return self.root + (sid >> SID_BUS) * ROOT_ENTRY_SIZE

    def _read(self, addr: int, size: int) -> int:
        return int.from_bytes(self.mem.read(addr, size), "little")

    def context_entry_addr(self, sid: int, *, create: bool = False) -> int | None:
        """Where the context entry of ``sid`` lives; with ``create`` the context table is
        allocated and linked into the root entry when missing."""
        self._check_sid(sid)
        devfn = sid & 0xFF
        raddr = self._root_entry_addr(sid)
        root = RootEntry.from_int(self._read(raddr, ROOT_ENTRY_SIZE))
        table = root.context_table(devfn)
        if table is None:
            if not create:
                return None
            table = self.mem.alloc(PAGE_SIZE)
            if devfn >= UPPER_DEVFN:
                root = msgspec.structs.replace(root, UP=True, UCTP=table)
            else:
                root = msgspec.structs.replace(root, LP=True, LCTP=table)
            self.mem.write(raddr, root.to_bytes())
        return table + CONTEXT_INDEX.get(devfn) * CONTEXT_ENTRY_SIZE

    def write_context(self, sid: int, entry: ContextEntry) -> int:
        """Write ``entry`` as the context entry of ``sid``; returns its address."""
        data = entry.to_bytes()
        addr = self.context_entry_addr(sid, create=True)
        assert addr is not None
        self.mem.write(addr, data)
        return addr

    def read_context(self, sid: int) -> ContextEntry | None:
        """The context entry of ``sid`` as stored, or None when no context table serves it."""
        addr = self.context_entry_addr(sid)
        return None if addr is None else ContextEntry.from_int(self._read(addr,
                                                                          CONTEXT_ENTRY_SIZE))

    def setup_device(self, sid: int, *, pdts: int = _MAX_PDTS, dte: bool = False,
                     pre: bool = False, fpd: bool = False, rid_pasid: int = 0,
                     rid_priv: bool = False) -> ContextEntry:
        """Give ``sid`` a PASID directory of 2^(pdts + 7) entries and a present context entry
        with PASIDE set (what the driver does when it attaches a device in scalable mode)."""
        self._check_sid(sid)
        if not isinstance(pdts, int) or not 0 <= pdts <= _MAX_PDTS:
            raise UAPIError(errno.EINVAL, f"vtd tables: PDTS {pdts!r} not in 0..7",
                            rule="vtd.pdts")
        old = self.read_context(sid)
        if old is not None and old.P:
            raise UAPIError(errno.EBUSY, f"vtd tables: sid {sid:#06x} already has a present "
                            "context entry", rule="vtd.context-busy")
        size = max(PAGE_SIZE, (1 << (pdts + 7)) * PASID_DIR_ENTRY_SIZE)
        entry = ContextEntry(P=True, FPD=fpd, DTE=dte, PASIDE=self.cfg.pasid, PRE=pre, PDTS=pdts,
                             RID_PASID=rid_pasid, RID_PRIV=rid_priv)
        entry.to_int()  # refuse values that do not fit before allocating anything
        directory = self.mem.alloc(size)
        entry = msgspec.structs.replace(entry, PASIDDIRPTR=directory)
        self.write_context(sid, entry)
        return entry

    def teardown_device(self, sid: int) -> None:
        """Free the device's PASID tables and directory and clear its context entry."""
        ctx = self.read_context(sid)
        if ctx is None or not ctx.P:
            raise UAPIError(errno.ENODEV, f"vtd tables: sid {sid:#06x} has no present context "
                            "entry", rule="vtd.context-missing")
        for i in range(ctx.dir_entries):
            d = PasidDirEntry.from_int(self.mem.read64(ctx.PASIDDIRPTR + i * PASID_DIR_ENTRY_SIZE))
            if d.P:
                self.mem.free(d.SMPTPTR)
        self.mem.free(ctx.PASIDDIRPTR)
        self.clear_context(sid)

    def clear_context(self, sid: int) -> None:
        """Zero the context entry of ``sid`` (its tables stay allocated)."""
        addr = self.context_entry_addr(sid)
        if addr is not None:
            self.mem.fill(addr, CONTEXT_ENTRY_SIZE, 0)

    # -- PASID directory and PASID entries ----------------------------------------------------

    def _device_dir(self, sid: int, pasid: int) -> tuple[ContextEntry, int]:
        self._check_pasid(pasid)
        ctx = self.read_context(sid)
        if ctx is None or not ctx.P:
            raise UAPIError(errno.ENODEV, f"vtd tables: sid {sid:#06x} has no present context "
                            "entry", rule="vtd.context-missing")
        index = DIR_INDEX.get(pasid)
        if index >= ctx.dir_entries:
            raise UAPIError(errno.EINVAL, f"vtd tables: PASID {pasid:#x} beyond the "
                            f"{ctx.dir_entries}-entry PASID directory of sid {sid:#06x}",
                            rule="vtd.pdts")
        return ctx, ctx.PASIDDIRPTR + index * PASID_DIR_ENTRY_SIZE

    def pasid_entry_addr(self, sid: int, pasid: int, *, create: bool = False) -> int | None:
        """Where the PASID entry of (sid, pasid) lives; with ``create`` the PASID table is
        allocated and linked into the directory when missing."""
        _, daddr = self._device_dir(sid, pasid)
        d = PasidDirEntry.from_int(self.mem.read64(daddr))
        if not d.P:
            if not create:
                return None
            d = PasidDirEntry(P=True, SMPTPTR=self.mem.alloc(PAGE_SIZE))
            self.mem.write64(daddr, d.to_int())
        return d.SMPTPTR + TABLE_INDEX.get(pasid) * PASID_ENTRY_SIZE

    def set_pasid(self, sid: int, pasid: int, entry: PasidEntry) -> int:
        """Write ``entry`` as the PASID entry of (sid, pasid); returns its address."""
        data = entry.to_bytes()
        addr = self.pasid_entry_addr(sid, pasid, create=True)
        assert addr is not None
        self.mem.write(addr, data)
        return addr

    def read_pasid(self, sid: int, pasid: int) -> PasidEntry | None:
        """The PASID entry of (sid, pasid) as stored, or None when no PASID table holds it."""
        addr = self.pasid_entry_addr(sid, pasid)
        return None if addr is None else PasidEntry.from_int(self._read(addr, PASID_ENTRY_SIZE))

    def clear_pasid(self, sid: int, pasid: int) -> None:
        """Zero the PASID entry of (sid, pasid) (the PASID table stays allocated)."""
        addr = self.pasid_entry_addr(sid, pasid)
        if addr is not None:
            self.mem.fill(addr, PASID_ENTRY_SIZE, 0)

    # -- the hardware lookup -----------------------------------------------------------------

    def fetch_context(self, sid: int) -> tuple[int, ContextEntry]:
        """Read the root and context entries of ``sid`` from memory as the IOMMU does; returns
        the raw context entry and its fields. Raises :class:`EntryFault`."""
        devfn = sid & 0xFF
        try:
            raw = self._read(self._root_entry_addr(sid), ROOT_ENTRY_SIZE)
        except MemoryAccessError:
            raise EntryFault(SmFaultReason.ROOT_ACCESS, False) from None
        reason = check_root_entry(raw, devfn, self.cfg)
        if reason is not None:
            raise EntryFault(reason, False)
        table = RootEntry.from_int(raw).context_table(devfn)
        assert table is not None
        try:
            raw = self._read(table + CONTEXT_INDEX.get(devfn) * CONTEXT_ENTRY_SIZE,
                             CONTEXT_ENTRY_SIZE)
        except MemoryAccessError:
            raise EntryFault(SmFaultReason.CONTEXT_ACCESS, False) from None
        return raw, ContextEntry.from_int(raw)

    def fetch_pasid(self, ctx: ContextEntry, pasid: int) -> tuple[int, PasidEntry, bool]:
        """Read the directory and PASID entries of ``pasid`` under context ``ctx``; returns the
        raw PASID entry, its fields and the directory entry's FPD. Raises :class:`EntryFault`
        for the directory and access errors (the PASID entry itself is checked by the caller).
        """
        try:
            raw = self.mem.read64(ctx.PASIDDIRPTR + DIR_INDEX.get(pasid) * PASID_DIR_ENTRY_SIZE)
        except MemoryAccessError:
            raise EntryFault(SmFaultReason.PASID_DIR_ACCESS, False) from None
        directory = PasidDirEntry.from_int(raw)
        reason = check_pasid_dir_entry(raw, self.cfg)
        if reason is not None:
            raise EntryFault(reason, directory.FPD)
        try:
            raw = self._read(directory.SMPTPTR + TABLE_INDEX.get(pasid) * PASID_ENTRY_SIZE,
                             PASID_ENTRY_SIZE)
        except MemoryAccessError:
            raise EntryFault(SmFaultReason.PASID_ACCESS, directory.FPD) from None
        return raw, PasidEntry.from_int(raw), directory.FPD

    def resolve(self, sid: int, pasid: int | None = None, *, addr: int = 0,
                access: FaultPerm = FaultPerm.READ, at: AddressType = AddressType.UNTRANSLATED,
                page_request: bool = False, caches: VtdCaches | None = None) -> Resolved:
        """Find the context and PASID entries for a request from ``sid`` (with ``pasid``, or
        without one), reading memory as the IOMMU does.

        With ``caches``, the context and PASID caches are consulted first and filled on a miss
        (under caching mode, not-present results are cached too); ``config_reads`` counts only
        the entries actually read from memory.

        Raises :class:`VtdFault` with the scalable-mode reason of the first problem, in the
        hardware's order: root entry, context entry, request vs. context enables, directory
        entry, PASID entry, request vs. PASID-entry enables. ``UAPIError(EINVAL)`` for a request
        the IOMMU cannot receive (source id not 16-bit, PASID beyond the supported width).
        """
        self._check_sid(sid)
        if pasid is not None:
            self._check_pasid(pasid)
        cfg = self.cfg
        fpd = False
        reads = 0

        def fault(reason: SmFaultReason) -> VtdFault:
            return VtdFault(reason, sid, pasid, addr, access=access, at=at, fpd=fpd)

        if not cfg.smts:
            raise fault(SmFaultReason.RTADDR_INVALID)
        # context entry: cache, else root + context entries from memory
        cached_ctx = caches.context.lookup(sid) if caches is not None else None
        if cached_ctx is not None:
            if cached_ctx.entry is None:
                raise fault(SmFaultReason.CONTEXT_NOT_PRESENT)
            ctx = cached_ctx.entry
            fpd = ctx.FPD
        else:
            try:
                raw, ctx = self.fetch_context(sid)
            except EntryFault as exc:
                reads += exc.reason != SmFaultReason.ROOT_ACCESS
                raise fault(exc.reason) from None
            reads += 2
            fpd = ctx.FPD
            reason = check_context_entry(raw, cfg)
            if reason is not None:
                if caches is not None and cfg.cm and reason == SmFaultReason.CONTEXT_NOT_PRESENT:
                    caches.context.fill(sid, None)
                raise fault(reason)
            if caches is not None:
                caches.context.fill(sid, ctx)
        # the request against the context's enables
        if at != AddressType.UNTRANSLATED and not ctx.DTE:
            raise fault(SmFaultReason.DTE_CLEAR)
        if page_request and not ctx.PRE:
            raise fault(SmFaultReason.PRE_CLEAR)
        if pasid is None:
            used = ctx.RID_PASID
            if used >= 1 << cfg.pasid_bits:
                raise fault(SmFaultReason.RID_PASID_INVALID)
            if ctx.RID_PRIV:
                access |= FaultPerm.PRIV
        else:
            if not ctx.PASIDE:
                raise fault(SmFaultReason.PASIDE_CLEAR)
            used = pasid
        if DIR_INDEX.get(used) >= ctx.dir_entries:
            raise fault(SmFaultReason.PASID_BEYOND_PDTS)
        # PASID entry: cache, else directory + PASID entry from memory
        cached = caches.pasid.lookup(sid, used) if caches is not None else None
        if cached is not None:
            fpd = fpd or cached.dir_fpd
            if cached.entry is None:
                raise fault(SmFaultReason.PASID_NOT_PRESENT)
            entry = cached.entry
            fpd = fpd or entry.FPD
        else:
            try:
                raw, entry, dir_fpd = self.fetch_pasid(ctx, used)
            except EntryFault as exc:
                reads += 1 + (exc.reason == SmFaultReason.PASID_ACCESS)
                fpd = fpd or exc.fpd
                raise fault(exc.reason) from None
            reads += 2
            fpd = fpd or dir_fpd or entry.FPD
            reason = check_pasid_entry(raw, cfg)
            if reason is not None:
                if caches is not None and cfg.cm and reason == SmFaultReason.PASID_NOT_PRESENT:
                    caches.pasid.fill(sid, used, None, dir_fpd)
                raise fault(reason)
            if caches is not None:
                caches.pasid.fill(sid, used, entry, dir_fpd)
                caches.context.note_did(sid, entry.DID)
        # the request against the PASID entry's enables
        if access & FaultPerm.EXEC and not entry.ERE:
            raise fault(SmFaultReason.ERE_CLEAR)
        if access & FaultPerm.PRIV and not entry.SRE:
            raise fault(SmFaultReason.SRE_CLEAR)
        return Resolved(ctx, entry, used, reads, fpd)

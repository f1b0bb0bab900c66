"""The command queue: the SMMU consumes 16-byte commands from memory and executes them.

Software writes commands at CMDQ_PROD and advances it; the SMMU reads from CMDQ_CONS up to PROD
(the command ring of :mod:`.queues`), executing each command on its caches (:data:`EXECUTE`).
An illegal command (CERROR_ILL) or an unreadable slot (CERROR_ABT) stops the ring with CONS
pointing at it, CMDQ_CONS.ERR set and GERROR.CMDQ_ERR toggled; nothing more is consumed until
software acknowledges by making GERRORN.CMDQ_ERR equal, after which consumption restarts at
CONS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from iommu_uapi.caches import Tag
from iommu_uapi.errors import MemoryAccessError

from .cmds import (
    AtcInv,
    CError,
    CfgiCd,
    CfgiCdAll,
    CfgiSte,
    CfgiSteRange,
    Command,
    CommandError,
    PrefetchAddr,
    PrefetchConfig,
    PriResp,
    Resume,
    StallTerm,
    Sync,
    SyncCs,
    TlbiEl2All,
    TlbiEl2Asid,
    TlbiEl2Va,
    TlbiEl2Vaa,
    TlbiNhAll,
    TlbiNhAsid,
    TlbiNhVa,
    TlbiNhVaa,
    TlbiNsnhAll,
    TlbiS2Ipa,
    TlbiS12Vmall,
    _RangeTlbi,
)
from .config import canonical_va
from .iotlb import EL2
from .queues import CMDQ
from .registers import Gerror

if TYPE_CHECKING:
    from .smmu import Smmu

__all__ = ["EXECUTE", "consume", "run_batch"]

_PAGE = 4096


def _vmid(smmu: Smmu, cmd: Any) -> int:
    """The command's VMID, matched only when stage 2 is implemented (else RES0, 0)."""
    return int(cmd.VMID) if smmu.caps.s2p else 0


def _range(cmd: _RangeTlbi, addr: int) -> tuple[int, int]:
    """``(start, size)`` of an address TLBI: one address (any leaf containing it) when TG = 0,
    else (NUM+1)·2^SCALE granules. A VA is matched with bits 63:56 taken from bit 55
    (:func:`~.config.canonical_va`), the form stage-1 entries are held in."""
    return (addr, _PAGE) if not cmd.TG else (addr, cmd.span)


def _va(smmu: Smmu, cmd: Any, tag: Tag, tlbi: Callable[..., int], *args: int) -> None:
    """An address TLBI of stage 1: the TLB's entries, and with Leaf = 0 the stage-1 walk-cache
    entries of ``tag`` covering the address (Leaf = 1 leaves the tables cached)."""
    start, size = _range(cmd, canonical_va(cmd.Addr))
    tlbi(*args, start, size)
    if not cmd.Leaf:
        smmu.walks.stage1(tag, start, size)


def _s2_ipa(smmu: Smmu, cmd: Any) -> None:
    """TLBI_S2_IPA: the stage-2-only TLB entries, and with Leaf = 0 the stage-2 walk-cache
    entries over the IPA."""
    vmid = _vmid(smmu, cmd)
    start, size = _range(cmd, cmd.IPA)
    smmu.tlb.s2_ipa(vmid, start, size)
    if not cmd.Leaf:
        smmu.walks.stage2_range(vmid, start, size)


def _nh_va(smmu: Smmu, cmd: TlbiNhVa) -> None:
    """TLBI_NH_VA: :func:`_va` of (VMID, ASID), the entries of the one page it names taken by
    one indexed lookup per tag (the guest's page-selective invalidation)."""
    vmid = cmd.VMID if smmu.caps.s2p else 0
    asid = cmd.ASID
    if cmd.TG:
        _va(smmu, cmd, (vmid, asid), smmu.tlb.nh_va, vmid, asid)
        return
    addr = canonical_va(cmd.Addr)
    smmu.tlb.nh_va_page(vmid, asid, addr)
    if not cmd.Leaf:
        smmu.walks.stage1((vmid, asid), addr, _PAGE)


def _sync(smmu: Smmu, cmd: Sync) -> None:
    if cmd.CS == SyncCs.IRQ and smmu.caps.msi and cmd.MSIAddr:
        smmu.mem.write32(cmd.MSIAddr, cmd.MSIData)


def _resume(smmu: Smmu, cmd: Resume) -> None:
    smmu.resume(cmd.SID, cmd.STAG, retry=cmd.Ac, abort=cmd.Ab)


def _nothing(smmu: Smmu, cmd: Command) -> None:
    """Prefetch hints: nothing is required of the SMMU."""


#: What each executable command does (the others are CERROR_ILL in :func:`check_command`).
EXECUTE: dict[type[Command], Callable[[Smmu, Any], object]] = {
    PrefetchConfig: _nothing,
    PrefetchAddr: _nothing,
    CfgiSte: lambda s, c: s.invalidate_ste(c.SID),
    CfgiSteRange: lambda s, c: s.invalidate_ste_range(c.sids),
    CfgiCd: lambda s, c: s.invalidate_cd(c.SID, c.SSID),
    CfgiCdAll: lambda s, c: s.invalidate_cd(c.SID, None),
    TlbiNhAll: lambda s, c: (s.tlb.nh_all(_vmid(s, c)), s.walks.stage1((_vmid(s, c),))),
    TlbiNhAsid: lambda s, c: (s.tlb.nh_asid(_vmid(s, c), c.ASID),
                              s.walks.stage1((_vmid(s, c), c.ASID))),
    TlbiNhVa: _nh_va,
    TlbiNhVaa: lambda s, c: _va(s, c, (_vmid(s, c),), s.tlb.nh_vaa, _vmid(s, c)),
    TlbiS12Vmall: lambda s, c: (s.tlb.s12_vmall(_vmid(s, c)), s.walks.vmall(_vmid(s, c))),
    TlbiS2Ipa: _s2_ipa,
    TlbiNsnhAll: lambda s, c: (s.tlb.nsnh_all(), s.walks.nsnh_all()),
    TlbiEl2All: lambda s, c: (s.tlb.el2_all(), s.walks.stage1((EL2,))),
    TlbiEl2Asid: lambda s, c: (s.tlb.el2_asid(c.ASID), s.walks.stage1((EL2, c.ASID))),
    TlbiEl2Va: lambda s, c: _va(s, c, (EL2, c.ASID), s.tlb.el2_va, c.ASID),
    TlbiEl2Vaa: lambda s, c: _va(s, c, (EL2,), s.tlb.el2_vaa),
    AtcInv: lambda s, c: s.pcie.atc_inv(c),
    PriResp: lambda s, c: s.pcie.pri_resp(c),
    Resume: _resume,
    StallTerm: lambda s, c: s.stall_term(c.SID),
    Sync: _sync,
}


_MEMO_LIMIT = 4096


def _decoded(smmu: Smmu, raw: bytes) -> tuple[Command, Callable[[Smmu, Any], object]]:
    """The command ``raw`` holds, checked against the SMMU's capabilities, and its handler:
    a pure function of the image under a fixed capability set, so it is memoised per SMMU (an
    illegal image raises every time and is never kept). A new image is decoded by the SMMU's
    :class:`~.cmd_codec.CommandDecoder` (an address-bearing one from its template)."""
    memo = smmu.decoded_commands
    found = memo.get(raw)
    if found is None:
        cmd = smmu.decoder.decode(raw)
        handler = EXECUTE.get(type(cmd))
        if handler is None:  # pragma: no cover - check_command refuses these
            raise CommandError(CError.ILL, f"CMD_{cmd.OPCODE.name} is not executable")
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        found = memo[raw] = (cmd, handler)
    return found


def run_batch(smmu: Smmu, images: Sequence[bytes]) -> bool:
    """Software's writes of ``images`` at CMDQ_PROD and its PROD update, and the SMMU's
    consumption of them, in one pass: for an enabled, idle queue (CONS = PROD, no error) and
    images that are all legal. Decoding is a pure function of an image, so every image is
    decoded before anything is written; nothing runs between the writes and the fetches, so
    each fetch is the image just written and is not read back; CONS catches up with PROD.
    False, with nothing done, otherwise (the caller takes the register path, where an illegal
    command stops the queue at its slot)."""
    queues = smmu.queues
    ring = queues.cmdq
    if ring.stopped or ring.prod != ring.cons or not queues.cmdq_enabled():
        return False
    batches = smmu.decoded_batches
    keep = images.__class__ is tuple  # a prepared batch's images: kept with their commands
    known = batches.get(images) if keep else None  # type: ignore[call-overload]
    if known is None:
        memo = smmu.decoded_commands
        try:
            known = [memo.get(image) or _decoded(smmu, image) for image in images]
        except CommandError:
            return False
        if keep:
            if len(batches) >= _MEMO_LIMIT:
                batches.clear()
            batches[images] = known  # type: ignore[index]
    if not ring.produce_all(images):
        return False
    for cmd, handler in known:  # legal commands: none can stop the queue
        handler(smmu, cmd)
    ring.cons = ring.prod
    queues.mirror_cmdq()
    return True


def consume(smmu: Smmu) -> int:
    """Execute the commands between CMDQ_CONS and CMDQ_PROD; returns how many ran. Does nothing
    while CR0.CMDQEN = 0 or the queue is stopped on an unacknowledged error."""
    queues = smmu.queues
    if not queues.enabled(CMDQ):
        return 0
    ring = queues.cmdq
    done = 0
    try:
        while (raw := ring.peek()) is not None:
            cmd, handler = _decoded(smmu, raw)
            handler(smmu, cmd)
            ring.advance()
            done += 1
    except (CommandError, MemoryAccessError) as exc:
        ring.stop(exc.cerror if isinstance(exc, CommandError) else CError.ABT)
        smmu.regs.toggle_gerror(Gerror.CMDQ_ERR)
        smmu.cmdq_error = str(exc)
        smmu.irqs.signal("gerror")
    queues.mirror(CMDQ)
    return done

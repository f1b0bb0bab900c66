"""What the backend issues, prepared: command lists as the host driver's batches with what
their CFGI_* commands make the core forget, and a guest's invalidations (d.5) prepared once
per distinct request.

A CFGI_* command drops configuration the core's translation contexts were built from, so the
contexts go with it (:data:`FORGET`). A guest invalidation's commands
(:func:`~.nested.guest_invalidation`) are a function of the record, the profile, the VMID, the
requesting ATS device, the ASIDs the SMMU holds for the PASID it names and (PASID cache only)
the domain's streams: :class:`GuestInvalidations` memoises the prepared batches on exactly
those, so a repeated request costs a lookup, and the queue still receives, fetches and executes
every command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from iommu_uapi.device import Device, Domain
from iommu_uapi.iommu import IOMMU
from iommu_uapi.uapi import CacheInvalidateInfo
from iommu_uapi.uapi.consts import CacheType

from .cmds import CfgiCd, CfgiCdAll, CfgiSte, Command
from .domain import SmmuDomain
from .host import Batch, HostDriver
from .nested import GuestScope, guest_invalidation, pasid_of

__all__ = ["FORGET", "GuestInvalidations", "Prepared", "prepare"]

_MEMO_LIMIT = 4096
_PASID_CACHE = int(CacheType.PASID)


def _forget_ste(iommu: IOMMU, cmd: Any) -> None:
    iommu.forget_contexts(cmd.SID)


def _forget_cd(iommu: IOMMU, cmd: Any) -> None:
    iommu.forget_contexts(cmd.SID, (cmd.SSID, None) if cmd.SSID == 0 else (cmd.SSID,))


#: CFGI_* -> the core contexts built from what it drops.
FORGET: dict[type, Callable[[IOMMU, Any], None]] = {
    CfgiSte: _forget_ste, CfgiCdAll: _forget_ste, CfgiCd: _forget_cd}


class Prepared(NamedTuple):
    """Commands ready to issue: the host driver's batches, and each CFGI_* among them with
    what it makes the core forget."""

    batches: tuple[Batch, ...]
    forgets: tuple[tuple[Callable[[IOMMU, Any], None], Command], ...]

    def issue(self, host: HostDriver, iommu: IOMMU | None) -> bool:
        """Submit the batches, then forget what their CFGI_* commands dropped; False when the
        SMMU refused a command."""
        ok = host.submit(self.batches)
        if iommu is not None:
            for forget, cmd in self.forgets:
                forget(iommu, cmd)
        return ok


def prepare(host: HostDriver, cmds: Iterable[Command]) -> Prepared:
    """``cmds`` prepared by ``host`` (a field that does not fit is refused here, before
    anything is written)."""
    cmds = cmds if isinstance(cmds, list) else list(cmds)
    return Prepared(host.prepare(cmds), tuple(
        [(forget, cmd) for cmd in cmds if (forget := FORGET.get(type(cmd))) is not None]))


class GuestInvalidations:
    """The guest's invalidations of one SMMU as prepared commands (see the module
    docstring); ``held`` is the backend's ASIDs per (VMID, SubstreamID), read when asked."""

    __slots__ = ("_memo", "held", "host", "ril")

    def __init__(self, host: HostDriver, ril: bool,
                 held: Mapping[tuple[int, int], frozenset[int]]) -> None:
        self.host = host
        self.ril = ril
        self.held = held
        self._memo: dict[tuple[object, ...], Prepared] = {}

    def prepare(self, domain: Domain, dev: Device, info: CacheInvalidateInfo, profile: str,
                atc: int | None) -> Prepared:
        """The commands of ``info`` from ``dev`` (``atc``: its StreamID when it has ATS) on
        ``domain``, prepared; raises the driver's refusals, having changed nothing."""
        data: SmmuDomain = domain.data
        vmid = data.vmid
        pasid = pasid_of(info)
        held = self.held.get((vmid, pasid)) if pasid is not None else None
        streams = tuple(d.sid for d in domain.devices) if info.cache & _PASID_CACHE else None
        key = (info, profile, vmid, atc, held, streams)
        found = self._memo.get(key)
        if found is None:
            scope = GuestScope(vmid, (d.sid for d in domain.devices), atc, self.ril, self.held)
            found = prepare(self.host, guest_invalidation(info, scope, profile))
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[key] = found
        return found

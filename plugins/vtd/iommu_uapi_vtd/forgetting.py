"""Which of the core's translation contexts a configuration-cache invalidation covers.

A translation context (:class:`~.context.VtdContext`) is the data path's copy of one device's
context entry and one PASID entry. An invalidation that covers either entry must make the next
DMA read the configuration again, whether or not the cache still held the entry, so the
contexts are forgotten by what the descriptor *selects*, at the cost of what it selects:

=======================================  ========================================================
invalidation                             contexts forgotten
=======================================  ========================================================
context cache, global                    every context
context cache, domain (DID)              every context of a device with a context of that DID
context cache, device (SID, FM)          every context of the (at most 8) SIDs selected
PASID cache, global                      every context
PASID cache, domain (DID)                the contexts whose PASID entry carries that DID
PASID cache, PASID (DID, PASID)          (device, PASID) contexts of that DID, and a context of
                                         requests without PASID whose RID_PASID it is
=======================================  ========================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .caches import FUNCTION_MASK_IGNORED
from .context import VtdContext

if TYPE_CHECKING:
    from iommu_uapi.datapath import DataPath

__all__ = ["ContextForgetting"]


class ContextForgetting:
    """Forgets, in the data path ``datapath`` (set once the façade exists), the contexts each
    invalidation of the configuration caches covers (see the module docstring)."""

    def __init__(self) -> None:
        self.datapath: DataPath | None = None
        #: RID_PASID value -> SIDs whose context without PASID went through it
        self._rid_users: dict[int, set[int]] = {}

    def built(self, ctx: VtdContext) -> None:
        """Note a context the backend built (one without PASID goes through RID_PASID)."""
        if ctx.request_pasid is None:
            self._rid_users.setdefault(ctx.pasid, set()).add(ctx.sid)

    # -- context cache -------------------------------------------------------------------------

    def context_global(self) -> None:
        """Context-cache global invalidation."""
        if self.datapath is not None:
            self.datapath.forget_all_contexts()
            self._rid_users.clear()

    def context_domain(self, did: int) -> None:
        """Context-cache domain-selective invalidation of ``did``."""
        dp = self.datapath
        if dp is None:
            return
        for sid in dp.sids_with_contexts():
            if any(_did(c) == did for c in dp.contexts_of(sid).values()):
                dp.forget_contexts(sid)

    def context_device(self, sid: int, fm: int) -> None:
        """Context-cache device-selective invalidation of ``sid`` under function mask ``fm``."""
        dp = self.datapath
        if dp is None:
            return
        ignored = FUNCTION_MASK_IGNORED[fm]
        base = sid & ~ignored & 0xFFFF
        for low in range(ignored + 1):
            if not low & ~ignored:
                dp.forget_contexts(base | low)

    # -- PASID cache ---------------------------------------------------------------------------

    def pasid_global(self) -> None:
        """PASID-cache global invalidation."""
        self.context_global()

    def pasid_domain(self, did: int) -> None:
        """PASID-cache domain-selective invalidation of ``did``."""
        dp = self.datapath
        if dp is None:
            return
        for sid in dp.sids_with_contexts():
            dp.forget_contexts(sid, [p for p, c in dp.contexts_of(sid).items() if _did(c) == did])

    def pasid_entry(self, did: int, pasid: int) -> None:
        """PASID-selective PASID-cache invalidation of (``did``, ``pasid``)."""
        dp = self.datapath
        if dp is None:
            return
        for sid in dp.sids_with_context(pasid):
            if _did(dp.context_of(sid, pasid)) == did:
                dp.forget_contexts(sid, (pasid,))
        users = self._rid_users.get(pasid)
        if users:
            self._forget_rid(dp, did, pasid, list(users))

    def _forget_rid(self, dp: DataPath, did: int, pasid: int, sids: Iterable[int]) -> None:
        users = self._rid_users[pasid]
        for sid in sids:
            ctx = dp.context_of(sid, None)
            if not isinstance(ctx, VtdContext) or ctx.pasid != pasid:
                users.discard(sid)  # forgotten meanwhile, or rebuilt through another entry
            elif did == ctx.entry.DID:
                dp.forget_contexts(sid, (None,))
                users.discard(sid)
        if not users:
            del self._rid_users[pasid]


def _did(ctx: object) -> int | None:
    return ctx.entry.DID if isinstance(ctx, VtdContext) else None

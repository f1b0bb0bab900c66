"""The PCIe side of the SMMU: endpoint ATCs filled by ATS translation requests, their
invalidation (CMD_ATC_INV), page requests into the PRI queue and their responses (CMD_PRI_RESP).

Each ATS-enabled StreamID has an ATC in the core's :class:`~iommu_uapi.caches.DeviceTlbs`, tagged
by PASID (None for requests without one). A translated access hits the ATC without reaching the
SMMU's tables, so a missing ATC_INV is visible as a stale hit. ATC_INV without SSV invalidates
the range in every PASID (a PCIe invalidation without a PASID prefix cannot spare any); with
SSV, that PASID's entries. (Completions here never mark an entry global, so ATC_INV.G has
nothing more to drop.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from iommu_uapi.caches import DeviceTlbs, TLBEntry
from iommu_uapi.pgtable.common import RWX
from iommu_uapi.translation import Translation

from .cmds import AtcInv, PriResp
from .pri import PageRequest
from .queues import PRIQ

if TYPE_CHECKING:
    from .smmu import Smmu

__all__ = ["PcieSide"]
#: ATC_INV.Size at or above which the whole ATC is invalidated.
SIZE_ALL = 52


class PcieSide:
    """ATCs and page-request groups of the endpoints behind one SMMU."""

    def __init__(self, smmu: Smmu) -> None:
        self.smmu = smmu
        self.atcs = DeviceTlbs()
        #: Page request groups awaiting a response: (StreamID, PASID or None, PRGI).
        self.pending: set[tuple[int, int | None, int]] = set()
        #: Responses delivered to endpoints, oldest first: (StreamID, PASID, PRGI, Resp).
        self.responses: list[tuple[int, int | None, int, int]] = []

    # -- ATS ----------------------------------------------------------------------------------

    def translate(self, sid: int, addr: int, access: int, *,
                  ssid: int | None = None) -> Translation:
        """An access of the endpoint: a translated transaction from its ATC when that holds the
        page (checked against the STE under CR0.ATSCHK), else an ATS translation request to the
        SMMU whose completion fills the ATC."""
        atc = self.atcs.get(sid)
        if atc is not None:
            entry = atc.lookup((ssid,), addr)
            if entry is not None and not access & RWX & ~entry.perm:
                self.smmu.check_translated(sid, addr, access, ssid=ssid)
                return Translation(entry.paddr | (addr & (entry.size - 1)), entry.size,
                                   entry.perm, 0, 0)
        t = self.smmu.translate(sid, addr, access, ssid=ssid, ats=True)
        size = t.page_size
        entry = TLBEntry(addr & -size, size, t.paddr & -size, t.perm, False)
        self.atcs.enable(sid).fill((ssid,), addr, entry)
        return t

    def atc_inv(self, cmd: AtcInv) -> None:
        """CMD_ATC_INV: drop the SID's ATC entries in 4 KiB·2^Size at Addr (all: Size >= 52)."""
        atc = self.atcs.get(cmd.SID)
        if atc is None:
            return
        if cmd.Size >= SIZE_ALL:
            addr, size = None, None
        else:
            size = 4096 << cmd.Size
            addr = cmd.Addr & -size
        if not cmd.SSV:
            atc.invalidate((), addr, size)
            return
        atc.invalidate((cmd.SSID,), addr, size)

    # -- PRI ----------------------------------------------------------------------------------

    def page_request(self, req: PageRequest) -> bool:
        """An endpoint's page request: written to the PRI queue (False when PRI is absent or
        the queue disabled or full, the request then lost); a Last request opens a group
        awaiting CMD_PRI_RESP."""
        smmu = self.smmu
        if not smmu.caps.pri or not smmu.queues.produce(PRIQ, req):
            return False
        smmu.irqs.signal("priq")
        if req.Last:
            self.pending.add((req.StreamID, req.SubstreamID if req.SSV else None, req.PRGI))
        return True

    def pri_resp(self, cmd: PriResp) -> None:
        """CMD_PRI_RESP: deliver the response to the endpoint and close its group."""
        pasid = cmd.SSID if cmd.SSV else None
        self.pending.discard((cmd.SID, pasid, cmd.PRGI))
        self.responses.append((cmd.SID, pasid, cmd.PRGI, cmd.Resp))

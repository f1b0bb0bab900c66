"""PRI-queue entries (16 bytes): the page requests ATS/PRI devices send through the SMMU.

Each entry is one PCIe page request: the StreamID and, when SSV, the SubstreamID (PASID) of the
function, the access wanted (READ/WRITE/EXEC/PRIV), the page address and the page request group
index (PRGI); Last marks the request that completes a group, the only one software answers with
CMD_PRI_RESP.
"""

from __future__ import annotations

from iommu_uapi.hw.bits import Field, bit

from .record import SmmuRecord

__all__ = ["PRI_ENTRY_SIZE", "PageRequest"]

PRI_ENTRY_SIZE = 16


class PageRequest(SmmuRecord, frozen=True, gc=False):
    """A PRI-queue entry."""

    BITS = 128
    LAYOUT = {
        "StreamID": Field(0, 32),
        "SubstreamID": Field(32, 20),
        "PRIV": bit(58),
        "EXEC": bit(59),
        "READ": bit(60),
        "WRITE": bit(61),
        "Last": bit(62),
        "SSV": bit(63),
        "PRGI": Field(64, 9),
        "Addr": Field(76, 52, 12),  # page address bits 63:12
    }
    StreamID: int = 0
    SubstreamID: int = 0
    PRIV: bool = False
    EXEC: bool = False
    READ: bool = False
    WRITE: bool = False
    Last: bool = False
    SSV: bool = False
    PRGI: int = 0
    Addr: int = 0

"""The scalable-mode context entry (256 bits; VT-d 3.x 9.4).

A scalable context table is 4 KiB: 128 entries of 32 bytes indexed by devfn & 0x7F. The entry
enables ATS, PASIDs and page requests for the device and points at its PASID directory.
"""

from __future__ import annotations

import functools

from .bits import Field, Record, bit
from .reasons import SmFaultReason
from .registers import VtdConfig

__all__ = [
    "CONTEXT_ENTRY_SIZE",
    "ContextEntry",
    "check_context_entry",
    "context_reserved_mask",
]

CONTEXT_ENTRY_SIZE = 32
#: Index of a devfn in its (lower or upper) context table.
CONTEXT_INDEX = Field(0, 7)


class ContextEntry(Record, frozen=True, gc=False):
    """A scalable-mode context entry."""

    BITS = 256
    LAYOUT = {
        "P": bit(0),                      # present
        "FPD": bit(1),                    # fault processing disable (qualified faults)
        "DTE": bit(2),                    # device-TLB (ATS) enable
        "PASIDE": bit(3),                 # requests with PASID enable
        "PRE": bit(4),                    # page request enable
        "PDTS": Field(9, 3),              # PASID directory has 2^(PDTS + 7) entries
        "PASIDDIRPTR": Field(12, 52, 12), # 4 KiB-aligned PASID directory address
        "RID_PASID": Field(64, 20),       # PASID used for requests without PASID
        "RID_PRIV": bit(84),              # privilege of requests without PASID
    }
    P: bool = False
    FPD: bool = False
    DTE: bool = False
    PASIDE: bool = False
    PRE: bool = False
    PDTS: int = 0
    PASIDDIRPTR: int = 0
    RID_PASID: int = 0
    RID_PRIV: bool = False

    @property
    def dir_entries(self) -> int:
        """Number of PASID-directory entries: 2^(PDTS + 7)."""
        return 1 << (self.PDTS + 7)


#: Fields that exist only when a capability is reported; otherwise they are reserved(0).
_FEATURE_FIELDS = {
    "DTE": "dt",
    "PASIDE": "pasid",
    "PRE": "prs",
    "RID_PASID": "rps",
    "RID_PRIV": "rprivs",
}


@functools.lru_cache(maxsize=64)
def context_reserved_mask(cfg: VtdConfig) -> int:
    """Context-entry bits that must be zero under ``cfg``: 8:5, 127:85, 255:128, PASIDDIRPTR bits
    at or above the host address width, and every field whose capability ``cfg`` lacks."""
    layout = ContextEntry.LAYOUT
    mask = ~ContextEntry.defined_mask() & ((1 << 256) - 1)
    ptr = layout["PASIDDIRPTR"]
    mask |= ptr.mask & cfg.above_haw()
    for name, feature in _FEATURE_FIELDS.items():
        if not getattr(cfg, feature):
            mask |= layout[name].mask
    return mask


def check_context_entry(raw: int, cfg: VtdConfig) -> SmFaultReason | None:
    """The fault the hardware takes at context entry ``raw`` before using it, or None.

    Order: present (0x41), reserved bits (0x42), consistency (0x43). The model's consistency rule
    is PRE=1 with DTE=0: page requests come through ATS (a PCIe PRI function needs ATS), so an
    entry enabling page requests without the device TLB cannot be honoured.
    """
    layout = ContextEntry.LAYOUT
    if not layout["P"].get(raw):
        return SmFaultReason.CONTEXT_NOT_PRESENT
    if raw & context_reserved_mask(cfg):
        return SmFaultReason.CONTEXT_RESERVED
    if layout["PRE"].get(raw) and not layout["DTE"].get(raw):
        return SmFaultReason.CONTEXT_INVALID
    return None

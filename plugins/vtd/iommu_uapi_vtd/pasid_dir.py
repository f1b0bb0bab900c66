"""The scalable-mode PASID directory entry (64 bits; VT-d 3.x 9.5) and the PASID split.

A PASID selects directory entry PASID[19:6] (up to 2^14 entries of 8 bytes) and, in the 4 KiB
PASID table that entry points at, PASID entry PASID[5:0] (64 entries of 64 bytes).
"""

from __future__ import annotations

import functools

from .bits import Field, Record, bit
from .reasons import SmFaultReason
from .registers import VtdConfig

__all__ = [
    "DIR_INDEX",
    "PASID_DIR_ENTRY_SIZE",
    "TABLE_INDEX",
    "PasidDirEntry",
    "check_pasid_dir_entry",
    "pasid_dir_reserved_mask",
]

PASID_DIR_ENTRY_SIZE = 8
#: PASID[19:6]: the directory index.
DIR_INDEX = Field(6, 14)
#: PASID[5:0]: the index in the PASID table.
TABLE_INDEX = Field(0, 6)


class PasidDirEntry(Record, frozen=True, gc=False):
    """A scalable-mode PASID directory entry."""

    LAYOUT = {
        "P": bit(0),                   # present
        "FPD": bit(1),                 # fault processing disable for PASIDs under this entry
        "SMPTPTR": Field(12, 52, 12),  # 4 KiB-aligned PASID table address
    }
    P: bool = False
    FPD: bool = False
    SMPTPTR: int = 0


@functools.lru_cache(maxsize=64)
def pasid_dir_reserved_mask(cfg: VtdConfig) -> int:
    """Directory-entry bits that must be zero: 11:2 and table-pointer bits at or above HAW."""
    return (~PasidDirEntry.defined_mask() | cfg.above_haw()) & ((1 << 64) - 1)


def check_pasid_dir_entry(raw: int, cfg: VtdConfig) -> SmFaultReason | None:
    """Not present (0x51), then reserved bits (0x52), or None."""
    if not PasidDirEntry.LAYOUT["P"].get(raw):
        return SmFaultReason.PASID_DIR_NOT_PRESENT
    if raw & pasid_dir_reserved_mask(cfg):
        return SmFaultReason.PASID_DIR_RESERVED
    return None

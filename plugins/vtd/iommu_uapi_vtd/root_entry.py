"""The scalable-mode root entry (128 bits; VT-d 3.x 9.2) and the RTADDR register.

The root table is 4 KiB: 256 root entries indexed by bus number. Each scalable-mode root entry
points at two scalable context tables: the lower one for devfn 0x00-0x7F, the upper one for
devfn 0x80-0xFF.
"""

from __future__ import annotations

import functools
from enum import IntEnum

from .bits import Field, Record, bit
from .reasons import SmFaultReason
from .registers import VtdConfig

__all__ = [
    "ROOT_ENTRY_SIZE",
    "RootEntry",
    "Rtaddr",
    "Ttm",
    "check_root_entry",
    "root_reserved_mask",
]

ROOT_ENTRY_SIZE = 16
#: devfn values at or above this use the upper context table.
UPPER_DEVFN = 0x80


class Ttm(IntEnum):
    """RTADDR.TTM: translation table mode."""

    LEGACY = 0
    SCALABLE = 1
    ABORT_DMA = 3


class Rtaddr(Record, frozen=True, gc=False):
    """The root-table address register (offset 0x20)."""

    LAYOUT = {
        "TTM": Field(10, 2),        # translation table mode
        "RTA": Field(12, 52, 12),   # 4 KiB-aligned root table address
    }
    TTM: int = Ttm.SCALABLE
    RTA: int = 0


class RootEntry(Record, frozen=True, gc=False):
    """A scalable-mode root entry."""

    BITS = 128
    LAYOUT = {
        "LP": bit(0),                # lower context table present
        "LCTP": Field(12, 52, 12),   # lower scalable context table (devfn 0x00-0x7F)
        "UP": bit(64),               # upper context table present
        "UCTP": Field(76, 52, 12),   # upper scalable context table (devfn 0x80-0xFF)
    }
    LP: bool = False
    LCTP: int = 0
    UP: bool = False
    UCTP: int = 0

    def context_table(self, devfn: int) -> int | None:
        """The context table serving ``devfn``, or None when that half is not present."""
        if devfn >= UPPER_DEVFN:
            return self.UCTP if self.UP else None
        return self.LCTP if self.LP else None


#: The half of a root entry each devfn uses: its present bit, its pointer, and the bits of the
#: half (for the reserved check).
_HALVES = {
    False: ("LP", "LCTP", (1 << 64) - 1),
    True: ("UP", "UCTP", ((1 << 64) - 1) << 64),
}


@functools.lru_cache(maxsize=64)
def root_reserved_mask(cfg: VtdConfig) -> int:
    """Root-entry bits that must be zero under ``cfg``: 11:1, 75:65, and pointer bits at or above
    the host address width."""
    mask = ~RootEntry.defined_mask() & ((1 << 128) - 1)
    for name in ("LCTP", "UCTP"):
        field = RootEntry.LAYOUT[name]
        mask |= field.mask & (cfg.above_haw() << (field.shift - field.unit))
    return mask


def check_root_entry(raw: int, devfn: int, cfg: VtdConfig) -> SmFaultReason | None:
    """The fault a request from ``devfn`` takes at root entry ``raw``, or None.

    Only the half ``devfn`` selects is checked: present bit (0x39), then reserved bits (0x3A).
    """
    present, _, half = _HALVES[devfn >= UPPER_DEVFN]
    if not RootEntry.LAYOUT[present].get(raw):
        return SmFaultReason.ROOT_NOT_PRESENT
    if raw & half & root_reserved_mask(cfg):
        return SmFaultReason.ROOT_RESERVED
    return None

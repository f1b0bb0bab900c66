"""The virtio-iommu configuration space (virtio spec 5.13.4): 40 little-endian bytes.

====  =========  ==================  ======================================================
 off  size       field               meaning
====  =========  ==================  ======================================================
   0  le64       page_size_mask      lowest set bit = mapping granule; others are hints
   8  le64       input_range.start   valid with INPUT_RANGE (else the range is 0 .. 2^64-1)
  16  le64       input_range.end     inclusive
  24  le32       domain_range.start  valid with DOMAIN_RANGE (else every id is valid)
  28  le32       domain_range.end    inclusive
  32  le32       probe_size          bytes of PROBE's properties area (valid with PROBE)
  36  u8         bypass              with BYPASS_CONFIG: 1 = unattached endpoints bypass
  37  u8[3]      reserved
====  =========  ==================  ======================================================

The driver may write ``bypass`` only, only with BYPASS_CONFIG negotiated, only 0 or 1. The value
survives a device reset and returns to its initial value on a system reset.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

__all__ = ["BYPASS_OFFSET", "CONFIG", "CONFIG_SIZE", "U32_MAX", "U64_MAX", "ConfigValues",
           "granule"]

CONFIG: Final = struct.Struct("<QQQIIIB3s")
CONFIG_SIZE: Final = CONFIG.size
BYPASS_OFFSET: Final = 36
U64_MAX: Final = (1 << 64) - 1
U32_MAX: Final = (1 << 32) - 1


class ConfigValues(NamedTuple):
    """The fields of the configuration space as the device presents them."""

    page_size_mask: int
    input_start: int
    input_end: int
    domain_start: int
    domain_end: int
    probe_size: int
    bypass: int

    def to_bytes(self) -> bytes:
        """The 40 bytes the driver reads, reserved bytes zero."""
        return CONFIG.pack(self.page_size_mask, self.input_start, self.input_end,
                           self.domain_start, self.domain_end, self.probe_size, self.bypass,
                           bytes(3))

    @classmethod
    def from_bytes(cls, buf: bytes) -> ConfigValues:
        """Decode the 40 bytes (reserved bytes ignored)."""
        *fields, _ = CONFIG.unpack(buf[:CONFIG_SIZE])
        return cls(*fields)


def granule(page_size_mask: int) -> int:
    """The mapping granule: the lowest set bit of ``page_size_mask``."""
    return page_size_mask & -page_size_mask

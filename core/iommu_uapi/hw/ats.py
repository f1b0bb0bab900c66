"""The PCIe ATS invalidation range encoding (PCIe base spec, ATS "Invalidate Request": the
Untranslated Address with the S bit).

With S = 0 the request names the one 4 KiB page at the address. With S = 1 the number of
consecutive one bits of the address from bit 12 upward gives the size: k ones (then a zero) name
2^(k + 1) pages, aligned to that size; an address whose bits 62:12 are all ones names the whole
address space. VT-d's device-TLB invalidation descriptors (types 3 and 8) and SMMUv3's
``CMD_ATC_INV`` carry it to the device.
"""

from __future__ import annotations

__all__ = ["PAGE_SHIFT", "ats_range", "ats_size_encoding"]

PAGE_SHIFT = 12
_U64 = (1 << 64) - 1
_PAGE_MASK = (1 << PAGE_SHIFT) - 1


def ats_range(addr: int, s: bool) -> tuple[int, int]:
    """The range an invalidation request with address ``addr`` and size bit ``s`` names, as
    ``(base, size)``."""
    addr &= ~_PAGE_MASK
    if not s:
        return addr, 1 << PAGE_SHIFT
    pages = addr >> PAGE_SHIFT
    ones = (~pages & (pages + 1)).bit_length() - 1     # trailing one bits of the page number
    size = 1 << min(PAGE_SHIFT + 1 + ones, 64)
    return addr & ~(size - 1) & _U64, size


def ats_size_encoding(addr: int, size_order: int) -> tuple[int, bool]:
    """The address and S bit that invalidate 2^size_order pages at ``addr``: with an order above
    0, bits 12..12+order-2 set, bit 12+order-1 clear, S set (what the Linux drivers write)."""
    addr &= ~_PAGE_MASK & _U64
    if size_order <= 0:
        return addr, False
    ones = ((1 << (size_order - 1)) - 1) << PAGE_SHIFT
    addr = (addr | ones) & ~(1 << (PAGE_SHIFT + size_order - 1)) & _U64
    return addr, True

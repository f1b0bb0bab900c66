"""The VMM's address space, where every ``*_uptr`` of an iommufd call points.

A :class:`UserMemory` is a sparse byte space of 4 KiB pages. A page is either anonymous (the
VMM's own buffers: ioctl arrays, vendor data) or backed by a page of host physical memory (guest
RAM the VMM mapped: what ``IOMMU_IOAS_MAP`` pins). Reading or writing an unmapped page is the
kernel's EFAULT, with the same rule as a short user buffer: :meth:`readable` gives the bytes that
can be read before the first hole, and the copy disciplines refuse what they cannot read.
"""

from __future__ import annotations

from ..memory import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from ..rules import fail
from . import rules as _rules  # noqa: F401  (the iommufd.* rules)

__all__ = ["UserMemory"]

_MASK = PAGE_SIZE - 1
_U64 = 1 << 64


class UserMemory:
    """A sparse user address space; ``host`` is the physical memory that backs guest RAM."""

    __slots__ = ("_anon", "_backed", "_readonly", "host")

    def __init__(self, host: PhysicalMemory | None = None) -> None:
        self.host = host
        self._anon: dict[int, bytearray] = {}
        #: user page number -> host physical page address
        self._backed: dict[int, int] = {}
        #: user pages mapped read-only (``mprotect(PROT_READ)``)
        self._readonly: set[int] = set()

    def mmap(self, va: int, length: int) -> None:
        """Map zeroed anonymous pages over ``[va, va + length)`` (page-rounded)."""
        for vpn in self._vpns(va, length):
            self._backed.pop(vpn, None)
            self._anon[vpn] = bytearray(PAGE_SIZE)

    def mmap_host(self, va: int, length: int, paddr: int) -> None:
        """Map ``[va, va + length)`` onto host physical memory at ``paddr`` (both page
        aligned): guest RAM as the VMM sees it."""
        if self.host is None or va & _MASK or paddr & _MASK:
            raise ValueError("mmap_host needs host memory and page-aligned va and paddr")
        for i, vpn in enumerate(self._vpns(va, length)):
            self._anon.pop(vpn, None)
            self._backed[vpn] = paddr + (i << PAGE_SHIFT)

    def protect(self, va: int, length: int, *, writable: bool) -> None:
        """``mprotect``: make the mapped pages of ``[va, va + length)`` read-only or writable
        again (a read-only page refuses a write-back with EFAULT)."""
        for vpn in self._vpns(va, length):
            if writable:
                self._readonly.discard(vpn)
            else:
                self._readonly.add(vpn)

    def munmap(self, va: int, length: int) -> None:
        """Unmap ``[va, va + length)`` (page-rounded)."""
        for vpn in self._vpns(va, length):
            self._anon.pop(vpn, None)
            self._backed.pop(vpn, None)
            self._readonly.discard(vpn)

    @staticmethod
    def _vpns(va: int, length: int) -> range:
        if length <= 0 or va < 0 or va + length > _U64:
            return range(0)
        return range(va >> PAGE_SHIFT, (va + length - 1 >> PAGE_SHIFT) + 1)

    def host_page(self, va: int) -> int | None:
        """The host physical page behind user page ``va`` (None: anonymous or unmapped)."""
        return self._backed.get(va >> PAGE_SHIFT)

    def _chunk(self, vpn: int, off: int, n: int) -> bytes | None:
        page = self._anon.get(vpn)
        if page is not None:
            return bytes(page[off:off + n])
        base = self._backed.get(vpn)
        if base is not None and self.host is not None:
            return self.host.read(base + off, n)
        return None

    def readable(self, va: int, length: int) -> bytes:
        """The bytes of ``[va, va + length)`` up to the first unmapped page (fewer than
        ``length`` when a hole or the end of the space is met)."""
        if va < 0 or length <= 0:
            return b""
        off = va & _MASK
        if off + length <= PAGE_SIZE:  # within one page: one slice
            return self._chunk(va >> PAGE_SHIFT, off, length) or b""
        out = bytearray()
        while len(out) < length and va < _U64:
            off = va & _MASK
            n = min(length - len(out), PAGE_SIZE - off)
            chunk = self._chunk(va >> PAGE_SHIFT, off, n)
            if chunk is None:
                break
            out += chunk
            va += n
        return bytes(out)

    def read(self, va: int, length: int) -> bytes:
        """``copy_from_user`` of exactly ``length`` bytes; EFAULT (``iommufd.user.read``)
        when any is unmapped."""
        data = self.readable(va, length)
        if len(data) != length:
            raise fail("iommufd.user.read", n=length, addr=va)
        return data

    def writable(self, va: int, length: int) -> bool:
        """Whether every byte of ``[va, va + length)`` is mapped and writable."""
        if length == 0:
            return True
        return all((vpn in self._anon or vpn in self._backed) and vpn not in self._readonly
                   for vpn in self._vpns(va, length))

    def write(self, va: int, data: bytes | bytearray | memoryview) -> None:
        """``copy_to_user``; EFAULT (``iommufd.user.write``) and nothing written when any byte
        is unmapped or read-only."""
        n = len(data)
        if not self.writable(va, n) or va < 0:
            raise fail("iommufd.user.write", n=n, addr=va)
        pos = 0
        while pos < n:
            off = va & _MASK
            k = min(n - pos, PAGE_SIZE - off)
            vpn = va >> PAGE_SHIFT
            page = self._anon.get(vpn)
            if page is not None:
                page[off:off + k] = data[pos:pos + k]
            else:
                assert self.host is not None
                self.host.write(self._backed[vpn] + off, bytes(data[pos:pos + k]))
            pos += k
            va += k

"""Physical and guest memory: the byte-addressable stores that IOMMU tables live in.

:class:`PhysicalMemory` is sparse and page-backed: a 4 KiB page gets a ``bytearray`` the first
time it is written, reads of a page never written return zeros without allocating, and aligned
64-bit reads go through a read-only ``memoryview`` cast to unsigned quadwords (one dict lookup
and one index). Walkers on the hot path skip even the method call: :meth:`page_quads` hands
them the page -> quadwords mapping itself. Page tables, root/context/PASID tables, stream
tables and queues are allocated from a region of it by :meth:`PhysicalMemory.alloc` and live
there in their real little-endian bit layout, so a test can corrupt one bit and watch the walk
fault.

:class:`GuestMemory` is a VM's view: guest-physical ranges backed by host pages of a
``PhysicalMemory``. A guest writes its first-level tables here; the VMM maps the same GPA -> HPA
ranges at second level.
"""

from __future__ import annotations

import errno
import struct
import sys
from collections.abc import Iterator, Mapping

from .errors import MemoryAccessError, UAPIError

__all__ = ["PAGE_SHIFT", "PAGE_SIZE", "ZERO_QUADS", "GuestMemory", "PhysicalMemory"]

if sys.byteorder != "little":  # pragma: no cover - the quadword views assume a little-endian host
    raise ImportError("iommu_uapi.memory needs a little-endian host")

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
_PAGE_MASK = PAGE_SIZE - 1
_U64 = (1 << 64) - 1
#: The quadwords of a page never written: what :meth:`PhysicalMemory.page_quads` lookups fall
#: back to (``pages.get(pfn, ZERO_QUADS)[index]``).
ZERO_QUADS: memoryview = memoryview(bytes(PAGE_SIZE)).cast("Q")
_PAGE_BASE = -PAGE_SIZE
_pack_u64 = struct.Struct("<Q").pack_into


class _PageView(Mapping[int, memoryview]):
    """A live read-only view of a dict of pages whose ``get`` is the dict's own (a table walk's
    every level calls it: a proxy's ``get`` would forward each call)."""

    __slots__ = ("_pages", "get")

    def __init__(self, pages: dict[int, memoryview]) -> None:
        self._pages = pages
        self.get = pages.get  # type: ignore[method-assign]

    def __getitem__(self, addr: int) -> memoryview:
        return self._pages[addr]

    def __contains__(self, addr: object) -> bool:
        return addr in self._pages

    def __iter__(self) -> Iterator[int]:
        return iter(self._pages)

    def __len__(self) -> int:
        return len(self._pages)


def _is_pow2(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


class PhysicalMemory:
    """A sparse physical address space of ``2**addr_bits`` bytes, backed 4 KiB page by page.

    ``alloc_base``/``alloc_limit`` bound the region :meth:`alloc` hands out table memory from
    (default 2 GiB..4 GiB, or the upper half of a space smaller than 4 GiB); data pages written
    elsewhere never collide with it. With
    ``count_reads=True`` every :meth:`read64` increments :attr:`reads`.
    """

    addr_bits: int
    size: int
    reads: int

    def __init__(
        self,
        addr_bits: int = 52,
        *,
        alloc_base: int | None = None,
        alloc_limit: int | None = None,
        count_reads: bool = False,
    ) -> None:
        if not 13 <= addr_bits <= 64:
            raise ValueError(f"addr_bits must be in 13..64, got {addr_bits}")
        if alloc_base is None and alloc_limit is None and addr_bits < 32:
            alloc_base, alloc_limit = 1 << (addr_bits - 1), 1 << addr_bits
        alloc_base = 0x8000_0000 if alloc_base is None else alloc_base
        alloc_limit = 0x1_0000_0000 if alloc_limit is None else alloc_limit
        if alloc_base & _PAGE_MASK or alloc_limit & _PAGE_MASK or alloc_limit <= alloc_base:
            raise ValueError("the allocation region must be a non-empty range of whole pages")
        self.addr_bits = addr_bits
        self.size = 1 << addr_bits
        if alloc_limit > self.size:
            raise ValueError("the allocation region lies outside the address space")
        self._pages: dict[int, bytearray] = {}
        self._quads: dict[int, memoryview] = {}
        self._view: Mapping[int, memoryview] = _PageView(self._quads)
        self._wquads: dict[int, memoryview] = {}
        self._wview: Mapping[int, memoryview] = _PageView(self._wquads)
        self._alloc_next = alloc_base
        self._alloc_limit = alloc_limit
        self._alloc_base = alloc_base
        self._free: dict[int, list[int]] = {}
        self._allocated: dict[int, int] = {}
        self.reads = 0
        if count_reads:
            self.read64 = self._read64_counting  # type: ignore[method-assign]

    # -- page backing -------------------------------------------------------------------------

    def _check(self, addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > self.size:
            raise MemoryAccessError(
                addr,
                f"physical access [{addr:#x}, +{length:#x}) lies outside the "
                f"{self.addr_bits}-bit address space",
            )

    def _page(self, pfn: int) -> bytearray:
        page = self._pages.get(pfn)
        if page is None:
            page = bytearray(PAGE_SIZE)
            self._pages[pfn] = page
            self._quads[pfn << PAGE_SHIFT] = memoryview(page).toreadonly().cast("Q")
            self._wquads[pfn << PAGE_SHIFT] = memoryview(page).cast("Q")
        return page

    def page_quads(self) -> Mapping[int, memoryview] | None:
        """A live read-only view of the backed pages, for walkers that read descriptors inline.

        Maps a page's address (4 KiB-aligned) to its 512 little-endian quadwords (a read-only
        ``memoryview``): a 4 KiB table at ``t`` holds entry ``i`` at ``pages[t][i]``. Pages never
        written are absent and read as :data:`ZERO_QUADS`. The mapping follows later writes.
        ``None`` when this memory counts reads: then every descriptor read must go through
        :meth:`read64`.
        """
        if "read64" in self.__dict__:
            return None
        return self._view

    def page_quads_writable(self) -> Mapping[int, memoryview] | None:
        """A live view of the backed pages' quadwords for writing, for builders that write table
        entries inline: ``pages[t][i] = value`` is :meth:`write64` of ``t + 8 * i`` for a backed
        page ``t`` (a page never written is absent: write it with :meth:`write64`, which backs
        it). ``None`` when :meth:`page_quads` is None or a subclass writes its own way."""
        if self.page_quads() is None or type(self).write64 is not PhysicalMemory.write64:
            return None
        return self._wview

    @property
    def backed_pages(self) -> int:
        """How many 4 KiB pages have backing storage."""
        return len(self._pages)

    def backed_page_numbers(self) -> Iterator[int]:
        """The page frame numbers that have backing storage, in no particular order."""
        return iter(self._pages)

    # -- 64-bit access (the walkers' path) -----------------------------------------------------

    def read64(self, addr: int) -> int:
        """Read the little-endian quadword at ``addr`` (a descriptor, a table entry)."""
        if addr & 7 == 0 and 0 <= addr < self.size:
            return self._quads.get(addr & _PAGE_BASE, ZERO_QUADS)[(addr & _PAGE_MASK) >> 3]
        return int.from_bytes(self.read(addr, 8), "little")

    def _read64_counting(self, addr: int) -> int:
        self.reads += 1
        return PhysicalMemory.read64(self, addr)

    def write64(self, addr: int, value: int) -> None:
        """Write ``value`` as a little-endian quadword at ``addr``."""
        if not 0 <= value <= _U64:
            raise UAPIError(errno.EINVAL, f"write64: value {value:#x} does not fit in 64 bits",
                            rule="memory.value")
        if addr & 7 == 0 and 0 <= addr < self.size:
            pfn = addr >> PAGE_SHIFT
            page = self._pages.get(pfn)
            _pack_u64(self._page(pfn) if page is None else page, addr & _PAGE_MASK, value)
            return
        self.write(addr, value.to_bytes(8, "little"))

    def read32(self, addr: int) -> int:
        """Read the little-endian doubleword at ``addr``."""
        return int.from_bytes(self.read(addr, 4), "little")

    def write32(self, addr: int, value: int) -> None:
        """Write ``value`` as a little-endian doubleword at ``addr``."""
        if not 0 <= value <= 0xFFFF_FFFF:
            raise UAPIError(errno.EINVAL, f"write32: value {value:#x} does not fit in 32 bits",
                            rule="memory.value")
        self.write(addr, value.to_bytes(4, "little"))

    # -- byte access ---------------------------------------------------------------------------

    def read(self, addr: int, length: int) -> bytes:
        """Read ``length`` bytes starting at ``addr``; unbacked bytes read as zero."""
        off = addr & _PAGE_MASK
        if off + length <= PAGE_SIZE and addr >= 0 and length >= 0 and addr + length <= self.size:
            page = self._pages.get(addr >> PAGE_SHIFT)  # within one page: one slice
            return bytes(length) if page is None else bytes(page[off : off + length])
        self._check(addr, length)
        out = bytearray()
        while length:
            pfn, off = addr >> PAGE_SHIFT, addr & _PAGE_MASK
            chunk = min(length, PAGE_SIZE - off)
            page = self._pages.get(pfn)
            out += page[off : off + chunk] if page is not None else bytes(chunk)
            addr += chunk
            length -= chunk
        return bytes(out)

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """Write ``data`` starting at ``addr``, backing pages as needed."""
        if type(data) is bytes:
            off = addr & _PAGE_MASK
            end = off + len(data)
            if off < end <= PAGE_SIZE and addr >= 0 and addr + len(data) <= self.size:
                pfn = addr >> PAGE_SHIFT  # within one page: one slice assignment
                page = self._pages.get(pfn)
                (self._page(pfn) if page is None else page)[off:end] = data
                return
        data = memoryview(data).cast("B")
        self._check(addr, len(data))
        pos = 0
        while pos < len(data):
            pfn, off = addr >> PAGE_SHIFT, addr & _PAGE_MASK
            chunk = min(len(data) - pos, PAGE_SIZE - off)
            self._page(pfn)[off : off + chunk] = data[pos : pos + chunk]
            addr += chunk
            pos += chunk

    def fill(self, addr: int, length: int, value: int = 0) -> None:
        """Set ``length`` bytes at ``addr`` to ``value``."""
        self._check(addr, length)
        while length:
            pfn, off = addr >> PAGE_SHIFT, addr & _PAGE_MASK
            chunk = min(length, PAGE_SIZE - off)
            page = self._pages.get(pfn)
            if value == 0 and page is None:
                pass
            elif value == 0 and chunk == PAGE_SIZE:
                del self._pages[pfn]
                del self._quads[pfn << PAGE_SHIFT]
                del self._wquads[pfn << PAGE_SHIFT]
            else:
                self._page(pfn)[off : off + chunk] = bytes([value]) * chunk
            addr += chunk
            length -= chunk

    # -- table allocation ----------------------------------------------------------------------

    def alloc(self, size: int = PAGE_SIZE, align: int | None = None) -> int:
        """Allocate ``size`` zeroed bytes of table memory, aligned to ``align`` (default ``size``).

        ``size`` must be a power of two of at least 4 KiB (a table, a concatenated stage-2 root, a
        queue). Raises ``UAPIError(ENOMEM)`` when the allocation region is exhausted.
        """
        align = size if align is None else align
        if not _is_pow2(size) or size < PAGE_SIZE or not _is_pow2(align) or align < PAGE_SIZE:
            raise UAPIError(errno.EINVAL, f"alloc: size {size:#x} and align {align:#x} must be "
                            "powers of two of at least 4 KiB", rule="memory.alloc_size")
        free = self._free.get(size)
        if free:
            for i in range(len(free) - 1, -1, -1):
                if free[i] % align == 0:
                    addr = free.pop(i)
                    self._allocated[addr] = size
                    return addr
        addr = (self._alloc_next + align - 1) & -align
        if addr + size > self._alloc_limit:
            raise UAPIError(errno.ENOMEM, "alloc: table memory exhausted (region "
                            f"{self._alloc_base:#x}..{self._alloc_limit:#x}, asked {size:#x})",
                            rule="memory.exhausted")
        self._alloc_next = addr + size
        self._allocated[addr] = size
        return addr

    def free(self, addr: int) -> None:
        """Return an allocation made by :meth:`alloc`; its bytes are zeroed and unbacked."""
        size = self._allocated.pop(addr, None)
        if size is None:
            raise UAPIError(errno.EINVAL, f"free: {addr:#x} is not an allocation of this memory",
                            rule="memory.free")
        self.fill(addr, size, 0)
        self._free.setdefault(size, []).append(addr)

    @property
    def allocated_bytes(self) -> int:
        """Bytes currently handed out by :meth:`alloc`."""
        return sum(self._allocated.values())

    def is_allocated(self, addr: int) -> bool:
        """Whether ``addr`` is the start of a live :meth:`alloc` allocation."""
        return addr in self._allocated


class GuestMemory:
    """A guest's physical address space: GPA pages backed by host pages of a ``PhysicalMemory``.

    ``add_ram(gpa, size)`` backs a GPA range with freshly allocated host pages; ``map(gpa, hpa,
    size)`` backs it with given host pages. Access to a GPA that is not backed raises
    :class:`MemoryAccessError`. :meth:`alloc` hands out guest pages (for the guest's own page
    tables) from the RAM ranges added so far.
    """

    host: PhysicalMemory

    def __init__(self, host: PhysicalMemory) -> None:
        self.host = host
        self._gfn_to_hfn: dict[int, int] = {}
        self._ram: list[tuple[int, int]] = []
        self._next: list[int] = []
        self._free: list[int] = []
        self._sizes: dict[int, int] = {}

    def map(self, gpa: int, hpa: int, size: int) -> None:
        """Back ``[gpa, gpa + size)`` with host memory at ``[hpa, hpa + size)`` (page-aligned)."""
        if (gpa | hpa | size) & _PAGE_MASK or size <= 0:
            raise UAPIError(errno.EINVAL, f"guest map: gpa {gpa:#x}, hpa {hpa:#x}, size {size:#x} "
                            "must be page-aligned and non-empty", rule="guest.map")
        self.host._check(hpa, size)
        for i in range(size >> PAGE_SHIFT):
            self._gfn_to_hfn[(gpa >> PAGE_SHIFT) + i] = (hpa >> PAGE_SHIFT) + i

    def add_ram(self, gpa: int, size: int, hpa: int | None = None) -> int:
        """Add guest RAM at ``gpa``, backed at ``hpa`` (allocated if None); returns the hpa."""
        if hpa is None:
            hpa = self.host.alloc(1 << (max(size, PAGE_SIZE) - 1).bit_length(), PAGE_SIZE)
        self.map(gpa, hpa, size)
        self._ram.append((gpa, gpa + size))
        self._next.append(gpa)
        return hpa

    def mappings(self) -> Iterator[tuple[int, int]]:
        """Every (guest page address, host page address) pair, in GPA order."""
        for gfn in sorted(self._gfn_to_hfn):
            yield gfn << PAGE_SHIFT, self._gfn_to_hfn[gfn] << PAGE_SHIFT

    def gpa_to_hpa(self, gpa: int) -> int:
        """The host physical address backing ``gpa``."""
        hfn = self._gfn_to_hfn.get(gpa >> PAGE_SHIFT)
        if hfn is None or gpa < 0:
            raise MemoryAccessError(gpa, f"guest access to {gpa:#x}: no RAM at that GPA")
        return (hfn << PAGE_SHIFT) | (gpa & _PAGE_MASK)

    def read64(self, gpa: int) -> int:
        """Read the guest quadword at ``gpa``."""
        return self.host.read64(self.gpa_to_hpa(gpa)) if gpa & 7 == 0 else int.from_bytes(
            self.read(gpa, 8), "little")

    def write64(self, gpa: int, value: int) -> None:
        """Write a guest quadword at ``gpa``."""
        if gpa & 7 == 0:
            self.host.write64(self.gpa_to_hpa(gpa), value)
        else:
            self.write(gpa, value.to_bytes(8, "little"))

    def read(self, gpa: int, length: int) -> bytes:
        """Read ``length`` guest bytes at ``gpa``."""
        out = bytearray()
        while length > 0:
            chunk = min(length, PAGE_SIZE - (gpa & _PAGE_MASK))
            out += self.host.read(self.gpa_to_hpa(gpa), chunk)
            gpa += chunk
            length -= chunk
        return bytes(out)

    def write(self, gpa: int, data: bytes | bytearray | memoryview) -> None:
        """Write guest bytes at ``gpa``."""
        view = memoryview(data).cast("B")
        pos = 0
        while pos < len(view):
            chunk = min(len(view) - pos, PAGE_SIZE - (gpa & _PAGE_MASK))
            self.host.write(self.gpa_to_hpa(gpa), view[pos : pos + chunk])
            gpa += chunk
            pos += chunk

    def alloc(self, size: int = PAGE_SIZE, align: int | None = None) -> int:
        """Allocate zeroed guest pages (for guest-built tables) from guest RAM; returns a GPA."""
        align = size if align is None else align
        if size == PAGE_SIZE and align == PAGE_SIZE and self._free:
            addr = self._free.pop()
            self._sizes[addr] = size
            return addr
        for i, (start, end) in enumerate(self._ram):
            addr = (self._next[i] + align - 1) & -align
            if addr + size <= end and addr >= start:
                self._next[i] = addr + size
                for page in range(addr, addr + size, PAGE_SIZE):
                    self.host.fill(self.gpa_to_hpa(page), PAGE_SIZE, 0)
                self._sizes[addr] = size
                return addr
        raise UAPIError(errno.ENOMEM, f"guest alloc: no guest RAM left for {size:#x} bytes",
                        rule="guest.exhausted")

    def free(self, gpa: int, size: int | None = None) -> None:
        """Give guest pages back to :meth:`alloc` (zeroed); ``size`` defaults to the size the
        allocation at ``gpa`` was made with (one page for pages this view did not allocate)."""
        size = self._sizes.pop(gpa, PAGE_SIZE) if size is None else size
        self._sizes.pop(gpa, None)
        for page in range(gpa, gpa + size, PAGE_SIZE):
            self.host.fill(self.gpa_to_hpa(page), PAGE_SIZE, 0)
            self._free.append(page)

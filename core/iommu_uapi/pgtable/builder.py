"""The io-pgtable machinery every format shares: map, unmap with block splitting, iova_to_phys.

A format module describes its radix tree as a tuple of :class:`Level` (top level first) and
supplies the few descriptor encoders below; :class:`PageTableBuilder` does the rest the way
Linux's io-pgtable does: ``map`` installs exactly one leaf (allocating the missing tables),
``unmap`` clears one leaf (splitting a larger block into next-level entries so the rest stays
mapped, or dropping a whole table when the size asked is that table's span), and every table
whose last entry goes is freed back to the table memory. Tables live in the memory in their real
bit layout; the only bookkeeping is a count of live entries per table.

Errors (``UAPIError``; nothing is changed by a refused call):

====================================================  ========
rule                                                  errno
====================================================  ========
size is not one of the format's page/block sizes      EINVAL
iova or paddr not aligned to the size                 EINVAL
prot has neither READ nor WRITE                       EINVAL
iova beyond the input range, paddr beyond the output  ERANGE
the range overlaps an existing mapping                EEXIST
table memory exhausted                                ENOMEM
====================================================  ========
"""

from __future__ import annotations

import errno
from typing import NamedTuple

from ..errors import UAPIError
from .common import Prot, Stage2Translate, TableMemory, Walker, WalkResult

__all__ = ["Level", "PageTableBuilder"]

_RW = Prot.READ | Prot.WRITE


class Level(NamedTuple):
    """One level of a radix page table, as the builder sees it.

    ``level`` is the architecture's level number (x86/VT-d 5..1, LPAE 0..3); ``shift`` the lowest
    input-address bit this level indexes; ``index_mask`` the index field's mask after shifting
    (the root level may have fewer or, concatenated, more entries than a full table); ``size`` the
    span of one entry (``1 << shift``); ``leaf_ok`` whether a leaf of that size may be installed
    here; ``table_mask``/``table_value``: ``desc & table_mask == table_value`` marks a
    next-level table descriptor (never true at the last level).
    """

    level: int
    shift: int
    index_mask: int
    size: int
    leaf_ok: bool
    table_mask: int
    table_value: int


class PageTableBuilder:
    """A page table owned by its builder: ``map``, ``unmap``, ``iova_to_phys``, ``map_range``.

    Subclasses set up the format by calling ``__init__`` with the levels and the sizes and
    implement the descriptor hooks (``_input``, ``_table_desc``, ``_table_addr``, ``_leaf_desc``,
    ``_leaf_oa``, ``_split_first``).
    """

    mem: TableMemory
    root: int
    levels: tuple[Level, ...]
    page_sizes: tuple[int, ...]
    walker: Walker

    def __init__(
        self,
        mem: TableMemory,
        levels: tuple[Level, ...],
        *,
        root_size: int,
        table_size: int,
        oa_bits: int,
        name: str,
    ) -> None:
        self.mem = mem
        self.levels = levels
        self._name = name
        self._table_size = table_size
        self._oa_limit = 1 << oa_bits
        self._size_index = {lv.size: i for i, lv in enumerate(levels) if lv.leaf_ok}
        self.page_sizes = tuple(sorted(self._size_index))
        # For a leaf at level index i: the (shift, index_mask, table_mask, table_value) of the
        # levels above it, and its own (shift, index_mask).
        self._descend = tuple(
            tuple((lv.shift, lv.index_mask, lv.table_mask, lv.table_value) for lv in levels[:i])
            for i in range(len(levels))
        )
        self.root = mem.alloc(root_size, root_size)
        self._entries: dict[int, int] = {self.root: 0}
        self.walker = self._make_walker(mem)
        self._nested_walker: Walker | None = None

    # -- format hooks ----------------------------------------------------------------------

    def _make_walker(self, mem: TableMemory) -> Walker:
        """The format's walker over ``mem`` under this builder's configuration."""
        raise NotImplementedError

    def _input(self, iova: int, op: str) -> int:
        """The input address as the tables index it; ``UAPIError(ERANGE)`` when out of range."""
        raise NotImplementedError

    def _table_desc(self, addr: int) -> int:
        """A descriptor pointing at the next-level table at ``addr``."""
        raise NotImplementedError

    def _table_addr(self, desc: int) -> int:
        """The next-level table address held in a table descriptor."""
        raise NotImplementedError

    def _leaf_desc(self, oa: int, index: int, prot: int) -> int:
        """A leaf descriptor mapping ``oa`` at level index ``index`` with protection ``prot``."""
        raise NotImplementedError

    def _leaf_oa(self, desc: int, index: int) -> int:
        """The output address (page/block base) of a leaf at level index ``index``."""
        raise NotImplementedError

    def _split_first(self, desc: int, index: int) -> int:
        """For a block at level index ``index``: the first of the next level's equivalent leaves
        (the others follow at steps of the next level's size)."""
        raise NotImplementedError

    # -- checks ------------------------------------------------------------------------------

    def _check_leaf(self, op: str, iova: int, size: int, paddr: int = 0) -> int:
        index = self._size_index.get(size)
        if index is None:
            sizes = ", ".join(f"{s:#x}" for s in self.page_sizes)
            raise UAPIError(errno.EINVAL, f"{self._name} {op}: size {size:#x} is not one of the "
                            f"format's page/block sizes ({sizes})", rule="pgtable.size")
        if (iova | paddr) & (size - 1):
            raise UAPIError(errno.EINVAL, f"{self._name} {op}: iova {iova:#x} / paddr {paddr:#x} "
                            f"not aligned to size {size:#x}", rule="pgtable.align")
        return index

    # -- map -------------------------------------------------------------------------------

    def map(self, iova: int, paddr: int, size: int, prot: int) -> None:
        """Map ``[iova, iova + size)`` to ``paddr`` with one leaf of exactly ``size``.

        Refused with EEXIST when any part of the range is already mapped, EINVAL for a size the
        format cannot map in one leaf, a misaligned address or a ``prot`` without READ/WRITE,
        ERANGE for an address beyond the input or output range.
        """
        index = self._check_leaf("map", iova, size, paddr)
        if not prot & _RW:
            raise UAPIError(errno.EINVAL, f"{self._name} map: prot {prot:#x} grants neither READ "
                            "nor WRITE", rule="pgtable.prot")
        va = self._input(iova, "map")
        if not 0 <= paddr < self._oa_limit:
            raise UAPIError(errno.ERANGE, f"{self._name} map: paddr {paddr:#x} beyond the "
                            f"{self._oa_limit.bit_length() - 1}-bit output range",
                            rule="pgtable.oa_range")
        leaf = self._leaf_desc(paddr, index, prot)
        mem = self.mem
        read = mem.read64
        entries = self._entries
        table = self.root
        created: list[tuple[int, int, int]] = []
        for shift, imask, tmask, tval in self._descend[index]:
            ptr = table + (((va >> shift) & imask) << 3)
            desc = read(ptr)
            if desc == 0:
                table = self._new_table(table, ptr, created)
            elif desc & tmask == tval:
                table = self._table_addr(desc)
            else:
                raise UAPIError(errno.EEXIST, f"{self._name} map: iova {iova:#x} size {size:#x} "
                                f"lies inside an existing block ({desc:#x})",
                                rule="pgtable.overlap")
        lv = self.levels[index]
        ptr = table + (((va >> lv.shift) & lv.index_mask) << 3)
        old = read(ptr)
        if old:
            raise UAPIError(errno.EEXIST, f"{self._name} map: iova {iova:#x} size {size:#x} "
                            f"overlaps an existing mapping ({old:#x})", rule="pgtable.overlap")
        mem.write64(ptr, leaf)
        entries[table] += 1

    def _new_table(self, parent: int, ptr: int, created: list[tuple[int, int, int]]) -> int:
        try:
            new = self.mem.alloc(self._table_size, self._table_size)
        except Exception:
            self._undo(created)
            raise
        self.mem.write64(ptr, self._table_desc(new))
        self._entries[parent] += 1
        self._entries[new] = 0
        created.append((parent, ptr, new))
        return new

    def _undo(self, created: list[tuple[int, int, int]]) -> None:
        for parent, ptr, new in reversed(created):
            self.mem.write64(ptr, 0)
            self._entries[parent] -= 1
            del self._entries[new]
            self.mem.free(new)

    def map_range(self, iova: int, paddr: int, size: int, prot: int) -> None:
        """Map ``[iova, iova + size)`` with the largest leaves alignment allows; all or nothing."""
        smallest = self.page_sizes[0]
        if size <= 0 or (iova | paddr | size) & (smallest - 1):
            raise UAPIError(errno.EINVAL, f"{self._name} map_range: iova {iova:#x}, paddr "
                            f"{paddr:#x}, size {size:#x} must be {smallest:#x}-aligned and "
                            "non-empty", rule="pgtable.align")
        done: list[tuple[int, int]] = []
        off = 0
        try:
            while off < size:
                leaf = smallest
                for cand in reversed(self.page_sizes):
                    if not (iova + off) & (cand - 1) and not (paddr + off) & (cand - 1) \
                            and cand <= size - off:
                        leaf = cand
                        break
                self.map(iova + off, paddr + off, leaf, prot)
                done.append((iova + off, leaf))
                off += leaf
        except Exception:
            for addr, leaf in reversed(done):
                self.unmap(addr, leaf)
            raise

    # -- unmap -----------------------------------------------------------------------------

    def unmap(self, iova: int, size: int) -> int:
        """Unmap the leaf-sized range ``[iova, iova + size)``; returns the bytes unmapped.

        0 when nothing was mapped there. A larger block around the range is split into
        next-level entries (recursively) so the rest of it stays mapped; a table whose span is
        exactly ``size`` is dropped with everything beneath it. Tables left empty are freed.
        """
        index = self._check_leaf("unmap", iova, size)
        va = self._input(iova, "unmap")
        mem = self.mem
        read = mem.read64
        table = self.root
        path: list[tuple[int, int]] = []
        splits: list[tuple[int, int, int]] = []
        for i in range(index):
            lv = self.levels[i]
            ptr = table + (((va >> lv.shift) & lv.index_mask) << 3)
            desc = read(ptr)
            if desc == 0:
                return 0
            path.append((table, ptr))
            if desc & lv.table_mask == lv.table_value:
                table = self._table_addr(desc)
            else:
                table = self._split(i, ptr, desc, splits)
        lv = self.levels[index]
        ptr = table + (((va >> lv.shift) & lv.index_mask) << 3)
        desc = read(ptr)
        if desc == 0:
            return 0
        if desc & lv.table_mask == lv.table_value:
            self._free_tree(self._table_addr(desc), index + 1)
        mem.write64(ptr, 0)
        self._drop_entry(table, path)
        return size

    def _split(self, index: int, ptr: int, desc: int,
               splits: list[tuple[int, int, int]]) -> int:
        """Replace the block ``desc`` at ``ptr`` by a next-level table of equivalent leaves."""
        try:
            new = self.mem.alloc(self._table_size, self._table_size)
        except Exception:
            for s_ptr, s_old, s_new in reversed(splits):
                self.mem.write64(s_ptr, s_old)
                del self._entries[s_new]
                self.mem.free(s_new)
            raise
        child = self.levels[index + 1]
        first = self._split_first(desc, index)
        step = child.size
        write = self.mem.write64
        count = child.index_mask + 1
        for i in range(count):
            write(new + (i << 3), first + i * step)
        write(ptr, self._table_desc(new))
        self._entries[new] = count
        splits.append((ptr, desc, new))
        return new

    def _drop_entry(self, table: int, path: list[tuple[int, int]]) -> None:
        """Count one entry of ``table`` gone; free tables left empty, up to (not) the root."""
        entries = self._entries
        entries[table] -= 1
        while entries[table] == 0 and path:
            parent, ptr = path.pop()
            del entries[table]
            self.mem.free(table)
            self.mem.write64(ptr, 0)
            entries[parent] -= 1
            table = parent

    def _free_tree(self, table: int, index: int) -> None:
        """Free ``table`` (at level index ``index``) and every table beneath it."""
        lv = self.levels[index]
        if index + 1 < len(self.levels):
            read = self.mem.read64
            for i in range(lv.index_mask + 1):
                desc = read(table + (i << 3))
                if desc and desc & lv.table_mask == lv.table_value:
                    self._free_tree(self._table_addr(desc), index + 1)
        del self._entries[table]
        self.mem.free(table)

    # -- lookup ----------------------------------------------------------------------------

    def iova_to_phys(self, iova: int) -> int:
        """The physical address ``iova`` maps to, or 0 when it is not mapped (software walk:
        permissions and access flags are not checked)."""
        try:
            va = self._input(iova, "iova_to_phys")
        except UAPIError:
            return 0
        read = self.mem.read64
        table = self.root
        for index, lv in enumerate(self.levels):
            desc = read(table + (((va >> lv.shift) & lv.index_mask) << 3))
            if desc == 0:
                return 0
            if desc & lv.table_mask == lv.table_value:
                table = self._table_addr(desc)
                continue
            return self._leaf_oa(desc, index) | (va & (lv.size - 1))
        return 0  # pragma: no cover - the last level has no table descriptors

    def walk(self, iova: int, access: int, s2: Stage2Translate | None = None,
             update_ad: bool = False) -> WalkResult:
        """Walk these tables as the IOMMU would (the format walker's ``walk``).

        Nested (``s2`` given), the descriptors are read at the host addresses stage 2 yields:
        from the table memory's ``host`` when it is a guest's memory.
        """
        if s2 is None:
            return self.walker.walk(self.root, iova, access, None, update_ad)
        host: TableMemory = getattr(self.mem, "host", self.mem)
        nested = self._nested_walker
        if nested is None or nested.mem is not host:
            nested = self._nested_walker = self._make_walker(host)
        return nested.walk(self.root, iova, access, s2, update_ad)

    def table_count(self) -> int:
        """How many tables (the root included) the builder currently holds."""
        return len(self._entries)

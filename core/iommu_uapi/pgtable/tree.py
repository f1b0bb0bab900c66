"""The state every page-table builder keeps and the reads it shares: the levels of the radix
tree, the root, a count of live entries per table, the format's descriptor hooks, the argument
checks, table allocation and freeing, and the software lookups (``iova_to_phys``, ``walk``)."""

from __future__ import annotations

import errno
from typing import NamedTuple

from ..errors import UAPIError
from .common import (
    FlushOps,
    Prot,
    Stage2Translate,
    TableMemory,
    Walker,
    WalkResult,
    inline_pages,
    page_getter,
)
from .fastpath import PageSizePath
from .runs import Runs

__all__ = ["Level", "TableTree", "page_chunks"]


_RW = int(Prot.READ | Prot.WRITE)


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


def page_chunks(iova: int, paddr: int, size: int,
                page_sizes: tuple[int, ...]) -> list[tuple[int, int, int, int]]:
    """``[iova, iova + size)`` cut as the kernel's ``iommu_pgsize`` cuts it: at each step the
    largest page size that both addresses are aligned to and that fits, repeated up to the
    next boundary where a larger one could start. Returns ``(iova, paddr, pgsize, pgcount)``
    chunks, in address order."""
    out = []
    while size:
        merged = iova | paddr
        fits = [p for p in page_sizes if p <= size and not merged & (p - 1)]
        pgsize = fits[-1]
        chunk = size
        larger = [p for p in page_sizes if p > pgsize]
        if larger:
            nxt = larger[0]
            offset = nxt - (merged & (nxt - 1))
            if offset + nxt <= size:
                chunk = offset
        count = chunk // pgsize
        out.append((iova, paddr, pgsize, count))
        step = count * pgsize
        iova, paddr, size = iova + step, paddr + step, size - step
    return out

class TableTree(Runs):
    """The tables of one builder (see :class:`~.builder.PageTableBuilder`).

    Subclasses set up the format by calling ``__init__`` with the levels and the sizes and
    implement the descriptor hooks (``_input``, ``_table_desc``, ``_leaf_bits``,
    ``_split_first``; ``_table_addr``/``_encode_oa`` when the output address is not one
    contiguous field).
    """

    mem: TableMemory
    root: int
    levels: tuple[Level, ...]
    page_sizes: tuple[int, ...]
    walker: Walker
    flush: FlushOps | None

    def __init__(
        self,
        mem: TableMemory,
        levels: tuple[Level, ...],
        *,
        root_size: int,
        table_size: int,
        oa_bits: int,
        name: str,
        addr_mask: int,
        flush: FlushOps | None = None,
        linear: bool = True,
        ia_limit: int | None = None,
    ) -> None:
        self.mem = mem
        self.levels = levels
        self.flush = flush
        self._name = name
        self._table_size = table_size
        self._oa_limit = 1 << oa_bits
        self._amask = addr_mask
        self._size_index = {lv.size: i for i, lv in enumerate(levels) if lv.leaf_ok}
        self.page_sizes = tuple(sorted(self._size_index))
        # For a leaf at level index i: the (shift, index_mask, table_mask, table_value) of the
        # levels above it, and its own (shift, index_mask).
        self._descend = tuple(
            tuple((lv.shift, lv.index_mask, lv.table_mask, lv.table_value) for lv in levels[:i])
            for i in range(len(levels))
        )
        self._leaf_at = tuple((lv.shift, lv.index_mask) for lv in levels)
        self._leaf_cache: dict[int, int] = {}
        self._read = mem.read64
        self._write = mem.write64
        # the plain input range [0, ia_limit) the single-page fast paths accept (anything else,
        # such as x86's upper canonical half, takes the checked path)
        top = levels[0]
        self._ia_limit = top.size * (top.index_mask + 1) if ia_limit is None else ia_limit
        pages = inline_pages(mem)
        #: the page view single-page maps and unmaps read entries from, when there is one
        #: (else their fast plans are empty and this view is never read)
        self._viewed = pages is not None and linear
        self._page = page_getter(pages)
        super().__init__(mem, linear)
        self.root = mem.alloc(root_size, root_size)
        self._entries: dict[int, int] = {self.root: 0}
        self._root_size = root_size
        self.walker = self._make_walker(mem)
        self._nested_walker: Walker | None = None

    def _single_page_paths(self) -> tuple[PageSizePath, ...]:
        """Per page size, what a compiled single-page ``map``/``unmap`` branch needs (see
        :mod:`.fastpath`); none without a page view, with tables or a root larger than 4 KiB,
        or with a non-contiguous output address."""
        if not self._viewed or self._root_size != 4096 or self._table_size != 4096:
            return ()
        present = self._table_desc(0)  # the bits every table descriptor of ours carries
        return tuple(
            PageSizePath(index, lv.shift, lv.table_mask, lv.table_value,
                         tuple((up.shift, up.table_mask | present, up.table_value | present)
                               for up in self.levels[:index]),
                         self._ia_limit - lv.size, self._oa_limit - lv.size, self._amask)
            for index, lv in enumerate(self.levels) if lv.leaf_ok)

    # -- format hooks ----------------------------------------------------------------------

    def _make_walker(self, mem: TableMemory) -> Walker:
        """The format's walker over ``mem`` under this builder's configuration."""
        raise NotImplementedError

    def _input(self, iova: int, op: str) -> int:
        """The input address as the tables index it; ``UAPIError(ERANGE)`` when out of range."""
        raise NotImplementedError

    def _input_span(self, iova: int, size: int, op: str) -> None:
        """Refuse (ERANGE) a range ``[iova, iova + size)`` that leaves the input range."""
        self._input(iova, op)
        self._input(iova + size - 1, op)

    def _table_desc(self, addr: int) -> int:
        """A descriptor pointing at the next-level table at ``addr``."""
        raise NotImplementedError

    def _leaf_bits(self, index: int, prot: int) -> int:
        """The bits besides the output address of a leaf at level index ``index`` with
        protection ``prot``."""
        raise NotImplementedError

    def _split_first(self, desc: int, index: int) -> int:
        """For a block at level index ``index``: the first of the next level's equivalent leaves
        (the others follow at steps of the next level's size)."""
        raise NotImplementedError

    def _table_addr(self, desc: int) -> int:
        """The next-level table (or leaf output) address held in a descriptor."""
        return desc & self._amask

    # -- checks ------------------------------------------------------------------------------

    def _check_leaf(self, op: str, iova: int, size: int, paddr: int, count: int) -> int:
        index = self._size_index.get(size)
        if index is None:
            sizes = ", ".join(f"{s:#x}" for s in self.page_sizes)
            raise UAPIError(errno.EINVAL, f"{self._name} {op}: size {size:#x} is not one of the "
                            f"format's page/block sizes ({sizes})", rule="pgtable.size")
        if (iova | paddr) & (size - 1) or count < 1:
            raise UAPIError(errno.EINVAL, f"{self._name} {op}: iova {iova:#x} / paddr {paddr:#x} "
                            f"not aligned to size {size:#x}, or {count} pages",
                            rule="pgtable.align")
        self._input_span(iova, size * count, op)
        return index

    def _check_map(self, op: str, paddr: int, size: int, prot: int) -> None:
        if not prot & _RW:
            raise UAPIError(errno.EINVAL, f"{self._name} {op}: prot {prot:#x} grants neither "
                            "READ nor WRITE", rule="pgtable.prot")
        if paddr < 0 or paddr + size > self._oa_limit:
            raise UAPIError(errno.ERANGE, f"{self._name} {op}: paddr {paddr:#x} size {size:#x} "
                            f"beyond the {self._oa_limit.bit_length() - 1}-bit output range",
                            rule="pgtable.oa_range")

    def _chunks(self, op: str, iova: int, paddr: int,
                size: int) -> list[tuple[int, int, int, int]]:
        smallest = self.page_sizes[0]
        if size <= 0 or (iova | paddr | size) & (smallest - 1):
            raise UAPIError(errno.EINVAL, f"{self._name} {op}: iova {iova:#x}, paddr "
                            f"{paddr:#x}, size {size:#x} must be {smallest:#x}-aligned and "
                            "non-empty", rule="pgtable.align")
        self._input_span(iova, size, op)
        return page_chunks(iova, paddr, size, self.page_sizes)

    def _forget_tables(self) -> None:
        """Drop what remembers table addresses beyond the tables themselves (a builder's
        compiled single-page paths keep the leaf's table they last reached)."""

    def _free_table(self, table: int) -> None:
        """Free ``table`` (already unlinked, or being freed with its parent), forgetting it."""
        del self._entries[table]
        self.mem.free(table)
        self._forget_tables()

    def _overlap(self, va: int, desc: int) -> UAPIError:
        return UAPIError(errno.EEXIST, f"{self._name} map: iova {va:#x} overlaps an existing "
                         f"mapping ({desc:#x})", rule="pgtable.overlap")

    def _new_table(self, parent: int, ptr: int, created: list[tuple[int, int, int]]) -> int:
        new = self.mem.alloc(self._table_size, self._table_size)
        self._write(ptr, self._table_desc(new))
        self._entries[parent] += 1
        self._entries[new] = 0
        created.append((parent, ptr, new))
        return new

    def _undo(self, created: list[tuple[int, int, int]]) -> None:
        for parent, ptr, new in reversed(created):
            self._write(ptr, 0)
            self._entries[parent] -= 1
            self._free_table(new)

    def _leafless(self, table: int, index: int) -> bool:
        """Whether ``table`` (at level index ``index``) and the tables beneath it hold no leaf
        (what partial unmaps leave behind)."""
        if self._entries[table] == 0:
            return True
        if index + 1 == len(self.levels):
            return False
        lv = self.levels[index]
        for desc in self.read_run(table, lv.index_mask + 1):
            if desc and (desc & lv.table_mask != lv.table_value
                         or not self._leafless(self._table_addr(desc), index + 1)):
                return False
        return True

    def _free_tree(self, table: int, index: int) -> None:
        """Free ``table`` (at level index ``index``) and every table beneath it."""
        lv = self.levels[index]
        if index + 1 < len(self.levels):
            for desc in self.read_run(table, lv.index_mask + 1):
                if desc and desc & lv.table_mask == lv.table_value:
                    self._free_tree(self._table_addr(desc), index + 1)
        self._free_table(table)

    # -- lookup ----------------------------------------------------------------------------

    def iova_to_phys(self, iova: int) -> int:
        """The physical address ``iova`` maps to, or 0 when it is not mapped (software walk:
        permissions and access flags are not checked)."""
        try:
            va = self._input(iova, "iova_to_phys")
        except UAPIError:
            return 0
        read = self._read
        table = self.root
        for lv in self.levels:
            desc = read(table + (((va >> lv.shift) & lv.index_mask) << 3))
            if desc == 0:
                return 0
            if desc & lv.table_mask == lv.table_value:
                table = self._table_addr(desc)
                continue
            return (self._table_addr(desc) & -lv.size) | (va & (lv.size - 1))
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

    def free_tables(self) -> None:
        """Free every table, the root included (io-pgtable's ``free_io_pgtable_ops``,
        intel-iommu's ``domain_exit``): the owner is done with this page table. No flush is
        reported; the builder is not used afterwards."""
        self._free_tree(self.root, 0)

    def table_count(self) -> int:
        """How many tables (the root included) the builder currently holds."""
        return len(self._entries)

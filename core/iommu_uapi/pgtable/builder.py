"""The io-pgtable machinery every format shares: ``map_pages``/``unmap_pages``, ``map``/``unmap``
of any aligned size, block splitting, table freeing, flush callbacks, ``iova_to_phys``.

A format describes its radix tree as a tuple of :class:`Level` (top level first) and supplies a
few descriptor hooks; :class:`PageTableBuilder` does the rest the way Linux's io-pgtable does.
``map_pages(iova, paddr, pgsize, pgcount, prot)`` installs ``pgcount`` leaves of ``pgsize``
(allocating the missing tables, writing each table's run of leaves at once; a leaf of a
block size replaces a table beneath it that holds no leaf, freeing that table);
``unmap_pages(iova, pgsize, pgcount)`` clears them (splitting a block that straddles either end
of the range so the rest stays mapped, stopping at the first entry that is not mapped);
``map``/``unmap`` take any size aligned to the smallest page and cut it into the largest page
sizes that fit, as the kernel's ``iommu_map`` does. As in Linux (io-pgtable-arm's unmap frees a
table only for a block-sized unmap, intel-iommu's only for levels whose whole span is in the
range), an unmap frees a table only when the range covers the table's whole span: a table a
partial unmap leaves empty stays allocated for the next map. Tables live in the memory in
their real bit layout; the only bookkeeping is a count of live entries per table. Unmaps (and
a block map that replaces an empty table) report what changed through the builder's
:class:`~.common.FlushOps`.

Errors (``UAPIError``; nothing is changed by a refused call):

====================================================  ========  ====================
rule                                                  errno     rule id
====================================================  ========  ====================
pgsize is not one of the format's page/block sizes    EINVAL    ``pgtable.size``
iova or paddr not aligned to the size, or empty       EINVAL    ``pgtable.align``
prot has neither READ nor WRITE                       EINVAL    ``pgtable.prot``
iova beyond the input range                           ERANGE    ``pgtable.ia_range``
paddr beyond the output range                         ERANGE    ``pgtable.oa_range``
the range overlaps an existing mapping                EEXIST    ``pgtable.overlap``
table memory exhausted                                ENOMEM    (the memory's)
====================================================  ========  ====================
"""

from __future__ import annotations

from typing import Any

from .common import FlushOps
from .fastpath import compile_single_page
from .runs import Spans
from .tree import Level, TableTree, page_chunks

__all__ = ["Level", "PageTableBuilder", "page_chunks"]


class _Placed:
    """What a map did so far: tables created ``(parent, ptr, table)``, leaf runs written
    ``(table, ptr, n, entries added)``, leafless tables replaced ``(ptr, desc, iova, index)``
    (unlinked, freed only once the whole map succeeded)."""

    __slots__ = ("created", "replaced", "written")

    def __init__(self) -> None:
        self.created: list[tuple[int, int, int]] = []
        self.written: list[tuple[int, int, int, int]] = []
        self.replaced: list[tuple[int, int, int, int]] = []


class PageTableBuilder(TableTree):
    """A page table owned by its builder: ``map``/``map_pages``, ``unmap``/``unmap_pages``,
    ``iova_to_phys``, ``walk``; ``flush`` (a :class:`~.common.FlushOps`, or None) is told what
    each unmap changed. A format subclasses it with its levels and descriptor hooks (see
    :class:`~.tree.TableTree`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        paths = self._single_page_paths()
        if paths:
            # this builder's own map/unmap, with the common single-page case compiled
            writable = getattr(self.mem, "page_quads_writable", None)
            wpages = writable() if writable is not None else None
            names = {"get": self._page, "write": self._write, "entries": self._entries,
                     "wget": ({} if wpages is None else wpages).get,
                     "leaf_bits": self._leaf_cache.get, "overlap": self._overlap,
                     "builder": self, "general_map": self.map, "general_unmap": self.unmap}
            fast_map, fast_unmap, forget = compile_single_page(self.root, paths, names)
            self.map = fast_map  # type: ignore[method-assign,assignment]
            self.unmap = fast_unmap  # type: ignore[method-assign,assignment]
            self._forget_tables = forget  # type: ignore[method-assign]

    # -- map -------------------------------------------------------------------------------

    def map(self, iova: int, paddr: int, size: int, prot: int) -> None:
        """Map ``[iova, iova + size)`` to ``paddr``: any size aligned to the smallest page,
        cut into the largest page sizes that fit (:func:`page_chunks`); all or nothing.

        Refused with EEXIST when any part of the range is already mapped, EINVAL for a
        misaligned or empty range or a ``prot`` without READ/WRITE, ERANGE for an address
        beyond the input or output range.
        """
        if size in self._size_index and not (iova | paddr) & (size - 1):
            self.map_pages(iova, paddr, size, 1, prot)
            return
        chunks = self._chunks("map", iova, paddr, size)
        self._check_map("map", paddr, size, prot)
        done = _Placed()
        try:
            for va, pa, pgsize, count in chunks:
                index = self._check_leaf("map", va, pgsize, pa, count)
                self._place(va, pa, self._bits(index, prot), index, count, done)
        except BaseException:
            self._rollback(done)
            raise
        self._free_replaced(done)

    #: The former name of :meth:`map` (which now takes any aligned size).
    map_range = map

    def map_pages(self, iova: int, paddr: int, pgsize: int, pgcount: int, prot: int) -> int:
        """Map ``pgcount`` leaves of ``pgsize`` from ``iova`` to ``paddr`` onwards (io-pgtable's
        ``map_pages``); all or nothing. Returns the bytes mapped. Refusals as :meth:`map`, and
        EINVAL for a ``pgsize`` that is not a page/block size of the format."""
        index = self._check_leaf("map_pages", iova, pgsize, paddr, pgcount)
        self._check_map("map_pages", paddr, pgsize * pgcount, prot)
        done = _Placed()
        try:
            self._place(iova, paddr, self._bits(index, prot), index, pgcount, done)
        except BaseException:
            self._rollback(done)
            raise
        self._free_replaced(done)
        return pgsize * pgcount

    def _bits(self, index: int, prot: int) -> int:
        key = (prot << 3) | index
        bits = self._leaf_cache.get(key)
        if bits is None:
            bits = self._leaf_cache[key] = self._leaf_bits(index, int(prot))
        return bits

    def _place(self, iova: int, paddr: int, bits: int, index: int, count: int,
               done: _Placed) -> None:
        """Write ``count`` leaves at level index ``index``: first the tables each run of leaves
        needs are found or created and every run is checked free (empty, or a table holding no
        leaf, which the leaf replaces), then each table's run is written at once. ``done``
        records what was created, written and replaced, for :meth:`_rollback` or
        :meth:`_free_replaced`."""
        lv = self.levels[index]
        runs: list[tuple[int, int, int, int, int]] = []
        va, pa = iova, paddr
        while count:
            table = self._descend_create(va, index, done.created)
            first = (va >> lv.shift) & lv.index_mask
            n = min(count, lv.index_mask + 1 - first)
            ptr = table + (first << 3)
            taken = 0
            if n == 1:
                desc = self._read(ptr)
                if desc:
                    taken = self._replaceable(ptr, desc, va, index, done)
            elif not self.run_empty(ptr, n):
                for j, desc in enumerate(self.read_run(ptr, n)):
                    if desc:
                        taken += self._replaceable(ptr + (j << 3), desc,
                                                   va + (j << lv.shift), index, done)
            runs.append((table, ptr, pa, n, n - taken))
            va += n << lv.shift
            pa += n << lv.shift
            count -= n
        for table, ptr, pa, n, added in runs:
            if n == 1:
                self._write(ptr, self._encode_oa(pa) | bits)
            else:
                self.write_leaves(ptr, pa, bits, lv.size, n)
            self._entries[table] += added
            done.written.append((table, ptr, n, added))

    def _replaceable(self, ptr: int, desc: int, va: int, index: int, done: _Placed) -> int:
        """A taken entry where a leaf of level index ``index`` is to go: 1 when it is a table
        holding no leaf (noted in ``done.replaced``), else the overlap refusal."""
        lv = self.levels[index]
        if desc & lv.table_mask != lv.table_value or not self._leafless(
                self._table_addr(desc), index + 1):
            raise self._overlap(va, desc)
        done.replaced.append((ptr, desc, va, index))
        return 1

    def _rollback(self, done: _Placed) -> None:
        """Undo a refused map: clear the leaves written, put back the tables they replaced,
        free the tables created; every byte is as it was."""
        for table, ptr, n, added in reversed(done.written):
            self.clear_run(ptr, n)
            self._entries[table] -= added
        for ptr, desc, _, _ in done.replaced:
            self._write(ptr, desc)
        self._undo(done.created)

    def _free_replaced(self, done: _Placed) -> None:
        """Free the leafless tables a map replaced by leaves, and report their spans."""
        for _, desc, va, index in done.replaced:
            self._free_tree(self._table_addr(desc), index + 1)
            if self.flush is not None:
                self.flush.table_freed(va, self.levels[index].size)

    def _descend_create(self, va: int, index: int, created: list[tuple[int, int, int]]) -> int:
        """The table of level index ``index`` for ``va``, creating missing tables."""
        table = self.root
        for shift, imask, tmask, tval in self._descend[index]:
            ptr = table + (((va >> shift) & imask) << 3)
            desc = self._read(ptr)
            if desc == 0:
                table = self._new_table(table, ptr, created)
            elif desc & tmask == tval:
                table = self._table_addr(desc)
            else:
                raise self._overlap(va, desc)
        return table

    # -- unmap -----------------------------------------------------------------------------

    def unmap(self, iova: int, size: int) -> int:
        """Unmap ``[iova, iova + size)`` (any size aligned to the smallest page), cut as
        :meth:`map` cuts it; returns the bytes unmapped, up to the first page that was not
        mapped (0 when nothing was mapped at ``iova``). See :meth:`unmap_pages`."""
        if size in self._size_index and not iova & (size - 1):
            return self.unmap_pages(iova, size, 1)
        done = 0
        for va, _, pgsize, count in self._chunks("unmap", iova, 0, size):
            got = self.unmap_pages(va, pgsize, count)
            done += got
            if got < pgsize * count:
                break
        return done

    def unmap_pages(self, iova: int, pgsize: int, pgcount: int) -> int:
        """Unmap ``pgcount`` pages of ``pgsize`` from ``iova`` (io-pgtable's ``unmap_pages``);
        returns the bytes unmapped, which stop at the first entry that is not mapped.

        A block that straddles either end of the range is first split into next-level entries
        (recursively) so the rest of it stays mapped; a table entry whose span lies inside the
        range is dropped with everything beneath it. A table is freed only when the range
        covers its whole span; one left empty by a partial unmap stays allocated (Linux's
        io-pgtable-arm and intel-iommu do the same). ``flush`` is then called with the leaf
        range cleared and the spans of the tables freed.
        """
        index = self._check_leaf("unmap_pages", iova, pgsize, 0, pgcount)
        if pgcount == 1:
            return self._unmap_one(iova, pgsize, index)
        return self._unmap(iova, pgsize * pgcount, index, self.flush)

    def _unmap_one(self, va: int, size: int, index: int) -> int:
        """One page, in the common case (tables all the way down, a leaf at the end: no table
        is freed, as none lies inside one page); anything else goes to :meth:`_unmap`."""
        read = self._read
        table = self.root
        for shift, imask, tmask, tval in self._descend[index]:
            desc = read(table + (((va >> shift) & imask) << 3))
            if desc == 0:
                return 0
            if desc & tmask != tval:
                return self._unmap(va, size, index, self.flush)
            table = desc & self._amask if self._linear else self._table_addr(desc)
        shift, imask = self._leaf_at[index]
        ptr = table + (((va >> shift) & imask) << 3)
        desc = read(ptr)
        if desc == 0:
            return 0
        lv = self.levels[index]
        if desc & lv.table_mask == lv.table_value:
            return self._unmap(va, size, index, self.flush)
        self._write(ptr, 0)
        self._entries[table] -= 1
        if self.flush is not None:
            self.flush.leaf_changed(va, size)
        return size

    def _unmap(self, va: int, size: int, index: int, flush: FlushOps | None) -> int:
        """Unmap ``[va, va + size)`` at level index ``index``: split the edge blocks (all the
        allocation this needs, done first so a refusal changes nothing), then clear."""
        end = va + size
        splits: list[tuple[int, int, int]] = []
        step = self.levels[index].size
        try:
            self._split_edge(va, index, va, end, splits)
            if end - step != va:
                self._split_edge(end - step, index, va, end, splits)
        except BaseException:
            for ptr, old, new in reversed(splits):
                self._write(ptr, old)
                self._free_table(new)
            raise
        leaves, freed = Spans(), Spans()
        cur = va
        while cur < end:
            cur, more = self._clear_from(cur, va, end, index, leaves, freed)
            if not more:
                break
        if flush is not None:
            leaves.emit(flush.leaf_changed)
            freed.emit(flush.table_freed)
        return cur - va

    def _split_edge(self, addr: int, index: int, va: int, end: int,
                    splits: list[tuple[int, int, int]]) -> None:
        """Split every block above level index ``index`` on the way to ``addr`` that is not
        wholly inside ``[va, end)``."""
        table = self.root
        for i in range(index):
            lv = self.levels[i]
            ptr = table + (((addr >> lv.shift) & lv.index_mask) << 3)
            desc = self._read(ptr)
            if desc == 0:
                return
            if desc & lv.table_mask == lv.table_value:
                table = self._table_addr(desc)
                continue
            base = addr & -lv.size
            if va <= base and base + lv.size <= end:
                return
            table = self._split(i, ptr, desc, splits)

    def _split(self, index: int, ptr: int, desc: int,
               splits: list[tuple[int, int, int]]) -> int:
        """Replace the block ``desc`` at ``ptr`` by a next-level table of equivalent leaves."""
        new = self.mem.alloc(self._table_size, self._table_size)
        child = self.levels[index + 1]
        count = child.index_mask + 1
        self.write_split(new, self._split_first(desc, index), child.size, count)
        self._write(ptr, self._table_desc(new))
        self._entries[new] = count
        splits.append((ptr, desc, new))
        return new

    def _clear_from(self, cur: int, start: int, end: int, index: int, leaves: Spans,
                    freed: Spans) -> tuple[int, bool]:
        """Clear the entries for ``[cur, end)`` within one table (or one whole block above it)
        of the unmap of ``[start, end)``; returns where the next table starts and whether to go
        on (False at a hole: an empty entry, or a table beneath holding no leaf, which is
        freed as the range covers it)."""
        table = self.root
        path: list[tuple[int, int, int]] = []
        for i in range(index):
            lv = self.levels[i]
            ptr = table + (((cur >> lv.shift) & lv.index_mask) << 3)
            desc = self._read(ptr)
            if desc == 0:
                return cur, False
            if desc & lv.table_mask == lv.table_value:
                path.append((table, ptr, i))
                table = self._table_addr(desc)
                continue
            self._write(ptr, 0)  # a block wholly inside the range (the edges were split)
            leaves.add(cur, lv.size)
            self._drop(table, 1, path, cur, freed, start, end)
            return cur + lv.size, True
        lv = self.levels[index]
        first = (cur >> lv.shift) & lv.index_mask
        n = min((end - cur) >> lv.shift, lv.index_mask + 1 - first)
        ptr = table + (first << 3)
        descs = self.read_run(ptr, n)
        try:
            k = descs.index(0)
        except ValueError:
            k = n
        hole, gone = k < n, 0
        if index + 1 < len(self.levels):
            tables = [j for j in range(k) if descs[j] & lv.table_mask == lv.table_value]
            for j in tables:
                sub = self._table_addr(descs[j])
                if self._leafless(sub, index + 1):
                    # nothing is mapped beneath: a hole, yet freed as the range covers it
                    self._free_tree(sub, index + 1)
                    self._write(ptr + (j << 3), 0)
                    freed.add(cur + (j << lv.shift), lv.size)
                    k, hole, gone = j, True, 1
                    break
            for j in tables:
                if j >= k:
                    break
                self._free_tree(self._table_addr(descs[j]), index + 1)
                freed.add(cur + (j << lv.shift), lv.size)
        if k:
            self.clear_run(ptr, k)
            leaves.add(cur, k << lv.shift)
        if k + gone:
            self._drop(table, k + gone, path, cur, freed, start, end)
        return cur + (k << lv.shift), not hole

    def _drop(self, table: int, k: int, path: list[tuple[int, int, int]], va: int,
              freed: Spans, start: int, end: int) -> None:
        """Count ``k`` entries of ``table`` gone; free the tables left empty whose whole span
        lies in ``[start, end)``, up to (not) the root, and note the span of the highest entry
        cleared."""
        entries = self._entries
        entries[table] -= k
        top = -1
        while entries[table] == 0 and path:
            parent, ptr, i = path[-1]
            size = self.levels[i].size
            base = va & -size
            if base < start or base + size > end:
                break
            path.pop()
            self._free_table(table)
            self._write(ptr, 0)
            entries[parent] -= 1
            table = parent
            top = i
        if top >= 0:
            size = self.levels[top].size
            freed.add(va & -size, size)

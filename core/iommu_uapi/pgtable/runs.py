"""Runs of table entries read and written at once, and the ranges an operation reports.

A builder maps and unmaps a table's worth of pages with one read and one write of the table
memory (``read``/``write`` of :class:`~iommu_uapi.memory.PhysicalMemory` or
:class:`~iommu_uapi.memory.GuestMemory`, entry by entry through ``read64``/``write64`` for a
memory without them), and coalesces what it changed into a few ranges for its flush callbacks.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable

from .common import TableMemory

__all__ = ["Runs", "Spans"]


class Spans:
    """Address ranges an operation touched, merged while they are added (overlapping or
    adjacent ranges become one), reported in the order they were first met."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[list[int]] = []

    def add(self, start: int, size: int) -> None:
        """Note ``[start, start + size)``."""
        end = start + size
        items = self.items
        while items and start <= items[-1][1] and end >= items[-1][0]:
            last = items.pop()
            start, end = min(start, last[0]), max(end, last[1])
        items.append([start, end])

    def emit(self, call: Callable[[int, int], None]) -> None:
        """Call ``call(start, size)`` once per merged range."""
        for start, end in self.items:
            call(start, end - start)


class Runs:
    """Entry-run access for a builder over ``mem``. ``linear``: leaf descriptors of
    consecutive pages differ by the page size (the output address is one contiguous field)."""

    def __init__(self, mem: TableMemory, linear: bool) -> None:
        self._linear = linear
        self._bulk_read: Callable[[int, int], bytes] | None = getattr(mem, "read", None)
        self._bulk_write: Callable[[int, bytes], None] | None = getattr(mem, "write", None)
        self._mem_read64 = mem.read64
        self._mem_write64 = mem.write64

    def _encode_oa(self, addr: int) -> int:
        """An output or table address as a descriptor holds it."""
        return addr

    def read_run(self, ptr: int, n: int) -> array[int]:
        """The ``n`` entries from ``ptr``."""
        if self._bulk_read is not None:
            out = array("Q")
            out.frombytes(self._bulk_read(ptr, n << 3))
            return out
        read = self._mem_read64
        return array("Q", [read(ptr + (i << 3)) for i in range(n)])

    def run_empty(self, ptr: int, n: int) -> bool:
        """Whether the ``n`` entries from ``ptr`` are all zero."""
        if self._bulk_read is not None:
            data = self._bulk_read(ptr, n << 3)
            return data.count(0) == len(data)
        return not any(self.read_run(ptr, n))

    def _write_run(self, ptr: int, entries: array[int]) -> None:
        if self._bulk_write is not None:
            self._bulk_write(ptr, entries.tobytes())
            return
        write = self._mem_write64
        for i, desc in enumerate(entries):
            write(ptr + (i << 3), desc)

    def clear_run(self, ptr: int, n: int) -> None:
        """Zero the ``n`` entries from ``ptr``."""
        if self._bulk_write is not None:
            self._bulk_write(ptr, bytes(n << 3))
            return
        write = self._mem_write64
        for i in range(n):
            write(ptr + (i << 3), 0)

    def write_leaves(self, ptr: int, paddr: int, bits: int, size: int, n: int) -> None:
        """Write ``n`` leaves of ``size`` mapping ``paddr`` onwards, each with ``bits``."""
        if self._linear:
            first = paddr | bits
            self._write_run(ptr, array("Q", range(first, first + n * size, size)))
        else:
            enc = self._encode_oa
            self._write_run(ptr, array("Q", [enc(paddr + i * size) | bits for i in range(n)]))

    def write_split(self, table: int, first: int, step: int, n: int) -> None:
        """Fill a new table with the ``n`` leaves equivalent to a block: ``first`` and the
        ones after it at steps of ``step`` (a block is aligned to its size, so its address
        field never carries out of it)."""
        self._write_run(table, array("Q", range(first, first + n * step, step)))

"""The host side of the device: where a VMM mirrors each endpoint's mappings (VFIO, vhost).

A VMM that assigns a physical device behind the virtio-iommu must make the host IOMMU map what
the guest maps: each MAP becomes one host map per endpoint of the domain, each UNMAP one host
unmap per endpoint and mapping, an ATTACH maps the domain's mappings for the endpoint and a
DETACH unmaps them. The host may refuse (``UAPIError``); the device then undoes what it did so
that its own table and the host stay the same (field lesson: a device table that kept entries
the host had dropped refused later MAPs as overlaps).

:class:`HostTables` is such a host: per endpoint, the ranges it maps, refusing an overlapping map
(EEXIST) or an unmap of nothing (ENOENT), with failures injected on demand.
"""

from __future__ import annotations

from typing import Protocol

from iommu_uapi.errors import UAPIError

from .mappings import Mapping, MappingTable
from .rules import refusal

__all__ = ["Host", "HostTables", "HostTxn"]


class Host(Protocol):
    """What the device asks of the host; a refusal raises ``UAPIError``."""

    def map(self, endpoint: int, iova: int, size: int, paddr: int, flags: int, /) -> None:
        """Map ``[iova, iova + size)`` to ``paddr`` with the MAP ``flags`` for ``endpoint``."""

    def unmap(self, endpoint: int, iova: int, size: int, /) -> None:
        """Remove the mapping ``[iova, iova + size)`` of ``endpoint``."""


class HostTables:
    """A host that keeps each endpoint's mappings; ``fail(op, after=n)`` makes the ``n``-th next
    call of ``op`` (``"map"`` or ``"unmap"``; 0 = the next one) fail once with EIO."""

    def __init__(self) -> None:
        self.tables: dict[int, MappingTable] = {}
        self.calls = {"map": 0, "unmap": 0}
        self._fail_at: dict[str, int] = {}

    def fail(self, op: str, *, after: int = 0) -> None:
        """Arm one failure of ``op``, ``after`` successful calls from now."""
        self._fail_at[op] = self.calls[op] + after

    def _call(self, op: str) -> None:
        count = self.calls[op]
        self.calls[op] = count + 1
        if self._fail_at.get(op) == count:
            del self._fail_at[op]
            raise refusal("virtio.host.injected", op=op, count=count)

    def mappings(self, endpoint: int) -> list[Mapping]:
        """The mappings the host holds for ``endpoint``, in address order."""
        table = self.tables.get(endpoint)
        return list(table) if table is not None else []

    def map(self, endpoint: int, iova: int, size: int, paddr: int, flags: int, /) -> None:
        """Add ``[iova, iova + size)``; EEXIST if it meets a mapping of ``endpoint``."""
        table = self.tables.setdefault(endpoint, MappingTable())
        end = iova + size - 1
        if table.overlapping(iova, end):
            raise refusal("virtio.host.overlap", endpoint=endpoint, start=iova, end=end)
        self._call("map")
        table.insert(Mapping(iova, end, paddr, flags))

    def unmap(self, endpoint: int, iova: int, size: int, /) -> None:
        """Remove the mapping ``[iova, iova + size)``; ENOENT if ``endpoint`` has no such one."""
        table = self.tables.get(endpoint)
        found = table.find(iova) if table is not None else None
        if table is None or found is None or found.virt_start != iova or found.size != size:
            raise refusal("virtio.host.missing", endpoint=endpoint, start=iova)
        self._call("unmap")
        table.remove(found)


class HostTxn:
    """Host calls made for one request, undone in reverse order when a later one fails.

    With no host (``None``) every call succeeds at once. :meth:`rollback` returns the undo calls
    the host refused as ``(mapped, endpoint, mapping)``: ``mapped`` True means the host still
    holds ``mapping`` for ``endpoint`` (its unmap was refused), False that it lacks it.
    """

    __slots__ = ("_done", "host")

    def __init__(self, host: Host | None) -> None:
        self.host = host
        self._done: list[tuple[bool, int, Mapping]] = []

    def map(self, endpoint: int, mapping: Mapping) -> None:
        """Map ``mapping`` for ``endpoint`` (raises the host's ``UAPIError``)."""
        if self.host is not None:
            self.host.map(endpoint, mapping.virt_start, mapping.size, mapping.phys_start,
                          mapping.flags)
            self._done.append((True, endpoint, mapping))

    def unmap(self, endpoint: int, mapping: Mapping) -> None:
        """Unmap ``mapping`` for ``endpoint`` (raises the host's ``UAPIError``)."""
        if self.host is not None:
            self.host.unmap(endpoint, mapping.virt_start, mapping.size)
            self._done.append((False, endpoint, mapping))

    def rollback(self) -> list[tuple[bool, int, Mapping]]:
        """Undo every call made, newest first; returns the undo calls the host refused."""
        host = self.host
        refused: list[tuple[bool, int, Mapping]] = []
        if host is None:
            return refused
        for mapped, endpoint, m in reversed(self._done):
            try:
                if mapped:
                    host.unmap(endpoint, m.virt_start, m.size)
                else:
                    host.map(endpoint, m.virt_start, m.size, m.phys_start, m.flags)
            except UAPIError:
                refused.append((mapped, endpoint, m))
        self._done.clear()
        return refused

"""A backend's guest side: how a guest builds its stage-1 tables and hands them to the IOMMU.

A backend describes, through the ``iommu_guest_formats`` hook, each guest PASID format it
accepts as a :class:`GuestFormat`: the tables a guest driver builds in guest memory for it, and
how a guest *context* (one PASID translating through those tables over the host's stage 2)
enters the IOMMU:

* :attr:`GuestEntry.BIND_GPASID` — the VMM binds the tables to a host PASID of a device with
  ``sva_bind_gpasid`` (VT-d): :meth:`GuestFormat.bind_data` is the record it sends;
* :attr:`GuestEntry.PASID_TABLE` — the VMM attaches the guest's whole PASID table to the domain
  once with ``attach_pasid_table`` (SMMUv3 CD tables); the guest then writes one table entry per
  PASID (:meth:`GuestFormat.write_entry`) and invalidates the PASID cache. A *single-context*
  table (:attr:`GuestFormat.single_context`: one entry, which DMA without PASID reaches, as an
  SMMU STE with S1CDMax = 0 and the nested series' one-CD attach) is made visible by attaching
  it after the guest wrote its entry, and withdrawn by detaching it: the driver's attach and
  detach invalidate what the IOMMU cached of the old configuration.

The conformance suite and the differential runner build guests only through these records, so
they hold no architecture's constants.
"""

from __future__ import annotations

import enum
from typing import Protocol

from .memory import GuestMemory
from .uapi import GpasidBindData, PasidTableConfig

__all__ = ["GuestEntry", "GuestFormat", "GuestTables"]


class GuestEntry(enum.Enum):
    """How a guest context enters the IOMMU (the UAPI call that installs it)."""

    BIND_GPASID = "sva_bind_gpasid"
    PASID_TABLE = "attach_pasid_table"


class GuestTables(Protocol):
    """A guest's stage-1 page tables in guest memory (e.g. an io-pgtable builder)."""

    @property
    def root(self) -> int:
        """The GPA of the top-level table."""
        ...

    def map(self, iova: int, paddr: int, size: int, prot: int) -> None:
        """Map ``[iova, iova + size)`` to guest physical ``paddr`` with ``prot``."""
        ...

    def unmap(self, iova: int, size: int) -> int:
        """Unmap ``[iova, iova + size)``; returns the bytes unmapped."""
        ...


class GuestFormat:
    """One guest PASID format a backend accepts (see the module docstring).

    ``format`` is the UAPI's ``IOMMU_PASID_FORMAT_*`` value the backend checks; ``entry`` how a
    guest context enters; ``global_pages`` whether the guest's tables can mark a leaf global
    (``Prot.GLOBAL``: x86 G, LPAE nG=0) and the IOMMU caches such a leaf as global (kept by
    non-global invalidations); ``single_context`` (``PASID_TABLE`` only) whether the table
    holds one context, which DMA without PASID reaches (see the module docstring);
    ``host_stage2`` whether the host keeps mapping and unmapping the domain's stage 2 while the
    guest's contexts translate over it (False: virtio-iommu's table sharing, where a domain
    that shares a guest table takes no MAP or UNMAP).
    Subclasses implement :meth:`tables` and, per ``entry``, :meth:`bind_data` or
    :meth:`pasid_table` and :meth:`write_entry`.
    """

    format: int
    entry: GuestEntry
    global_pages: bool
    single_context: bool
    host_stage2: bool

    def __init__(self, format: int, entry: GuestEntry, *, global_pages: bool = False,
                 single_context: bool = False, host_stage2: bool = True) -> None:
        if single_context and entry is not GuestEntry.PASID_TABLE:
            raise ValueError("only a guest PASID table can hold a single context")
        self.format = format
        self.entry = entry
        self.global_pages = global_pages
        self.single_context = single_context
        self.host_stage2 = host_stage2

    def __repr__(self) -> str:
        single = ", single context" if self.single_context else ""
        return f"{type(self).__name__}(format={self.format}, entry={self.entry.value}{single})"

    def tables(self, guest: GuestMemory) -> GuestTables:
        """Empty stage-1 tables of this format, allocated in ``guest``'s memory."""
        raise NotImplementedError

    def bind_data(self, hpasid: int, root: int) -> GpasidBindData:
        """``BIND_GPASID``: the ``iommu_gpasid_bind_data`` binding the tables at GPA ``root``
        to host PASID ``hpasid`` (the exact record a guest's VMM sends)."""
        raise NotImplementedError(f"{self!r} enters by {self.entry.value}")

    def pasid_table(self, guest: GuestMemory) -> PasidTableConfig:
        """``PASID_TABLE``: allocate an empty guest PASID table in ``guest``'s memory and return
        the ``iommu_pasid_table_config`` that attaches it (stage 1 translating)."""
        raise NotImplementedError(f"{self!r} enters by {self.entry.value}")

    def write_entry(self, guest: GuestMemory, cfg: PasidTableConfig, pasid: int,
                    root: int | None) -> None:
        """``PASID_TABLE``: make the table ``cfg`` attaches translate ``pasid`` through the
        tables at GPA ``root``, or (None) make the PASID's entry invalid. The guest still has to
        invalidate the PASID cache for the IOMMU to see the change (a single-context table:
        the one entry, whatever ``pasid``, seen once the table is attached again)."""
        raise NotImplementedError(f"{self!r} enters by {self.entry.value}")

"""What every page-table format shares: protections, walk results, walk faults, stage-2 hooks.

A *builder* (``map``/``unmap``/``iova_to_phys``) owns tables it allocates from a table memory; a
*walker* (``walk``) reads tables the way the IOMMU does, descriptor by descriptor, counting the
reads and checking permissions, reserved bits and address sizes. Nested walks take a stage-2
translate function that is applied to the stage-1 root pointer, to every stage-1 table pointer and
to the stage-1 output.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Mapping
from enum import IntEnum, IntFlag
from functools import partial
from typing import NamedTuple, Protocol, TypeVar

import msgspec

from ..errors import UAPIError
from ..uapi.consts import FaultPerm, FaultReason

__all__ = [
    "ACCESS_INTS",
    "KIND_REASON",
    "NO_LEAF",
    "RWX",
    "Access",
    "FastLeaf",
    "FastPlan",
    "FastStep",
    "FaultKind",
    "FlushOps",
    "PageGet",
    "Prot",
    "Stage2Translate",
    "TableMemory",
    "WalkFault",
    "WalkResult",
    "Walker",
    "bad_access",
    "bind_stage2",
    "continued",
    "inline_pages",
    "page_getter",
    "plans_from",
    "restage",
]

_Step = TypeVar("_Step")

#: The access a DMA request makes: the ``IOMMU_FAULT_PERM_*`` bits (READ, WRITE, EXEC, PRIV), so
#: a fault can carry it as its ``perm`` unchanged.
Access = FaultPerm


class Prot(IntFlag):
    """Protection asked of a builder's ``map`` (io-pgtable's ``IOMMU_READ``/``WRITE``/... bits).

    ``NOEXEC`` clears execute permission where the format can (x86 XD, SL X, LPAE XN);
    ``PRIV`` makes the mapping privileged-only (x86 U/S=0, LPAE AP[1]=0); ``CACHE`` asks for
    cacheable/snooped memory attributes (x86: none, VT-d SL: SNP, LPAE: normal WB); ``MMIO`` asks
    for device memory attributes; ``GLOBAL`` marks a first-level leaf global (x86 G, LPAE nG=0).
    """

    READ = 1 << 0
    WRITE = 1 << 1
    CACHE = 1 << 2
    NOEXEC = 1 << 3
    MMIO = 1 << 4
    PRIV = 1 << 5
    GLOBAL = 1 << 6


class TableMemory(Protocol):
    """Where a builder keeps its tables: :class:`~iommu_uapi.memory.PhysicalMemory` or a guest's
    :class:`~iommu_uapi.memory.GuestMemory` (a guest building its own first-level tables)."""

    def read64(self, addr: int, /) -> int: ...
    def write64(self, addr: int, value: int, /) -> None: ...
    def alloc(self, size: int = ..., align: int | None = ..., /) -> int: ...
    def free(self, addr: int, /) -> None: ...


class WalkResult(msgspec.Struct, frozen=True, gc=False):
    """A successful walk: where the input address lands and what the leaf allows (an immutable
    C struct: a walk builds one in about 30 ns).

    ``oa`` is the output address of the byte asked for (page frame | offset); ``page_size`` the
    size of the leaf (4 KiB, 2 MiB, 1 GiB, ...); ``perm`` the effective permissions as
    ``Access`` bits (READ/WRITE/EXEC, and PRIV when only privileged requests may use it);
    ``level`` the leaf's level; ``reads`` descriptor reads of this stage; ``s2_reads`` descriptor
    reads made by the stage-2 translate function during this walk (0 when not nested); ``global_``
    the leaf's global bit (x86 G, LPAE nG=0).
    """

    oa: int
    page_size: int
    perm: int
    level: int
    reads: int
    s2_reads: int = 0
    global_: bool = False


class FaultKind(IntEnum):
    """Why a walk stopped, in the terms every format shares (each backend turns a kind, with
    the fault's stage, level and ``s2_class``, into its own fault record: VT-d fault reasons,
    SMMUv3 event numbers).

    ``INPUT_RANGE``: the input address lies outside what the tables translate (x86 not
    canonical, VT-d second level beyond AW, LPAE beyond the input size); ``WALK_EABT``: reading
    a descriptor failed (outside the address space); ``NOT_PRESENT``: the entry is not present
    (x86 P=0, LPAE invalid descriptor); ``RESERVED``: a reserved bit is set, or the encoding is
    not allowed at that level (x86/VT-d reserved bits and PS, LPAE block where none is allowed);
    ``ADDR_SIZE``: a table or output address beyond the output size (LPAE OAS); ``ACCESS``: the
    access flag is clear and hardware does not set it (LPAE AF=0); ``PERMISSION``: the entries
    deny the access (the fault's ``denied`` says what was refused).
    """

    INPUT_RANGE = 1
    WALK_EABT = 2
    NOT_PRESENT = 3
    RESERVED = 4
    ADDR_SIZE = 5
    ACCESS = 6
    PERMISSION = 7


#: The generic ``IOMMU_FAULT_REASON_*`` of each kind (what a fault record without a backend's
#: native code carries).
KIND_REASON: Mapping[FaultKind, FaultReason] = {
    FaultKind.INPUT_RANGE: FaultReason.OOR_ADDRESS,
    FaultKind.WALK_EABT: FaultReason.WALK_EABT,
    FaultKind.NOT_PRESENT: FaultReason.PTE_FETCH,
    FaultKind.RESERVED: FaultReason.PTE_FETCH,
    FaultKind.ADDR_SIZE: FaultReason.OOR_ADDRESS,
    FaultKind.ACCESS: FaultReason.ACCESS,
    FaultKind.PERMISSION: FaultReason.PERMISSION,
}


class WalkFault(Exception):
    """A walk stopped: the generic kind, where, and what the hardware would record.

    ``kind`` is the :class:`FaultKind` and ``reason`` its generic ``IOMMU_FAULT_REASON_*``;
    ``stage`` 1 or 2; ``level`` the level at which the walk stopped; ``addr`` the input address
    of the faulting stage (for a stage-2 fault on a stage-1 table pointer: that table's
    IPA/GPA); ``denied`` for a ``PERMISSION`` fault, the :class:`Access` bits the entry refused
    (READ, WRITE, EXEC; PRIV when an unprivileged request met a privileged-only entry), each
    format reporting the bits its own check order finds missing at that entry; ``fetch_addr``
    the descriptor address being read, when the fault is about a fetch; ``access`` the access
    that was checked; ``reads`` and ``s2_reads`` the reads made before the fault; ``s2_class``
    for stage-2 faults during a nested walk, what was being translated: ``"TT"`` (a stage-1
    table), ``"IN"`` (the stage-1 output), ``"ROOT"`` (the stage-1 root pointer), ``"AD"`` (the
    write of a hardware access/dirty update into a stage-1 descriptor).
    """

    def __init__(
        self,
        kind: FaultKind,
        *,
        stage: int,
        level: int,
        addr: int,
        access: int,
        denied: int = 0,
        fetch_addr: int | None = None,
        reads: int = 0,
        s2_reads: int = 0,
        s2_class: str | None = None,
        message: str = "",
    ) -> None:
        self.kind = kind
        self.reason = KIND_REASON[kind]
        self.stage = stage
        self.level = level
        self.addr = addr
        self.access = access
        self.denied = denied
        self.fetch_addr = fetch_addr
        self.reads = reads
        self.s2_reads = s2_reads
        self.s2_class = s2_class
        self.message = message
        super().__init__(
            f"stage-{stage} walk fault at level {level}: {kind.name} addr {addr:#x}"
            + (f": {message}" if message else "")
        )


#: A stage-2 translate function for nested walks: ``s2(ipa, access) -> WalkResult`` of the
#: stage-2 walk (raising :class:`WalkFault` with ``stage=2``).
Stage2Translate = Callable[[int, int], WalkResult]


class Walker(Protocol):
    """A format's walker: built once per (table memory, configuration), walks many times.

    ``walk_levels`` are the level numbers a walk from the root visits, in order (x86 and VT-d
    count down from the top, LPAE counts up from the start level); ``granted`` is the
    ``inherited`` value of skipped entries that grant everything (what a walk from the root
    starts with).
    """

    @property
    def mem(self) -> TableMemory: ...

    @property
    def walk_levels(self) -> tuple[int, ...]: ...

    @property
    def granted(self) -> int: ...

    def walk(self, root: int, iova: int, access: int, s2: Stage2Translate | None = None,
             update_ad: bool = False) -> WalkResult: ...

    def walk_partial(self, table: int, level: int, iova: int, access: int,
                     s2: Stage2Translate | None = None, *, inherited: int = ...,
                     path: list[tuple[int, int, int]] | None = None) -> WalkResult:
        """Walk ``iova`` from ``table``, the table of level ``level`` (a walk-cache hit): the
        same translation or fault as the full walk, ``reads`` counted from ``level``.
        ``inherited`` is what the skipped upper entries contribute, as the walker reported it
        in a ``path`` entry (format-specific permission bits); with ``path``, each table entry
        used is appended as ``(its level, the table it points to, inherited below it)``, and
        the walk under it continues at the next level of :attr:`walk_levels`."""
        ...


class FlushOps(NamedTuple):
    """A builder's flush callbacks, io-pgtable's ``iommu_flush_ops``: each is called with
    ``(iova, size)`` once per contiguous range an operation changed, after the change.

    ``leaf_changed``: leaf entries in the range were cleared or replaced (unmap, a block split
    into smaller leaves): the driver invalidates the translations cached for the range and may
    keep its walk caches (VT-d: page-selective IOTLB invalidation with IH=1; SMMUv3: TLBI by
    VA, leaf only). ``table_freed``: the tables under the range (the span of the entry that
    pointed to them) were freed: the driver also drops the walk-cache entries that lead into
    them (VT-d: IH=0; SMMUv3: TLBI by VA, not leaf-only). An unmap frees a table only when its
    range covers the table's whole span. A map calls neither, except ``table_freed`` for a
    block leaf that replaced a table holding no leaf (what partial unmaps leave behind).
    """

    leaf_changed: Callable[[int, int], None]
    table_freed: Callable[[int, int], None]


#: The permission bits of :class:`Access` (READ | WRITE | EXEC), without PRIV.
RWX = int(FaultPerm.READ | FaultPerm.WRITE | FaultPerm.EXEC)


def restage(
    fault: WalkFault,
    *,
    s2_class: str,
    addr: int,
    access: int,
    level: int,
    reads: int,
    s2_reads: int,
) -> WalkFault:
    """Re-raise a stage-2 fault met during a stage-1 walk as the nested walk reports it.

    The result is a ``stage=2`` fault carrying the stage-2 walk's kind and denied bits, the
    address stage 2 failed to translate
    (``addr``: a stage-1 descriptor's IPA/GPA, or the stage-1 output), what was being translated
    (``s2_class``: ``"ROOT"``, ``"TT"``, ``"AD"`` for a hardware access/dirty update of a stage-1
    descriptor, or ``"IN"``) and the reads of both stages so far, the stage-2 walk's included.
    ``level`` is the stage-2 level at which the stage-2 walk stopped.
    """
    return WalkFault(
        fault.kind,
        stage=2,
        level=level,
        addr=addr,
        access=access,
        denied=fault.denied,
        fetch_addr=fault.fetch_addr,
        reads=reads,
        s2_reads=s2_reads + fault.reads,
        s2_class=s2_class,
        message=f"translating {s2_class} address {addr:#x}: {fault.message or fault.kind.name}",
    )


#: Access values by index: a walker turns the ``access`` it is given (often an ``Access``
#: member, whose ``&``/``|`` run as Python code) into a plain int with one tuple index, after
#: checking ``0 <= access < 16``.
ACCESS_INTS: tuple[int, ...] = tuple(range(16))


def bad_access(access: object) -> UAPIError:
    """The refusal of an ``access`` that is not a combination of READ, WRITE, EXEC and PRIV."""
    return UAPIError(errno.EINVAL, f"walk: access {access!r} is not a combination of "
                     "READ/WRITE/EXEC/PRIV", rule="pgtable.access")


def bind_stage2(walker: Walker, root: int, update_ad: bool = False) -> Stage2Translate:
    """The stage-2 translate function ``s2(ipa, access)`` of ``walker`` over the tables at
    ``root`` (positional binding: the cheapest call a nested walk can make per level)."""
    if not update_ad:
        return partial(walker.walk, root)

    def translate(ipa: int, access: int) -> WalkResult:
        return walker.walk(root, ipa, access, None, True)

    return translate


def inline_pages(mem: TableMemory) -> Mapping[int, memoryview] | None:
    """The page -> quadwords view a walker may read descriptors from inline, when ``mem`` offers
    one (a :class:`~iommu_uapi.memory.PhysicalMemory` that does not count reads); else None and
    every read goes through ``mem.read64``."""
    page_quads = getattr(mem, "page_quads", None)
    return None if page_quads is None else page_quads()


#: A page view's ``get``: ``get(table_address, ZERO_QUADS)[index]`` reads a 4 KiB table's entry.
PageGet = Callable[[int, memoryview], memoryview]


def page_getter(pages: Mapping[int, memoryview] | None) -> PageGet:
    """The ``get`` a fast path reads with (an empty view's when there are no pages)."""
    return ({} if pages is None else pages).get


#: A leaf in a walker's fast path: ``(mask, want, oa_mask, offset_mask, size, level, reads,
#: perm)``; the leaf passes when ``desc & mask == want``, and ``perm`` maps the format's
#: permission key of the leaf to ``Access`` bits.
FastLeaf = tuple[int, int, int, int, int, int, int, tuple[int, ...]]

#: Where a level holds no leaf (its ``leaf_test`` is 0, so it is never consulted).
NO_LEAF: FastLeaf = (0, 1, 0, 0, 0, 0, 0, ())

#: One level of a walker's fast path: ``(shift, leaf_test, table_mask, table_want, leaf)``.
#: An entry with ``desc & leaf_test`` is a leaf (see :data:`FastLeaf`); otherwise it is a table
#: entry and must satisfy ``desc & table_mask == table_want``.
FastStep = tuple[int, int, int, int, FastLeaf]

#: How a walker runs the common case of one access, root level first: no fault, no reserved
#: bit, table entries that grant every permission (as builders write them), no A/D update, not
#: nested, 4 KiB tables read through :func:`inline_pages`. An entry that fails its test sends
#: the walk to the full path, which finds and reports the exact fault.
FastPlan = tuple[FastStep, ...]


def plans_from(fast: Mapping[int, tuple[_Step, ...]],
               levels: tuple[int, ...]) -> dict[int, dict[int, tuple[_Step, ...]]]:
    """A walker's fast plans cut once per level a continuation may start at: for each level of
    ``levels`` (the walk's order), every access's plan from that level on."""
    return {level: {a: steps[i:] for a, steps in fast.items()} for i, level in enumerate(levels)}


def continued(walk: Callable[[], WalkResult], skipped: int) -> WalkResult:
    """Run the full walk of a continuation and count its reads from where it started: the
    result's (or the fault's) ``reads`` less the ``skipped`` levels above."""
    try:
        r = walk()
    except WalkFault as f:
        f.reads -= skipped
        raise
    return WalkResult(r.oa, r.page_size, r.perm, r.level, r.reads - skipped, r.s2_reads,
                      r.global_)

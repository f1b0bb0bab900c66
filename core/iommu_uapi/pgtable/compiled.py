"""A walker's fast plan as a straight-line function: the IOTLB miss's walk without the loop.

:func:`compile_fields_walk` turns one access's :data:`~.common.FastPlan` into Python source with
every mask, shift and size of the plan written in as a constant, one block per level, and
compiles it once per distinct plan (an LRU cache keyed by the plan, whose steps are tuples of
ints). What it returns is a *factory*: called with a page view's ``get`` (see
:func:`~.common.page_getter`) and :data:`~iommu_uapi.memory.ZERO_QUADS`, it builds the walk
``fields(root, iova)`` bound to that view, so a walker built later for the same geometry only
calls the factory: no source is generated or compiled again.

``fields(root, iova)`` returns what the plan's loop returns on its fast path: the leaf as an
IOTLB entry's fields ``(iova & -size, size, output page, perm[desc & key], False)`` and the
descriptor reads, or None wherever the loop leaves for the full walk: an input outside
``[0, 2**input_bits)`` (checked first), or an entry that fails its test (not
present, a missing permission, a reserved bit, a table entry that restricts). The caller runs
the full walk on None, which finds and reports the exact fault. :func:`compile_result_walk` is
the same walk returning the :class:`~.common.WalkResult` of the walker's ``walk`` (what a nested
walk's stage-2 translate function runs for every stage-1 table and output).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

from .common import FastPlan, PageGet, WalkResult

__all__ = ["FieldsFast", "FieldsFastFactory", "ResultFast", "ResultFastFactory",
           "compile_fields_walk", "compile_result_walk"]

#: The walk of one access: ``fields(root, iova) -> ((base, size, page, perm, global), reads)``,
#: or None where the full walk must decide.
FieldsFast = Callable[[int, int], tuple[tuple[int, int, int, int, bool], int] | None]

#: What :func:`compile_fields_walk` returns: ``factory(get, ZERO_QUADS) -> fields``.
FieldsFastFactory = Callable[[PageGet, memoryview], FieldsFast]

#: The walk of one access to a :class:`~.common.WalkResult`: ``walk(root, iova)``, or None.
ResultFast = Callable[[int, int], WalkResult | None]

#: What :func:`compile_result_walk` returns: ``factory(get, ZERO_QUADS) -> walk``.
ResultFastFactory = Callable[[PageGet, memoryview], ResultFast]

#: Entries per 4 KiB table (the index mask of every level of the plans compiled here).
_INDEX_MASK = 0x1FF


def _int(value: object) -> int:
    """A plan's value as a plain int (bool excluded), or a refusal: only ints reach the source."""
    if value.__class__ is not int:
        raise TypeError(f"compiled walk: plan value {value!r} is not an int")
    return value


def _leaf_return(leaf: tuple[object, ...], key: int, result: bool) -> str:
    """The ``return`` of a leaf that passed: the entry's fields and the reads, or (``result``)
    the :class:`~.common.WalkResult` the loop of ``walk`` builds."""
    _, _, oa_mask, offset, size, level, reads, perm = leaf
    if not isinstance(perm, tuple) or len(perm) <= key:
        raise TypeError(f"compiled walk: leaf permissions {perm!r} are not a tuple "
                        f"indexed by desc & {key:#x}")
    perms = f"({', '.join(f'{_int(p):d}' for p in perm)},)[d & {key:d}]"
    if result:
        return (f"return WalkResult((d & {_int(oa_mask):d}) | (iova & {_int(offset):d}), "
                f"{_int(size):d}, {perms}, {_int(level):d}, {_int(reads):d}, 0, False)")
    return (f"return (iova & {~_int(offset):d}, {_int(size):d}, d & {_int(oa_mask):d}, "
            f"{perms}, False), {_int(reads):d}")


def _source(plan: FastPlan, addr_mask: int, key: int, input_bits: int, result: bool) -> str:
    """The factory's source for ``plan``.

    Every value written into it comes from ``plan``, ``addr_mask``, ``key`` and ``input_bits``,
    is checked to be an int by :func:`_int` and written with the ``d`` format: the source holds
    only integer literals and fixed text, never a string a caller supplied, so compiling it runs
    nothing but this walk.
    """
    body = ["def factory(get, Z):", "    def walk(root, iova):",
            # the loop's own range check (the input bounds the top level's index)
            f"        if not 0 <= iova < {1 << input_bits:d}:", "            return None"]
    at = "root"
    last = len(plan) - 1
    for i, (shift, leaf_test, tmask, want, leaf) in enumerate(plan):
        shift, leaf_test, tmask, want = _int(shift), _int(leaf_test), _int(tmask), _int(want)
        lmask, lwant = _int(leaf[0]), _int(leaf[1])
        index = f"(iova >> {shift:d}) & {_INDEX_MASK:d}"
        if shift + 9 >= input_bits:  # the top level: the input check above bounds the index
            index = f"iova >> {shift:d}"
        body.append(f"        d = get({at}, Z)[{index}]")
        # the leaf test as the loop runs it: desc & leaf_test, then desc & lmask == lwant
        leaf_ok = f"d & {leaf_test:d} and d & {lmask:d} == {lwant:d}" if leaf_test else ""
        if leaf_test and lwant & lmask & leaf_test:
            leaf_ok = f"d & {lmask:d} == {lwant:d}"  # passing the mask implies the leaf test
        table_ok = want & ~tmask == 0 and not want & leaf_test  # else no table entry passes
        if i == last or not table_ok:
            # nothing continues below: a leaf that passes, or the full walk
            if leaf_ok:
                body.append(f"        if {leaf_ok}:")
                body.append("            " + _leaf_return(leaf, key, result))
            body.append("        return None")
            break
        # a table entry passes when it is no leaf and grants what the plan wants: one test
        body.append(f"        if d & {tmask | leaf_test:d} != {want:d}:")
        if leaf_ok:
            body.append(f"            if {leaf_ok}:")
            body.append("                " + _leaf_return(leaf, key, result))
        body.append("            return None")
        at = f"d & {addr_mask:d}"
    body.append("    return walk")
    return "\n".join(body) + "\n"


@lru_cache(maxsize=256)
def _compiled(plan: FastPlan, addr_mask: int, key: int, input_bits: int,
              result: bool) -> Callable[[PageGet, memoryview], Callable[[int, int], object]]:
    """The factory of ``plan``'s source, compiled (the one place source becomes code)."""
    source = _source(plan, _int(addr_mask), _int(key), _int(input_bits), result)
    namespace: dict[str, object] = {"WalkResult": WalkResult}
    # the source is integer literals and fixed text only (see _source): no caller's string
    exec(compile(source, "<compiled walk>", "exec"), namespace)
    return namespace["factory"]  # type: ignore[return-value]


def compile_fields_walk(plan: FastPlan, *, addr_mask: int, key: int,
                        input_bits: int) -> FieldsFastFactory:
    """The factory of ``plan``'s straight-line walk to an IOTLB entry's fields (compiled once
    per distinct plan and arguments).

    ``addr_mask`` takes a table entry to the next table's address; ``key`` masks a leaf to the
    index of its permissions in the leaf's ``perm`` tuple (VT-d second level: R/W/X, 7);
    ``input_bits`` is the width of the inputs the tables translate (the walk returns None for
    any other). Each plan step must index a 4 KiB table of 512 entries
    (``(iova >> shift) & 0x1FF``), as the loops of the x86 and VT-d second-level walkers do.
    """
    return _compiled(plan, addr_mask, key, input_bits, False)  # type: ignore[return-value]


def compile_result_walk(plan: FastPlan, *, addr_mask: int, key: int,
                        input_bits: int) -> ResultFastFactory:
    """:func:`compile_fields_walk` returning the loop's :class:`~.common.WalkResult`
    (``(desc & oa_mask) | (iova & offset)``, the leaf's size, permissions, level and reads; not
    nested, not global) instead of the entry's fields: a walker's ``walk`` fast path, as a
    nested walk's stage-2 translate function runs it once per stage-1 table and output."""
    return _compiled(plan, addr_mask, key, input_bits, True)  # type: ignore[return-value]

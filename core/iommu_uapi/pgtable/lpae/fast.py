"""The LPAE walker's fast paths beyond the plain walk: where the nested walk's common case
leaves for the full walk, the last-level step a stage-2 walk cache resumes at, and a stage-2
walk that stores the table descriptors it uses as a walk cache's pending fills (the last two
compiled, :mod:`.compiled`).

They read descriptors inline from the page view, build no object per level and leave anything
unusual to the full walk (:meth:`~.walker.LPAEWalker._walk`), which finds and reports the exact
fault; the faults they report themselves (a stage-2 fault during a nested walk) are the ones the
full walk would report, with the same kind, stage, level, addresses and read counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ...memory import ZERO_QUADS
from ..common import RWX, Stage2Translate, WalkFault, WalkResult
from .bits import S1Desc
from .config import LStep

if TYPE_CHECKING:
    from .walker import LPAEWalker

__all__ = ["LeafStep", "leaf_steps", "nested_tail", "walk_into", "walk_leaf"]


_PAGE_BASE = -4096
_RWX_OF = tuple(a & RWX for a in range(16))
_NG = S1Desc.NG


def nested_tail(w: LPAEWalker, access: int, skipped: int, table: int, level: int, iova: int,
                s2: Stage2Translate, path: list[tuple[int, int, int]] | None, below: int,
                hptr: int, s2_reads: int) -> WalkResult:
    """Where a compiled nested walk (:data:`~.compiled.NESTED`, started ``skipped`` levels
    below the walker's start) leaves the common case at ``level`` (an invalid descriptor, a
    table control, AF = 0, a permission the leaf refuses, a descriptor outside memory): the
    full walk resumed there, that level's descriptor already translated to ``hptr`` with
    ``s2_reads`` stage-2 reads made so far (no stage-2 walk is made twice), ``below`` the
    controls of the tables above, its reads counted from where the walk started."""
    try:
        r = w._walk(table, iova, access, s2, False, level, below, path, (hptr, s2_reads))
    except WalkFault as f:
        f.reads -= skipped
        raise
    if not skipped:
        return r
    return WalkResult(r.oa, r.page_size, r.perm, r.level, r.reads - skipped, r.s2_reads,
                      r.global_)


#: The last-level step of :func:`walk_leaf`, flat: ``(shift, index_mask, leaf_mask, leaf_want,
#: oa_mask, offset_mask, size, xn_shift, rwx, perm, ng)``; ``ng`` is the bit whose clearing
#: makes a leaf global (nG at stage 1, none at stage 2).
LeafStep = tuple[int, int, int, int, int, int, int, int, int, tuple[int, ...], int]


def leaf_steps(plans: dict[int, tuple[LStep, ...]], stage: int) -> dict[int, LeafStep]:
    """Per access, the last step of each fast plan in the form :func:`walk_leaf` reads."""
    out: dict[int, LeafStep] = {}
    for access, steps in plans.items():
        shift, imask, _, lmask, lwant, leaf = steps[-1]
        oa_mask, offset, size, _, _, perm_of = leaf
        out[access] = (shift, imask, lmask, lwant, oa_mask, offset, size,
                       51 if stage == 1 else 52, _RWX_OF[access], perm_of,
                       _NG if stage == 1 else -1)
    return out


def walk_leaf(w: LPAEWalker, table: int, iova: int, access: int, above: int = 0) -> WalkResult:
    """Walk ``iova`` from ``table``, a table of the last level, with nothing inherited from
    above (stage 2, or stage-1 tables without hierarchical controls): what
    :meth:`~.walker.LPAEWalker.walk_partial` from the last level gives, its ``reads`` (and a
    fault's) counting ``above`` more, for the descriptors a walk cache's entry stands for. The
    common case is one inline read."""
    step = w._leaf_plan.get(access)
    if step is not None and 0 <= iova < w._limit and not table & w._leaf_misalign:
        shift, imask, lmask, lwant, oa_mask, offset, size, xn_shift, rwx, perm_of, ng = step
        ptr = table + (((iova >> shift) & imask) << 3)
        desc = w._get(ptr & _PAGE_BASE, ZERO_QUADS)[(ptr >> 3) & 0x1FF]
        if desc & lmask == lwant:
            perm = perm_of[((desc >> 6) & 3) | ((desc >> xn_shift) & 0xC)]
            if perm & rwx == rwx:
                return WalkResult((desc & oa_mask) | (iova & offset), size, perm, 3,
                                  above + 1, 0, not desc & ng)
    try:
        r = w.walk_partial(table, 3, iova, access)
    except WalkFault as f:
        f.reads += above
        raise
    return WalkResult(r.oa, r.page_size, r.perm, r.level, r.reads + above, r.s2_reads,
                      r.global_)


def walk_into(w: LPAEWalker, table: int, level: int, iova: int, access: int,
              keys: Mapping[int, tuple[int, int]],
              out: dict[tuple[int, int], int]) -> tuple[WalkResult, int] | None:
    """The common case of a stage-2 walker's :meth:`~.walker.LPAEWalker.walk_partial` from
    ``table``, the table of level ``level``, read inline, each table descriptor used stored as
    it is read into ``out``, a walk cache's pending fills: the level-``lv`` descriptor as
    ``out[(cache_level, iova >> shift)]`` = the next table, ``(cache_level, shift) =
    keys[lv]``. Returns the result and the table its leaf was read from, or None at any
    departure from the common case (left to ``walk_partial``: the descriptors stored by then
    are the ones its path holds, for a step takes only the table descriptors the full walk
    accepts)."""
    return w.into_walk(level, access, keys)(table, iova, out)

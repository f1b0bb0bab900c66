"""The LPAE walker's fast paths beyond the plain walk: the nested walk's common case, the
last-level step a stage-2 walk cache resumes at, and a stage-2 walk that stores the table
descriptors it uses as a walk cache's pending fills.

They read descriptors inline from the page view, build no object per level and leave anything
unusual to the full walk (:meth:`~.walker.LPAEWalker._walk`), which finds and reports the exact
fault; the faults they report themselves (a stage-2 fault during a nested walk) are the ones the
full walk would report, with the same kind, stage, level, addresses and read counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ...memory import ZERO_QUADS
from ...uapi.consts import FaultPerm
from ..common import ACCESS_INTS, RWX, Stage2Translate, WalkFault, WalkResult, restage
from .bits import S1Desc, TableDesc
from .config import LStep

if TYPE_CHECKING:
    from .walker import LPAEWalker

__all__ = ["LeafStep", "leaf_steps", "nested_walk", "walk_into", "walk_leaf"]

_READ, _PRIV = int(FaultPerm.READ), int(FaultPerm.PRIV)
_PAGE_BASE = -4096
_RWX_OF = tuple(a & RWX for a in range(16))
_NG = S1Desc.NG
_CONTROLS_SHIFT = TableDesc.CONTROLS_SHIFT


def nested_walk(w: LPAEWalker, steps: tuple[LStep, ...], table: int, level: int, iova: int,
                access: int, s2: Stage2Translate, skipped: int,
                path: list[tuple[int, int, int]] | None, inherited: int = 0) -> WalkResult:
    """The common case of a nested (stage-1) walk from ``table``, the table of level ``level``
    (``skipped`` levels below the start), along ``steps`` (the fast plan from that level):
    each descriptor's IPA through ``s2`` once, the descriptor read inline at its PA, the leaf's
    output through ``s2`` for the access. A stage-2 fault is reported as the full walk reports
    it (``restage``: ROOT/TT/IN, the reads of both stages so far); any other departure from the
    common case (an invalid descriptor, a table control, AF = 0, a permission the leaf refuses,
    a descriptor outside memory) hands the walk over to the full walk at the level it reached,
    with that level's descriptor already translated (no stage-2 walk is made twice). ``path``
    and ``inherited`` as :meth:`~.walker.LPAEWalker.walk_partial`."""
    access = ACCESS_INTS[access]
    rwx = _RWX_OF[access]
    get = w._get
    zero = ZERO_QUADS
    addr_mask = w._addr_mask
    s2_reads = 0
    below = inherited
    hptr = 0
    for shift, imask, tmask, lmask, lwant, leaf in steps:
        ptr = table + (((iova >> shift) & imask) << 3)
        try:
            r2 = s2(ptr, _READ)
        except WalkFault as f:
            # the start level's descriptor lies in the table S1ContextPtr/TTB names (ROOT)
            raise restage(f, s2_class="ROOT" if level == w._start else "TT", addr=ptr,
                          access=access, level=f.level, reads=level - w._start - skipped,
                          s2_reads=s2_reads) from None
        hptr = r2.oa
        s2_reads += r2.reads
        desc = get(hptr & _PAGE_BASE, zero)[(hptr >> 3) & 0x1FF]
        if desc & tmask == 3:
            table = desc & addr_mask
            if path is not None:
                below |= (desc >> _CONTROLS_SHIFT) & 0xF
                path.append((level, table, below))
            level += 1
            continue
        if desc & lmask == lwant:
            oa_mask, offset, size, lv, reads, perm_of = leaf
            # s1_key, inline: AP[2:1] in bits 1:0, (PXN, UXN) in bits 3:2
            perm = perm_of[((desc >> 6) & 3) | ((desc >> 51) & 0xC)]
            if perm & rwx == rwx:
                oa = (desc & oa_mask) | (iova & offset)
                try:
                    out = s2(oa, rwx)
                except WalkFault as f:
                    raise restage(f, s2_class="IN", addr=oa, access=access, level=f.level,
                                  reads=reads - skipped, s2_reads=s2_reads) from None
                return WalkResult(out.oa, size if size < out.page_size else out.page_size,
                                  perm & (out.perm | _PRIV), lv, reads - skipped,
                                  s2_reads + out.reads, not desc & _NG)
        break
    try:
        r = w._walk(table, iova, access, s2, False, level, inherited, path, (hptr, s2_reads))
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
    steps = w._fast_from[level].get(access)
    if (steps is None or w._s1 or not 0 <= iova < w._limit
            or table & ((w._root_align if level == w._start else w._granule) - 1)):
        return None
    get = w._get
    addr_mask = w._addr_mask
    skipped = level - w._start
    at = table
    for shift, imask, tmask, lmask, lwant, leaf in steps:
        ptr = at + (((iova >> shift) & imask) << 3)
        desc = get(ptr & _PAGE_BASE, ZERO_QUADS)[(ptr >> 3) & 0x1FF]
        if desc & tmask == 3:
            cache_level, kshift = keys[level]
            at = out[(cache_level, iova >> kshift)] = desc & addr_mask
            level += 1
            continue
        if desc & lmask == lwant:
            oa_mask, offset, size, lv, reads, perm_of = leaf
            perm = perm_of[((desc >> 6) & 3) | ((desc >> 52) & 0xC)]  # s2_key: S2AP, XN
            rwx = _RWX_OF[access]
            if perm & rwx == rwx:
                return WalkResult((desc & oa_mask) | (iova & offset), size, perm, lv,
                                  reads - skipped, 0, False), at
        return None
    return None

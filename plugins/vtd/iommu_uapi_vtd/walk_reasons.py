"""The scalable-mode fault reason of a page-table walk fault (VT-d 3.x section 7.1.3).

The core's walkers report generic faults (:class:`~iommu_uapi.pgtable.common.FaultKind`, stage,
level, ``denied``, and for a stage-2 fault met during a nested first-level walk what was being
translated, ``s2_class``); :func:`sm_reason` turns one into the reason FRCD.FR records:

=================  ==========================  =============================================
walk               kind                        reason
=================  ==========================  =============================================
first level        INPUT_RANGE                 0x80 (input not canonical)
                   WALK_EABT / NOT_PRESENT     0x70 / 0x71
                   RESERVED                    0x72
                   PERMISSION                  0x81 (U/S), 0x85 (R/W), 0x82 (XD), in that order
second level       INPUT_RANGE                 0x83 (beyond AW)
                   WALK_EABT / RESERVED        0x78 / 0x7A
                   PERMISSION                  0x85 (W), 0x86 (R), 0x79 (X with SLEE)
nested, stage 2    by :data:`NESTED` on        0x73..0x77, 0x78, 0x7A, 0x83, 0x85/0x86/0x79
                   (``s2_class``, failure)
=================  ==========================  =============================================
"""

from __future__ import annotations

from iommu_uapi.pgtable.common import FaultKind, WalkFault
from iommu_uapi.uapi.consts import FaultPerm

from .reasons import SmFaultReason as R

__all__ = ["FIRST_LEVEL", "NESTED", "SECOND_LEVEL", "sm_reason"]

_READ, _WRITE, _EXEC, _PRIV = (int(FaultPerm.READ), int(FaultPerm.WRITE), int(FaultPerm.EXEC),
                               int(FaultPerm.PRIV))

#: First-level walk faults by kind; PERMISSION by the first refused bit of
#: :data:`FIRST_LEVEL_DENIED`.
FIRST_LEVEL: dict[FaultKind, R] = {
    FaultKind.INPUT_RANGE: R.NON_CANONICAL,
    FaultKind.WALK_EABT: R.FL_ACCESS,
    FaultKind.NOT_PRESENT: R.FL_NOT_PRESENT,
    FaultKind.RESERVED: R.FL_RESERVED,
}
FIRST_LEVEL_DENIED: tuple[tuple[int, R], ...] = (
    (_PRIV, R.USER_NOT_ALLOWED), (_WRITE, R.NO_WRITE), (_EXEC, R.EXECUTE_DISABLED))

#: Second-level walk faults by kind; PERMISSION by the first refused bit of
#: :data:`SECOND_LEVEL_DENIED` (X has no reason of its own: 0x79, UNCERTAIN in the reference).
SECOND_LEVEL: dict[FaultKind, R] = {
    FaultKind.INPUT_RANGE: R.ADDRESS_BEYOND_MAX,
    FaultKind.WALK_EABT: R.SL_ACCESS,
    FaultKind.RESERVED: R.SL_RESERVED,
}
SECOND_LEVEL_DENIED: tuple[tuple[int, R], ...] = (
    (_WRITE, R.NO_WRITE), (_READ, R.NO_READ), (_EXEC, R.SL_PERMISSION))

#: How a stage-2 walk failed, for the nested table below.
_FAILURE: dict[FaultKind, str] = {
    FaultKind.INPUT_RANGE: "OOR",
    FaultKind.WALK_EABT: "EABT",
    FaultKind.RESERVED: "RSVD",
}

#: Stage-2 fault during a nested first-level walk -> the reason recorded, keyed by what was
#: being translated (ROOT: the first-level root table, TT: another first-level table, AD: the
#: write of an A/D update into a first-level entry, IN: the first-level output) and by the
#: failure (OOR: beyond AW, EABT: table outside memory, RSVD: reserved bits, DENY: anything
#: else). IN/DENY is 0x85 for a write, 0x86 otherwise, 0x79 when only X was refused.
NESTED: dict[tuple[str, str], R] = {
    ("ROOT", "DENY"): R.NESTED_FL_ROOT_READ,
    ("ROOT", "OOR"): R.NESTED_FLPTPTR,
    ("ROOT", "EABT"): R.NESTED_FLPTPTR,
    ("ROOT", "RSVD"): R.SL_RESERVED,
    ("TT", "DENY"): R.NESTED_FL_TABLE_READ,
    ("TT", "OOR"): R.NESTED_FL_TABLE_OOR,
    ("TT", "EABT"): R.SL_ACCESS,
    ("TT", "RSVD"): R.SL_RESERVED,
    ("AD", "DENY"): R.NESTED_FL_AD_WRITE,
    ("AD", "OOR"): R.NESTED_FL_TABLE_OOR,
    ("AD", "EABT"): R.SL_ACCESS,
    ("AD", "RSVD"): R.SL_RESERVED,
    ("IN", "DENY"): R.NO_READ,
    ("IN", "OOR"): R.ADDRESS_BEYOND_MAX,
    ("IN", "EABT"): R.SL_ACCESS,
    ("IN", "RSVD"): R.SL_RESERVED,
}


def _by_denied(denied: int, order: tuple[tuple[int, R], ...]) -> R:
    for bit, reason in order:
        if denied & bit:
            return reason
    return order[-1][1]


def sm_reason(fault: WalkFault) -> R:
    """The scalable-mode fault reason of ``fault`` (a first-level, second-level or nested
    walk's; stage 1 is the first level, stage 2 the second)."""
    kind = fault.kind
    if fault.s2_class is not None:
        failure = _FAILURE.get(kind, "DENY")
        if fault.s2_class == "IN" and failure == "DENY":
            if kind == FaultKind.PERMISSION and not fault.denied & (_READ | _WRITE):
                return R.SL_PERMISSION
            return R.NO_WRITE if fault.access & _WRITE else R.NO_READ
        return NESTED[fault.s2_class, failure]
    if fault.stage == 1:
        if kind == FaultKind.PERMISSION:
            return _by_denied(fault.denied, FIRST_LEVEL_DENIED)
        return FIRST_LEVEL[kind]
    if kind in SECOND_LEVEL:
        return SECOND_LEVEL[kind]
    if kind == FaultKind.PERMISSION:
        return _by_denied(fault.denied, SECOND_LEVEL_DENIED)
    # no present bit at second level: anything else denies the access
    return R.NO_WRITE if fault.access & _WRITE else R.NO_READ

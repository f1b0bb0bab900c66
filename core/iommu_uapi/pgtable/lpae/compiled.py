"""The LPAE walker's fast plans as straight-line functions: an SMMU's IOTLB miss without loops.

:func:`compile_walk` turns the fast plan of one access from one level
(:func:`~.config.fast_plans`, cut by level) into Python source with every shift, mask, size and
permission of the plan written in as an integer constant, one block per level, and compiles it
once per distinct plan (an LRU cache keyed by the plan's ints). What it returns is a *factory*:
called with a page view's ``get`` (:func:`~..common.page_getter`), :data:`~iommu_uapi.memory.
ZERO_QUADS` and the walker's continuation (``slow``), it builds the walk bound to that view, so
a walker bound later for the same geometry generates and compiles nothing.

Three kinds of walk, each the loop it replaces step for step (the same descriptors read in the
same order, the same results, the same stage-2 calls):

``PLAIN`` — ``walk(table, iova, path, below) -> WalkResult | None``: the walk of
  :meth:`~.walker.LPAEWalker.walk` and ``walk_partial`` without stage 2. Each table descriptor
  used is appended to ``path`` (when not None) as ``(level, next table, controls below)``;
  None where the loop leaves for the full walk (the caller drops the path it appended and runs
  the full walk from the start, which finds and reports the exact fault).
``NESTED`` — ``walk(table, iova, s2, path, below) -> WalkResult``: the nested stage-1 walk of
  :func:`~.fast.nested_walk`: each descriptor's IPA through ``s2`` once, a stage-2 fault
  restaged as the full walk reports it; any other departure calls ``slow(table, level, iova,
  s2, path, below, hptr, s2_reads)``, the full walk resumed at that level with its descriptor
  already translated (no stage-2 walk is made twice).
``INTO`` — ``walk(table, iova, out) -> (WalkResult, last table) | None``: the stage-2 walk of
  :func:`~.fast.walk_into`, storing each table descriptor's next table in ``out`` under
  ``(walk-cache level, iova >> prefix shift)`` as it goes (the keys written in as constants).

The input range and the table's alignment are the caller's checks (as in the loops).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from ...uapi.consts import FaultPerm
from ..common import WalkFault, WalkResult, restage
from .bits import S1Desc, TableDesc
from .config import LStep

__all__ = ["INTO", "NESTED", "PLAIN", "WalkFactory", "compile_walk"]

#: The kinds of walk :func:`compile_walk` builds (see the module docstring).
PLAIN, NESTED, INTO = 0, 1, 2

#: What :func:`compile_walk` returns: ``factory(get, ZERO_QUADS, slow) -> walk``.
WalkFactory = Callable[..., Callable[..., Any]]

_READ, _PRIV = int(FaultPerm.READ), int(FaultPerm.PRIV)
_RWX = int(FaultPerm.READ | FaultPerm.WRITE | FaultPerm.EXEC)


def _int(value: object) -> int:
    """A plan's value as a plain int (bool excluded), or a refusal: only ints reach the source."""
    if value.__class__ is not int:
        raise TypeError(f"compiled LPAE walk: plan value {value!r} is not an int")
    return value


def _ints(values: object) -> str:
    """A tuple of ints as a literal."""
    if not isinstance(values, tuple):
        raise TypeError(f"compiled LPAE walk: {values!r} is not a tuple of ints")
    return "(" + "".join(f"{_int(v):d}, " for v in values) + ")"


def _source(steps: tuple[LStep, ...], kind: int, stage: int, start: int, level: int,
            access: int, addr_mask: int, keys: tuple[tuple[int, int], ...], limit: int,
            misalign: int) -> str:
    """The factory's source for ``steps`` (the plan from ``level`` on; ``start`` the walker's
    start level). Every value written into it is checked to be an int and written
    with the ``d`` format: the source holds only integer literals and fixed text."""
    rwx = _int(access) & _RWX
    xn_shift = 51 if stage == 1 else 52
    args = {PLAIN: "table, iova, path, below", NESTED: "table, iova, s2, path, below",
            INTO: "table, iova, out"}[kind]
    body = ["def factory(get, Z, slow):", f"    def walk({args}):"]
    first = _int(level)
    n_read = "n = " if kind == NESTED else ""
    if kind == INTO:  # walk_into's own checks: the input range, the table's alignment
        body += [f"        if not 0 <= iova < {limit:d} or table & {misalign:d}:",
                 "            return None"]
    for i, (shift, imask, tmask, lmask, lwant, leaf) in enumerate(steps):
        shift, imask, tmask = _int(shift), _int(imask), _int(tmask)
        lmask, lwant = _int(lmask), _int(lwant)
        oa_mask, offset, size, _, _, perm = leaf
        level = first + i
        at = f"(table + (((iova >> {shift:d}) & {imask:d}) << 3))"
        pad = "        "
        if kind == NESTED:
            s2_class = "'ROOT'" if level == start else "'TT'"
            body += [f"{pad}ptr = {at}",
                     f"{pad}try:",
                     f"{pad}    r2 = s2(ptr, {_READ:d})",
                     f"{pad}except WalkFault as f:",
                     f"{pad}    raise restage(f, s2_class={s2_class}, addr=ptr, "
                     f"access={access:d}, level=f.level, reads={i:d}, "
                     f"s2_reads={'n' if i else '0'}) from None",
                     f"{pad}hptr = r2.oa",
                     f"{pad}{n_read}{'n + ' if i else ''}r2.reads",
                     f"{pad}d = get(hptr & -4096, Z)[(hptr >> 3) & 511]"]
        else:
            if imask == 511 and level != start:
                # a 4 KiB table below the start level: granule-aligned (a descriptor's address,
                # or a start the caller checked), so one page holds it
                body.append(f"{pad}d = get(table, Z)[(iova >> {shift:d}) & 511]")
            else:
                body += [f"{pad}ptr = {at}",
                         f"{pad}d = get(ptr & -4096, Z)[(ptr >> 3) & 511]"]
        last = i == len(steps) - 1
        body.append(f"{pad}if d & {tmask:d} != 3:" if tmask else f"{pad}if True:")
        inner = pad + "    "
        if lmask:  # a leaf may stand here
            key = f"((d >> 6) & 3) | ((d >> {xn_shift:d}) & 12)"
            body += [f"{inner}if d & {lmask:d} == {lwant:d}:",
                     f"{inner}    perm = {_ints(perm)}[{key}]",
                     f"{inner}    if perm & {rwx:d} == {rwx:d}:"]
            out = f"(d & {_int(oa_mask):d}) | (iova & {_int(offset):d})"
            g = f"not d & {S1Desc.NG:d}" if stage == 1 else "False"
            ret = inner + "        "
            if kind == NESTED:
                body += [f"{ret}oa = {out}",
                         f"{ret}try:",
                         f"{ret}    o = s2(oa, {rwx:d})",
                         f"{ret}except WalkFault as f:",
                         f"{ret}    raise restage(f, s2_class='IN', addr=oa, "
                         f"access={access:d}, level=f.level, reads={i + 1:d}, s2_reads=n) "
                         "from None",
                         f"{ret}return WalkResult(o.oa, {_int(size):d} if {_int(size):d} < "
                         f"o.page_size else o.page_size, perm & (o.perm | {_PRIV:d}), "
                         f"{level:d}, {i + 1:d}, n + o.reads, {g})"]
            elif kind == INTO:
                body.append(f"{ret}return WalkResult({out}, {_int(size):d}, perm, {level:d}, "
                            f"{i + 1:d}, 0, False), table")
            else:
                body.append(f"{ret}return WalkResult({out}, {_int(size):d}, perm, {level:d}, "
                            f"{i + 1:d}, 0, {g})")
        if kind == NESTED:
            body.append(f"{inner}return slow(table, {level:d}, iova, s2, path, below, hptr, n)")
        else:
            body.append(f"{inner}return None")
        if last:
            break
        if kind == INTO:
            wl, kshift = keys[i]
            body.append(f"{pad}table = out[({_int(wl):d}, iova >> {_int(kshift):d})] = "
                        f"d & {addr_mask:d}")
        else:
            body += [f"{pad}table = d & {addr_mask:d}", f"{pad}if path is not None:"]
            if stage == 1 and not tmask & TableDesc.CONTROLS:
                # (a table that passes a plan testing the controls has none: below stays)
                body.append(f"{pad}    below |= (d >> {TableDesc.CONTROLS_SHIFT:d}) & 15")
            body.append(f"{pad}    path.append(({level:d}, table, below))")
    body.append("    return walk")
    return "\n".join(body) + "\n"


@lru_cache(maxsize=512)
def _compiled(steps: tuple[LStep, ...], kind: int, stage: int, start: int, level: int,
              access: int, addr_mask: int, keys: tuple[tuple[int, int], ...], limit: int,
              misalign: int) -> WalkFactory:
    """The factory of one plan's source, compiled (the one place source becomes code)."""
    source = _source(steps, kind, _int(stage), _int(start), _int(level), _int(access),
                     _int(addr_mask), keys, _int(limit), _int(misalign))
    namespace: dict[str, object] = {"WalkResult": WalkResult, "WalkFault": WalkFault,
                                    "restage": restage}
    # the source is integer literals and fixed text only (see _source): no caller's string
    exec(compile(source, "<compiled LPAE walk>", "exec"), namespace)
    return namespace["factory"]  # type: ignore[return-value]


def compile_walk(steps: tuple[LStep, ...], kind: int, *, stage: int, start: int, level: int,
                 access: int, addr_mask: int,
                 keys: tuple[tuple[int, int], ...] = (), limit: int = 0,
                 misalign: int = 0) -> WalkFactory:
    """The factory of the straight-line walk of ``steps`` (one access's fast plan from
    ``level``; ``start`` the walker's start level, ``access`` 0..15), of ``kind`` PLAIN, NESTED or
    INTO (``keys``: per table step, the walk-cache level and prefix shift it is stored
    under; ``limit`` the input range and ``misalign`` the table alignment's low bits, which
    it checks first), compiled once per distinct plan and arguments."""
    if kind not in (PLAIN, NESTED, INTO) or stage not in (1, 2) or not 0 <= access < 16:
        raise ValueError(f"compiled LPAE walk: kind {kind}, stage {stage}, access {access}")
    if kind == INTO and len(keys) < len(steps) - 1:
        raise ValueError("compiled LPAE walk: INTO needs a key per table step")
    return _compiled(steps, kind, stage, start, level, access, addr_mask,
                     tuple((_int(a), _int(b)) for a, b in keys), limit, misalign)

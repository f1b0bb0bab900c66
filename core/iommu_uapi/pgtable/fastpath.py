"""Single-page ``map``/``unmap`` of the common case, compiled once per builder and page size.

A builder over a memory with a page view (:func:`~.common.inline_pages`) and 4 KiB tables
gets, per page size, two functions with its levels unrolled and its masks and limits as
constants. ``map_one(iova, paddr, prot) -> bool`` makes the checks of ``map_pages`` (a leaf
already cached for ``prot`` means a protection accepted before) and writes the leaf when every
table on the way is present and one the builder wrote; it raises the overlap refusal when the
entry is taken, and returns False for the general path (a table to create, a block on the way,
an argument to refuse). ``unmap_one(iova) -> int`` clears a leaf whose table keeps other
entries, tells the builder's flush callbacks, and returns the page size; -1 sends the caller
to the general path (nothing mapped, a block to split, a table to drop or to free). The source
is generated from the builder's level table only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..memory import ZERO_QUADS

__all__ = ["Descent", "compile_single_page"]

#: ``(shift, table_mask, table_value)`` of each level above the leaf (a table entry of ours
#: has ``desc & table_mask == table_value``).
Descent = tuple[tuple[int, int, int], ...]


def compile_single_page(
    root: int, above: Descent, leaf: tuple[int, int, int, int], limits: tuple[int, int, int],
    names: Mapping[str, Any],
) -> tuple[Callable[[int, int, int], bool], Callable[[int], int]]:
    """The ``(map_one, unmap_one)`` pair for leaves described by ``leaf`` = ``(index, shift,
    table_mask, table_value)`` under the levels ``above``; ``limits`` = ``(ia_max, oa_max,
    addr_mask)``.

    ``names`` binds ``get`` (the page view's ``get``), ``write`` (the memory's ``write64``),
    ``entries`` (the builder's live-entry counts), ``leaf_bits`` (the builder's leaf-bits cache
    ``get``), ``overlap`` (the refusal to raise) and ``builder`` (for its ``flush``)."""
    index, shift, mask, value = leaf
    ia_max, oa_max, addr_mask = limits
    size = 1 << shift
    walk = [f"    t = {root}"]
    for lshift, tmask, tvalue in above:
        walk += [f"    d = get(t, Z)[(iova >> {lshift}) & 0x1FF]",
                 f"    if d & {tmask} != {tvalue}:",
                 "        return FAIL",
                 f"    t = d & {addr_mask}"]
    walk += [f"    i = (iova >> {shift}) & 0x1FF", "    d = get(t, Z)[i]"]
    map_src = [
        "def map_one(iova, paddr, prot):",
        "    if prot is hot[0]:",  # the protection of the last call (IntFlag arithmetic is slow)
        "        bits = hot[1]",
        "    else:",
        f"        bits = leaf_bits((prot << 3) | {index})",
        "        if bits is None:",
        "            return False",
        "        hot[0], hot[1] = prot, bits",
        f"    if (iova | paddr) & {size - 1} or not 0 <= iova <= {ia_max} "
        f"or not 0 <= paddr <= {oa_max}:",
        "        return False",
        *walk,
        "    if d:",
        "        raise overlap(iova, d)",
        "    write(t + (i << 3), paddr | bits)",
        "    entries[t] += 1",
        "    return True",
    ]
    unmap_src = [
        "def unmap_one(iova):",
        f"    if iova & {size - 1} or not 0 <= iova <= {ia_max}:",
        "        return -1",
        *walk,
        "    left = entries[t] - 1",
        f"    if not d or d & {mask} == {value} or not left:",
        "        return -1",
        "    write(t + (i << 3), 0)",
        "    entries[t] = left",
        "    flush = builder.flush",
        "    if flush is not None:",
        f"        flush.leaf_changed(iova, {size})",
        f"    return {size}",
    ]
    ns: dict[str, Any] = {**names, "Z": ZERO_QUADS, "hot": [None, 0]}
    exec(compile("\n".join(map_src).replace("FAIL", "False"), "<map_one>", "exec"), ns)
    exec(compile("\n".join(unmap_src).replace("FAIL", "-1"), "<unmap_one>", "exec"), ns)
    return ns["map_one"], ns["unmap_one"]

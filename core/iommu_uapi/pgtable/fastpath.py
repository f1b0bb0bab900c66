"""Single-page ``map``/``unmap`` of the common case, compiled once per builder.

A builder over a memory with a page view (:func:`~.common.inline_pages`) and 4 KiB tables gets
its own ``map(iova, paddr, size, prot)`` and ``unmap(iova, size)``, with one branch per page
size in which the levels are unrolled and the masks and limits are constants. The ``map``
branch makes the checks of ``map_pages`` (a leaf already cached for ``prot`` means a protection
accepted before) and writes the leaf when every table on the way is present and one the builder
wrote, raising the overlap refusal when the entry holds a leaf; the ``unmap`` branch clears a
leaf (a one-page unmap never frees a table: none lies inside one page) and tells the builder's
flush callbacks. Both store the entry inline into the memory's writable page view when it has
one (``page_quads_writable``), else with ``write64``. Anything else (a table to create, a block
on the way, a table where the leaf goes, an argument to refuse, a size that is no page size)
goes to the builder's general ``map``/``unmap``. Each branch keeps the leaf's table it last
reached and the ``iova``'s bits above that table (a ring maps and unmaps pages of one table in
turn): the same upper bits reach the same table without reading the levels above, until the
builder frees any table (``forget``). The source is generated from the builder's level table
only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ..memory import ZERO_QUADS

__all__ = ["PageSizePath", "compile_single_page"]


class PageSizePath(NamedTuple):
    """What the branch of one page size needs: the leaf's ``level_index``, ``shift`` and
    ``(leaf_mask, leaf_value)`` that mark a table entry at that level; for each level above,
    ``(shift, table_mask, table_value)`` of a table entry of ours; the largest ``iova`` and
    ``paddr`` a page of that size may start at; the descriptor's address mask."""

    level_index: int
    shift: int
    leaf_mask: int
    leaf_value: int
    above: tuple[tuple[int, int, int], ...]
    ia_max: int
    oa_max: int
    addr_mask: int


def _walk(root: int, n: int, p: PageSizePath, fail: str) -> list[str]:
    """Reach the leaf's table ``t`` and read its entry ``d`` at index ``i`` (through the page's
    writable view ``w`` when it has one): the table last reached for the same
    ``iova >> (shift + 9)`` (``key{n}``/``table{n}``), else a walk from the root through tables
    of ours, which becomes the one last reached."""
    out = [f"        k = iova >> {p.shift + 9}",
           f"        if k == key{n}:",
           f"            t = table{n}",
           "        else:",
           f"            t = {root}"]
    for shift, mask, value in p.above:
        out += [f"            d = get(t, Z)[(iova >> {shift}) & 0x1FF]",
                f"            if d & {mask} != {value}:",
                f"                return {fail}",
                f"            t = d & {p.addr_mask}"]
    return [*out, f"            key{n}, table{n} = k, t",
            f"        i = (iova >> {p.shift}) & 0x1FF", "        w = wget(t)",
            "        d = get(t, Z)[i] if w is None else w[i]"]


def _store(value: str) -> list[str]:
    """Store ``value`` at entry ``i`` of table ``t``: inline into the page's writable view
    ``w``, or through ``write`` when the page has none (never written, or no view)."""
    return ["        if w is None:",
            f"            write(t + (i << 3), {value})",
            "        else:",
            f"            w[i] = {value}"]


def compile_single_page(root: int, paths: tuple[PageSizePath, ...], names: Mapping[str, Any],
                        ) -> tuple[Callable[[int, int, int, int], None],
                                   Callable[[int, int], int], Callable[[], None]]:
    """The builder's ``(map, unmap)``. ``names`` binds ``get`` (the page view's ``get``),
    ``wget`` (the writable page view's ``get``: ``page_quads_writable``), ``write`` (the
    memory's ``write64``), ``entries`` (the live-entry counts), ``leaf_bits``
    (the leaf-bits cache's ``get``), ``overlap`` (the refusal to raise), ``builder`` (for its
    ``flush``) and ``general_map``/``general_unmap`` (the builder's own methods). The third
    callable forgets the tables last reached: the builder calls it whenever it frees a table
    (a freed table's address may come back as another table)."""
    map_src = ["def map(iova, paddr, size, prot):",
               "    global " + ", ".join(f"prot{n}, bits{n}, key{n}, table{n}"
                                    for n in range(len(paths)))]
    unmap_src = ["def unmap(iova, size):",
                 "    global " + ", ".join(f"key{n}, table{n}" for n in range(len(paths)))]
    # the smallest page first: a one-page map or unmap is mostly of the smallest size
    for n, p in sorted(enumerate(paths), key=lambda np: np[1].shift):
        size = 1 << p.shift
        general_map = "general_map(iova, paddr, size, prot)"
        map_src += [
            f"    if size == {size}:",
            f"        if prot is prot{n}:",  # the last protection (IntFlag math is slow)
            f"            bits = bits{n}",
            "        else:",
            f"            bits = leaf_bits((prot << 3) | {p.level_index})",
            "            if bits is None:",
            f"                return {general_map}",
            f"            prot{n}, bits{n} = prot, bits",
            f"        if (iova | paddr) & {size - 1} or not 0 <= iova <= {p.ia_max} "
            f"or not 0 <= paddr <= {p.oa_max}:",
            f"            return {general_map}",
            *_walk(root, n, p, general_map),
            "        if d:",
            f"            if d & {p.leaf_mask} == {p.leaf_value}:",  # a table: leafless?
            f"                return {general_map}",
            "            raise overlap(iova, d)",
            *_store("paddr | bits"),
            "        entries[t] += 1",
            "        return None",
        ]
        unmap_src += [
            f"    if size == {size}:",
            f"        if iova & {size - 1} or not 0 <= iova <= {p.ia_max}:",
            "            return general_unmap(iova, size)",
            *_walk(root, n, p, "general_unmap(iova, size)"),
            f"        if not d or d & {p.leaf_mask} == {p.leaf_value}:",
            "            return general_unmap(iova, size)",
            *_store("0"),
            "        entries[t] -= 1",
            "        flush = builder.flush",
            "        if flush is not None:",
            f"            flush.leaf_changed(iova, {size})",
            f"        return {size}",
        ]
    map_src.append("    return general_map(iova, paddr, size, prot)")
    unmap_src.append("    return general_unmap(iova, size)")
    ns: dict[str, Any] = {**names, "Z": ZERO_QUADS}
    for n in range(len(paths)):
        ns[f"prot{n}"], ns[f"bits{n}"], ns[f"table{n}"] = None, 0, 0
    keys = [f"key{n}" for n in range(len(paths))]

    def forget() -> None:
        for key in keys:
            ns[key] = -1  # no iova's upper bits are negative

    forget()
    exec(compile("\n".join([*map_src, "", *unmap_src]), "<single-page paths>", "exec"), ns)
    return ns["map"], ns["unmap"], forget

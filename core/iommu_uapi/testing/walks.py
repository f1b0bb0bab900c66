"""Holding a page-table walker's fast paths to its full walk, as the format and backend tests
do: a table memory without the inline page views (over it a walker and a builder take their
general paths only), a walk's outcome as one comparable value, and the descriptors an LPAE walk
reads, for corrupting them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..errors import UAPIError
from ..pgtable.common import TableMemory, WalkFault
from ..pgtable.lpae import LPAEConfig
from ..pgtable.lpae.config import geometry

__all__ = ["PlainMemory", "lpae_path", "walk_outcome"]


class PlainMemory:
    """``mem`` through ``read64``/``write64``/``alloc``/``free`` alone: no page view, so the
    walkers and builders over it take their general (full) paths."""

    def __init__(self, mem: TableMemory) -> None:
        self.mem = mem
        self.read64, self.write64 = mem.read64, mem.write64
        self.alloc, self.free = mem.alloc, mem.free


def walk_outcome(call: Callable[[], object]) -> object:
    """What ``call`` (a walk) gives: its value, or everything its fault records (kind, denied
    bits, stage, level, addresses, access, reads and message), or the rule that refused it."""
    try:
        return call()
    except WalkFault as f:
        return ("fault", f.kind, f.denied, f.stage, f.level, f.addr, f.access, f.fetch_addr,
                f.reads, f.s2_reads, f.s2_class, str(f))
    except UAPIError as e:
        return ("refused", e.errno, e.rule)


def lpae_path(mem: TableMemory, cfg: LPAEConfig, root: int, iova: int
              ) -> Iterator[tuple[int, int]]:
    """``(address, descriptor)`` of each descriptor a walk of ``iova`` from ``root`` reads, root
    level first, read before it is handed out (the caller may rewrite it: the path goes on as
    the descriptor was); it ends after a descriptor that is not a table."""
    geo = geometry(cfg)
    table = root
    for lv in geo.levels:
        ptr = table + (((iova >> lv.shift) & lv.index_mask) << 3)
        desc = mem.read64(ptr)
        yield ptr, desc
        if desc & 3 != 3 or lv.level == 3:
            return
        table = desc & geo.addr_mask

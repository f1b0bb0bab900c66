"""First-level translation through the first-level paging-structure cache.

For PGTT first-level and nested, the unit caches the non-leaf first-level entries it used, tagged
(DID, PASID): a later walk of an address under a cached entry starts at the table that entry
points to and skips the reads above it (spec 6.2.4 "paging-structure caches"). The entries stay
until a PASID-based IOTLB invalidation without IH (leaf-only) covers them, or a domain-, PASID-
or global-selective one drops them: a guest that changes a table entry and invalidates leaf-only
keeps walking through the table it replaced. The cached value is the next table's address
(a GPA when nested) with ``(R/W & U/S) << 1 | XD`` of the entries above in its low bits.
"""

from __future__ import annotations

from iommu_uapi.caches import WalkCache
from iommu_uapi.pgtable.common import Stage2Translate, WalkResult
from iommu_uapi.pgtable.x86 import X86Walker

__all__ = ["CachedFirstLevel"]

_LOW = 0xFFF


class CachedFirstLevel:
    """``walk(iova, access)`` over the first-level tables at ``root`` (through stage 2 when
    ``s2`` is given), consulting and filling ``psc`` (a 4 KiB-granule walk cache, the unit's
    first-level paging-structure cache) under ``tag``."""

    __slots__ = ("_levels", "_top", "psc", "root", "s2", "tag", "walker")

    def __init__(self, walker: X86Walker, root: int, s2: Stage2Translate | None,
                 psc: WalkCache, tag: tuple[int, int]) -> None:
        self.walker = walker
        self.root = root
        self.s2 = s2
        self.psc = psc
        self.tag = tag
        self._top = walker.cfg.levels
        self._levels = tuple(range(2, self._top + 1))  # entries that can point to a table

    def __call__(self, iova: int, access: int) -> WalkResult:
        """Translate ``iova``: from the deepest cached entry covering it, else from the root;
        the table entries the walk used are cached afterwards."""
        hit = self.psc.deepest(self.tag, iova, self._levels)
        if hit is None:
            table, level, inherited = self.root, self._top, 6  # nothing above the root
        else:
            cached_level, value = hit
            table, level, inherited = value & ~_LOW, cached_level - 1, value & _LOW
        path: list[tuple[int, int, int]] = []
        result = self.walker.walk_partial(table, level, iova, access, self.s2,
                                          inherited=inherited, path=path)
        fill, tag = self.psc.fill, self.tag
        for entry_level, next_table, below in path:
            fill(tag, entry_level, iova, next_table | below)
        return result

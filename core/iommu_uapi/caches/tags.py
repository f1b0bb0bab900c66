"""Tags and the prefix index that lets a tag-selective invalidation name a group of tags.

A tag is a backend-defined tuple (``("fl", did, pasid)`` on VT-d, ``(vmid, asid)`` on SMMUv3).
An invalidation may name a whole tag or a prefix of it (``("fl", did)``: every PASID of a
domain); :class:`TagIndex` maps every prefix of every tag seen to the tags under it, so such an
invalidation visits those tags alone and never scans the others.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable

__all__ = ["Tag", "TagIndex"]

Tag = tuple[Hashable, ...]


class TagIndex(dict[Tag, dict[Tag, None]]):
    """Every prefix (the empty one and the whole tag included) -> the tags it selects (a dict,
    so ``index.get(prefix)`` is the fast lookup)."""

    def add(self, tag: Tag) -> None:
        """Register ``tag`` under each of its prefixes (idempotent)."""
        for n in range(len(tag) + 1):
            group = self.get(tag[:n])
            if group is None:
                self[tag[:n]] = {tag: None}
            else:
                group[tag] = None

    def discard(self, tag: Tag) -> None:
        """Forget ``tag``."""
        for n in range(len(tag) + 1):
            group = self.get(tag[:n])
            if group is not None:
                group.pop(tag, None)
                if not group:
                    del self[tag[:n]]

    def under(self, prefix: Tag) -> Collection[Tag]:
        """The tags that start with ``prefix`` (a live view: do not add or discard tags while
        iterating it)."""
        group = self.get(prefix)
        return () if group is None else group.keys()

    def select(self, prefix: Tag, where: Callable[[Tag], bool] | None) -> Collection[Tag]:
        """The tags under ``prefix`` that satisfy ``where`` (every one when None)."""
        group = self.get(prefix)
        if group is None:
            return ()
        return group.keys() if where is None else [tag for tag in group if where(tag)]

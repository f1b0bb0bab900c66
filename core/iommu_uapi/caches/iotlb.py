"""A tagged translation cache: the IOTLB (and a device's ATC) as the IOMMU keeps them.

Entries hold a leaf translation (input page base, page size, output page base, permissions, global
bit) under a backend-defined *tag*, a tuple such as ``(did, pasid)`` on VT-d or ``(vmid, asid)``
on SMMUv3. Each tag has a bucket keyed by ``iova >> 12``: a large page is entered under the 4 KiB
page number of the access that filled it, so a hit costs one dict lookup in the bucket the data
path already holds. A bucket holds each entry's fields as a plain tuple, in
:class:`TLBEntry`'s order (equal to the :class:`TLBEntry`): the hit unpacks it at a plain tuple's
cost, a few nanoseconds instead of a named tuple's thirty. Every other way out of the cache
(:meth:`TLB.lookup`, iteration, :attr:`TLB.entries`) gives :class:`TLBEntry` records.

Invalidation removes every entry whose *page* overlaps the range, whatever key it sits under, and
can select tags by prefix (``(did,)`` drops every PASID of a domain) and spare global entries
(VT-d's non-global PASID-based invalidation). Hardware may invalidate more than asked, never
less: the model invalidates exactly what is asked, so a missing invalidation is visible as a
stale hit.

Every invalidation costs what it touches. A page-selective one walks the pages of the range or
the tag's entries, whichever are fewer (as Linux chooses between page- and domain-selective
flushes); the entries that sit under another page than their base (large pages) are found
through a per-tag index by page size and base. A tag-selective one visits the tags under its
prefix (:class:`~.tags.TagIndex`) and nothing else; a tag without global entries is emptied at
once. A finite cache (``capacity``, ``ways``, ``policy``) places an entry in set
``page % sets`` and evicts in O(1) (:mod:`.replacement`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Container, Iterator
from typing import NamedTuple, cast

from .counters import CacheCounters
from .replacement import Geometry, Slots, make_slots
from .tags import Tag, TagIndex

__all__ = ["TLB", "Fields", "TLBEntry", "Tag"]

_SHIFT = 12
_PAGE = 1 << _SHIFT


class TLBEntry(NamedTuple):
    """One cached leaf: ``[iova, iova + size)`` -> ``[paddr, paddr + size)`` with ``perm``.
    A page is naturally aligned (``iova`` a multiple of ``size``)."""

    iova: int
    size: int
    paddr: int
    perm: int
    global_: bool = False


#: A bucket's plain tuple as a :class:`TLBEntry` (without the named tuple's keyword handling).
_record = functools.partial(tuple.__new__, TLBEntry)

#: The fields of an entry as a bucket holds them: ``(iova, size, paddr, perm, global_)``.
Fields = tuple[int, int, int, int, bool]


def _irregular(vpn: int, entry: Fields) -> bool:
    """Whether ``entry`` under page ``vpn`` needs the large-page index (not a 4 KiB page
    under its own page number)."""
    return entry[1] != _PAGE or entry[0] != vpn << _SHIFT


class TLB(CacheCounters):
    """A translation cache with counters and an optional finite geometry.

    Entries sit in one *bucket* per tag: a dict from the 4 KiB page number (``iova >> 12``) to
    the entry's fields (a plain tuple in :class:`TLBEntry`'s order). :meth:`bucket` hands the
    data path a tag's bucket once; it then hits with ``bucket.get(iova >> 12)`` and bumps
    ``hits``/``misses`` itself. A bucket stays the same object for the life of the cache
    (invalidation and :meth:`flush` empty it in place), so a bucket held by the data path never
    goes stale. When the replacement policy must see hits
    (LRU), :meth:`hot_bucket` says so by returning None, and hits go through :meth:`lookup` or
    :meth:`touch`. :attr:`entries` is a flat snapshot keyed by ``(tag, iova >> 12)``.

    ``capacity`` entries (None: unbounded) in ``ways``-way sets (None: fully associative),
    replaced by ``policy`` (``"fifo"``, ``"lru"``, ``"random"`` with ``seed``); or give a
    :class:`~.replacement.Geometry`.
    """

    capacity: int | None
    geometry: Geometry
    sees_hits: bool

    def __init__(self, capacity: int | None = None, *, ways: int | None = None,
                 policy: str = "fifo", seed: int = 0, geometry: Geometry | None = None) -> None:
        super().__init__()
        if geometry is None:
            geometry = Geometry(capacity, ways, policy, seed)
        self.geometry = geometry.check()
        self.capacity = geometry.entries
        self._slots: Slots | None = make_slots(geometry)
        self.sees_hits = self._slots is not None and self._slots.sees_hits
        self._buckets: dict[Tag, dict[int, Fields]] = {}
        self._tags = TagIndex()
        #: the prefixes of the tags filled (a read-only view for callers): an invalidation of a
        #: prefix not in it drops nothing and may be skipped
        self.prefixes: Container[Tag] = self._tags
        # per tag: page size -> page base -> the page numbers the entry sits under
        self._large: dict[Tag, dict[int, dict[int, set[int]]]] = {}
        self._globals: dict[Tag, int] = {}  # per tag: how many global entries
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[tuple[Tag, TLBEntry]]:
        for tag, bucket in self._buckets.items():
            for entry in bucket.values():
                yield tag, _record(entry)

    @property
    def entries(self) -> dict[tuple[Tag, int], TLBEntry]:
        """Every entry by ``(tag, iova >> 12)`` (a snapshot: later fills do not show)."""
        return {(tag, vpn): _record(entry) for tag, bucket in self._buckets.items()
                for vpn, entry in bucket.items()}

    def bucket(self, tag: Tag) -> dict[int, Fields]:
        """The live page-number -> entry fields dict of ``tag`` (created empty on first use).
        Read it; change it only through :meth:`fill` and the invalidations."""
        bucket = self._buckets.get(tag)
        if bucket is None:
            bucket = self._buckets[tag] = {}
            self._tags.add(tag)
        return bucket

    def hot_bucket(self, tag: Tag) -> dict[int, Fields] | None:
        """:meth:`bucket` when hits may bypass the cache (the policy ignores them), else None:
        then every hit must be reported (:meth:`lookup`, :meth:`touch`)."""
        return None if self.sees_hits else self.bucket(tag)

    def touch(self, tag: Tag, vpn: int) -> None:
        """Report a hit on the entry under page ``vpn`` of ``tag`` to the replacement policy."""
        if self._slots is not None:
            self._slots.touch((tag, vpn), vpn)

    def lookup(self, tag: Tag, iova: int) -> TLBEntry | None:
        """The cached leaf covering ``iova`` under ``tag``, counting a hit or a miss."""
        bucket = self._buckets.get(tag)
        vpn = iova >> _SHIFT
        entry = None if bucket is None else bucket.get(vpn)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        if self.sees_hits:
            self.touch(tag, vpn)
        return _record(entry)

    def fill(self, tag: Tag, iova: int, entry: TLBEntry | Fields) -> None:
        """Cache ``entry`` (the leaf that translated ``iova``; a :class:`TLBEntry` or its
        fields) under ``tag``."""
        if entry.__class__ is not tuple:
            entry = tuple(entry)  # type: ignore[assignment]
        vpn = iova >> 12
        bucket = self._buckets.get(tag)
        if bucket is None:
            bucket = self.bucket(tag)
        old = bucket.get(vpn)
        if old is not None:
            if old[4] or old[1] != 4096 or old[0] != vpn << 12:
                self._unindex(tag, vpn, old)
            if self.sees_hits:
                self.touch(tag, vpn)
        else:
            slots = self._slots
            if slots is not None:
                victim = slots.admit((tag, vpn), vpn)
                if victim is not None:
                    vtag, vvpn = cast("tuple[Tag, int]", victim)
                    gone = self._buckets[vtag].pop(vvpn)
                    if gone[4] or gone[1] != 4096 or gone[0] != vvpn << 12:
                        self._unindex(vtag, vvpn, gone)
                    self.evictions += 1
                    self._size -= 1
            self._size += 1
        bucket[vpn] = entry
        if entry[4] or entry[1] != 4096 or entry[0] != vpn << 12:  # large, odd or global
            self._index(tag, vpn, entry)
        self.fills += 1

    def fill_page(self, tag: Tag, bucket: dict[int, Fields], vpn: int, entry: Fields) -> None:
        """:meth:`fill` of ``entry`` (a plain tuple of fields) that translated page ``vpn`` of
        ``tag``, whose :meth:`bucket` the caller holds: a miss's fill. A new, non-global 4 KiB
        entry of an unbounded cache is stored at once; any other goes through :meth:`fill`."""
        if (self._slots is None and entry[1] == _PAGE and not entry[4]
                and entry[0] == vpn << _SHIFT and vpn not in bucket):
            bucket[vpn] = entry
            self._size += 1
            self.fills += 1
        else:
            self.fill(tag, vpn << _SHIFT, entry)

    def _index(self, tag: Tag, vpn: int, entry: Fields) -> None:
        if entry[4]:
            self._globals[tag] = self._globals.get(tag, 0) + 1
        if _irregular(vpn, entry):
            sizes = self._large.setdefault(tag, {})
            sizes.setdefault(entry[1], {}).setdefault(entry[0], set()).add(vpn)

    def _unindex(self, tag: Tag, vpn: int, entry: Fields) -> None:
        if entry[4]:
            left = self._globals[tag] - 1
            if left:
                self._globals[tag] = left
            else:
                del self._globals[tag]
        if _irregular(vpn, entry):
            sizes = self._large[tag]
            bases = sizes[entry[1]]
            vpns = bases[entry[0]]
            vpns.discard(vpn)
            if not vpns:
                del bases[entry[0]]
                if not bases:
                    del sizes[entry[1]]
                    if not sizes:
                        del self._large[tag]

    def _remove(self, tag: Tag, vpn: int) -> None:
        """Take the entry under ``vpn`` out of ``tag``'s bucket and the indices (not out of the
        replacement state)."""
        entry = self._buckets[tag].pop(vpn)
        self._size -= 1
        if entry[4] or _irregular(vpn, entry):
            self._unindex(tag, vpn, entry)

    def _drop(self, tag: Tag, vpn: int) -> None:
        self._remove(tag, vpn)
        if self._slots is not None:
            self._slots.discard((tag, vpn), vpn)

    def tags(self) -> list[Tag]:
        """The tags that currently have entries."""
        return [tag for tag, bucket in self._buckets.items() if bucket]

    def invalidate(
        self,
        prefix: Tag = (),
        addr: int | None = None,
        size: int | None = None,
        *,
        include_global: bool = True,
        where: Callable[[Tag], bool] | None = None,
    ) -> int:
        """Drop the entries whose tag starts with ``prefix`` (and satisfies ``where``) and whose
        page overlaps ``[addr, addr + size)`` (every address when ``addr`` is None); global entries
        survive when ``include_global`` is False. Returns how many entries were dropped."""
        if where is None and addr is not None and size is not None and 0 < size <= _PAGE \
                and (addr + size - 1) >> _SHIFT == addr >> _SHIFT:
            return self.invalidate_page(prefix, addr, include_global=include_global)
        tags = self._tags.select(prefix, where)
        if not tags:  # no tag under the prefix was ever filled: nothing to scan
            return 0
        dropped = 0
        if addr is None:
            for tag in tags:
                dropped += self._drop_tag(tag, include_global)
            kind = "global" if not prefix and where is None else "tag"
        else:
            kind = "page"
            end = addr + (size if size is not None else _PAGE)
            if end > addr:
                buckets = self._buckets
                for tag in tags:
                    if buckets[tag]:  # a tag emptied before costs its lookup alone
                        dropped += self._drop_range(tag, addr, end, include_global)
        if dropped:
            counts = self.dropped
            counts[kind] = counts.get(kind, 0) + dropped
        return dropped

    def invalidate_page(self, prefix: Tag, iova: int, *, include_global: bool = True) -> int:
        """:meth:`invalidate` of the 4 KiB page holding ``iova`` under every tag that starts with
        ``prefix`` (a whole tag names itself): one lookup in each such tag's bucket (and its
        large-page index when it has one); global entries survive when ``include_global`` is
        False. An unmap's flush. Returns how many entries were dropped."""
        tags = self._tags.get(prefix)
        if not tags:  # no tag under the prefix was ever filled
            return 0
        buckets, large, vpn, dropped = self._buckets, self._large, iova >> _SHIFT, 0
        for tag in tags:
            bucket = buckets[tag]
            if not bucket:  # a tag emptied before costs its lookup alone
                continue
            if tag in large:
                dropped += self._drop_range(tag, vpn << _SHIFT, (vpn + 1) << _SHIFT,
                                            include_global)
                continue
            # every entry of the tag is a 4 KiB page under its own page number
            entry = bucket.get(vpn)
            if entry is None or not (include_global or not entry[4]):
                continue
            del bucket[vpn]
            self._size -= 1
            if entry[4]:
                self._unindex(tag, vpn, entry)
            if self._slots is not None:
                self._slots.discard((tag, vpn), vpn)
            dropped += 1
        if dropped:
            counts = self.dropped
            counts["page"] = counts.get("page", 0) + dropped
        return dropped

    def _drop_tag(self, tag: Tag, include_global: bool) -> int:
        bucket = self._buckets[tag]
        n = len(bucket)
        if not n:
            return 0
        if include_global or tag not in self._globals:
            if self._slots is not None:
                discard = self._slots.discard
                for vpn in bucket:
                    discard((tag, vpn), vpn)
            bucket.clear()
            self._large.pop(tag, None)
            self._globals.pop(tag, None)
            self._size -= n
            return n
        victims = [vpn for vpn, entry in bucket.items() if not entry[4]]
        for vpn in victims:
            self._drop(tag, vpn)
        return len(victims)

    def _drop_range(self, tag: Tag, addr: int, end: int, include_global: bool) -> int:
        """Drop ``tag``'s entries overlapping ``[addr, end)``: by the pages of the range or by
        the tag's entries, whichever are fewer."""
        bucket = self._buckets[tag]
        if not bucket:
            return 0
        first, last = addr >> _SHIFT, (end - 1) >> _SHIFT
        large = self._large.get(tag)
        victims: list[int]
        if last - first < len(bucket):
            if first == last and large is None:  # one page, no large page in the tag
                entry = bucket.get(first)
                if entry is None or not (include_global or not entry[4]):
                    return 0
                if entry[4]:
                    self._unindex(tag, first, entry)
                del bucket[first]
                self._size -= 1
                if self._slots is not None:
                    self._slots.discard((tag, first), first)
                return 1
            else:
                get = bucket.get
                victims = [vpn for vpn in range(first, last + 1)
                           if (e := get(vpn)) is not None and e[1] == _PAGE
                           and e[0] == vpn << _SHIFT and (include_global or not e[4])]
                if large:
                    victims.extend(self._large_victims(bucket, large, addr, end,
                                                       include_global))
        else:
            victims = [vpn for vpn, (base, size, _, _, global_) in bucket.items()
                       if base < end and base + size > addr and (include_global or not global_)]
        for vpn in victims:
            self._drop(tag, vpn)
        return len(victims)

    @staticmethod
    def _large_victims(bucket: dict[int, Fields], large: dict[int, dict[int, set[int]]],
                       addr: int, end: int, include_global: bool) -> list[int]:
        """The page numbers of the indexed entries overlapping ``[addr, end)``."""
        out: list[int] = []
        for size, bases in large.items():
            lo = addr - addr % size
            if (end - lo) // size < len(bases):
                hits = [b for b in range(lo, end, size) if b in bases]
            else:
                hits = [b for b in bases if b < end and b + size > addr]
            for base in hits:
                for vpn in bases[base]:
                    if include_global or not bucket[vpn][4]:
                        out.append(vpn)
        return out

    def flush(self) -> int:
        """Drop everything (a global invalidation); returns how many entries were dropped."""
        dropped = self._size
        for bucket in self._buckets.values():
            bucket.clear()
        self._large.clear()
        self._globals.clear()
        if self._slots is not None:
            self._slots.clear()
        self._size = 0
        return self._count_drop("global", dropped)

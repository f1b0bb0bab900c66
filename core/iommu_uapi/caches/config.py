"""A configuration cache: the configuration entries a unit read (VT-d context and PASID
entries, SMMUv3 STEs and CDs), by key.

Lookups are counted. An entry may carry *labels* (``("did", 5)``: the domain it is tagged with)
so that an invalidation naming a label visits that label's entries alone; an invalidation may
also name keys, or (where the architecture gives nothing better) a predicate over every entry.
Whenever entries leave the cache, by invalidation or eviction, ``on_drop`` hears their keys: the
core's translation contexts built from them must be forgotten, so the next request reads the
configuration again (a global invalidation may say so once, through ``on_flush``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Generic, TypeVar

from .counters import CacheCounters
from .replacement import Geometry, make_slots

__all__ = ["ConfigCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ConfigCache(CacheCounters, Generic[K, V]):
    """Configuration entries by key, with labels, counters and an optional finite geometry.

    :attr:`entries` is the live key -> value dict (read it; change it through the methods).
    """

    entries: dict[K, V]
    on_drop: Callable[[list[K]], None] | None
    on_flush: Callable[[], None] | None

    def __init__(self, geometry: Geometry | None = None,
                 on_drop: Callable[[list[K]], None] | None = None,
                 on_flush: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.entries = {}
        self.on_drop = on_drop
        self.on_flush = on_flush
        self._slots = make_slots(geometry)
        self._labels: dict[K, tuple[Hashable, ...]] = {}
        self._by_label: dict[Hashable, dict[K, None]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __iter__(self) -> Iterator[K]:
        return iter(self.entries)

    def lookup(self, key: K) -> V | None:
        """The cached value of ``key``, counting a hit or a miss."""
        found = self.entries.get(key)
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
            if self._slots is not None and self._slots.sees_hits:
                self._slots.touch(key, hash(key))
        return found

    def fill(self, key: K, value: V, labels: Iterable[Hashable] = ()) -> None:
        """Cache ``value`` under ``key`` with ``labels`` (replacing what ``key`` held)."""
        if key in self.entries:
            self._unlabel(key)
            if self._slots is not None and self._slots.sees_hits:
                self._slots.touch(key, hash(key))
        elif self._slots is not None:
            victim = self._slots.admit(key, hash(key))
            if victim is not None:
                self._forget(victim)  # type: ignore[arg-type]
                self.evictions += 1
                self._notify([victim])  # type: ignore[list-item]
        self.entries[key] = value
        self.fills += 1
        for label in labels:
            self.label(key, label)

    def update(self, key: K, value: V) -> None:
        """Change the value of resident ``key`` in place (no fill, no replacement effect)."""
        if key in self.entries:
            self.entries[key] = value

    def label(self, key: K, label: Hashable) -> None:
        """Add ``label`` to resident ``key``."""
        if key not in self.entries:
            return
        have = self._labels.get(key, ())
        if label in have:
            return
        self._labels[key] = (*have, label)
        group = self._by_label.get(label)
        if group is None:
            self._by_label[label] = {key: None}
        else:
            group[key] = None

    def labelled(self, label: Hashable) -> list[K]:
        """The keys carrying ``label``."""
        return list(self._by_label.get(label, ()))

    def _unlabel(self, key: K) -> None:
        for label in self._labels.pop(key, ()):
            group = self._by_label[label]
            del group[key]
            if not group:
                del self._by_label[label]

    def _forget(self, key: K) -> None:
        del self.entries[key]
        self._unlabel(key)

    def _notify(self, keys: list[K]) -> None:
        if keys and self.on_drop is not None:
            self.on_drop(keys)

    def _drop_keys(self, keys: Iterable[K], kind: str) -> int:
        gone = [key for key in keys if key in self.entries]
        for key in gone:
            self._forget(key)
            if self._slots is not None:
                self._slots.discard(key, hash(key))
        self._notify(gone)
        return self._count_drop(kind, len(gone))

    def drop(self, *keys: K) -> int:
        """Drop the entries of ``keys`` (those resident); returns how many went."""
        return self._drop_keys(keys, "key")

    def drop_label(self, *labels: Hashable) -> int:
        """Drop every entry carrying one of ``labels``."""
        keys: dict[K, None] = {}
        for label in labels:
            keys.update(self._by_label.get(label, {}))
        return self._drop_keys(keys, "tag")

    def drop_where(self, match: Callable[[K, V], bool]) -> int:
        """Drop the entries for which ``match(key, value)`` holds (visits every entry)."""
        return self._drop_keys([k for k, v in self.entries.items() if match(k, v)], "predicate")

    def flush(self) -> int:
        """Drop every entry; ``on_flush`` hears it once (when given), else ``on_drop`` hears
        every key."""
        gone = list(self.entries)
        self.entries.clear()
        self._labels.clear()
        self._by_label.clear()
        if self._slots is not None:
            self._slots.clear()
        if gone and self.on_flush is not None:
            self.on_flush()
        else:
            self._notify(gone)
        return self._count_drop("global", len(gone))

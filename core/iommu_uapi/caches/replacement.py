"""How a finite cache chooses what to keep: its geometry (entries, ways) and replacement policy.

A cache of ``entries`` slots in ``ways``-way sets places a key in set ``index % sets`` (the
caller gives the index hardware would use: the page number for a TLB, the address prefix for a
walk cache, a hash for a configuration cache). When the set is full, the policy picks the victim:

* ``lru`` - the least recently filled or hit (hits must be reported with :meth:`Slots.touch`);
* ``fifo`` - the oldest fill (hits change nothing; gem5's round-robin ``rr`` behaves so when
  fills come in order);
* ``random`` - a uniformly chosen way, from a generator seeded with ``seed``.

Every operation is O(1): an ``OrderedDict`` per set for LRU and FIFO (pop from the front, move
to the end), a list with a position map per set for random.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Hashable
from typing import NamedTuple

__all__ = ["POLICIES", "UNBOUNDED", "Geometry", "Slots", "make_slots"]

#: The replacement policies by name.
POLICIES = ("lru", "fifo", "random")


class Geometry(NamedTuple):
    """A cache's shape: ``entries`` slots (None: unbounded), ``ways`` per set (None: fully
    associative), the replacement ``policy`` and the ``seed`` of ``random``."""

    entries: int | None = None
    ways: int | None = None
    policy: str = "fifo"
    seed: int = 0

    @property
    def bounded(self) -> bool:
        """Whether the cache ever evicts."""
        return self.entries is not None

    @property
    def sets(self) -> int:
        """The number of sets (1 when fully associative or unbounded)."""
        if self.entries is None or not self.ways:
            return 1
        return self.entries // self.ways

    def check(self) -> Geometry:
        """This geometry, or ``ValueError`` naming what is wrong with it."""
        if self.policy not in POLICIES:
            raise ValueError(f"replacement policy {self.policy!r} is not one of {POLICIES}")
        if self.entries is not None:
            if self.entries < 1:
                raise ValueError("capacity must be a positive number of entries or None")
            if self.ways is not None and (self.ways < 1 or self.entries % self.ways):
                raise ValueError(f"{self.entries} entries do not split into {self.ways}-way "
                                 "sets")
        return self


#: A cache that never evicts (the default of every cache).
UNBOUNDED = Geometry()


class Slots:
    """The resident keys of a finite cache by set, and the victim each fill displaces."""

    sees_hits: bool = False

    def __init__(self, geometry: Geometry) -> None:
        geometry.check()
        assert geometry.entries is not None
        self.geometry = geometry
        self.nsets = geometry.sets
        self.ways = geometry.entries // self.nsets

    def admit(self, key: Hashable, index: int) -> Hashable | None:
        """Make ``key`` (not resident) resident in set ``index % sets``; returns the key it
        displaced, or None."""
        raise NotImplementedError

    def touch(self, key: Hashable, index: int) -> None:
        """A hit on resident ``key`` (only LRU cares)."""

    def discard(self, key: Hashable, index: int) -> None:
        """``key`` left the cache (invalidated); nothing when it was not resident."""
        raise NotImplementedError

    def clear(self) -> None:
        """Every key left the cache."""
        raise NotImplementedError


class _Ordered(Slots):
    """FIFO: each set an ordered dict, oldest first."""

    def __init__(self, geometry: Geometry) -> None:
        super().__init__(geometry)
        self._sets: list[OrderedDict[Hashable, None]] = [OrderedDict()
                                                         for _ in range(self.nsets)]

    def admit(self, key: Hashable, index: int) -> Hashable | None:
        s = self._sets[index % self.nsets]
        victim = s.popitem(last=False)[0] if len(s) >= self.ways else None
        s[key] = None
        return victim

    def discard(self, key: Hashable, index: int) -> None:
        self._sets[index % self.nsets].pop(key, None)

    def clear(self) -> None:
        for s in self._sets:
            s.clear()


class _Lru(_Ordered):
    """LRU: as FIFO, and a hit moves the key to the young end."""

    sees_hits = True

    def touch(self, key: Hashable, index: int) -> None:
        s = self._sets[index % self.nsets]
        if key in s:
            s.move_to_end(key)


class _Random(Slots):
    """Random: each set a list of keys and their positions; the victim is a random way."""

    def __init__(self, geometry: Geometry) -> None:
        super().__init__(geometry)
        self._rng = random.Random(geometry.seed)
        self._keys: list[list[Hashable]] = [[] for _ in range(self.nsets)]
        self._pos: list[dict[Hashable, int]] = [{} for _ in range(self.nsets)]

    def admit(self, key: Hashable, index: int) -> Hashable | None:
        i = index % self.nsets
        keys, pos = self._keys[i], self._pos[i]
        if len(keys) < self.ways:
            pos[key] = len(keys)
            keys.append(key)
            return None
        way = self._rng.randrange(self.ways)
        victim = keys[way]
        del pos[victim]
        keys[way] = key
        pos[key] = way
        return victim

    def discard(self, key: Hashable, index: int) -> None:
        i = index % self.nsets
        keys, pos = self._keys[i], self._pos[i]
        way = pos.pop(key, None)
        if way is None:
            return
        last = keys.pop()
        if way < len(keys):
            keys[way] = last
            pos[last] = way

    def clear(self) -> None:
        for keys in self._keys:
            keys.clear()
        for pos in self._pos:
            pos.clear()


_POLICY_CLASS: dict[str, type[Slots]] = {"lru": _Lru, "fifo": _Ordered, "random": _Random}


def make_slots(geometry: Geometry | None) -> Slots | None:
    """The replacement state of a cache of ``geometry`` (None when it never evicts)."""
    if geometry is None or geometry.check().entries is None:
        return None
    return _POLICY_CLASS[geometry.policy](geometry)

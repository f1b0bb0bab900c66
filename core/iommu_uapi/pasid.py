"""The PASID (IOASID) space: system-wide allocation, per-VM sets with quotas, free.

On Linux 5.10 a host PASID must be allocated in the IOASID allocator before a guest PASID can be
bound to it (the Intel driver answers ENOENT otherwise). The space here is system-wide: one
:class:`PasidSpace` per host, shared by every IOMMU model that a VMM creates on it; each VM gets a
:class:`PasidSet` with a quota. Errors: exhaustion ``ENOSPC``, quota ``EDQUOT``, a PASID outside
the space ``EINVAL``, a PASID that is not allocated ``ENOENT``, a PASID of another set ``EPERM``.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from itertools import chain

from .errors import UAPIError

__all__ = ["PasidSet", "PasidSpace"]


class PasidSet:
    """A VM's share of the PASID space: the PASIDs it allocated, under a quota."""

    __slots__ = ("name", "pasids", "quota", "space")

    def __init__(self, space: PasidSpace, name: str, quota: int) -> None:
        self.space = space
        self.name = name
        self.quota = quota
        self.pasids: set[int] = set()

    def __repr__(self) -> str:
        return f"PasidSet({self.name!r}, {len(self.pasids)}/{self.quota})"

    def __len__(self) -> int:
        return len(self.pasids)

    def __iter__(self) -> Iterator[int]:
        return iter(sorted(self.pasids))

    def alloc(self, min_pasid: int = 1, max_pasid: int | None = None) -> int:
        """Allocate the lowest free PASID in ``[min_pasid, max_pasid]`` for this set."""
        return self.space.alloc(self, min_pasid, max_pasid)

    def free(self, pasid: int) -> None:
        """Free a PASID of this set (see :meth:`PasidSpace.free`)."""
        self.space.free(pasid, self)


class PasidSpace:
    """PASIDs ``1 .. 2**bits - 1`` (PASID 0 is RID_PASID, reserved for requests without PASID)."""

    def __init__(self, bits: int = 20) -> None:
        if not 1 <= bits <= 20:
            raise UAPIError(errno.EINVAL, f"pasid space: bits must be 1..20, got {bits}",
                            rule="pasid.bits")
        self.bits = bits
        self.limit = 1 << bits
        self._owner: dict[int, PasidSet] = {}
        self._sets: dict[str, PasidSet] = {}
        self._next_hint = 1
        #: Called with the PASID before it is freed, so models tear down what uses it.
        self.free_notifiers: list[Callable[[int], None]] = []

    def __contains__(self, pasid: object) -> bool:
        return pasid in self._owner

    def __len__(self) -> int:
        return len(self._owner)

    def create_set(self, name: str, quota: int) -> PasidSet:
        """A new per-VM set; ``EEXIST`` for a name in use, ``EINVAL`` for a quota < 1."""
        if quota < 1 or quota >= self.limit:
            raise UAPIError(errno.EINVAL, f"pasid set {name!r}: quota must be 1..{self.limit - 1}"
                            f", got {quota}", rule="pasid.set_quota")
        if name in self._sets:
            raise UAPIError(errno.EEXIST, f"pasid set {name!r} exists", rule="pasid.set_exists")
        pasid_set = PasidSet(self, name, quota)
        self._sets[name] = pasid_set
        return pasid_set

    def check_range(self, pasid: int) -> None:
        """``EINVAL`` unless ``pasid`` lies in ``1 .. 2**bits - 1``."""
        if not 0 < pasid < self.limit:
            raise UAPIError(errno.EINVAL, f"pasid {pasid:#x} outside the PASID space "
                            f"1..{self.limit - 1:#x}", rule="pasid.range")

    def owner(self, pasid: int) -> PasidSet:
        """The set that allocated ``pasid``: ``EINVAL`` out of range, ``ENOENT`` not allocated."""
        self.check_range(pasid)
        owner = self._owner.get(pasid)
        if owner is None:
            raise UAPIError(errno.ENOENT, f"pasid {pasid:#x} is not allocated",
                            rule="pasid.allocated")
        return owner

    def alloc(self, pasid_set: PasidSet, min_pasid: int = 1, max_pasid: int | None = None) -> int:
        """Allocate the lowest free PASID in the range for ``pasid_set``."""
        top = self.limit - 1 if max_pasid is None else max_pasid
        if not 0 < min_pasid <= top < self.limit:
            raise UAPIError(errno.EINVAL, f"pasid alloc: range {min_pasid:#x}..{top:#x} is not "
                            f"inside 1..{self.limit - 1:#x}", rule="pasid.alloc_range")
        if pasid_set.space is not self or self._sets.get(pasid_set.name) is not pasid_set:
            raise UAPIError(errno.EINVAL, f"pasid alloc: {pasid_set!r} is not a set of this space",
                            rule="pasid.set_unknown")
        if len(pasid_set.pasids) >= pasid_set.quota:
            raise UAPIError(errno.EDQUOT, f"pasid alloc: set {pasid_set.name!r} reached its "
                            f"quota of {pasid_set.quota}", rule="pasid.quota")
        start = max(min_pasid, self._next_hint if min_pasid <= self._next_hint <= top else
                    min_pasid)
        for pasid in chain(range(start, top + 1), range(min_pasid, start)):
            if pasid not in self._owner:
                self._owner[pasid] = pasid_set
                pasid_set.pasids.add(pasid)
                self._next_hint = pasid + 1
                return pasid
        raise UAPIError(errno.ENOSPC, f"pasid alloc: no free PASID in {min_pasid:#x}..{top:#x}",
                        rule="pasid.exhausted")

    def free(self, pasid: int, pasid_set: PasidSet | None = None) -> None:
        """Free ``pasid``: every model using it is told first (``free_notifiers``) and tears down
        its bindings, so a freed PASID never translates. ``EPERM`` if ``pasid_set`` is given and
        does not own it."""
        owner = self.owner(pasid)
        if pasid_set is not None and owner is not pasid_set:
            raise UAPIError(errno.EPERM, f"pasid free: {pasid:#x} belongs to set {owner.name!r},"
                            f" not {pasid_set.name!r}", rule="pasid.owner")
        for notify in list(self.free_notifiers):
            notify(pasid)
        del self._owner[pasid]
        owner.pasids.discard(pasid)
        if pasid < self._next_hint:
            self._next_hint = pasid

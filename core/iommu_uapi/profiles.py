"""Validation profiles: which tabulated rules (:mod:`iommu_uapi.rules`) a call applies.

``linux-5.10`` is what the v5.10 IOMMU core checked before calling the driver, quirks included
(cache == 0 accepted, format 0 passed on, page-response argsz ignored, unbind running the bind
checks, PASID-table padding unchecked). ``strict`` adds what ``iommu.rst`` and the header promise.
Backends may register more (virtio-iommu: ``qemu``, ``spec``).
"""

from __future__ import annotations

import msgspec

from .rules import LINUX_5_10, RULES, STRICT, fail

__all__ = ["DEFAULT", "Profile", "ProfileLike", "get", "names", "register"]


class Profile(msgspec.Struct, frozen=True, gc=False):
    """A named set of rule ids; a check runs only if its rule id is in ``rules``.

    The readable-memory (EFAULT), ``argsz >= minsz`` and IOMMUFD tail rules of the size
    disciplines are part of the copy itself and apply under every profile.
    """

    name: str
    description: str
    rules: frozenset[str]


ProfileLike = str | Profile

DEFAULT = LINUX_5_10

_REGISTRY: dict[str, Profile] = {}


def register(profile: Profile, *, replace: bool = False) -> Profile:
    """Make ``profile`` available by name; EEXIST if the name is taken and not ``replace``."""
    if not replace and profile.name in _REGISTRY:
        raise fail("profile.exists", name=repr(profile.name))
    _REGISTRY[profile.name] = profile
    return profile


def get(profile: ProfileLike) -> Profile:
    """The profile named ``profile`` (a :class:`Profile` is returned as is); EINVAL if unknown."""
    if type(profile) is str:
        found = _REGISTRY.get(profile)
        if found is None:
            raise fail("profile.unknown", name=repr(profile), known=", ".join(names()))
        return found
    if isinstance(profile, Profile):
        return profile
    raise fail("profile.unknown", name=repr(profile), known=", ".join(names()))


def names() -> tuple[str, ...]:
    """Registered profile names, in registration order."""
    return tuple(_REGISTRY)


def _builtin(name: str, description: str) -> Profile:
    ids = frozenset(r.id for r in RULES if name in r.profiles)
    return register(Profile(name, description, ids))


_builtin(
    LINUX_5_10,
    "The checks of the v5.10 IOMMU core (drivers/iommu/iommu.c), in the kernel's order, quirks "
    "included.",
)
_builtin(
    STRICT,
    "linux-5.10 plus what iommu.rst and the header promise: the cache x granularity table, "
    "cache != 0, a PASID or ARCHID for PASID invalidation, format != 0, VT-d vendor size and "
    "flags, page-response argsz and code, PASID-table padding.",
)

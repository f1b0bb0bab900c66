"""The device's profiles: ``spec`` (the normative text), ``qemu`` (QEMU's device) and
``rfc2021`` (the spec with the Jan 2021 RFC's nesting requests), as the core's
:class:`~iommu_uapi.profiles.Profile` s.

A profile's rules are the rows of :mod:`.rules` that name it (the ``profiles`` column) and its
quirks those of :data:`~.rules.VIRTIO_QUIRKS` that name it: behaviours that differ in more than
whether a check runs. The device asks ``profile.quirk(Quirk.X)``; no code compares profile
names. ``spec`` and ``qemu`` have no base: they describe the device, not the nesting UAPI's
validation (``linux-5.10``/``strict``, which the backend's hooks receive), and ``qemu`` drops
checks the spec makes, so it cannot start from ``spec``'s rules. ``rfc2021`` is ``spec`` plus
the RFC's rows and its ATTACH_TABLE wire bit, so it is based on ``spec``.
"""

from __future__ import annotations

from enum import StrEnum

from iommu_uapi import profiles as _core
from iommu_uapi.profiles import Profile

from .rules import QEMU, RFC2021, SPEC, VIRTIO_TABLE, refusal

__all__ = ["PROFILES", "Profile", "Quirk", "get", "table_bit"]


class Quirk(StrEnum):
    """A behaviour of QEMU's virtio-iommu (as of 0522be9a) that deviates from the spec; each
    value is the id of a quirk of :data:`~.rules.VIRTIO_TABLE` (its text there)."""

    ERRORS_BREAK_DEVICE = "virtio.quirk.errors_break_device"
    REPLY_AT_START = "virtio.quirk.reply_at_start"
    ENDPOINT_RECORDS = "virtio.quirk.endpoint_records"
    ATTACH_DETACHES_FIRST = "virtio.quirk.attach_detaches_first"
    UNMAP_NOT_ATOMIC = "virtio.quirk.unmap_not_atomic"


#: The quirk holding the wire bit of ATTACH_TABLE (an int) in a profile with nesting requests.
TABLE_BIT = "virtio.quirk.attach_table_bit"

#: The device's profiles as handed to the core (with the backend's spec, and on import).
DEVICE_PROFILES: tuple[Profile, ...] = (
    Profile(SPEC, "the normative text of the virtio spec (5.13): every MUST and SHOULD of the "
            "device, statuses chosen where the spec names none"),
    Profile(QEMU, "QEMU's hw/virtio/virtio-iommu.c: no reserved-byte, alignment, input-range "
            "or RESV_MEM checks, S_UNSUPP for unknown types, endpoint records, detach-first "
            "ATTACH, non-atomic UNMAP, virtio_error on bad input"),
    Profile(RFC2021, "the spec, and the Jan 2021 RFC's table sharing (closest to Linux's 2020 "
            "nesting UAPI): ATTACH_TABLE with the Arm SMMUv3 PASID-table format, INVALIDATE "
            "and PAGE_RESP; its ATTACH_TABLE feature is bit 6, so BYPASS_CONFIG is not offered",
            quirks={TABLE_BIT: 6}, base=SPEC),
)


def _register() -> dict[str, Profile]:
    assert VIRTIO_TABLE.name  # the table is registered before the profiles take its rules
    out = {}
    for p in DEVICE_PROFILES:
        if _core.definition(p.name) is None:
            _core.register(p)
        out[p.name] = _core.get(p.name)
    return out


#: The device's profiles by name, with the rules and quirks the tables give them.
PROFILES: dict[str, Profile] = _register()


def table_bit(profile: Profile) -> int | None:
    """The wire bit of ATTACH_TABLE in ``profile`` (None: it has no nesting requests)."""
    bit = profile.quirk(TABLE_BIT)
    return None if isinstance(bit, bool) or not isinstance(bit, int) else bit


def get(profile: str | Profile) -> Profile:
    """The device profile named ``profile``, or ``profile`` itself with the tables' rules and
    quirks merged in; EINVAL (``virtio.profile.unknown``) for a name that is not a device
    profile."""
    if isinstance(profile, Profile):
        return _core.get(profile)
    if profile not in PROFILES:
        raise refusal("virtio.profile.unknown", name=profile)
    return _core.get(profile)

"""The device's profiles: ``spec`` (the normative text), ``qemu`` (QEMU's device) and
``rfc2021`` (the spec with the Jan 2021 RFC's nesting requests).

A profile is the set of rule ids it applies (the ``profiles`` column of :mod:`.rules`) plus a set
of named :class:`Quirk` s: behaviours that differ in more than whether a check runs. The device
asks ``quirk in profile.quirks``; no code compares profile names.
"""

from __future__ import annotations

from enum import Enum

import msgspec

from .rules import QEMU, RFC2021, RULES, SPEC, refusal

__all__ = ["PROFILES", "Profile", "Quirk", "get"]


class Quirk(Enum):
    """A behaviour of QEMU's virtio-iommu (as of 0522be9a) that deviates from the spec."""

    #: virtio_error: a short request, a bad ``bypass`` write, a too small event buffer or a
    #: too small PROBE buffer leave the device needing a reset (it handles no more requests).
    ERRORS_BREAK_DEVICE = "errors-break-device"
    #: the reply is written from the start of the device-writable part (the tail right after
    #: PROBE's properties), used length = the bytes written; the spec puts the tail at the end.
    REPLY_AT_START = "reply-at-start"
    #: endpoint records exist from the first ATTACH until reset: DETACH of an endpoint never
    #: attached is S_NOENT, and its DMA faults with R_UNKNOWN rather than R_DOMAIN.
    ENDPOINT_RECORDS = "endpoint-records"
    #: ATTACH detaches the endpoint (deleting a domain left empty, mappings included) before it
    #: looks at the target domain: a kind mismatch leaves the endpoint detached, and re-ATTACH
    #: of a domain's only endpoint to that domain recreates the domain empty.
    ATTACH_DETACHES_FIRST = "attach-detaches-first"
    #: UNMAP removes fully covered mappings in address order and stops with S_RANGE at the first
    #: split one, keeping the removals made before it.
    UNMAP_NOT_ATOMIC = "unmap-not-atomic"


class Profile(msgspec.Struct, frozen=True, gc=False):
    """A named behaviour of the device: the rule ids it applies, its quirks, and the wire bit
    of the nesting draft's ATTACH_TABLE feature (None: the profile has no nesting requests)."""

    name: str
    description: str
    rules: frozenset[str]
    quirks: frozenset[Quirk]
    table_bit: int | None = None


def _profile(name: str, description: str, quirks: frozenset[Quirk]) -> Profile:
    return Profile(name, description, frozenset(r.id for r in RULES if name in r.profiles),
                   quirks)


PROFILES: dict[str, Profile] = {
    SPEC: _profile(SPEC, "the normative text of the virtio spec (5.13): every MUST and SHOULD "
                   "of the device, statuses chosen where the spec names none", frozenset()),
    QEMU: _profile(QEMU, "QEMU's hw/virtio/virtio-iommu.c: no reserved-byte, alignment, "
                   "input-range or RESV_MEM checks, S_UNSUPP for unknown types, endpoint "
                   "records, detach-first ATTACH, non-atomic UNMAP, virtio_error on bad input",
                   frozenset(Quirk)),
    RFC2021: Profile(
        RFC2021, "the spec, and the Jan 2021 RFC's table sharing (closest to Linux's 2020 "
        "nesting UAPI): ATTACH_TABLE with the Arm SMMUv3 PASID-table format, INVALIDATE and "
        "PAGE_RESP; its ATTACH_TABLE feature is bit 6, so BYPASS_CONFIG is not offered",
        frozenset(r.id for r in RULES if SPEC in r.profiles or RFC2021 in r.profiles),
        frozenset(), table_bit=6),
}


def get(profile: str | Profile) -> Profile:
    """The profile named ``profile`` (a :class:`Profile` is returned as is); EINVAL if unknown."""
    if isinstance(profile, Profile):
        return profile
    found = PROFILES.get(profile)
    if found is None:
        raise refusal("virtio.profile.unknown", name=profile)
    return found

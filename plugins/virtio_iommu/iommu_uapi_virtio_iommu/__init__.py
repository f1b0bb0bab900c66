"""virtio-iommu device model for iommu-uapi: the paravirtual IOMMU whose every request carries a
status the guest reads.

One module per thing the device holds: :mod:`.features` (feature bits, negotiation),
:mod:`.config` (the configuration space), :mod:`.layouts` (request framing, layouts, statuses),
:mod:`.rules` (every refusal with its status and errno), :mod:`.profiles` (``spec`` and
``qemu`` with QEMU's quirks), :mod:`.mappings` (the interval map of a domain's mappings),
:mod:`.domains`, :mod:`.probe` (PROBE properties), :mod:`.events` (fault records and the event
queue), :mod:`.host` (mirroring mappings to the host), :mod:`.handlers` (the requests),
:mod:`.translate` (the data path) and :mod:`.device` (:class:`VirtioIommuDevice`).
"""

from __future__ import annotations

from .device import DEFAULT_PAGE_SIZE_MASK, Reply, VirtioIommuDevice
from .events import EventQueue, FaultFlags, FaultReason, FaultRecord
from .features import QEMU_OFFERED, Feature
from .host import Host, HostTables
from .layouts import AttachFlags, MapFlags, RequestType, Status
from .mappings import Mapping, MappingTable
from .probe import ReservedRegion, ResvSubtype
from .profiles import PROFILES, Profile, Quirk
from .rules import RULES, RULES_BY_ID, VirtioRule

__all__ = [
    "DEFAULT_PAGE_SIZE_MASK",
    "PROFILES",
    "QEMU_OFFERED",
    "RULES",
    "RULES_BY_ID",
    "AttachFlags",
    "EventQueue",
    "FaultFlags",
    "FaultReason",
    "FaultRecord",
    "Feature",
    "Host",
    "HostTables",
    "MapFlags",
    "Mapping",
    "MappingTable",
    "Profile",
    "Quirk",
    "Reply",
    "RequestType",
    "ReservedRegion",
    "ResvSubtype",
    "Status",
    "VirtioIommuDevice",
    "VirtioRule",
]

"""The device's handling of ATTACH, DETACH, MAP, UNMAP and PROBE (virtio spec 5.13.6).

Each handler takes the device and the unpacked device-readable part and returns an
:class:`Outcome`. Checks run in the order the spec's text suggests (the spec fixes none); a check
runs when its rule id is in the device's profile. Host calls are made before the device's own
state changes; when the host refuses one, the calls already made are undone and the request
fails with nothing changed. The one deliberate exception is the ``qemu`` profile's quirks, which
reproduce QEMU's side effects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from iommu_uapi.errors import UAPIError

from .config import U64_MAX, granule
from .domains import Domain
from .features import Feature
from .host import HostTxn
from .layouts import AttachFlags, MapFlags, Status
from .mappings import Mapping
from .probe import encode_properties
from .profiles import Quirk
from .rules import RULES_BY_ID

if TYPE_CHECKING:
    from .device import VirtioIommuDevice

__all__ = ["HANDLERS", "Outcome"]


class Outcome(NamedTuple):
    """What a request came to: ``status`` (None: nothing written), the refusing ``rule`` and its
    message, and PROBE's ``properties``."""

    status: Status | None
    rule: str | None = None
    message: str = ""
    properties: bytes = b""


_OK = Outcome(Status.OK)


def refuse(rule_id: str, **values: object) -> Outcome:
    """The outcome of ``rule_id`` refusing the request, its message filled with ``values``."""
    rule = RULES_BY_ID[rule_id]
    return Outcome(rule.status, rule_id, f"{rule.operation}: {rule.message.format(**values)}")


def _host_failure(dev: VirtioIommuDevice, rule_id: str, txn: HostTxn, endpoint: int,
                  err: UAPIError) -> Outcome:
    """Undo the host calls of a failed request; a refused undo leaves the device needing a
    reset (``virtio.host.diverged``)."""
    refused = txn.rollback()
    if refused:
        dev.host_diverged(refused)
    return refuse(rule_id, endpoint=endpoint, detail=err.message)


def attach(dev: VirtioIommuDevice, fields: tuple[int | bytes, ...]) -> Outcome:
    """ATTACH: put ``endpoint`` in ``domain``, creating the domain on first use."""
    _, _, domain_id, endpoint, flags, reserved = fields
    assert isinstance(domain_id, int) and isinstance(endpoint, int) and isinstance(flags, int)
    rules = dev.profile.rules
    if reserved != bytes(4) and "virtio.attach.reserved" in rules:
        return refuse("virtio.attach.reserved", reserved=bytes(reserved).hex())
    if flags & ~int(AttachFlags.BYPASS):
        return refuse("virtio.attach.flags", flags=flags)
    if (flags & AttachFlags.BYPASS and Feature.BYPASS_CONFIG not in dev.negotiated
            and "virtio.attach.bypass_not_negotiated" in rules):
        return refuse("virtio.attach.bypass_not_negotiated", flags=flags)
    if endpoint not in dev.endpoints:
        return refuse("virtio.attach.endpoint", endpoint=endpoint)
    low, high = dev.domain_range
    if not low <= domain_id <= high and "virtio.attach.domain_range" in rules:
        return refuse("virtio.attach.domain_range", domain=domain_id, low=low, high=high)
    bypass = bool(flags & AttachFlags.BYPASS)
    if dev.profile.quirk(Quirk.ATTACH_DETACHES_FIRST):
        return _attach_detach_first(dev, domain_id, endpoint, bypass)
    old = dev.attached.get(endpoint)
    target = dev.domains.get(domain_id)
    if target is not None:
        if target is old:
            return _OK  # already there: nothing to do
        if target.bypass != bypass:
            return refuse("virtio.attach.kind", domain=domain_id, kind=target.kind)
        if target.endpoints and not dev.shared_domains:
            return refuse("virtio.attach.shared", domain=domain_id,
                          endpoints=sorted(target.endpoints))
        if "virtio.attach.incompatible" in rules:
            for region in dev.reserved_regions(endpoint):
                if target.mappings.overlapping(region.start, region.end):
                    return refuse("virtio.attach.incompatible", endpoint=endpoint,
                                  start=region.start, end=region.end, domain=domain_id)
    elif dev.max_domains is not None and len(dev.domains) >= dev.max_domains \
            and not (old is not None and old.endpoints == {endpoint}):
        return refuse("virtio.attach.nomem", count=len(dev.domains), limit=dev.max_domains)
    return _move(dev, endpoint, old, target, domain_id, bypass)


def _move(dev: VirtioIommuDevice, endpoint: int, old: Domain | None, target: Domain | None,
          domain_id: int | None, bypass: bool) -> Outcome:
    """Take ``endpoint`` out of ``old`` and (unless ``domain_id`` is None) into ``domain_id``
    (``target`` when it exists): the host first, then the device's state."""
    txn = HostTxn(dev.host)
    try:
        _host_leave(txn, endpoint, old)
        _host_join(txn, endpoint, target)
    except UAPIError as err:
        rule = "virtio.attach.move" if old is not None else "virtio.attach.host"
        return _host_failure(dev, rule, txn, endpoint, err)
    dev.commit_detach(endpoint)
    if domain_id is not None:
        dev.commit_attach(endpoint, domain_id, bypass)
    return _OK


def _attach_detach_first(dev: VirtioIommuDevice, domain_id: int, endpoint: int,
                         bypass: bool) -> Outcome:
    """QEMU's ATTACH: record the endpoint, detach it, then look at the target domain."""
    dev.records.add(endpoint)
    old = dev.attached.get(endpoint)
    target = dev.domains.get(domain_id)
    if target is not None and target is old and old.endpoints == {endpoint}:
        target = None  # deleted by the detach below, then created anew (empty)
    if target is None and dev.max_domains is not None:
        remaining = len(dev.domains) - (old is not None and old.endpoints == {endpoint})
        if remaining >= dev.max_domains:
            return refuse("virtio.attach.nomem", count=len(dev.domains), limit=dev.max_domains)
    if target is not None and target is not old and target.endpoints \
            and not dev.shared_domains:
        return refuse("virtio.attach.shared", domain=domain_id,
                      endpoints=sorted(target.endpoints))
    if target is not None and target.bypass != bypass:
        out = _move(dev, endpoint, old, None, None, bypass)  # QEMU: the endpoint stays detached
        return refuse("virtio.attach.kind", domain=domain_id, kind=target.kind) \
            if out.status == Status.OK else out
    return _move(dev, endpoint, old, target, domain_id, bypass)


def _host_leave(txn: HostTxn, endpoint: int, domain: Domain | None) -> None:
    if domain is not None and not domain.bypass:
        for mapping in domain.mappings:
            txn.unmap(endpoint, mapping)


def _host_join(txn: HostTxn, endpoint: int, domain: Domain | None) -> None:
    if domain is not None and not domain.bypass:
        for mapping in domain.mappings:
            txn.map(endpoint, mapping)


def detach(dev: VirtioIommuDevice, fields: tuple[int | bytes, ...]) -> Outcome:
    """DETACH: take ``endpoint`` out of ``domain`` (reserved bytes are ignored)."""
    _, _, domain_id, endpoint, _ = fields
    assert isinstance(domain_id, int) and isinstance(endpoint, int)
    known = endpoint in dev.endpoints
    if dev.profile.quirk(Quirk.ENDPOINT_RECORDS):
        known = endpoint in dev.records
    if not known:
        return refuse("virtio.detach.endpoint", endpoint=endpoint)
    domain = dev.attached.get(endpoint)
    if domain is None or domain.id != domain_id:
        return refuse("virtio.detach.not_attached", endpoint=endpoint, domain=domain_id)
    txn = HostTxn(dev.host)
    try:
        _host_leave(txn, endpoint, domain)
    except UAPIError as err:
        return _host_failure(dev, "virtio.detach.host", txn, endpoint, err)
    dev.commit_detach(endpoint)
    return _OK


_MAP_FLAGS = int(MapFlags.READ | MapFlags.WRITE | MapFlags.MMIO)


def map_(dev: VirtioIommuDevice, fields: tuple[int | bytes, ...]) -> Outcome:
    """MAP: ``[virt_start, virt_end]`` -> ``phys_start`` in ``domain``, for all its endpoints."""
    _, _, domain_id, start, end, phys, flags = fields
    assert isinstance(domain_id, int) and isinstance(start, int) and isinstance(end, int)
    assert isinstance(phys, int) and isinstance(flags, int)
    rules = dev.profile.rules
    if Feature.MAP_UNMAP not in dev.negotiated and "virtio.map.not_negotiated" in rules:
        return refuse("virtio.map.not_negotiated")
    if flags & ~_MAP_FLAGS:
        return refuse("virtio.map.flags", flags=flags)
    if (flags & MapFlags.MMIO and Feature.MMIO not in dev.negotiated
            and "virtio.map.mmio_not_negotiated" in rules):
        return refuse("virtio.map.mmio_not_negotiated", flags=flags)
    domain = dev.domains.get(domain_id)
    if domain is None:
        return refuse("virtio.map.domain", domain=domain_id)
    if domain.bypass:
        return refuse("virtio.map.bypass_domain", domain=domain_id)
    if domain.table is not None:
        return refuse("virtio.map.table_domain", domain=domain_id)
    if end < start:
        return refuse("virtio.map.order", start=start, end=end)
    if "virtio.map.align" in rules:
        size = granule(dev.page_size_mask)
        for field, value in (("virt_start", start), ("phys_start", phys), ("virt_end + 1",
                                                                             end + 1)):
            if value % size:
                return refuse("virtio.map.align", field=field, value=value, granule=size)
    low, high = dev.input_range
    if (start < low or end > high) and "virtio.map.input_range" in rules:
        return refuse("virtio.map.input_range", start=start, end=end, low=low, high=high)
    if phys + (end - start) > U64_MAX and "virtio.map.phys_range" in rules:
        return refuse("virtio.map.phys_range", phys=phys, size=end - start + 1)
    clash = domain.mappings.overlapping(start, end)
    if clash:
        return refuse("virtio.map.overlap", start=start, end=end, ostart=clash[0].virt_start,
                      oend=clash[0].virt_end)
    if "virtio.map.resv_mem" in rules:
        for ep in sorted(domain.endpoints):
            for region in dev.reserved_regions(ep):
                if region.overlaps(start, end):
                    return refuse("virtio.map.resv_mem", start=start, end=end,
                                  rstart=region.start, rend=region.end)
    if dev.max_mappings is not None and dev.mapping_count >= dev.max_mappings:
        return refuse("virtio.map.nomem", count=dev.mapping_count, limit=dev.max_mappings)
    mapping = Mapping(start, end, phys, flags)
    txn = HostTxn(dev.host)
    for ep in sorted(domain.endpoints):
        try:
            txn.map(ep, mapping)
        except UAPIError as err:
            return _host_failure(dev, "virtio.map.host", txn, ep, err)
    dev.commit_map(domain, mapping)
    return _OK


def unmap(dev: VirtioIommuDevice, fields: tuple[int | bytes, ...]) -> Outcome:
    """UNMAP: remove every mapping of ``domain`` that lies inside ``[virt_start, virt_end]``."""
    _, _, domain_id, start, end, reserved = fields
    assert isinstance(domain_id, int) and isinstance(start, int) and isinstance(end, int)
    rules = dev.profile.rules
    if Feature.MAP_UNMAP not in dev.negotiated and "virtio.unmap.not_negotiated" in rules:
        return refuse("virtio.unmap.not_negotiated")
    if reserved != bytes(4) and "virtio.unmap.reserved" in rules:
        return refuse("virtio.unmap.reserved", reserved=bytes(reserved).hex())
    domain = dev.domains.get(domain_id)
    if domain is None:
        return refuse("virtio.unmap.domain", domain=domain_id)
    if domain.bypass:
        return refuse("virtio.unmap.bypass_domain", domain=domain_id)
    if domain.table is not None:
        return refuse("virtio.unmap.table_domain", domain=domain_id)
    victims: list[Mapping] = []
    split: Mapping | None = None
    for mapping in domain.mappings.overlapping(start, end):
        if not mapping.covered_by(start, end):
            split = mapping
            break
        victims.append(mapping)
    if split is not None and not dev.profile.quirk(Quirk.UNMAP_NOT_ATOMIC):
        victims = []  # the spec: a split refuses the whole request
    txn = HostTxn(dev.host)
    for mapping in victims:
        for ep in sorted(domain.endpoints):
            try:
                txn.unmap(ep, mapping)
            except UAPIError as err:
                return _host_failure(dev, "virtio.unmap.host", txn, ep, err)
    for mapping in victims:
        dev.commit_unmap(domain, mapping)
    if split is not None:
        return refuse("virtio.unmap.split", start=start, end=end, ostart=split.virt_start,
                      oend=split.virt_end)
    return _OK


def probe(dev: VirtioIommuDevice, fields: tuple[int | bytes, ...]) -> Outcome:
    """PROBE: the endpoint's properties (reserved bytes are ignored); the properties area's
    size is checked by the framing, which knows the writable part."""
    _, _, endpoint, _ = fields
    assert isinstance(endpoint, int)
    if endpoint not in dev.endpoints:
        return refuse("virtio.probe.endpoint", endpoint=endpoint)
    mask = dev.page_size_mask if dev.probe_page_size_mask else None
    props = encode_properties(dev.reserved_regions(endpoint), mask)
    if len(props) > dev.probe_size:
        return refuse("virtio.probe.overflow", need=len(props), size=dev.probe_size)
    return Outcome(Status.OK, properties=props)


HANDLERS = {1: attach, 2: detach, 3: map_, 4: unmap, 5: probe}

"""Helpers for the device tests: a negotiated device and requests that return their reply."""

from __future__ import annotations

from typing import Any

from iommu_uapi_virtio_iommu import Reply, Status, VirtioIommuDevice
from iommu_uapi_virtio_iommu import layouts as L

EPS = (1, 2, 3)
G = 0x1000  # the granule of the default page_size_mask


def device(profile: str = "spec", *, negotiate: int | None = None, **kw: Any
           ) -> VirtioIommuDevice:
    """A device with endpoints 1, 2, 3 whose driver accepted every offered feature."""
    kw.setdefault("endpoints", EPS)
    dev = VirtioIommuDevice(profile=profile, **kw)
    dev.negotiate_features(dev.offered if negotiate is None else negotiate)
    return dev


def send(dev: VirtioIommuDevice, readable: bytes, writable: int = 4) -> Reply:
    """One request; checks the reply's framing against the status it reports."""
    reply = dev.handle(readable, writable)
    if reply.status is None:
        assert reply.written == b""
    else:
        assert reply.written[-4:] == L.encode_tail(reply.status) or \
            reply.written[:4] == L.encode_tail(reply.status)
    return reply


def attach(dev: VirtioIommuDevice, domain: int, ep: int, flags: int = 0) -> Reply:
    return send(dev, L.encode_attach(domain, ep, flags))


def detach(dev: VirtioIommuDevice, domain: int, ep: int) -> Reply:
    return send(dev, L.encode_detach(domain, ep))


def map_(dev: VirtioIommuDevice, domain: int, start: int, end: int, phys: int,
         flags: int = 3) -> Reply:
    return send(dev, L.encode_map(domain, start, end, phys, flags))


def unmap(dev: VirtioIommuDevice, domain: int, start: int, end: int) -> Reply:
    return send(dev, L.encode_unmap(domain, start, end))


def ok(reply: Reply) -> None:
    assert reply.status == Status.OK, reply


def refused(reply: Reply, rule: str, status: Status | None) -> None:
    assert (reply.rule, reply.status) == (rule, status), reply


def state(dev: VirtioIommuDevice) -> tuple[object, ...]:
    """Everything a refused request must leave unchanged (QEMU's endpoint records aside: QEMU
    creates one as soon as ATTACH finds the endpoint)."""
    return (
        {d: (dom.bypass, sorted(dom.endpoints), list(dom.mappings))
         for d, dom in dev.domains.items()},
        {e: d.id for e, d in dev.attached.items()},
        dev.mapping_count, dev.bypass, dev.broken,
    )

"""The ``virtio-iommu`` backend: the façade's operations as requests to a virtio-iommu device.

The backend is what Linux's virtio-iommu driver is to its device: every façade operation on a
domain becomes a request put on the request queue as bytes (:class:`~.driver.RequestQueue`),
and a status other than S_OK becomes :class:`~iommu_uapi.errors.UAPIError` with the errno Linux
gives that status and the device rule that refused it. As the driver does, a domain's mappings
are kept on the driver side too (an interval map): a domain exists on the device only while it
has endpoints, so MAP is sent once the domain has one, and the first ATTACH replays the
mappings made before it. Endpoint IDs are the devices' requester IDs; the device's IOTLB is the
façade's, so DMA hits never reach the device, and a miss calls the translation context of
:mod:`.context`.

Every failure of every operation reaches the guest as a request status
(``FailureReport.STATUS``): the one IOMMU of the project where a VMM can tell the guest of
every host-side failure.

Configuration (``IOMMU("virtio-iommu", device_profile="qemu", ...)``): ``device_profile``
(``spec`` or ``qemu``), ``page_size_mask``, ``input_range``, ``domain_range``,
``max_domains``, ``max_mappings``, ``reserved_regions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from iommu_uapi.device import Device, Domain
from iommu_uapi.errors import UAPIError
from iommu_uapi.features import UNREPORTABLE_OPERATIONS, Capabilities, FailureReport, Feature
from iommu_uapi.guest import GuestFormat
from iommu_uapi.hookspecs import hookimpl
from iommu_uapi.iommu import IOMMU
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.plugins import BackendSpec
from iommu_uapi.uapi import (
    CacheInvalidateInfo,
    Fault,
    FaultPageRequest,
    NestingInfo,
    PageResponse,
    PasidTableConfig,
)
from iommu_uapi.uapi.consts import (
    IOMMU_PASID_FORMAT_SMMUV3,
    FaultType,
    NestingFeature,
    PageRequestFlags,
)

from .context import Context, build_context
from .device import Reply, VirtioIommuDevice
from .driver import RequestQueue, check_range, reply_error
from .events import FaultReason as Reason
from .features import QEMU_OFFERED
from .features import Feature as VirtioFeature
from .guest import SMMUV3_GUEST
from .handlers import refuse
from .layouts import MapFlags
from .mappings import Mapping, MappingTable
from .nested import S1_OAS, NestedContext, nested_context
from .nesting import CELLS, invalidate_request, table_of, wire_format
from .pri import encode_page_resp
from .profiles import DEVICE_PROFILES, table_bit
from .profiles import get as get_profile
from .rules import VIRTIO_TABLE, refusal
from .tables import SharedTable
from .translate import _fault

__all__ = ["FAILURE_REPORTING", "VirtioBackend", "VirtioDomain", "iommu_register_backends"]

_CONFIG_KEYS: Final = frozenset({"device_profile", "page_size_mask", "input_range",
                                 "domain_range", "max_domains", "max_mappings",
                                 "reserved_regions"})
#: Every operation of the façade whose failure could reach a guest, and how it does here: the
#: request's status.
FAILURE_REPORTING: Final[dict[str, FailureReport]] = {
    op: FailureReport.STATUS for op in (
        *UNREPORTABLE_OPERATIONS, "attach_device", "detach_device", "map", "unmap",
        "attach_pasid_table", "page_response")}
#: io-pgtable protection bits -> MAP flags (Linux's ``viommu_map``); the others have no
#: virtio counterpart and are dropped, as the driver drops them.
_PROT_FLAGS: Final = ((Prot.READ, MapFlags.READ), (Prot.WRITE, MapFlags.WRITE),
                      (Prot.MMIO, MapFlags.MMIO))


class VirtioDomain:
    """The driver side of a façade domain: its virtio domain id, its mappings and the guest
    table it shares with its ATTACH_TABLE format (both replayed on the first ATTACH), and
    whether it is in nesting mode."""

    __slots__ = ("format", "id", "mappings", "nesting", "table")

    def __init__(self, domain_id: int) -> None:
        self.id = domain_id
        self.mappings = MappingTable()
        self.nesting = False
        self.table: SharedTable | None = None
        self.format = 0


def _map_flags(prot: int) -> int:
    return sum(int(flag) for p, flag in _PROT_FLAGS if prot & p)


class VirtioBackend:
    """A virtio-iommu device and its driver behind the iommu-uapi core (see the module
    docstring). ``memory`` is the memory the device's DMA reaches."""

    name = "virtio-iommu"

    def __init__(self, memory: PhysicalMemory, **config: Any) -> None:
        unknown = sorted(set(config) - _CONFIG_KEYS)
        if unknown:
            raise refusal("virtio.backend.config",
                          detail=f"unknown configuration key(s) {', '.join(unknown)}")
        self.memory = memory
        profile = config.pop("device_profile", "rfc2021")
        regions = config.pop("reserved_regions", ())
        tables = table_bit(get_profile(profile)) is not None
        features = (QEMU_OFFERED & ~VirtioFeature.BYPASS_CONFIG) | VirtioFeature.ATTACH_TABLE \
            if tables else QEMU_OFFERED
        self.device = VirtioIommuDevice(profile=profile, features=features, bypass=0,
                                        reserved_regions=regions, memory=memory, **config)
        self.device.negotiate_wire(self.device.wire_offered)
        self.tables = VirtioFeature.ATTACH_TABLE in self.device.negotiated
        self.queue = RequestQueue(self.device)
        self.iommu: IOMMU | None = None
        self._ids: set[int] = set()
        nesting = dict(features=Feature.BIND_PASID_TABLE | Feature.CACHE_INVLD
                       | Feature.PAGE_REQUEST,
                       formats=(IOMMU_PASID_FORMAT_SMMUV3,), pasid_bits=20,
                       input_address_widths=(S1_OAS,), cache_cells=CELLS) if self.tables \
            else {"features": Feature(0)}
        self.capabilities = Capabilities(
            output_address_width=64, page_sizes=self.device.page_size_mask & ((1 << 64) - 1),
            failure_reporting=dict(FAILURE_REPORTING), profiles=("linux-5.10", "strict"),
            **nesting)

    def __repr__(self) -> str:
        return f"VirtioBackend(profile={self.device.profile.name!r})"

    # -- life cycle and description ---------------------------------------------------------

    @hookimpl
    def iommu_instance_init(self, iommu: IOMMU) -> None:
        self.iommu = iommu
        self.device.tlb = iommu.iotlb
        self.device.config_listeners.append(self._config_dropped)

    def _config_dropped(self, endpoint: int, pasid: int | None) -> None:
        """The device dropped cached CDs: the façade forgets the contexts built from them."""
        if self.iommu is not None and endpoint in self.iommu.devices:
            self.iommu.forget_contexts(endpoint, None if pasid is None else (pasid,))

    @hookimpl
    def iommu_capabilities(self) -> Capabilities:
        return self.capabilities

    @hookimpl
    def iommu_nesting_info(self, domain: Domain) -> NestingInfo:
        if not domain.data.nesting:
            raise refusal("virtio.backend.not_nesting", domain=domain.id)
        return NestingInfo(argsz=NestingInfo.SIZE, format=IOMMU_PASID_FORMAT_SMMUV3,
                           features=int(NestingFeature.CACHE_INVLD), addr_width=S1_OAS,
                           pasid_bits=self.capabilities.pasid_bits)

    @hookimpl
    def iommu_guest_formats(self) -> Sequence[GuestFormat]:
        return (SMMUV3_GUEST,) if self.tables else ()

    # -- devices and domains ----------------------------------------------------------------

    @hookimpl
    def iommu_device_add(self, dev: Device) -> None:
        self.device.add_endpoint(dev.sid)

    @hookimpl
    def iommu_device_remove(self, dev: Device) -> None:
        self.device.remove_endpoint(dev.sid)

    @hookimpl
    def iommu_domain_alloc(self, domain: Domain) -> None:
        low, high = self.device.domain_range
        vid = next((d for d in range(low, min(high, low + len(self._ids)) + 1)
                    if d not in self._ids), None)
        if vid is None:
            raise refusal("virtio.backend.domains", count=high - low + 1)
        self._ids.add(vid)
        domain.data = VirtioDomain(vid)

    @hookimpl
    def iommu_domain_free(self, domain: Domain) -> None:
        self._ids.discard(domain.data.id)

    @hookimpl
    def iommu_domain_set_nesting(self, domain: Domain) -> None:
        if not self.tables:
            raise refusal("virtio.backend.nesting_unsupported",
                          profile=self.device.profile.name)
        if domain.devices:
            raise refusal("virtio.backend.nesting_attached", domain=domain.id)
        domain.data.nesting = True

    @hookimpl
    def iommu_attach_dev(self, domain: Domain, dev: Device) -> None:
        data: VirtioDomain = domain.data
        first = data.id not in self.device.domains
        self.queue.attach(data.id, dev.sid)
        try:
            if first:
                for m in data.mappings:  # viommu_replay_mappings
                    self.queue.map(data.id, m.virt_start, m.phys_start, m.size, m.flags)
            if data.table is not None:
                self.queue.attach_table(data.id, dev.sid, data.table, data.format)
        except UAPIError:
            self.queue.detach(data.id, dev.sid)  # a new domain goes with its mappings
            raise

    @hookimpl
    def iommu_detach_dev(self, domain: Domain, dev: Device) -> None:
        self.queue.detach(domain.data.id, dev.sid)

    @hookimpl
    def iommu_map(self, domain: Domain, iova: int, paddr: int, size: int, prot: int) -> None:
        data: VirtioDomain = domain.data
        flags = _map_flags(prot)
        if data.id in self.device.domains:
            self.queue.map(data.id, iova, paddr, size, flags)
        else:  # no endpoint yet: checked as the device would, sent on the first ATTACH
            self._check_offline_map(data, iova, size)
        data.mappings.insert(Mapping(iova, iova + size - 1, paddr, flags))

    @staticmethod
    def _check_offline_map(data: VirtioDomain, iova: int, size: int) -> None:
        check_range(iova, size)
        if data.table is not None:
            raise refusal_of("virtio.map.table_domain", domain=data.id)
        clash = data.mappings.overlapping(iova, iova + size - 1)
        if clash:
            raise refusal_of("virtio.map.overlap", start=iova, end=iova + size - 1,
                             ostart=clash[0].virt_start, oend=clash[0].virt_end)

    @hookimpl
    def iommu_unmap(self, domain: Domain, iova: int, size: int) -> int:
        data: VirtioDomain = domain.data
        check_range(iova, size)
        end = iova + size - 1
        victims = data.mappings.overlapping(iova, end)
        split = next((m for m in victims if not m.covered_by(iova, end)), None)
        if data.id in self.device.domains:
            self.queue.unmap(data.id, iova, size)
        elif data.table is not None:
            raise refusal_of("virtio.unmap.table_domain", domain=data.id)
        elif split is not None:
            raise refusal_of("virtio.unmap.split", start=iova, end=end,
                             ostart=split.virt_start, oend=split.virt_end)
        for m in victims:
            data.mappings.remove(m)
        return sum(m.size for m in victims)

    @hookimpl
    def iommu_iova_to_phys(self, domain: Domain, iova: int) -> int:
        m = domain.data.mappings.find(iova)
        return 0 if m is None else int(m.phys_start + iova - m.virt_start)

    # -- table sharing (the Jan 2021 RFC) ---------------------------------------------------

    @hookimpl
    def iommu_attach_pasid_table(self, domain: Domain, cfg: PasidTableConfig,
                                 profile: str) -> None:
        data: VirtioDomain = domain.data
        table = table_of(cfg)
        if table is None:
            self.iommu_detach_pasid_table(domain)
            return
        fmt = wire_format(cfg.format)
        for dev in domain.devices:
            self.queue.attach_table(data.id, dev.sid, table, fmt)
        data.table, data.format = table, fmt

    @hookimpl
    def iommu_detach_pasid_table(self, domain: Domain) -> None:
        data: VirtioDomain = domain.data
        if data.table is None:
            return
        data.table = None
        # the draft has no request taking a table away: the domain is recreated without it
        for dev in domain.devices:
            self.queue.detach(data.id, dev.sid)
        for dev in domain.devices:
            self.iommu_attach_dev(domain, dev)

    @hookimpl
    def iommu_cache_invalidate(self, domain: Domain, dev: Device, info: CacheInvalidateInfo,
                               profile: str) -> None:
        request = invalidate_request(domain.data.id, info, profile)
        if request is not None:
            self.queue.invalidate(request)

    # -- page requests (the Jan 2021 RFC's PAGE_RESP) ----------------------------------------

    @hookimpl
    def iommu_page_request(self, dev: Device, pasid: int | None, addr: int, access: int,
                           grpid: int, last: bool, private_data: tuple[int, int] | None
                           ) -> Fault:
        domain = self.device.attached.get(dev.sid)
        if not dev.pri or domain is None or domain.table is None:
            raise refusal("virtio.backend.no_pri", dev=dev)
        self.device.page_requests.request(self.device, dev.sid, pasid, addr, access, grpid,
                                          last)
        # PAGE_RESP carries the PASID: a response must name the request's
        needs = PageRequestFlags.PASID_VALID | PageRequestFlags.RESPONSE_NEEDS_PASID
        flags = (needs if pasid is not None else 0) | \
            (PageRequestFlags.LAST_PAGE if last else 0) | \
            (PageRequestFlags.PRIV_DATA if private_data is not None else 0)
        return Fault(type=FaultType.PAGE_REQ, prm=FaultPageRequest(
            flags=flags, pasid=pasid or 0, grpid=grpid, perm=access, addr=addr,
            private_data=private_data or (0, 0)))

    @hookimpl
    def iommu_page_response(self, dev: Device, fault: Fault, msg: PageResponse,
                            profile: str) -> None:
        prm = fault.prm
        pasid = prm.pasid if prm.flags & PageRequestFlags.PASID_VALID else None
        self.queue.page_resp(encode_page_resp(dev.domain.data.id if dev.domain else 0,
                                              dev.sid, pasid, prm.grpid, msg.code))

    # -- the data path ----------------------------------------------------------------------

    @hookimpl
    def iommu_translation_context(self, dev: Device, pasid: int | None, iova: int,
                                  access: int) -> Context | NestedContext:
        domain = self.device.attached.get(dev.sid)
        if domain is not None and domain.table is not None:
            nested = nested_context(self.device, self.memory, dev.sid, domain, pasid, iova,
                                    access)
            if nested is not None:
                return nested
        if pasid is not None:
            raise _fault(self.device, dev.sid, iova, access, Reason.UNKNOWN, 0,
                         "virtio.dma.pasid")
        return build_context(self.device, dev.sid, iova, access)


def refusal_of(rule_id: str, **values: object) -> UAPIError:
    """The error a request refused by ``rule_id`` becomes (its status's errno), for a check the
    driver makes itself because the domain is not on the device yet."""
    out = refuse(rule_id, **values)
    return reply_error(out.rule or rule_id, Reply(b"", out.status, out.rule, out.message))


@hookimpl
def iommu_register_backends(register: Any) -> None:
    """Register the ``virtio-iommu`` backend."""
    register(BackendSpec(name="virtio-iommu", factory=VirtioBackend,
                         description="virtio-iommu: requests as bytes with a status for every "
                                     "operation, domains and mappings, PROBE, fault events",
                         rules=VIRTIO_TABLE, profiles=DEVICE_PROFILES))

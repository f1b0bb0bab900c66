"""The virtio-iommu device: configuration space, features, the request queue and its state.

A :class:`VirtioIommuDevice` is what a VMM instantiates: endpoints (IDs) that exist, the feature
bits it offers and its configuration. A driver reads the configuration space, negotiates
features and sends requests as bytes (:meth:`~VirtioIommuDevice.request`); DMA goes through
:meth:`~VirtioIommuDevice.translate`, whose faults reach the event queue and the endpoint's fault
consumer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from errno import ENOENT
from typing import NamedTuple

from iommu_uapi.errors import UAPIError
from iommu_uapi.faults import FaultParam
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.tlb import TLB

from . import translate as _translate
from .config import BYPASS_OFFSET, U32_MAX, U64_MAX, ConfigValues
from .domains import Domain
from .events import EventQueue
from .features import QEMU_OFFERED, Feature, from_wire, negotiate, to_wire, validate_offer
from .handlers import HANDLERS, Outcome, refuse
from .host import Host, HostTxn
from .layouts import HEAD, READABLE, TAIL_SIZE, RequestType, Status, encode_tail
from .mappings import Mapping as DomainMapping
from .pri import PageRequests
from .probe import ReservedRegion, validate_regions
from .profiles import Profile, Quirk, get, table_bit
from .rules import refusal
from .tables import TABLE_HANDLERS, TABLE_READABLE

__all__ = ["DEFAULT_PAGE_SIZE_MASK", "MAX_WRITABLE", "Reply", "VirtioIommuDevice"]

#: QEMU's default page_size_mask on a 4 KiB-page target.
DEFAULT_PAGE_SIZE_MASK = ~0xFFF & U64_MAX
#: The largest device-writable part :meth:`VirtioIommuDevice.request` takes: the model returns
#: the writable part whole, so its size is bounded (a PROBE buffer is a few hundred bytes).
MAX_WRITABLE = 1 << 20


def _request_bytes(readable: object) -> bytes:
    """``readable`` as bytes, or ``virtio.request.buffer`` (EFAULT) for what is not a
    contiguous bytes-like object."""
    if isinstance(readable, bytes):
        return readable
    try:
        view = memoryview(readable)  # type: ignore[arg-type]
    except TypeError:
        raise refusal("virtio.request.buffer", kind=type(readable).__name__) from None
    if not view.contiguous:
        raise refusal("virtio.request.buffer", kind="non-contiguous memoryview")
    return view.tobytes()


class Reply(NamedTuple):
    """What the device did with one request: the bytes it wrote into the device-writable part
    (empty: used length 0), the status in the tail (None: none written), the refusing rule id and
    its message."""

    written: bytes
    status: Status | None
    rule: str | None = None
    message: str = ""


EndpointsArg = Iterable[int] | Mapping[int, Iterable[ReservedRegion]]


def _range(value: tuple[int, int] | None, full: tuple[int, int], feature: Feature,
           offered: Feature, name: str) -> tuple[int, int]:
    if value is None:
        return full
    low, high = value
    if not full[0] <= low <= high <= full[1]:
        raise refusal("virtio.device.config", detail=f"{name} {value} is not a range within "
                      f"{full}")
    if (low, high) != full and feature not in offered:
        raise refusal("virtio.device.config", detail=f"{name} restricted without {feature.name}")
    return low, high


class VirtioIommuDevice:
    """A virtio-iommu device, usable on its own.

    ``endpoints`` are the endpoint IDs behind the IOMMU (or a mapping from ID to the reserved
    regions of that endpoint alone); ``reserved_regions`` apply to every endpoint. ``features``
    is the offered set; ``profile`` is ``"spec"`` or ``"qemu"``. ``bypass`` is the initial value
    of the configuration field (with BYPASS_CONFIG; default 1, QEMU's boot-bypass); ``None``
    values take QEMU's defaults for the offered features. ``max_domains`` and ``max_mappings``
    bound the device's resources (S_NOMEM beyond them); ``shared_domains`` False makes a second
    endpoint in a domain S_UNSUPP; ``probe_page_size_mask`` adds the draft PAGE_SIZE_MASK
    property to PROBE replies; ``host`` mirrors every endpoint's mappings (VFIO).
    """

    def __init__(
        self,
        endpoints: EndpointsArg = (),
        *,
        features: int = QEMU_OFFERED,
        profile: str | Profile = "spec",
        page_size_mask: int = DEFAULT_PAGE_SIZE_MASK,
        input_range: tuple[int, int] | None = None,
        domain_range: tuple[int, int] | None = None,
        probe_size: int | None = None,
        reserved_regions: Iterable[ReservedRegion] = (),
        bypass: int | None = None,
        max_domains: int | None = None,
        max_mappings: int | None = None,
        shared_domains: bool = True,
        probe_page_size_mask: bool = False,
        host: Host | None = None,
        event_queue_size: int = 64,
        tlb: TLB | None = None,
        memory: PhysicalMemory | None = None,
    ) -> None:
        self.profile = get(profile)
        self.offered = validate_offer(
            features, forbid_both_bypass="virtio.device.both_bypass" in self.profile.rules,
            table_bit=table_bit(self.profile))
        tables = table_bit(self.profile) is not None
        #: the device-readable layouts and handlers of the request types this profile knows
        self.readable = {**READABLE, **TABLE_READABLE} if tables else READABLE
        self.handlers = {**HANDLERS, **TABLE_HANDLERS} if tables else HANDLERS
        #: called with (endpoint, PASID or None for all) when cached configuration of the
        #: endpoint's table was dropped (ATTACH_TABLE, INVALIDATE T_PASID)
        self.config_listeners: list[Callable[[int, int | None], None]] = []
        #: page requests pending and the responses given (:mod:`.pri`)
        self.page_requests = PageRequests()
        if not 0 < page_size_mask <= U64_MAX:
            raise refusal("virtio.device.config", detail=f"page_size_mask {page_size_mask:#x}")
        self.page_size_mask = page_size_mask
        self.input_range = _range(input_range, (0, U64_MAX), Feature.INPUT_RANGE, self.offered,
                                  "input_range")
        self.domain_range = _range(domain_range, (0, U32_MAX), Feature.DOMAIN_RANGE,
                                   self.offered, "domain_range")
        has_probe = Feature.PROBE in self.offered
        self.probe_size = (512 if has_probe else 0) if probe_size is None else probe_size
        if not 0 <= self.probe_size <= U32_MAX or (self.probe_size and not has_probe):
            raise refusal("virtio.device.config", detail=f"probe_size {self.probe_size} with "
                          f"PROBE {'offered' if has_probe else 'not offered'}")
        has_cfg = Feature.BYPASS_CONFIG in self.offered
        initial = (1 if has_cfg else 0) if bypass is None else bypass
        if initial not in (0, 1) or (initial and not has_cfg):
            raise refusal("virtio.device.config", detail=f"bypass {initial} (0 or 1, and 1 "
                          "only with BYPASS_CONFIG)")
        self._boot_bypass = self.bypass = initial
        self.endpoints: dict[int, tuple[ReservedRegion, ...]] = {}
        own = endpoints.items() if isinstance(endpoints, Mapping) else ((e, ()) for e in endpoints)
        for ep, regions in own:
            if not 0 <= ep <= U32_MAX:
                raise refusal("virtio.device.config", detail=f"endpoint {ep} is not a u32")
            self.endpoints[ep] = tuple(regions)
        self.global_regions = tuple(reserved_regions)
        #: every endpoint's reserved regions, the device's first (what PROBE reports)
        self.regions = {ep: self.global_regions + own for ep, own in self.endpoints.items()}
        strict = "virtio.device.resv_overlap" in self.profile.rules
        validate_regions(-1, self.global_regions, strict=strict)
        for ep in self.endpoints:
            validate_regions(ep, self.reserved_regions(ep), strict=strict)
        self.max_domains = max_domains
        self.max_mappings = max_mappings
        self.shared_domains = shared_domains
        self.probe_page_size_mask = probe_page_size_mask
        self.host = host
        self.events = EventQueue(event_queue_size)
        self.tlb = tlb if tlb is not None else TLB()
        #: the memory DMA reaches (guest tables of a table-sharing domain are read from it)
        self.memory = memory if memory is not None else PhysicalMemory()
        self.negotiated = Feature(0)
        self.domains: dict[int, Domain] = {}
        self.attached: dict[int, Domain] = {}
        self.records: set[int] = set()  # QEMU's endpoint records (Quirk.ENDPOINT_RECORDS)
        self.endpoint_records = bool(self.profile.quirk(Quirk.ENDPOINT_RECORDS))
        self.mapping_count = 0
        self.broken: str | None = None  # why the device needs a reset (virtio_error)
        self._faults: dict[int, FaultParam] = {}
        self.host_stale: list[tuple[int, DomainMapping]] = []  # kept by the host after an undo

    # ---- configuration space and features --------------------------------------------------

    @property
    def config_values(self) -> ConfigValues:
        """The configuration fields as presented."""
        return ConfigValues(self.page_size_mask, *self.input_range, *self.domain_range,
                            self.probe_size, self.bypass)

    @property
    def config(self) -> bytes:
        """The 40 bytes of the configuration space."""
        return self.config_values.to_bytes()

    def read_config(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` (bytes past the 40 read as nothing)."""
        return self.config[max(offset, 0):max(offset, 0) + max(size, 0)]

    def write_config(self, offset: int, data: bytes) -> str | None:
        """A driver write of ``data`` at ``offset``: only ``bypass`` (offset 36) is writable,
        only with BYPASS_CONFIG negotiated, only 0 or 1. Returns None when taken (or unchanged),
        else the rule that refused it: the spec's device ignores the write, QEMU's needs a
        reset (``broken``)."""
        if not offset <= BYPASS_OFFSET < offset + len(data):
            return "virtio.config.read_only"
        value = data[BYPASS_OFFSET - offset]
        if value == self.bypass:
            return None
        rule = None
        if Feature.BYPASS_CONFIG not in self.negotiated:
            rule = "virtio.config.bypass_not_negotiated"
        elif value not in (0, 1):
            rule = "virtio.config.bypass_value"
        if rule is None:
            self.bypass = value
            self._bypass_changed()
        elif self.profile.quirk(Quirk.ERRORS_BREAK_DEVICE):
            self.broken = rule
        return rule

    def _bypass_changed(self) -> None:
        """Unattached endpoints switched between bypass and faulting: drop the untranslated
        translations cached for them and the contexts built from the old value."""
        self.tlb.invalidate(("bypass",))
        for endpoint in sorted(self.endpoints):
            if endpoint not in self.attached:
                for listener in self.config_listeners:
                    listener(endpoint, None)

    def negotiate_features(self, driver_features: int) -> Feature:
        """FEATURES_OK: keep the driver's accepted bits (EINVAL if one was not offered)."""
        self.negotiated = negotiate(self.offered, driver_features)
        return self.negotiated

    @property
    def wire_offered(self) -> int:
        """The feature bits as a driver reads them (ATTACH_TABLE at the profile's bit)."""
        return to_wire(self.offered, table_bit(self.profile))

    def negotiate_wire(self, bits: int) -> Feature:
        """FEATURES_OK with the driver's wire ``bits``."""
        return self.negotiate_features(from_wire(bits, table_bit(self.profile)))

    def config_dropped(self, domain: Domain, pasid: int | None) -> None:
        """Tell the listeners that the cached configuration of ``domain``'s endpoints (of
        ``pasid``, or all) is gone."""
        for endpoint in sorted(domain.endpoints):
            for listener in self.config_listeners:
                listener(endpoint, pasid)

    # ---- the request queue -----------------------------------------------------------------

    def request(self, readable: bytes, writable_len: int) -> bytes:
        """Handle one request: ``readable`` is its device-readable part, ``writable_len`` the
        size of its device-writable part; returns what the device wrote there (b"": used length
        0)."""
        return self.handle(readable, writable_len).written

    def handle(self, readable: bytes, writable_len: int) -> Reply:
        """:meth:`request` with the status and the rule that decided it.

        A ``readable`` that is not a bytes-like object, or a ``writable_len`` that is not an
        int from 0 to :data:`MAX_WRITABLE`, is a misuse of this API rather than a request: it
        is refused with :class:`~iommu_uapi.errors.UAPIError` (``virtio.request.buffer``,
        ``virtio.request.writable_len``) and changes nothing."""
        readable = _request_bytes(readable)
        if writable_len.__class__ is not int or not 0 <= writable_len <= MAX_WRITABLE:
            raise refusal("virtio.request.writable_len", value=writable_len)
        quirk = self.profile.quirk
        if self.broken is not None:
            return Reply(b"", None, "virtio.request.broken", f"device needs reset: {self.broken}")
        if len(readable) < HEAD.size or writable_len < TAIL_SIZE:
            out = refuse("virtio.request.short", readable=len(readable), writable=writable_len)
            if quirk(Quirk.ERRORS_BREAK_DEVICE):
                self.broken = out.rule
            return Reply(b"", None, out.rule, out.message)
        rtype = readable[0]
        layout = self.readable.get(rtype)
        if layout is None:
            if "virtio.request.unknown_type" in self.profile.rules:
                out = refuse("virtio.request.unknown_type", type=rtype)
            else:
                out = refuse("virtio.request.unknown_type_unsupp", type=rtype)
            return self._reply(out, writable_len)
        if rtype == RequestType.PROBE and Feature.PROBE not in self.offered \
                and "virtio.probe.not_offered" in self.profile.rules:
            return self._reply(refuse("virtio.probe.not_offered"), writable_len)
        if len(readable) < layout.size:
            out = refuse("virtio.request.short_body", type=RequestType(rtype).name,
                         need=layout.size, have=len(readable))
        else:
            out = self.handlers[rtype](self, layout.unpack_from(readable))
        if rtype == RequestType.PROBE:
            return self._probe_reply(out, writable_len)
        return self._reply(out, writable_len)

    def _reply(self, out: Outcome, writable_len: int) -> Reply:
        """Write the tail: at the end of the writable part (spec), or at its start (QEMU)."""
        if out.status is None:
            return Reply(b"", None, out.rule, out.message)
        tail = encode_tail(out.status)
        if self.profile.quirk(Quirk.REPLY_AT_START):
            return Reply(tail, out.status, out.rule, out.message)
        return Reply(bytes(writable_len - TAIL_SIZE) + tail, out.status, out.rule, out.message)

    def _probe_reply(self, out: Outcome, writable_len: int) -> Reply:
        """PROBE's reply: the properties area zero-filled after the list, then the tail."""
        area = writable_len - TAIL_SIZE
        if self.profile.quirk(Quirk.REPLY_AT_START):
            if area < self.probe_size:  # QEMU asserts: the VMM aborts
                fail = refuse("virtio.probe.buffer_abort", have=writable_len,
                              need=self.probe_size + TAIL_SIZE)
                self.broken = fail.rule
                return Reply(b"", None, fail.rule, fail.message)
            props = out.properties.ljust(self.probe_size, b"\0")
            return Reply(props + encode_tail(out.status or 0), out.status, out.rule, out.message)
        if area < self.probe_size and out.status == Status.OK:
            out = refuse("virtio.probe.buffer", have=area, need=self.probe_size)
        return Reply(out.properties.ljust(area, b"\0") + encode_tail(out.status or 0),
                     out.status, out.rule, out.message)

    def add_endpoint(self, endpoint: int, regions: Iterable[ReservedRegion] = ()) -> None:
        """An endpoint appears behind the device (hot-plug): it exists from now on, with
        ``regions`` besides the device's reserved regions."""
        if not 0 <= endpoint <= U32_MAX:
            raise refusal("virtio.device.config", detail=f"endpoint {endpoint} is not a u32")
        own = tuple(regions)
        validate_regions(endpoint, self.global_regions + own,
                         strict="virtio.device.resv_overlap" in self.profile.rules)
        self.endpoints[endpoint] = own
        self.regions[endpoint] = self.global_regions + own

    def remove_endpoint(self, endpoint: int) -> None:
        """An endpoint goes away (hot-unplug): it leaves its domain and stops existing."""
        self.commit_detach(endpoint)
        self.records.discard(endpoint)
        self.endpoints.pop(endpoint, None)
        self.regions.pop(endpoint, None)
        self._faults.pop(endpoint, None)

    # ---- state changes the handlers commit -------------------------------------------------

    def reserved_regions(self, endpoint: int) -> tuple[ReservedRegion, ...]:
        """The reserved regions of ``endpoint``: the device's, then its own."""
        return self.regions.get(endpoint, self.global_regions)

    def commit_detach(self, endpoint: int) -> None:
        """Take ``endpoint`` out of its domain; a domain left empty ceases to exist."""
        domain = self.attached.pop(endpoint, None)
        if domain is None:
            return
        self.page_requests.drop_endpoint(endpoint)
        domain.endpoints.discard(endpoint)
        if not domain.endpoints:
            del self.domains[domain.id]
            self.mapping_count -= len(domain.mappings)
            domain.mappings.clear()
            self.tlb.invalidate(domain.tag)

    def commit_attach(self, endpoint: int, domain_id: int, bypass: bool) -> None:
        """Put ``endpoint`` in ``domain_id``, creating the domain if it does not exist."""
        domain = self.domains.get(domain_id)
        if domain is None:
            domain = self.domains[domain_id] = Domain(
                domain_id, bypass=bypass, bucket=self.tlb.bucket((domain_id,)))
        domain.endpoints.add(endpoint)
        self.attached[endpoint] = domain

    def commit_map(self, domain: Domain, mapping: DomainMapping) -> None:
        """Add ``mapping`` to ``domain``."""
        domain.mappings.insert(mapping)
        self.mapping_count += 1

    def commit_unmap(self, domain: Domain, mapping: DomainMapping) -> None:
        """Remove ``mapping`` from ``domain`` and its IOTLB entries."""
        domain.mappings.remove(mapping)
        self.mapping_count -= 1
        self.tlb.invalidate(domain.tag, mapping.virt_start, mapping.size)

    # ---- resets ----------------------------------------------------------------------------

    def host_diverged(self, refused: list[tuple[bool, int, DomainMapping]]) -> None:
        """The host refused undo calls: remember what it kept, and need a reset."""
        self.host_stale.extend((ep, m) for mapped, ep, m in refused if mapped)
        self.broken = "virtio.host.diverged"

    def reset(self) -> None:
        """Device reset: no endpoint attached, no domain, no mapping, no endpoint record,
        features to negotiate again; ``bypass`` keeps its value. The host is asked to unmap
        every mapping of every endpoint, those a refused undo left behind included; what it
        refuses to unmap is kept in ``host_stale`` and the device still needs a reset (the
        next one tries again)."""
        txn = HostTxn(self.host)
        known = [(ep, m) for ep, dom in self.attached.items() if not dom.bypass
                 for m in dom.mappings]
        kept: list[tuple[int, DomainMapping]] = []
        for endpoint, mapping in known + self.host_stale:
            try:
                txn.unmap(endpoint, mapping)
            except UAPIError as err:
                if err.errno != ENOENT:  # already gone is what a reset wants
                    kept.append((endpoint, mapping))
        self.host_stale = kept
        self.broken = "virtio.host.diverged" if kept else None
        self.domains.clear()
        self.attached.clear()
        self.records.clear()
        self.mapping_count = 0
        self.negotiated = Feature(0)
        self.events.clear()
        self.tlb.flush()
        for endpoint in sorted(self.endpoints):
            for listener in self.config_listeners:
                listener(endpoint, None)

    def system_reset(self) -> None:
        """System reset: a device reset, and ``bypass`` back to its initial value."""
        self.reset()
        if self.bypass != self._boot_bypass:
            self.bypass = self._boot_bypass
            self._bypass_changed()

    # ---- views and the data path -----------------------------------------------------------

    def domain_of(self, endpoint: int) -> int | None:
        """The domain ``endpoint`` is attached to, or None."""
        domain = self.attached.get(endpoint)
        return None if domain is None else domain.id

    def mappings(self, domain_id: int) -> list[DomainMapping]:
        """The mappings of ``domain_id`` in address order (empty if it does not exist)."""
        domain = self.domains.get(domain_id)
        return [] if domain is None else list(domain.mappings)

    def bypass_allowed(self) -> bool:
        """Whether unattached endpoints bypass: the ``bypass`` field when BYPASS_CONFIG is
        offered (even before a driver accepted it), or the legacy BYPASS bit negotiated."""
        return (Feature.BYPASS_CONFIG in self.offered and self.bypass == 1) \
            or Feature.BYPASS in self.negotiated

    def fault_param(self, endpoint: int) -> FaultParam:
        """The fault consumer slot of ``endpoint`` (generic ``iommu_fault`` records)."""
        param = self._faults.get(endpoint)
        if param is None:
            param = self._faults[endpoint] = FaultParam()
        return param

    #: A DMA of ``endpoint`` at ``iova`` with ``access`` (``IOMMU_FAULT_PERM_*`` bits, READ by
    #: default): a ``Translation``, or ``TranslationFault`` after the fault was reported
    #: (:func:`iommu_uapi_virtio_iommu.translate.translate`).
    translate = _translate.translate

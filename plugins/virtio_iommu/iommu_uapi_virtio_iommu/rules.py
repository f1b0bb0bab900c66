"""The virtio-iommu device's rule table: every refusal, with its status, errno and profiles.

Each row is one sentence of the virtio spec (5.13) or one behaviour of QEMU's device
(hw/virtio/virtio-iommu.c) that refuses something: a request answered with a status other than
S_OK (``status``), a request returned unwritten with used length 0 (``status`` None, ``used0``),
a configuration write the device does not take, or a call of this model's Python API refused
with :class:`~iommu_uapi.errors.UAPIError`. ``errno`` is what the Linux driver reports for the
status (reference §3.4), or the errno of the Python refusal. ``profiles`` names the profiles
(:mod:`.profiles`) that apply the row. ``python -m iommu_uapi_virtio_iommu.rules [PATH]`` writes
the table as Markdown (``plugins/virtio_iommu/RULES.md``).
"""

from __future__ import annotations

import errno as _errno
import sys
from pathlib import Path
from typing import Final

import msgspec

from iommu_uapi.errors import UAPIError, errno_name
from iommu_uapi.profiles import LINUX_5_10
from iommu_uapi.ruletable import Quirk, Rule, RuleTable, register_table

from .layouts import Status, status_errno

__all__ = ["BOTH", "QEMU", "RFC2021", "RULES", "RULES_BY_ID", "SPEC", "VIRTIO_QUIRKS",
           "VIRTIO_TABLE", "VirtioRule", "refusal", "render_markdown"]

SPEC: Final = "spec"
QEMU: Final = "qemu"
#: the spec plus the Jan 2021 RFC's table sharing (:mod:`.profiles`)
RFC2021: Final = "rfc2021"
BOTH: Final = (SPEC, QEMU)


class VirtioRule(msgspec.Struct, frozen=True, gc=False):
    """One refusal: ``id`` (``UAPIError.rule`` and the reply's rule), the request ``status``
    (None: no status is written), the Linux ``errno`` (None: the refusal reaches nobody), the
    ``operation`` it belongs to, ``text`` (the rule, in the spec's words), ``message`` (a
    :meth:`str.format` template for the offending values) and the ``profiles`` applying it."""

    id: str
    status: Status | None
    errno: int | None
    operation: str
    text: str
    message: str
    profiles: tuple[str, ...] = BOTH
    source: str = ""


def _req(op: str, *rows: tuple[str, Status | None, str, str, tuple[str, ...], str]
         ) -> tuple[VirtioRule, ...]:
    """Request rules: the errno is the one Linux gives the status (EIO for no reply)."""
    return tuple(VirtioRule(rid, st, status_errno(st), op, text, msg, prof, src)
                 for rid, st, text, msg, prof, src in rows)


def _api(op: str, *rows: tuple[str, int | None, str, str, tuple[str, ...]]
         ) -> tuple[VirtioRule, ...]:
    """Rules with no request status: configuration writes, the event queue, the Python API."""
    return tuple(VirtioRule(rid, None, err, op, text, msg, prof)
                 for rid, err, text, msg, prof in rows)


_S, _Q, _B, _T = (SPEC,), (QEMU,), BOTH, (RFC2021,)
_INVAL, _RANGE, _NOENT, _UNSUPP = Status.INVAL, Status.RANGE, Status.NOENT, Status.UNSUPP
_NOMEM, _DEVERR = Status.NOMEM, Status.DEVERR
#: where each rule comes from in the virtio spec
_V_REQ = "virtio 5.13.6 requests"
_V_ATT = "virtio 5.13.6 ATTACH"
_V_DET = "virtio 5.13.6 DETACH"
_V_MAP = "virtio 5.13.6 MAP"
_V_UNM = "virtio 5.13.6 UNMAP"
_V_RESV = "virtio 5.13.6 PROBE RESV_MEM"
_V_PRB = "virtio 5.13.6 PROBE"
_V_RFC = "Jan 2021 RFC (binding PASID tables); statuses as reference 3.8 suggests"

RULES: tuple[VirtioRule, ...] = (
    *_req(
        "request",
        ("virtio.request.short", None,
         "a request too short to hold the head or to locate the tail is returned without "
         "writing anything (used length 0); QEMU also flags the device as needing a reset",
         "readable part {readable} bytes, writable part {writable} bytes", _B, _V_REQ),
        ("virtio.request.broken", None,
         "a device that needs a reset (QEMU's virtio_error; a host that refused to undo) "
         "handles no request until reset",
         "device needs reset: {reason}", _B, "hw/virtio/virtio.c virtio_error"),
        ("virtio.request.unknown_type", None,
         "the device SHOULD NOT write a request of unknown type (used length 0)",
         "unknown request type {type}", _S, _V_REQ),
        ("virtio.request.unknown_type_unsupp", _UNSUPP,
         "QEMU answers a request of unknown type with S_UNSUPP in the tail",
         "unknown request type {type}", _Q, "virtio_iommu_handle_command"),
        ("virtio.request.short_body", _INVAL,
         "a device-readable part shorter than its type's layout is refused (the spec names no "
         "status; QEMU's S_INVAL)",
         "{type} needs {need} readable bytes, got {have}", _B, "virtio_iommu_iov_to_req"),
    ),
    *_req(
        "ATTACH",
        ("virtio.attach.reserved", _INVAL, "reserved bytes not zero: MUST reject with S_INVAL",
         "reserved bytes {reserved}", _S, _V_ATT),
        ("virtio.attach.flags", _INVAL, "an unknown flags bit: MUST reject with S_INVAL",
         "flags {flags:#x}", _B, _V_ATT),
        ("virtio.attach.bypass_not_negotiated", _INVAL,
         "ATTACH_F_BYPASS is a flag only with BYPASS_CONFIG negotiated (else an unknown bit)",
         "flags {flags:#x} without BYPASS_CONFIG", _S, _V_ATT),
        ("virtio.attach.endpoint", _NOENT, "the endpoint does not exist: MUST reject with S_NOENT",
         "endpoint {endpoint}", _B, _V_ATT),
        ("virtio.attach.domain_range", _RANGE,
         "a domain outside domain_range (a driver MUST; S_RANGE is this model's status)",
         "domain {domain} outside [{low}, {high}]", _S, _V_ATT),
        ("virtio.attach.shared", _UNSUPP,
         "the domain has other endpoints and the device cannot share it: MUST reject with "
         "S_UNSUPP", "domain {domain} has endpoints {endpoints}", _B, _V_ATT),
        ("virtio.attach.kind", _INVAL,
         "the domain exists and ATTACH_F_BYPASS does not match its kind: SHOULD reject with "
         "S_INVAL (QEMU leaves the endpoint detached)",
         "domain {domain} is {kind}", _B, _V_ATT),
        ("virtio.attach.incompatible", _UNSUPP,
         "the endpoint's properties are incompatible with the domain's (its reserved regions "
         "overlap the domain's mappings): SHOULD reject with S_UNSUPP",
         "endpoint {endpoint} reserves [{start:#x}, {end:#x}], mapped in domain {domain}", _S,
         _V_ATT),
        ("virtio.attach.move", _UNSUPP,
         "the endpoint is attached to another domain and cannot be moved (the host refused): "
         "MUST reject with S_UNSUPP", "endpoint {endpoint}: {detail}", _B, _V_ATT),
        ("virtio.attach.host", _DEVERR,
         "the host refused to map the domain's mappings for the endpoint: S_DEVERR, nothing "
         "changed (this model's status)", "endpoint {endpoint}: {detail}", _B, ""),
        ("virtio.attach.nomem", _NOMEM, "a new domain beyond the device's limit: S_NOMEM",
         "{count} domains exist (limit {limit})", _B, _V_REQ),
    ),
    *_req(
        "DETACH",
        ("virtio.detach.endpoint", _NOENT,
         "the endpoint does not exist: MUST reject with S_NOENT (QEMU: also an endpoint never "
         "attached)", "endpoint {endpoint}", _B, _V_DET),
        ("virtio.detach.not_attached", _INVAL,
         "the domain does not exist or the endpoint is not attached to it: MAY reject with "
         "S_INVAL", "endpoint {endpoint} is not attached to domain {domain}", _B, _V_DET),
        ("virtio.detach.host", _DEVERR,
         "the host refused to unmap the domain's mappings for the endpoint: S_DEVERR, nothing "
         "changed (this model's status)", "endpoint {endpoint}: {detail}", _B, ""),
    ),
    *_req(
        "MAP",
        ("virtio.map.not_negotiated", _UNSUPP,
         "MAP is only available when MAP_UNMAP has been negotiated (the spec names no status: "
         "S_UNSUPP, unsupported request; QEMU does not check)", "MAP without MAP_UNMAP", _S,
         _V_MAP),
        ("virtio.map.flags", _INVAL, "an unknown flags bit: MUST reject with S_INVAL",
         "flags {flags:#x}", _B, _V_MAP),
        ("virtio.map.mmio_not_negotiated", _INVAL,
         "MAP_F_MMIO is a flag only with F_MMIO negotiated (else an unknown bit; QEMU accepts "
         "it)", "flags {flags:#x} without F_MMIO", _S, _V_MAP),
        ("virtio.map.domain", _NOENT, "the domain does not exist: SHOULD reject with S_NOENT",
         "domain {domain}", _B, _V_MAP),
        ("virtio.map.bypass_domain", _INVAL, "a bypass domain: SHOULD reject with S_INVAL",
         "domain {domain} is a bypass domain", _B, _V_MAP),
        ("virtio.map.order", _INVAL,
         "virt_end below virt_start (a driver MUST; refused by the model in both profiles: "
         "QEMU would store an interval that covers no address)",
         "virt_end {end:#x} < virt_start {start:#x}", _B, _V_MAP),
        ("virtio.map.align", _RANGE,
         "virt_start, phys_start or virt_end + 1 not aligned to the granule: SHOULD reject with "
         "S_RANGE", "{field} {value:#x} not aligned to granule {granule:#x}", _S, _V_MAP),
        ("virtio.map.input_range", _RANGE,
         "a mapping outside input_range fails (the spec names no status: S_RANGE)",
         "[{start:#x}, {end:#x}] outside [{low:#x}, {high:#x}]", _S, _V_MAP),
        ("virtio.map.phys_range", _RANGE,
         "phys_start + (virt_end - virt_start) beyond 2^64 - 1: the physical range is outside "
         "any guest-physical address space (the spec names no status: S_RANGE; QEMU wraps)",
         "phys [{phys:#x}, +{size:#x}) passes 2^64", _S, _V_MAP),
        ("virtio.map.table_domain", _INVAL,
         "a domain sharing a guest table is not mapped by MAP (the draft): S_INVAL",
         "domain {domain} shares a guest table", _T, _V_RFC),
        ("virtio.map.overlap", _INVAL,
         "a mapping already exists in [virt_start, virt_end]: SHOULD reject with S_INVAL",
         "[{start:#x}, {end:#x}] overlaps [{ostart:#x}, {oend:#x}]", _B, _V_MAP),
        ("virtio.map.resv_mem", _INVAL,
         "a MAP overlapping a RESV_MEM region: SHOULD reject (S_INVAL)",
         "[{start:#x}, {end:#x}] overlaps reserved [{rstart:#x}, {rend:#x}]", _S, _V_RESV),
        ("virtio.map.nomem", _NOMEM, "a mapping beyond the device's limit: S_NOMEM",
         "{count} mappings exist (limit {limit})", _B, _V_REQ),
        ("virtio.map.host", _DEVERR,
         "the host refused the mapping for an endpoint of the domain: S_DEVERR, the endpoints "
         "already mapped are unmapped again (this model's status)",
         "endpoint {endpoint}: {detail}", _B, ""),
    ),
    *_req(
        "UNMAP",
        ("virtio.unmap.not_negotiated", _UNSUPP,
         "UNMAP is only available when MAP_UNMAP has been negotiated (the spec names no status: "
         "S_UNSUPP; QEMU does not check)", "UNMAP without MAP_UNMAP", _S, _V_UNM),
        ("virtio.unmap.reserved", _INVAL, "reserved bytes not zero: MAY reject with S_INVAL",
         "reserved bytes {reserved}", _S, _V_UNM),
        ("virtio.unmap.domain", _NOENT, "the domain does not exist: SHOULD reject with S_NOENT",
         "domain {domain}", _B, _V_UNM),
        ("virtio.unmap.bypass_domain", _INVAL, "a bypass domain: SHOULD reject with S_INVAL",
         "domain {domain} is a bypass domain", _B, _V_UNM),
        ("virtio.unmap.table_domain", _INVAL,
         "a domain sharing a guest table is not unmapped by UNMAP (the draft): S_INVAL",
         "domain {domain} shares a guest table", _T, _V_RFC),
        ("virtio.unmap.split", _RANGE,
         "the range would split a mapping: SHOULD reject with S_RANGE and SHOULD NOT remove any "
         "mapping (QEMU keeps the removals made before it met the split one)",
         "[{start:#x}, {end:#x}] splits [{ostart:#x}, {oend:#x}]", _B, _V_UNM),
        ("virtio.unmap.host", _DEVERR,
         "the host refused to unmap for an endpoint of the domain: S_DEVERR, what was unmapped "
         "is mapped again (this model's status)", "endpoint {endpoint}: {detail}", _B, ""),
    ),
    *_req(
        "PROBE",
        ("virtio.probe.not_offered", None,
         "F_PROBE not offered: the device SHOULD NOT write the buffer (used length 0)",
         "PROBE without F_PROBE", _S, _V_PRB),
        ("virtio.probe.endpoint", _NOENT, "the endpoint does not exist: SHOULD reject with "
         "S_NOENT", "endpoint {endpoint}", _B, _V_PRB),
        ("virtio.probe.buffer", _INVAL,
         "the properties area is smaller than probe_size: SHOULD NOT write properties, SHOULD "
         "reject with S_INVAL", "properties area {have} < probe_size {need}", _S, _V_PRB),
        ("virtio.probe.buffer_abort", None,
         "QEMU always writes probe_size + 4 bytes and aborts when the writable part is smaller",
         "writable part {have} < probe_size + 4 = {need}", _Q, "virtio_iommu_handle_command"),
        ("virtio.probe.overflow", _INVAL,
         "the endpoint's properties do not fit in probe_size: S_INVAL",
         "properties need {need} bytes, probe_size {size}", _B, "virtio_iommu_fill_property"),
    ),
    *_req(
        "ATTACH_TABLE",
        ("virtio.attach_table.not_negotiated", _UNSUPP,
         "ATTACH_TABLE without the draft's ATTACH_TABLE feature negotiated: unsupported request",
         "ATTACH_TABLE not negotiated", _T, _V_RFC),
        ("virtio.attach_table.format", _UNSUPP,
         "a table format the device does not support (only PSTF_ARM_SMMU_V3 = 2): S_UNSUPP",
         "format {format}", _T, _V_RFC),
        ("virtio.attach_table.fields", _INVAL,
         "s1fmt beyond two-level 64 KiB leaves, s1dss beyond SSID 0, s1cdmax beyond 20 PASID "
         "bits, a table pointer not aligned to a CD, or reserved bytes not zero: S_INVAL",
         "{detail}", _T, _V_RFC),
        ("virtio.attach_table.endpoint", _NOENT, "the endpoint does not exist: S_NOENT",
         "endpoint {endpoint}", _T, _V_RFC),
        ("virtio.attach_table.not_attached", _INVAL,
         "the endpoint is not attached to the domain, or the domain is a bypass domain: S_INVAL",
         "endpoint {endpoint} is not attached to translated domain {domain}", _T, _V_RFC),
        ("virtio.attach_table.other_table", _INVAL,
         "the domain already shares another table (one PASID table per domain): S_INVAL",
         "domain {domain} has another table", _T, _V_RFC),
    ),
    *_req(
        "INVALIDATE",
        ("virtio.invalidate.not_negotiated", _UNSUPP,
         "INVALIDATE without the ATTACH_TABLE feature negotiated: unsupported request",
         "INVALIDATE not negotiated", _T, _V_RFC),
        ("virtio.invalidate.domain", _NOENT, "the domain does not exist: S_NOENT",
         "domain {domain}", _T, _V_RFC),
        ("virtio.invalidate.not_table", _INVAL,
         "INVALIDATE on a domain that shares no table: S_INVAL", "domain {domain}", _T, _V_RFC),
        ("virtio.invalidate.fields", _INVAL,
         "inconsistent fields: not exactly one granularity, no or unknown cache type, unknown "
         "flags, reserved bytes not zero, G_PASID or G_VA without a PASID, a granule not of "
         "4 KiB, 16 KiB or 64 KiB, a range past 2^64: S_INVAL", "{detail}", _T, _V_RFC),
        ("virtio.invalidate.archid", _UNSUPP,
         "an invalidation by architecture id (ASID) alone: this device tags its IOTLB by PASID "
         "and cannot find the ASID's entries: S_UNSUPP", "archid {archid} without a PASID", _T,
         _V_RFC),
    ),
    *_req(
        "PAGE_RESP",
        ("virtio.page_resp.not_negotiated", _UNSUPP,
         "PAGE_RESP without the ATTACH_TABLE feature negotiated: unsupported request",
         "PAGE_RESP not negotiated", _T, _V_RFC),
        ("virtio.page_resp.fields", _INVAL,
         "unknown flags, pasid_valid not the flags' PASID_VALID, a response code other than "
         "success, invalid or failure, or reserved bytes not zero: S_INVAL",
         "flags {flags:#x}, pasid_valid {valid}, code {code}", _T, _V_RFC),
        ("virtio.page_resp.endpoint", _NOENT, "the endpoint does not exist: S_NOENT",
         "endpoint {endpoint}", _T, _V_RFC),
        ("virtio.page_resp.not_attached", _INVAL,
         "the endpoint is not attached to the domain: S_INVAL",
         "endpoint {endpoint} is not attached to domain {domain}", _T, _V_RFC),
        ("virtio.page_resp.no_request", _NOENT,
         "no page request of the endpoint with that PASID and group index is pending: S_NOENT",
         "endpoint {endpoint}: no pending group {grpid}", _T, _V_RFC),
    ),
    *_api(
        "configuration space",
        ("virtio.config.bypass_not_negotiated", None,
         "the driver may write bypass only with BYPASS_CONFIG negotiated (spec: the write is "
         "ignored; QEMU: virtio_error)", "bypass write {value} without BYPASS_CONFIG", _B),
        ("virtio.config.bypass_value", None,
         "bypass holds only 0 or 1 (spec: the write is ignored; QEMU: virtio_error)",
         "bypass write {value}", _B),
        ("virtio.config.read_only", None,
         "the driver may write only bypass: writes to other fields are ignored",
         "write of {size} bytes at offset {offset}", _B),
    ),
    *_api(
        "request queue",
        ("virtio.request.buffer", _errno.EFAULT,
         "request() takes the device-readable part as a bytes-like object (bytes, bytearray, "
         "a contiguous memoryview)", "readable part of type {kind}", _B),
        ("virtio.request.writable_len", _errno.EINVAL,
         "request() takes the device-writable part's size as an int from 0 to "
         "MAX_WRITABLE (1 MiB: the model returns the writable part whole)",
         "writable part size {value!r}", _B),
    ),
    *_api(
        "event queue",
        ("virtio.event.no_buffer", None,
         "no event buffer is available: the event is dropped (QEMU drops it with an error "
         "message)", "fault on endpoint {endpoint} dropped", _B),
        ("virtio.event.small_buffer", None,
         "a buffer too small for the record is not used to hold part of it (spec: it is "
         "returned unwritten; QEMU: virtio_error)", "buffer of {size} bytes < {need}", _B),
        ("virtio.event.queue_full", _errno.ENOSPC,
         "the driver posts more event buffers than the queue holds",
         "event queue holds {size} buffers", _B),
        ("virtio.event.buffer_size", _errno.EINVAL, "an event buffer size is not a u32",
         "buffer size {size}", _B),
    ),
    *_api(
        "DMA",  # a fault on the event queue and to the endpoint's consumer
        ("virtio.dma.unknown_endpoint", None,
         "QEMU: an endpoint with no record (never attached) and bypass not allowed: R_UNKNOWN",
         "endpoint {endpoint} is unknown", _Q),
        ("virtio.dma.reserved", None,
         "an access to a RESERVED region must not reach memory: R_MAPPING (MSI regions pass "
         "untranslated)", "endpoint {endpoint} hits a reserved region", _B),
        ("virtio.dma.unattached", None,
         "unattached endpoints not in bypass SHOULD NOT reach guest memory: R_DOMAIN",
         "endpoint {endpoint} is not attached", _B),
        ("virtio.dma.unmapped", None, "no mapping covers the address: R_MAPPING",
         "endpoint {endpoint} has no mapping", _B),
        ("virtio.dma.permission", None,
         "the device MUST NOT allow writes without WRITE (nor, here, reads or instruction "
         "fetches without READ): R_MAPPING with F_READ/F_WRITE",
         "endpoint {endpoint} lacks permission", _B),
        ("virtio.dma.cd", None,
         "a request with a PASID whose CD cannot be fetched (SubstreamID beyond S1CDMax, an "
         "invalid L1 descriptor, a table address stage 2 does not map) or is not valid, or a "
         "request without PASID and S1DSS terminate: R_UNKNOWN",
         "no valid CD", _T),
        ("virtio.dma.walk", None,
         "the guest's stage-1 walk over the domain's mappings as stage 2 faults: R_MAPPING",
         "stage-1 or stage-2 walk fault", _T),
        ("virtio.dma.pasid", None,
         "a request with a PASID from an endpoint whose domain has no PASID table: the base "
         "device has no PASID (R_UNKNOWN)",
         "endpoint {endpoint} has no PASID table", _B),
    ),
    *_api(
        "device model",
        ("virtio.device.features", _errno.EINVAL, "the offered set has bits no spec defines",
         "feature bits {bits}", _B),
        ("virtio.device.table_bit", _errno.EINVAL,
         "the draft's ATTACH_TABLE bit is the bit of a feature of the spec (the Jan 2021 RFC's "
         "bit 6 is BYPASS_CONFIG): a device cannot offer both",
         "bit {bit} is ATTACH_TABLE in this profile, not {name}", _B + _T),
        ("virtio.device.both_bypass", _errno.EINVAL,
         "devices SHOULD NOT offer both BYPASS and BYPASS_CONFIG", "BYPASS with BYPASS_CONFIG",
         _S),
        ("virtio.device.config", _errno.EINVAL,
         "an inconsistent configuration (page_size_mask 0, ranges reversed or restricted "
         "without their feature, bypass not 0/1, field wider than its type ...)", "{detail}",
         _B),
        ("virtio.device.resv_overlap", _errno.EINVAL,
         "the reserved regions of an endpoint should not overlap", "{first} and {second}", _S),
        ("virtio.device.resv_msi", _errno.EINVAL,
         "an endpoint has at most one MSI region", "endpoint {endpoint}: {count} MSI regions",
         _S),
        ("virtio.features.not_offered", _errno.EINVAL,
         "the driver accepted a feature the device did not offer (FEATURES_OK is refused)",
         "bits {bits} not in the offered {offered}", _B),
        ("virtio.profile.unknown", _errno.EINVAL, "the profile is spec or qemu",
         "unknown profile {name!r}", _B),
        ("virtio.translate.endpoint", _errno.ENODEV,
         "a DMA from an endpoint the device does not manage", "endpoint {endpoint}", _B),
        ("virtio.translate.input", _errno.EINVAL,
         "a DMA whose address is not a u64 or whose access names none of READ, WRITE, EXEC",
         "iova {iova}, access {access}", _B),
        ("virtio.host.overlap", _errno.EEXIST,
         "the host already maps part of the range for the endpoint",
         "endpoint {endpoint}: [{start:#x}, {end:#x}] overlaps", _B),
        ("virtio.host.missing", _errno.ENOENT, "the host has no such mapping for the endpoint",
         "endpoint {endpoint}: nothing mapped at {start:#x}", _B),
        ("virtio.host.diverged", None,
         "the host refused to undo a call of a failed request: the host and the device differ, "
         "so the device needs a reset (the spec recommends DEVICE_NEEDS_RESET for internal "
         "errors); the reset unmaps what the host kept", "{count} undo call(s) refused", _B),
        ("virtio.host.injected", _errno.EIO, "a host failure injected on purpose",
         "injected failure of {op} #{count}", _B),
    ),
    *_api(
        "backend",
        ("virtio.backend.config", _errno.EINVAL,
         "the backend's configuration names an unknown key or a value the device refuses",
         "{detail}", _B),
        ("virtio.backend.domains", _errno.ENOSPC,
         "every domain id of domain_range is in use", "all {count} domain ids are in use", _B),
        ("virtio.backend.range", _errno.ERANGE,
         "a MAP or UNMAP whose last byte is beyond 2^64 - 1 cannot be encoded (virt_end is a "
         "le64)", "[{start:#x}, +{size:#x}) ends beyond 2^64 - 1", _B),
        ("virtio.backend.pasid_format", _errno.EINVAL,
         "a PASID-table config of a format other than SMMUV3 (the one table format ATTACH_TABLE "
         "carries, PSTF_ARM_SMMU_V3), whatever its config", "format {format}", _B + _T),
        ("virtio.backend.pasid_config", _errno.EINVAL,
         "a PASID-table config of abort: ATTACH_TABLE has no such configuration",
         "config abort", _B + _T),
        ("virtio.backend.cell", _errno.EINVAL,
         "strict: a cache-type x granularity cell INVALIDATE cannot express (the device TLB, "
         "the PASID cache by address)", "{cells}", _B + _T),
        ("virtio.backend.pasid_width", _errno.EINVAL,
         "a PASID wider than INVALIDATE's le32 pasid", "PASID {pasid:#x}", _B + _T),
        ("virtio.backend.nesting_unsupported", _errno.ENODEV,
         "nesting mode on a device without the draft's ATTACH_TABLE (a profile other than "
         "rfc2021)", "profile {profile} has no ATTACH_TABLE", _B + _T),
        ("virtio.backend.no_pri", _errno.EOPNOTSUPP,
         "a page request from a device without PRI, or not attached to a table-sharing domain",
         "{dev} cannot ask for pages", _T),
        ("virtio.backend.not_nesting", _errno.ENODEV,
         "nesting info of a domain not in nesting mode (as the drivers of 5.10)",
         "domain {domain} is not in nesting mode", _B),
        ("virtio.backend.nesting_attached", _errno.ENODEV,
         "nesting mode is set before the first attach",
         "domain {domain} already has endpoints", _B),
    ),
)

RULES_BY_ID: dict[str, VirtioRule] = {r.id: r for r in RULES}

#: The behaviours the profiles select beyond whether a check runs: QEMU's deviations from the
#: spec (on in ``qemu``), the wire bit of the draft's ATTACH_TABLE (``rfc2021`` sets it to 6)
#: and, for the nesting UAPI's validation profiles, what ``linux-5.10`` does with a cell
#: INVALIDATE cannot express.
VIRTIO_QUIRKS: tuple[Quirk, ...] = (
    Quirk("virtio.quirk.errors_break_device",
          "virtio_error: a short request, a bad bypass write, a too small event buffer or a "
          "too small PROBE buffer leave the device needing a reset (it handles no more "
          "requests)", _Q, source="hw/virtio/virtio.c virtio_error"),
    Quirk("virtio.quirk.reply_at_start",
          "the reply is written from the start of the device-writable part (the tail right "
          "after PROBE's properties), used length = the bytes written; the spec puts the tail "
          "at the end", _Q, source="virtio_iommu_handle_command"),
    Quirk("virtio.quirk.endpoint_records",
          "endpoint records exist from the first ATTACH until reset: DETACH of an endpoint "
          "never attached is S_NOENT, and its DMA faults with R_UNKNOWN rather than R_DOMAIN",
          _Q, source="virtio_iommu_get_endpoint"),
    Quirk("virtio.quirk.attach_detaches_first",
          "ATTACH detaches the endpoint (deleting a domain left empty, mappings included) "
          "before it looks at the target domain: a kind mismatch leaves the endpoint detached, "
          "and re-ATTACH of a domain's only endpoint to that domain recreates it empty",
          _Q, source="virtio_iommu_attach"),
    Quirk("virtio.quirk.unmap_not_atomic",
          "UNMAP removes fully covered mappings in address order and stops with S_RANGE at "
          "the first split one, keeping the removals made before it", _Q,
          source="virtio_iommu_unmap"),
    Quirk("virtio.quirk.attach_table_bit",
          "the feature bit the draft's ATTACH_TABLE takes on the wire (False: the profile has "
          "no nesting requests)", source="Jan 2021 RFC"),
    Quirk("virtio.quirk.drop_inexpressible_cells",
          "cache_invalidate drops the caches of a record INVALIDATE cannot express (the "
          "device TLB, the PASID cache by address) and sends the rest; strict refuses the "
          "record (virtio.backend.cell)", (LINUX_5_10,), source="d.3"),
)

#: The table in the core's form (a :class:`VirtioRule` also carries the wire status, which the
#: core's :class:`~iommu_uapi.ruletable.Rule` has no field for), registered on import and
#: handed over with the backend's spec: ``fail("virtio....")`` raises its rules and the
#: profiles (:mod:`.profiles`) take their rules and quirks from it.
VIRTIO_TABLE: Final = register_table(RuleTable(
    "virtio-iommu",
    [Rule(r.id, r.operation, r.errno, r.text, r.message, r.profiles, r.source,
          section=r.operation) for r in RULES],
    quirks=VIRTIO_QUIRKS, title="The virtio-iommu device and driver",
    intro="Every refusal of the virtio-iommu device (virtio spec 5.13, QEMU's device) and of "
          "its driver behind the nesting UAPI (`iommu_uapi_virtio_iommu.rules`), by the device "
          "profiles that apply it; the wire statuses are in `plugins/virtio_iommu/RULES.md`.",
))


def refusal(rule_id: str, **values: object) -> UAPIError:
    """The :class:`UAPIError` of a Python-API rule, its message filled with ``values`` (the
    core's :meth:`~iommu_uapi.ruletable.RuleTable.fail` of :data:`VIRTIO_TABLE`)."""
    return VIRTIO_TABLE.fail(rule_id, **values)


def render_markdown() -> str:
    """``plugins/virtio_iommu/RULES.md``: the table above."""
    lines = [
        "# virtio-iommu device rules",
        "",
        "Generated from `iommu_uapi_virtio_iommu.rules` by "
        "`python -m iommu_uapi_virtio_iommu.rules`; do not edit.",
        "",
        "Status `-`: nothing is written (used length 0) or the refusal has no status channel.",
        "",
        "| id | operation | status | errno | profiles | rule |",
        "|---|---|---|---|---|---|",
    ]
    for r in RULES:
        st = f"S_{r.status.name}" if r.status is not None else "-"
        err = errno_name(r.errno) if r.errno is not None else "-"
        lines.append(f"| `{r.id}` | {r.operation} | {st} | {err} | {', '.join(r.profiles)} "
                     f"| {r.text} |")
    lines += ["", "## Quirks", "", "| quirk | on in | otherwise | behaviour | source |",
              "|---|---|---|---|---|"]
    lines += [f"| `{q.id}` | {', '.join(q.profiles) or '-'} | {q.default!r} | {q.text} "
              f"| {q.source} |" for q in VIRTIO_QUIRKS]
    lines += ["", "`rfc2021` (based on `spec`) sets `virtio.quirk.attach_table_bit` to 6."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write ``RULES.md`` (or the path given) from the table."""
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else Path(__file__).resolve().parents[1] / "RULES.md"
    path.write_text(render_markdown(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

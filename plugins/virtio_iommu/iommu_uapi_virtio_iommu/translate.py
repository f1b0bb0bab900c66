"""The data path: a DMA of an endpoint through its domain's mappings, or bypass.

The order is QEMU's ``virtio_iommu_translate`` (the spec fixes none):

1. an endpoint QEMU has no record of (``qemu`` profile only): bypass allowed -> identity, else
   fault R_UNKNOWN;
2. an address inside a reserved region: MSI -> identity, RESERVED -> fault R_MAPPING;
3. an unattached endpoint: bypass allowed -> identity, else fault R_DOMAIN;
4. a bypass domain -> identity;
5. no mapping covers the address -> fault R_MAPPING;
6. the mapping lacks READ for a read or WRITE for a write -> fault R_MAPPING with F_READ and/or
   F_WRITE. virtio mappings carry no execute permission: an instruction fetch needs READ (this
   model's choice) and faults with F_READ; Linux's F_EXEC is no flag of the spec, whose device
   SHOULD set undefined flags to zero.

Every fault carries F_ADDRESS. Translations through mappings are cached in the device's IOTLB
under the domain's tag as naturally aligned power-of-two leaves inside the mapping (the largest
around the address); a hit must fall inside the entry, since a 4 KiB page may hold several
mappings smaller than a page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from iommu_uapi.tlb import TLBEntry
from iommu_uapi.translation import Translation, TranslationFault
from iommu_uapi.uapi import Fault, FaultUnrecoverable
from iommu_uapi.uapi.consts import FaultPerm, FaultReason, FaultType, UnrecoverableFlags

from .config import U64_MAX, granule
from .events import FaultFlags, FaultRecord
from .events import FaultReason as Reason
from .layouts import MapFlags
from .mappings import Mapping
from .probe import ResvSubtype
from .profiles import Quirk
from .rules import RULES_BY_ID, refusal

if TYPE_CHECKING:
    from .device import VirtioIommuDevice

__all__ = ["GENERIC_REASON", "translate"]

_R, _W, _X = int(FaultPerm.READ), int(FaultPerm.WRITE), int(FaultPerm.EXEC)
_ACCESS = _R | _W | _X | int(FaultPerm.PRIV)
_RW: Final = int(MapFlags.READ | MapFlags.WRITE)
_RWX: Final = _R | _W | _X
_IDENTITY_PERM: Final = _R | _W | _X
_SHIFT: Final = 12

#: The generic reason of each virtio fault (``iommu_fault_unrecoverable.reason``): virtio has no
#: generic counterpart for R_DOMAIN, reported as UNKNOWN; an unmapped address is the generic
#: PTE_FETCH (as SMMUv3's translation fault), a permission mismatch PERMISSION.
GENERIC_REASON: Final[dict[tuple[Reason, bool], FaultReason]] = {
    (Reason.UNKNOWN, False): FaultReason.UNKNOWN,
    (Reason.DOMAIN, False): FaultReason.UNKNOWN,
    (Reason.MAPPING, False): FaultReason.PTE_FETCH,
    (Reason.MAPPING, True): FaultReason.PERMISSION,
}


def _identity(dev: VirtioIommuDevice, iova: int) -> Translation:
    """An untranslated access: the address itself, one granule, every permission."""
    return Translation(iova, granule(dev.page_size_mask), _IDENTITY_PERM, 0, 0)


def _perm(flags: int) -> int:
    perm = flags & _RW  # MAP READ/WRITE are the FAULT_PERM READ/WRITE bits
    return perm | _X if perm & _R else perm


def _leaf(mapping: Mapping, iova: int) -> TLBEntry:
    """The IOTLB entry for ``iova``: the largest naturally aligned power-of-two block around it
    that lies inside ``mapping`` (the core's IOTLB holds aligned pages; a leaf is what a page
    table would map there). The block of 2^k bytes fits while ``iova`` and ``virt_start - 1``
    differ in a bit >= k, and ``iova`` and ``virt_end + 1`` too."""
    start = mapping.virt_start
    k_left = (iova ^ (start - 1)).bit_length() - 1 if start else 64
    k = min(k_left, (iova ^ (mapping.virt_end + 1)).bit_length() - 1, 64)
    base = iova & -(1 << k)
    return TLBEntry(base, 1 << k, mapping.phys_start + base - start, _perm(mapping.flags))


def _fault(dev: VirtioIommuDevice, endpoint: int, iova: int, access: int, reason: Reason,
           flags: int, rule_id: str) -> TranslationFault:
    """Report the fault of ``rule_id`` on the event queue and to the endpoint's consumer; the
    exception's ``reason`` starts with the rule id."""
    record = FaultRecord(reason, flags | FaultFlags.ADDRESS, endpoint, iova)
    stop = dev.events.push(record.to_bytes(),
                           break_on_small=bool(dev.profile.quirk(
                               Quirk.ERRORS_BREAK_DEVICE)))
    if stop == "virtio.event.small_buffer":
        dev.broken = stop
    generic = Fault(type=FaultType.DMA_UNRECOV, event=FaultUnrecoverable(
        reason=GENERIC_REASON[reason, bool(flags)], flags=UnrecoverableFlags.ADDR_VALID,
        perm=access & _ACCESS, addr=iova))
    dev.fault_param(endpoint).report(generic)
    rule = RULES_BY_ID[rule_id]
    return TranslationFault(generic, record, f"[{rule_id}] {rule.message.format(endpoint=endpoint)}"
                            f" at {iova:#x}")


def translate(dev: VirtioIommuDevice, endpoint: int, iova: int, access: int = _R
              ) -> Translation:
    """Translate one DMA (see the module docstring for the order); raises
    :class:`TranslationFault` after reporting the fault, ``UAPIError`` for an endpoint the
    device does not manage or a malformed access."""
    if not 0 <= iova <= U64_MAX or not access & _RWX or access & ~_ACCESS:
        raise refusal("virtio.translate.input", iova=iova, access=access)
    regions = dev.regions.get(endpoint)
    if regions is None:
        raise refusal("virtio.translate.endpoint", endpoint=endpoint)
    if dev.endpoint_records and endpoint not in dev.records:
        if dev.bypass_allowed():
            return _identity(dev, iova)
        raise _fault(dev, endpoint, iova, access, Reason.UNKNOWN, 0, "virtio.dma.unknown_endpoint")
    for region in regions:
        if region.start <= iova <= region.end:
            if region.subtype == ResvSubtype.MSI:
                return _identity(dev, iova)
            raise _fault(dev, endpoint, iova, access, Reason.MAPPING, 0, "virtio.dma.reserved")
    domain = dev.attached.get(endpoint)
    if domain is None:
        if dev.bypass_allowed():
            return _identity(dev, iova)
        raise _fault(dev, endpoint, iova, access, Reason.DOMAIN, 0, "virtio.dma.unattached")
    if domain.bypass:
        return _identity(dev, iova)
    tlb = dev.tlb
    cached = domain.bucket.get(iova >> _SHIFT)  # the entry's fields (a plain tuple)
    if cached is not None and cached[0] <= iova < cached[0] + cached[1]:
        tlb.hits += 1
        base, size, paddr, perm, _ = cached
    else:
        tlb.misses += 1
        mapping = domain.mappings.find(iova)
        if mapping is None:
            raise _fault(dev, endpoint, iova, access, Reason.MAPPING, 0, "virtio.dma.unmapped")
        entry = _leaf(mapping, iova)
        tlb.fill(domain.tag, iova, entry)
        base, size, paddr, perm, _ = entry
    if access & ~perm & _RWX:
        lacking = 0
        if access & (_R | _X) and not perm & _R:
            lacking |= FaultFlags.READ
        if access & _W and not perm & _W:
            lacking |= FaultFlags.WRITE
        raise _fault(dev, endpoint, iova, access, Reason.MAPPING, lacking, "virtio.dma.permission")
    # 64-bit arithmetic, as QEMU's (a mapping whose physical range passes 2^64 wraps)
    return Translation((paddr + iova - base) & U64_MAX, size, perm, 0, 0)

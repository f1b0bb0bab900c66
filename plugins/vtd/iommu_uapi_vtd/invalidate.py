"""From a guest's ``iommu_cache_invalidate_info`` to invalidation-queue descriptors, as the
Linux 5.10 driver (``intel_iommu_sva_invalidate``) builds them (reference kernel-uapi.md d.3).

:data:`QI_GRANULARITY` is the driver's table from (cache type, generic granularity) to the
descriptor granularity; ``None`` marks the cells the driver cannot express. Cache bits are taken
lowest first. Under ``linux-5.10`` a ``None`` cell ends the loop and the call still succeeds (the
later bits are skipped: silent success); under ``strict`` any such cell refuses the whole call
with ``EINVAL`` before a descriptor is built.

* IOTLB -> PASID-based IOTLB invalidation (type 6): PASID granularity is G=2 (non-global entries
  of the PASID), ADDR granularity G=3 with AM = ceil(log2(pages)), the address aligned down to
  the mask and IH from the LEAF flag. The PASID comes from the granularity's struct only when
  its PASID flag is set (0 otherwise). With ATS enabled the driver goes on with the device-TLB
  invalidation (an inclusive flush).
* DEV_IOTLB (or the fall-through) -> PASID-based device-TLB invalidation (type 8) with the
  S-bit size encoding; PASID granularity becomes the whole address space. Without ATS nothing
  is sent.

A page-selective range beyond CAP.MAMV pages makes the hardware refuse the descriptor (IQE); the
5.10 driver does not look, so under ``linux-5.10`` it is sent and lost. ``strict`` replaces it
with a domain-selective IOTLB invalidation (type 2), which over-invalidates but never leaves a
stale entry.
"""

from __future__ import annotations

from iommu_uapi import profiles
from iommu_uapi.features import CacheCell
from iommu_uapi.hw.ats import ats_size_encoding
from iommu_uapi.uapi import CacheInvalidateInfo
from iommu_uapi.uapi.consts import CacheType, InvAddrFlags, InvGranularity, InvPasidFlags

from .qi import (
    Descriptor,
    IotlbGranularity,
    IotlbInv,
    PasidDevTlbInv,
    PasidIotlbGranularity,
    PasidIotlbInv,
)
from .rules import fail

__all__ = ["QI_GRANULARITY", "SUPPORTED_CELLS", "DevTlbTarget", "guest_invalidation"]

#: QI granularities the driver uses (its names for :class:`~.qi.PasidIotlbGranularity`).
QI_GRAN_NONG_PASID = PasidIotlbGranularity.NON_GLOBAL
QI_GRAN_PSI_PASID = PasidIotlbGranularity.PAGE
QI_DEV_IOTLB_GRAN_PASID_SEL = 0

#: (cache type, granularity) -> descriptor granularity; None: the driver has no descriptor.
QI_GRANULARITY: dict[tuple[CacheType, InvGranularity], int | None] = {
    (CacheType.IOTLB, InvGranularity.DOMAIN): None,
    (CacheType.IOTLB, InvGranularity.PASID): QI_GRAN_NONG_PASID,
    (CacheType.IOTLB, InvGranularity.ADDR): QI_GRAN_PSI_PASID,
    (CacheType.DEV_IOTLB, InvGranularity.DOMAIN): None,
    (CacheType.DEV_IOTLB, InvGranularity.PASID): None,
    (CacheType.DEV_IOTLB, InvGranularity.ADDR): QI_DEV_IOTLB_GRAN_PASID_SEL,
    (CacheType.PASID, InvGranularity.DOMAIN): None,
    (CacheType.PASID, InvGranularity.PASID): None,
    (CacheType.PASID, InvGranularity.ADDR): None,
}

#: The cells that are executed: what the backend declares for negotiation.
SUPPORTED_CELLS: frozenset[CacheCell] = frozenset(
    CacheCell(c, g) for (c, g), qg in QI_GRANULARITY.items() if qg is not None)

_CACHE_BITS = (CacheType.IOTLB, CacheType.DEV_IOTLB, CacheType.PASID)
#: The table with plain-int keys, for the per-call loop.
_QG = {(int(c), int(g)): qg for (c, g), qg in QI_GRANULARITY.items()}
_IOTLB = int(CacheType.IOTLB)
_BITS = tuple(int(b) for b in _CACHE_BITS)
_ALL_BITS = sum(_BITS)


def _steps(cache: int, granu: int) -> tuple[tuple[int, int], ...]:
    """The (cache bit, descriptor granularity) cells the driver executes for ``cache`` at
    ``granu``, lowest bit first, up to the first cell it cannot express (where its loop ends)."""
    out = []
    for bit in _BITS:
        if cache & bit:
            qg = _QG[(bit, granu)]
            if qg is None:
                break
            out.append((bit, qg))
    return tuple(out)


#: By (cache bits, granularity): the cells executed, as :func:`_steps` gives them.
_STEPS = {(cache, int(g)): _steps(cache, int(g))
          for cache in range(_ALL_BITS + 1) for g in InvGranularity}
_PAGE_SHIFT = 12
_U64 = (1 << 64) - 1
_PASID_MASK = 0xFFFFF
#: Size order of a whole-address-space device-TLB invalidation (64 - 12).
_WHOLE_SPACE_ORDER = 64 - _PAGE_SHIFT
_PASID_GRANU = int(InvGranularity.PASID)
_ADDR_GRANU = int(InvGranularity.ADDR)
_F_PASID = int(InvPasidFlags.PASID)
_A_PASID = int(InvAddrFlags.PASID)
_A_LEAF = int(InvAddrFlags.LEAF)


class DevTlbTarget:
    """What a device-TLB descriptor names for one ATS device: requester id, physical-function
    source id and invalidation queue depth."""

    __slots__ = ("pfsid", "qdep", "sid")

    def __init__(self, sid: int, pfsid: int | None = None, qdep: int = 0) -> None:
        self.sid = sid
        self.pfsid = sid if pfsid is None else pfsid
        self.qdep = qdep

    def pasid_descriptor(self, pasid: int, addr: int, order: int) -> PasidDevTlbInv:
        """Type 8 for 2^order pages at ``addr`` of ``pasid``."""
        a, s = ats_size_encoding(addr, order)
        return PasidDevTlbInv(MIP=self.qdep & 0x1F, PFSID_LO=self.pfsid & 0xF, SID=self.sid,
                              PASID=pasid & _PASID_MASK, PFSID_HI=self.pfsid >> 4, S=s,
                              ADDR=a)


def _size_order(granule_size: int, nb_granules: int) -> int:
    """order_base_2 of the page count, computed in u64 as the driver does (0 for <= 1 page)."""
    pages = ((granule_size * nb_granules) & _U64) >> _PAGE_SHIFT
    return 0 if pages <= 1 else (pages - 1).bit_length()


#: By profile name: (whether ``vtd.cache_invalidate.cell`` applies, whether a range beyond
#: CAP.MAMV is widened), what the profile decides for every call; emptied when profiles change.
_POLICIES: dict[str, tuple[bool, bool]] = {}
profiles.on_change(_POLICIES.clear)


def _policy(profile: profiles.ProfileLike) -> tuple[bool, bool]:
    """(check the cells, widen beyond MAMV) under ``profile``."""
    found = _POLICIES.get(profile) if type(profile) is str else None
    if found is None:
        prof = profiles.get(profile)
        found = ("vtd.cache_invalidate.cell" in prof.rules,
                 not prof.quirk("vtd.cache_invalidate.psi_beyond_mamv"))
        if type(profile) is str:
            _POLICIES[profile] = found
    return found


def _refused(info: CacheInvalidateInfo) -> list[str]:
    granu = InvGranularity(info.granularity)
    return [f"{bit.name} x {granu.name}" for bit in _CACHE_BITS
            if info.cache & bit and QI_GRANULARITY[(bit, granu)] is None]


def guest_invalidation(info: CacheInvalidateInfo, *, did: int, devtlb: DevTlbTarget | None,
                       mamv: int, profile: profiles.ProfileLike) -> list[Descriptor]:
    """The descriptors the driver submits for ``info`` on a domain with id ``did``; ``devtlb``
    is the device's ATS target (None: ATS not enabled). A profile applying
    ``vtd.cache_invalidate.cell`` (``strict``) refuses a cell the table marks None with
    ``EINVAL``; otherwise such a cell ends the list. Without the
    ``vtd.cache_invalidate.psi_beyond_mamv`` quirk a range beyond CAP.MAMV is widened to a
    domain-selective invalidation."""
    policy = _POLICIES.get(profile) if type(profile) is str else None
    check_cells, widen = _policy(profile) if policy is None else policy
    if check_cells:
        refused = _refused(info)
        if refused:
            raise fail("vtd.cache_invalidate.cell", cells=", ".join(refused))
    granu = info.granularity
    pasid = addr = order = 0
    leaf = False
    if granu == _PASID_GRANU:
        pi = info.granu.pasid_info
        if pi.flags & _F_PASID:
            pasid = pi.pasid
    elif granu == _ADDR_GRANU:
        ai = info.granu.addr_info
        if ai.flags & _A_PASID:
            pasid = ai.pasid
        addr = ai.addr
        pages = ((ai.granule_size * ai.nb_granules) & _U64) >> _PAGE_SHIFT  # _size_order
        order = 0 if pages <= 1 else (pages - 1).bit_length()
        leaf = bool(ai.flags & _A_LEAF)
    out: list[Descriptor] = []
    # linux-5.10: a cell without a descriptor is logged and ends the loop, success returned
    for bit, qg in _STEPS.get((info.cache & _ALL_BITS, granu), ()):
        if bit == _IOTLB:
            out.append(_pasid_iotlb(did, pasid, qg, addr, order, leaf, mamv, widen))
            if devtlb is None:
                continue
        if devtlb is not None:  # DEV_IOTLB, or the IOTLB case falling through
            if granu == _PASID_GRANU:
                out.append(devtlb.pasid_descriptor(pasid, 0, _WHOLE_SPACE_ORDER))
            else:
                out.append(devtlb.pasid_descriptor(pasid, addr, order))
    return out


def _pasid_iotlb(did: int, pasid: int, qg: int, addr: int, order: int, leaf: bool, mamv: int,
                 widen: bool) -> Descriptor:
    if qg == QI_GRAN_NONG_PASID:
        return PasidIotlbInv(G=QI_GRAN_NONG_PASID, DID=did, PASID=pasid & _PASID_MASK)
    if widen and order > mamv:
        return IotlbInv(G=IotlbGranularity.DOMAIN, DID=did)
    # UNCERTAIN: the driver computes 1 << order in a C int; above order 30 the result is
    # undefined. The model encodes AM = order (the field holds 6 bits; the order is at most 52).
    align = 1 << (_PAGE_SHIFT + order)
    return PasidIotlbInv(G=QI_GRAN_PSI_PASID, DID=did, PASID=pasid & _PASID_MASK, AM=order,
                         IH=leaf, ADDR=addr & ~(align - 1) & _U64)

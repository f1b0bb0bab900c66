"""The isolation hazards of the Linux 5.10 Intel driver that the VT-d model reproduces.

A hazard is something a real kernel did that leaves a removed translation reachable after the
call that removed it returned. The model keeps each one in the profiles listed here (the
``linux-5.10`` profile is that kernel, flaws included) and never in ``strict``. Each hazard is a
quirk of the VT-d rule table (:mod:`.rules`), so the profiles carry it; the code asks
:func:`has_hazard`, which asks the profile, and ``docs/isolation.md`` describes each hazard with
its evidence and the test that shows it.
"""

from __future__ import annotations

import msgspec

from iommu_uapi import profiles
from iommu_uapi.rules import LINUX_5_10

__all__ = ["HAZARDS", "UNBIND_KEEPS_GLOBALS", "UNMAP_KEEPS_NESTED_ATC", "Hazard", "has_hazard"]


class Hazard(msgspec.Struct, frozen=True, gc=False):
    """One reproduced hazard: its id, the profiles that have it, what survives, and where the
    behaviour comes from."""

    id: str
    profiles: tuple[str, ...]
    text: str
    source: str


#: Unbinding a guest PASID leaves its global first-level IOTLB entries in place.
UNBIND_KEEPS_GLOBALS = "vtd.unbind.globals_survive"
#: A host unmap leaves an ATS device's nested translations of the page in its ATC.
UNMAP_KEEPS_NESTED_ATC = "vtd.unmap.nested_atc_survives"

HAZARDS: dict[str, Hazard] = {h.id: h for h in (
    Hazard(UNMAP_KEEPS_NESTED_ATC, (LINUX_5_10,),
           "a host (stage-2) unmap invalidates each ATS device's TLB over the unmapped "
           "guest-physical range only: the device caches its guest PASIDs' nested translations "
           "by guest virtual address, so the translation of a guest page mapped at another "
           "address survives and the device keeps reaching the unmapped host page",
           "iommu_unmap -> iommu_flush_iotlb_psi -> iommu_flush_dev_iotlb(addr, mask) in v5.10; "
           "Linux 6.8 5e54e861 'iommu/vt-d: Add missing device iotlb flush for parent domain' "
           "flushes the whole device TLB of devices using nested translations over a changed "
           "stage 2, since no range names the affected nested translations"),
    Hazard(UNBIND_KEEPS_GLOBALS, (LINUX_5_10,),
           "unbind tears the nested PASID entry down with a PASID-selective IOTLB invalidation "
           "of the non-global entries (type 6, G=2): the global first-level entries of the "
           "PASID stay cached and serve the PASID's next binding, whatever table it names",
           "intel_svm_unbind_gpasid -> intel_pasid_tear_down_entry -> qi_flush_piotlb(npages "
           "-1) in v5.10; fixed by 8798d364 'iommu/vt-d: Fix incomplete cache flush in "
           "intel_pasid_tear_down_entry()' (v5.14, stable v5.10.61): a domain-selective flush "
           "for nested and second-level-only entries, as VT-d 3.3 6.5.3.3 directs"),
)}


def has_hazard(profile: profiles.ProfileLike, hazard: str) -> bool:
    """Whether profile ``profile`` reproduces hazard ``hazard`` (an id of :data:`HAZARDS`, a
    quirk of the VT-d table)."""
    return profiles.get(profile).quirk(HAZARDS[hazard].id) is True

"""The SMMU's TLB on the core's tagged :class:`~iommu_uapi.caches.TLB`, and what each TLBI drops.

Tags: stage-1 and nested entries are tagged ``(VMID, ASID)``; global entries (nG = 0) are tagged
``(VMID, GLOBAL)`` and match every ASID of the VMID; stage-2-only entries are tagged
``(VMID, S2_ONLY)`` and keyed by IPA; entries of EL2 streams (STE.STRW = EL2) take :data:`EL2`
in the VMID slot, out of reach of the NS-EL1 (NH) and non-hyp (NSNH) invalidations. The TLBI
methods drop exactly what the command names (hw-formats 2.6.2 semantics), never more, so a
missing invalidation is visible as a stale hit: TLBI_S2_IPA in particular leaves the combined
stage-1+2 entries built from the IPA, as the architecture allows, for the hypervisor's following
TLBI_NH_ALL to remove.
"""

from __future__ import annotations

from iommu_uapi.caches import TLB, Tag, TLBEntry

__all__ = ["EL2", "GLOBAL", "S2_ONLY", "SmmuTlb"]

#: The ASID slot of global (nG = 0) stage-1 entries.
GLOBAL = -1
#: The ASID slot of stage-2-only entries.
S2_ONLY = -2
#: The VMID slot of EL2 entries.
EL2 = -1


def _stage1(tag: Tag) -> bool:
    return tag[1] != S2_ONLY


def _non_hyp(tag: Tag) -> bool:
    return tag[0] != EL2


class SmmuTlb:
    """The TLB and its invalidations; ``tlb`` is the core cache (counters, capacity)."""

    def __init__(self, capacity: int | None = None) -> None:
        self.tlb = TLB(capacity)

    def lookup(self, vmid: int, asid: int, iova: int) -> TLBEntry | None:
        """The entry translating ``iova`` for (VMID, ASID): its own, else a global one of the
        VMID (``asid`` = :data:`S2_ONLY` looks up stage-2-only entries)."""
        entry = self.tlb.lookup((vmid, asid), iova)
        if entry is None and asid >= 0:
            entry = self.tlb.lookup((vmid, GLOBAL), iova)
        return entry

    def fill(self, vmid: int, asid: int, iova: int, entry: TLBEntry) -> None:
        """Cache the leaf that translated ``iova`` (a global leaf under :data:`GLOBAL`)."""
        self.tlb.fill((vmid, GLOBAL if entry.global_ and asid >= 0 else asid), iova, entry)

    # -- invalidation commands ------------------------------------------------------------

    def nh_all(self, vmid: int) -> int:
        """TLBI_NH_ALL: every stage-1 entry of VMID, global ones included."""
        return self.tlb.invalidate((vmid,), where=_stage1)

    def nh_asid(self, vmid: int, asid: int) -> int:
        """TLBI_NH_ASID: the non-global entries of (VMID, ASID)."""
        return self.tlb.invalidate((vmid, asid))

    def nh_va(self, vmid: int, asid: int, addr: int, size: int) -> int:
        """TLBI_NH_VA: entries of (VMID, ASID) and global entries of VMID overlapping
        ``[addr, addr + size)``."""
        return (self.tlb.invalidate((vmid, asid), addr, size)
                + self.tlb.invalidate((vmid, GLOBAL), addr, size))

    def nh_va_page(self, vmid: int, asid: int, addr: int) -> int:
        """:meth:`nh_va` of the 4 KiB page holding ``addr``: one indexed lookup per tag (the
        VMID's global tag only when it was ever filled)."""
        tlb = self.tlb
        n = tlb.invalidate_page((vmid, asid), addr)
        globals_ = (vmid, GLOBAL)
        return n + tlb.invalidate_page(globals_, addr) if globals_ in tlb.prefixes else n

    def nh_vaa(self, vmid: int, addr: int, size: int) -> int:
        """TLBI_NH_VAA: stage-1 entries of every ASID of VMID overlapping the range."""
        return self.tlb.invalidate((vmid,), addr, size, where=_stage1)

    def s2_ipa(self, vmid: int, addr: int, size: int) -> int:
        """TLBI_S2_IPA: stage-2-only entries of VMID overlapping ``[addr, addr + size)``."""
        return self.tlb.invalidate((vmid, S2_ONLY), addr, size)

    def s12_vmall(self, vmid: int) -> int:
        """TLBI_S12_VMALL: every entry of VMID, both stages."""
        return self.tlb.invalidate((vmid,))

    def nsnh_all(self) -> int:
        """TLBI_NSNH_ALL: every non-hyp entry (all VMIDs, all stages)."""
        return self.tlb.invalidate((), where=_non_hyp)

    def el2_all(self) -> int:
        """TLBI_EL2_ALL: every EL2 entry."""
        return self.tlb.invalidate((EL2,))

    def el2_asid(self, asid: int) -> int:
        """TLBI_EL2_ASID: the non-global EL2 entries of ASID."""
        return self.tlb.invalidate((EL2, asid))

    def el2_va(self, asid: int, addr: int, size: int) -> int:
        """TLBI_EL2_VA: EL2 entries of (ASID, VA) and global EL2 entries of VA."""
        return self.nh_va(EL2, asid, addr, size)

    def el2_vaa(self, addr: int, size: int) -> int:
        """TLBI_EL2_VAA: EL2 entries of VA in every ASID."""
        return self.tlb.invalidate((EL2,), addr, size)

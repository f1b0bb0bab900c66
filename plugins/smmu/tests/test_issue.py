"""A guest's invalidations prepared once per distinct request (:mod:`iommu_uapi_smmu.issue`):
a repeated record is issued again in full, and what the SMMU holds for its PASID is part of the
request, so an ASID the SMMU took since is reached; the profile's quirks are asked again when
its name resolves to a profile registered anew."""

from __future__ import annotations

import pytest
from backend_rig import VA, Rig, addr_inv, pasid_inv

from iommu_uapi import profiles
from iommu_uapi.errors import UAPIError
from iommu_uapi.uapi.consts import CacheType
from iommu_uapi_smmu.cmds import TlbiNhVa
from iommu_uapi_smmu.guest import guest_cd
from iommu_uapi_smmu.nested import GuestScope, guest_invalidation


def test_a_repeated_record_is_issued_again_and_reaches_asids_taken_since() -> None:
    rig = Rig("strict")
    rig.gmap()
    rig.enter(3)
    rig.iommu.translate(rig.dev, VA, pasid=3)                 # the SMMU holds ASID 3
    host = rig.backend.host
    for _ in range(2):
        issued = host.issued
        rig.invalidate(addr_inv(VA, pasid=3))
        assert rig.commands() == [TlbiNhVa(VMID=rig.domain.data.vmid, ASID=3, Addr=VA)]
        assert host.issued == issued + 2                      # the TLBI and its CMD_SYNC
        assert not rig.iommu.iotlb.entries
        rig.iommu.translate(rig.dev, VA, pasid=3)
    # the guest gives PASID 3 a new ASID: both are held until the guest flushes them
    rig.guest.write(rig.format.cd_address(rig.guest, rig.table, 3),
                    guest_cd(rig.gpt.root, 9).to_bytes())
    rig.invalidate(pasid_inv(CacheType.PASID, pasid=3))
    rig.iommu.translate(rig.dev, VA, pasid=3)
    rig.invalidate(addr_inv(VA, pasid=3))
    assert [c.ASID for c in rig.commands()] == [3, 9]
    assert not rig.iommu.iotlb.entries


def test_a_profile_registered_anew_is_asked_again() -> None:
    info = addr_inv(VA, pasid=3)
    scope = GuestScope(1, (), None, True, {(1, 3): frozenset({3})})
    try:
        for refused in (True, False, True):
            profiles.register(profiles.Profile(
                "smmu-test-reregistered", "a test's", base="strict",
                quirks={"smmu.quirk.pasid_flag_refused": refused}), replace=True)
            if refused:
                with pytest.raises(UAPIError) as err:
                    guest_invalidation(info, scope, "smmu-test-reregistered")
                assert err.value.rule == "smmu.inv.pasid_flag"
            else:
                assert guest_invalidation(info, scope, "smmu-test-reregistered") == [
                    TlbiNhVa(VMID=1, ASID=3, Addr=VA)]
    finally:
        profiles.unregister("smmu-test-reregistered")

"""Fault recording registers (hw-formats 1.10): FRCD layout, overflow, FPD suppression, FSTS and
FECTL, and the generic reason of every scalable-mode code."""

from __future__ import annotations

import msgspec

from iommu_uapi.uapi.consts import FaultPerm, FaultReason, FaultType, UnrecoverableFlags
from iommu_uapi_vtd.faults import (
    GENERIC_REASON,
    NON_QUALIFIED,
    FaultRecorder,
    Frcd,
    generic_reason,
    to_uapi_fault,
)
from iommu_uapi_vtd.reasons import AddressType, SmFaultReason, VtdFault
from iommu_uapi_vtd.registers import VtdConfig

R = SmFaultReason
CFG = VtdConfig()


def test_frcd_golden_layout() -> None:
    rec = FaultRecorder(CFG)
    assert rec.record(VtdFault(R.FL_NOT_PRESENT, 0x310, 0x1234, 0xDEAD_B123,
                               access=FaultPerm.WRITE | FaultPerm.PRIV,
                               at=AddressType.TRANSLATION_REQUEST))
    assert rec.slots[0] == (
        0xDEAD_B000                 # FI: page address
        | 0x310 << 64               # SID
        | 1 << 93                   # PRIV
        | 1 << 95                   # PP
        | 0x71 << 96                # FR
        | 0x1234 << 104             # PV
        | 1 << 124                  # AT = translation request
        | 0 << 126                  # T = 0: write
        | 1 << 127                  # F
    )
    rec.record(VtdFault(R.NO_READ, 0x311, None, 0x5000, access=FaultPerm.READ | FaultPerm.EXEC))
    f = rec.read(1)
    assert (f.T, f.EXE, f.PP, f.PV, f.FR, f.F) == (True, True, False, 0, 0x86, True)


def test_recording_sets_ppf_fri_and_raises_the_event() -> None:
    rec = FaultRecorder(CFG)
    rec.record(VtdFault(R.NO_WRITE, 1))
    rec.record(VtdFault(R.NO_WRITE, 2))
    st = rec.status
    assert st.fsts_get("PPF") and st.fsts_get("FRI") == 0 and st.fault_events == 2
    rec.clear(0)
    assert st.fsts_get("PPF") and st.fsts_get("FRI") == 1
    rec.clear(1)
    assert not st.fsts_get("PPF")
    assert rec.pending() == []


def test_overflow_sets_pfo_and_drops_the_fault() -> None:
    cfg = msgspec.structs.replace(CFG, fault_records=2)
    rec = FaultRecorder(cfg)
    assert rec.record(VtdFault(R.NO_WRITE, 1)) and rec.record(VtdFault(R.NO_WRITE, 2))
    assert not rec.record(VtdFault(R.NO_WRITE, 3))
    assert rec.status.fsts_get("PFO") and rec.lost == 1
    assert [f.SID for f in rec.pending()] == [1, 2]
    rec.clear(0)                                    # the slot at the index is free again
    assert rec.record(VtdFault(R.NO_WRITE, 4))
    assert [f.SID for f in rec.pending()] == [2, 4] and rec.status.fsts_get("FRI") == 1
    rec.status.write_fsts(1)                        # software clears PFO
    assert not rec.status.fsts_get("PFO") and rec.status.fsts_get("PPF")


def test_fpd_suppresses_qualified_faults_only() -> None:
    rec = FaultRecorder(CFG)
    assert not rec.record(VtdFault(R.PASID_NOT_PRESENT, 1, 5, fpd=True))
    assert not rec.record(VtdFault(R.NO_WRITE, 1, 5, fpd=True))
    assert rec.suppressed == 2 and rec.recorded == 0 and rec.status.fault_events == 0
    for reason in (R.ROOT_NOT_PRESENT, R.CONTEXT_RESERVED, R.PASID_ACCESS):
        assert reason in NON_QUALIFIED
        assert rec.record(VtdFault(reason, 1, 5, fpd=True))
    assert rec.record(VtdFault(R.NO_WRITE, 1, 5, fpd=False))


def test_masked_fault_event_is_pending_until_unmasked() -> None:
    rec = FaultRecorder(CFG)
    rec.status.write_fectl(1 << 31)
    rec.record(VtdFault(R.NO_WRITE, 1))
    assert rec.status.fectl == 3 << 30 and rec.status.fault_events == 0
    rec.status.write_fectl(0)
    assert rec.status.fault_events == 1 and rec.status.fectl == 0


def test_every_reason_has_a_generic_reason() -> None:
    assert set(GENERIC_REASON) == set(SmFaultReason)
    assert generic_reason(R.FL_NOT_PRESENT) == FaultReason.PTE_FETCH
    assert generic_reason(R.PASID_NOT_PRESENT) == FaultReason.PASID_INVALID
    assert generic_reason(R.PASID_RESERVED) == generic_reason(R.PASID_INVALID) == \
        FaultReason.BAD_PASID_ENTRY
    assert generic_reason(R.PASID_DIR_ACCESS) == generic_reason(R.PASID_ACCESS) == \
        FaultReason.PASID_FETCH
    for r in (R.NO_WRITE, R.NO_READ, R.USER_NOT_ALLOWED, R.EXECUTE_DISABLED):
        assert generic_reason(r) == FaultReason.PERMISSION
    for r in (R.NON_CANONICAL, R.ADDRESS_BEYOND_MAX):
        assert generic_reason(r) == FaultReason.OOR_ADDRESS
    for r in (R.FL_ACCESS, R.SL_ACCESS):
        assert generic_reason(r) == FaultReason.WALK_EABT


def test_uapi_fault_record() -> None:
    f = to_uapi_fault(VtdFault(R.NO_WRITE, 0x310, 7, 0x1234, access=FaultPerm.WRITE))
    assert f.type == FaultType.DMA_UNRECOV
    assert f.event.reason == FaultReason.PERMISSION and f.event.pasid == 7
    assert f.event.flags == UnrecoverableFlags.PASID_VALID | UnrecoverableFlags.ADDR_VALID
    assert f.event.perm == FaultPerm.WRITE and f.event.addr == 0x1234
    g = to_uapi_fault(VtdFault(R.NO_READ, 0x310, None, 0x2000))
    assert g.event.flags == UnrecoverableFlags.ADDR_VALID and g.event.pasid == 0
    assert len(f.to_bytes()) == 64
    assert Frcd.from_int(0).F is False

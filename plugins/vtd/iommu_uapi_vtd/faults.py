"""Primary fault recording (VT-d 3.x 7.2): the FRCD registers, FSTS/FECTL, and what a
scalable-mode fault reason becomes in the generic UAPI fault record.

:class:`FaultRecorder` writes a :class:`~.reasons.VtdFault` into the FRCD slot at its index
(CAP.NFR + 1 slots, used round-robin): F set, FSTS.PPF set, FSTS.FRI naming the oldest pending
record, a fault event raised through FECTL. A slot still pending when its turn comes sets
FSTS.PFO and the fault is lost. A set fault-processing-disable bit (context, PASID directory or
PASID entry) suppresses recording of *qualified* faults only: faults met before the hardware
could read an FPD bit it can trust (root/context/PASID-table access errors, root faults,
reserved context bits) are always recorded.
"""

from __future__ import annotations

import errno

from iommu_uapi.errors import UAPIError
from iommu_uapi.uapi.consts import FaultPerm, FaultReason, FaultType, UnrecoverableFlags
from iommu_uapi.uapi.fault import Fault, FaultUnrecoverable

from .bits import Field, Record, bit
from .reasons import SmFaultReason, VtdFault
from .registers import VtdConfig
from .status import StatusRegisters

__all__ = [
    "GENERIC_REASON",
    "NON_QUALIFIED",
    "FaultRecorder",
    "Frcd",
    "generic_reason",
    "to_uapi_fault",
]

R = SmFaultReason
G = FaultReason


class Frcd(Record, frozen=True, gc=False):
    """A fault recording register (128 bits)."""

    BITS = 128
    LAYOUT = {
        "FI": Field(12, 52, 12),    # page address of the faulting request
        "SID": Field(64, 16),       # requester id
        "T2": bit(92),              # second type bit (newer spec text; 0 here)
        "PRIV": bit(93),            # privileged (supervisor) request
        "EXE": bit(94),             # execute request
        "PP": bit(95),              # PASID present
        "FR": Field(96, 8),         # fault reason
        "PV": Field(104, 20),       # PASID value
        "AT": Field(124, 2),        # address type
        "T": bit(126),              # 0 write, 1 read
        "F": bit(127),              # fault pending (RW1C)
    }
    FI: int = 0
    SID: int = 0
    T2: bool = False
    PRIV: bool = False
    EXE: bool = False
    PP: bool = False
    FR: int = 0
    PV: int = 0
    AT: int = 0
    T: bool = False
    F: bool = False


#: Faults recorded whatever FPD says (the QEMU model of qualification, hw-formats 1.10).
NON_QUALIFIED: frozenset[SmFaultReason] = frozenset({
    R.RTADDR_INVALID, R.PASID_IN_LEGACY, R.PAGE_REQ_IN_LEGACY,
    R.ROOT_ACCESS, R.ROOT_NOT_PRESENT, R.ROOT_RESERVED,
    R.CONTEXT_ACCESS, R.CONTEXT_RESERVED,
    R.PASID_DIR_ACCESS, R.PASID_ACCESS,
})

#: The generic ``iommu_fault_reason`` reported to user space for each scalable-mode reason.
#:
#: Less obvious choices:
#: * Root/context problems (0x30-0x44, 0x47) are host configuration the guest never sees; no
#:   generic reason describes them, so UNKNOWN.
#: * PASIDE clear, PASID beyond PDTS, RID_PASID unusable, directory entry or PASID entry not
#:   present (0x45, 0x46, 0x48, 0x51, 0x59): the PASID is "out of range or disabled" -
#:   PASID_INVALID.
#: * Reserved bits and bad programming of directory/PASID entries (0x52, 0x5A, 0x5B) and an
#:   invalid SLPTPTR (0x7B, a PASID-entry field): BAD_PASID_ENTRY.
#: * ERE/SRE clear (0x5C/0x5D) refuse the request's kind of access: PERMISSION. Second-level
#:   refusals while walking first-level tables (0x75-0x77, 0x79) are permission checks too.
#: * Not-present and reserved paging entries (0x71, 0x72, 0x7A): the walk found no usable
#:   translation - PTE_FETCH; memory errors fetching paging entries (0x70, 0x73, 0x78):
#:   WALK_EABT.
#: * Addresses beyond a width (0x74, 0x80, 0x83, 0x84): OOR_ADDRESS; the interrupt range
#:   (0x87) is refused like a permission.
#: * A/D updates that cannot be made (0x7C, 0x90, 0x91): ACCESS ("access flag check failed").
GENERIC_REASON: dict[SmFaultReason, FaultReason] = {
    R.RTADDR_INVALID: G.UNKNOWN, R.PASID_IN_LEGACY: G.UNKNOWN, R.PAGE_REQ_IN_LEGACY: G.UNKNOWN,
    R.ROOT_ACCESS: G.UNKNOWN, R.ROOT_NOT_PRESENT: G.UNKNOWN, R.ROOT_RESERVED: G.UNKNOWN,
    R.CONTEXT_ACCESS: G.UNKNOWN, R.CONTEXT_NOT_PRESENT: G.UNKNOWN,
    R.CONTEXT_RESERVED: G.UNKNOWN, R.CONTEXT_INVALID: G.UNKNOWN, R.DTE_CLEAR: G.UNKNOWN,
    R.PASIDE_CLEAR: G.PASID_INVALID, R.PASID_BEYOND_PDTS: G.PASID_INVALID,
    R.PRE_CLEAR: G.UNKNOWN, R.RID_PASID_INVALID: G.PASID_INVALID,
    R.PASID_DIR_ACCESS: G.PASID_FETCH, R.PASID_DIR_NOT_PRESENT: G.PASID_INVALID,
    R.PASID_DIR_RESERVED: G.BAD_PASID_ENTRY,
    R.PASID_ACCESS: G.PASID_FETCH, R.PASID_NOT_PRESENT: G.PASID_INVALID,
    R.PASID_RESERVED: G.BAD_PASID_ENTRY, R.PASID_INVALID: G.BAD_PASID_ENTRY,
    R.ERE_CLEAR: G.PERMISSION, R.SRE_CLEAR: G.PERMISSION,
    R.FL_ACCESS: G.WALK_EABT, R.FL_NOT_PRESENT: G.PTE_FETCH, R.FL_RESERVED: G.PTE_FETCH,
    R.NESTED_FLPTPTR: G.WALK_EABT, R.NESTED_FL_TABLE_OOR: G.OOR_ADDRESS,
    R.NESTED_FL_ROOT_READ: G.PERMISSION, R.NESTED_FL_TABLE_READ: G.PERMISSION,
    R.NESTED_FL_AD_WRITE: G.PERMISSION,
    R.SL_ACCESS: G.WALK_EABT, R.SL_PERMISSION: G.PERMISSION, R.SL_RESERVED: G.PTE_FETCH,
    R.SLPTPTR_INVALID: G.BAD_PASID_ENTRY, R.SL_AD_NO_SNOOP: G.ACCESS,
    R.NON_CANONICAL: G.OOR_ADDRESS, R.USER_NOT_ALLOWED: G.PERMISSION,
    R.EXECUTE_DISABLED: G.PERMISSION, R.ADDRESS_BEYOND_MAX: G.OOR_ADDRESS,
    R.SL_ADDRESS_BEYOND_MAX: G.OOR_ADDRESS, R.NO_WRITE: G.PERMISSION, R.NO_READ: G.PERMISSION,
    R.INTERRUPT_RANGE: G.PERMISSION, R.FL_AD_NO_SNOOP: G.ACCESS, R.AD_UPDATE_FAILED: G.ACCESS,
}


def generic_reason(reason: SmFaultReason) -> FaultReason:
    """The ``iommu_fault_reason`` reported for scalable-mode fault ``reason``."""
    return GENERIC_REASON[reason]


def to_uapi_fault(fault: VtdFault) -> Fault:
    """The unrecoverable ``iommu_fault`` record describing ``fault``."""
    flags = UnrecoverableFlags.ADDR_VALID
    if fault.pasid is not None:
        flags |= UnrecoverableFlags.PASID_VALID
    event = FaultUnrecoverable(reason=generic_reason(fault.reason), flags=flags,
                               pasid=fault.pasid or 0, perm=int(fault.access), addr=fault.addr)
    return Fault(type=FaultType.DMA_UNRECOV, event=event)


def frcd_of(fault: VtdFault) -> Frcd:
    """The pending fault record hardware writes for ``fault``."""
    return Frcd(
        FI=fault.addr & ~0xFFF & ((1 << 64) - 1), SID=fault.sid,
        PRIV=bool(fault.access & FaultPerm.PRIV), EXE=bool(fault.access & FaultPerm.EXEC),
        PP=fault.pasid is not None, FR=fault.reason, PV=fault.pasid or 0, AT=fault.at,
        T=not fault.access & FaultPerm.WRITE, F=True,
    )


class FaultRecorder:
    """The FRCD registers of one IOMMU with the FSTS/FECTL bits they drive."""

    cfg: VtdConfig
    status: StatusRegisters
    slots: list[int]
    index: int
    recorded: int
    suppressed: int
    lost: int

    def __init__(self, cfg: VtdConfig, status: StatusRegisters | None = None) -> None:
        self.cfg = cfg
        self.status = status if status is not None else StatusRegisters()
        self.slots = [0] * cfg.fault_records
        self.index = 0
        self._pending: list[int] = []
        self.recorded = self.suppressed = self.lost = 0

    def record(self, fault: VtdFault) -> bool:
        """Record ``fault`` as hardware does; True when it was written into an FRCD.

        Suppressed (False) when an FPD bit applies and the fault is qualified; lost (False,
        FSTS.PFO set) when the slot at the index is still pending.
        """
        if fault.fpd and fault.reason not in NON_QUALIFIED:
            self.suppressed += 1
            return False
        if Frcd.LAYOUT["F"].get(self.slots[self.index]):
            self.status.fsts_set("PFO")
            self.lost += 1
            return False
        self.slots[self.index] = frcd_of(fault).to_int()
        self._pending.append(self.index)
        self.index = (self.index + 1) % len(self.slots)
        self.recorded += 1
        self._update_fsts()
        self.status.raise_fault_event()
        return True

    def _update_fsts(self) -> None:
        self.status.fsts_set("PPF", bool(self._pending))
        self.status.fsts_set("FRI", self._pending[0] if self._pending else 0)

    def read(self, i: int) -> Frcd:
        """FRCD ``i`` as named fields."""
        return Frcd.from_int(self.slots[self._slot(i)])

    def _slot(self, i: int) -> int:
        if not isinstance(i, int) or not 0 <= i < len(self.slots):
            raise UAPIError(errno.EINVAL, f"FRCD index {i!r} not in 0..{len(self.slots) - 1}",
                            rule="vtd.frcd-index")
        return i

    def clear(self, i: int) -> None:
        """Software writes 1 to FRCD[i].F: the record is consumed and the slot free again."""
        i = self._slot(i)
        self.slots[i] &= ~Frcd.LAYOUT["F"].mask
        if i in self._pending:
            self._pending.remove(i)
        self._update_fsts()

    def pending(self) -> list[Frcd]:
        """The pending records, oldest first."""
        return [Frcd.from_int(self.slots[i]) for i in self._pending]

"""Scalable-mode fault reason codes (VT-d 3.x section 7.1.3) and the fault the model raises.

:class:`SmFaultReason` names every code the model produces; :class:`VtdFault` is what a hardware
lookup or walk raises: the reason code plus what a fault-recording register records (source id,
PASID, input address, access, address type) and whether a fault-processing-disable bit on the
path applies to it.
"""

from __future__ import annotations

from enum import IntEnum

from iommu_uapi.uapi.consts import FaultPerm

__all__ = ["AddressType", "SmFaultReason", "VtdFault"]


class SmFaultReason(IntEnum):
    """The scalable-mode fault reason (FRCD.FR)."""

    RTADDR_INVALID = 0x30          # RTADDR/TTM invalid (scalable mode without SMTS)
    PASID_IN_LEGACY = 0x31         # request with PASID while TTM = legacy
    PAGE_REQ_IN_LEGACY = 0x32      # page request while TTM = legacy
    ROOT_ACCESS = 0x38             # error reading the root entry
    ROOT_NOT_PRESENT = 0x39        # LP/UP clear
    ROOT_RESERVED = 0x3A           # root entry reserved bit set
    CONTEXT_ACCESS = 0x40          # error reading the context entry
    CONTEXT_NOT_PRESENT = 0x41     # context P clear
    CONTEXT_RESERVED = 0x42        # context entry reserved bit set
    CONTEXT_INVALID = 0x43         # inconsistent context programming
    DTE_CLEAR = 0x44               # ATS translation/translated request with DTE = 0
    PASIDE_CLEAR = 0x45            # request with PASID while PASIDE = 0
    PASID_BEYOND_PDTS = 0x46       # directory index >= 2^(PDTS + 7)
    PRE_CLEAR = 0x47               # page request while PRE = 0
    RID_PASID_INVALID = 0x48       # RID_PASID unusable for a request without PASID
    PASID_DIR_ACCESS = 0x50        # error reading the PASID directory entry
    PASID_DIR_NOT_PRESENT = 0x51   # directory entry P clear
    PASID_DIR_RESERVED = 0x52      # directory entry reserved bit set
    PASID_ACCESS = 0x58            # error reading the PASID entry
    PASID_NOT_PRESENT = 0x59       # PASID entry P clear
    PASID_RESERVED = 0x5A          # PASID entry reserved bit set
    PASID_INVALID = 0x5B           # PASID entry invalid programming (PGTT, AW, FLPM)
    ERE_CLEAR = 0x5C               # execute request while ERE = 0
    SRE_CLEAR = 0x5D               # supervisor request while SRE = 0
    FL_ACCESS = 0x70               # error reading a first-level entry
    FL_NOT_PRESENT = 0x71          # first-level entry P clear
    FL_RESERVED = 0x72             # first-level entry reserved bit set
    NESTED_FLPTPTR = 0x73          # second-level walk of FLPTPTR failed
    NESTED_FL_TABLE_OOR = 0x74     # FL table address translated beyond MGAW
    NESTED_FL_ROOT_READ = 0x75     # second level denies reading the FL root table
    NESTED_FL_TABLE_READ = 0x76    # second level denies reading another FL table
    NESTED_FL_AD_WRITE = 0x77      # second level denies the write of an FL A/D update
    SL_ACCESS = 0x78               # error reading a second-level entry
    SL_PERMISSION = 0x79           # second-level R/W permission error
    SL_RESERVED = 0x7A             # second-level entry reserved bit set
    SLPTPTR_INVALID = 0x7B         # SLPTPTR invalid
    SL_AD_NO_SNOOP = 0x7C          # second-level A/D update in no-snoop set-up
    NON_CANONICAL = 0x80           # first-level input address not canonical
    USER_NOT_ALLOWED = 0x81        # user request, U/S = 0
    EXECUTE_DISABLED = 0x82        # execute request, XD = 1
    ADDRESS_BEYOND_MAX = 0x83      # input address beyond the AW/MGAW limit
    SL_ADDRESS_BEYOND_MAX = 0x84   # second-level entry address beyond the maximum
    NO_WRITE = 0x85                # write (or atomic) not permitted
    NO_READ = 0x86                 # read (or atomic) not permitted
    INTERRUPT_RANGE = 0x87         # request targets the interrupt address range
    FL_AD_NO_SNOOP = 0x90          # first-level A/D update in no-snoop set-up
    AD_UPDATE_FAILED = 0x91        # A/D update failed


class AddressType(IntEnum):
    """FRCD.AT: the address type of the faulting request."""

    UNTRANSLATED = 0
    TRANSLATION_REQUEST = 1
    TRANSLATED = 2


class VtdFault(Exception):
    """A DMA request faulted: ``reason`` plus what FRCD records.

    ``pasid`` is ``None`` for a request without PASID. ``fpd`` is True when a fault-processing-
    disable bit of an entry on the request's path (context, PASID directory, PASID entry) was set;
    it suppresses recording of *qualified* faults only (see :mod:`.faults`).
    """

    reason: SmFaultReason
    sid: int
    pasid: int | None
    addr: int
    access: FaultPerm
    at: AddressType
    fpd: bool

    def __init__(self, reason: SmFaultReason, sid: int, pasid: int | None = None, addr: int = 0,
                 *, access: FaultPerm = FaultPerm.READ, at: AddressType = AddressType.UNTRANSLATED,
                 fpd: bool = False) -> None:
        self.reason = SmFaultReason(reason)
        self.sid = sid
        self.pasid = pasid
        self.addr = addr
        self.access = FaultPerm(access)
        self.at = at
        self.fpd = fpd
        where = "" if pasid is None else f" pasid {pasid:#x}"
        super().__init__(f"VT-d fault {self.reason.value:#04x} ({self.reason.name}) sid "
                         f"{sid:#06x}{where} addr {addr:#x}")

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self.reason, self.sid, self.pasid, self.addr, self.access, self.at,
                           self.fpd))


def _rebuild(reason: SmFaultReason, sid: int, pasid: int | None, addr: int, access: FaultPerm,
             at: AddressType, fpd: bool) -> VtdFault:
    return VtdFault(reason, sid, pasid, addr, access=access, at=at, fpd=fpd)

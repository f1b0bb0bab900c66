"""The command-queue entry (16 bytes) as a record: opcodes, the fields several commands share,
and the errors the queue reports.

Each command is a :class:`Command` record whose opcode is its fixed part and whose ``LAYOUT``
names its fields at absolute bit positions of the 128-bit entry ("w0" = bits 63:0, "w1" =
bits 127:64); the per-opcode layouts are in :mod:`.cmds`.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, ClassVar

from iommu_uapi.hw.bits import Field, bit
from iommu_uapi.iommufd.arm_smmuv3 import VCMD_FIELDS

from .idr import SmmuCaps
from .record import SmmuRecord

__all__ = [
    "CMD_SIZE",
    "F_ADDR",
    "F_ASID",
    "F_LEAF",
    "F_NUM",
    "F_SCALE",
    "F_SID",
    "F_SSEC",
    "F_SSID",
    "F_SSV",
    "F_TG",
    "F_TTL",
    "F_VMID",
    "OPCODE",
    "RANGE_FIELDS",
    "CError",
    "Command",
    "CommandError",
    "Opcode",
    "PriRespCode",
    "SyncCs",
    "shared_layout",
]

CMD_SIZE = 16
OPCODE = Field(0, 8)

class Opcode(IntEnum):
    """Command opcodes (bits 7:0). CFGI_ALL is CFGI_STE_RANGE with Range = 31."""

    PREFETCH_CONFIG = 0x01
    PREFETCH_ADDR = 0x02
    CFGI_STE = 0x03
    CFGI_STE_RANGE = 0x04
    CFGI_CD = 0x05
    CFGI_CD_ALL = 0x06
    CFGI_VMS_PIDM = 0x07
    TLBI_NH_ALL = 0x10
    TLBI_NH_ASID = 0x11
    TLBI_NH_VA = 0x12
    TLBI_NH_VAA = 0x13
    TLBI_EL3_ALL = 0x18
    TLBI_EL3_VA = 0x1A
    TLBI_EL2_ALL = 0x20
    TLBI_EL2_ASID = 0x21
    TLBI_EL2_VA = 0x22
    TLBI_EL2_VAA = 0x23
    TLBI_S12_VMALL = 0x28
    TLBI_S2_IPA = 0x2A
    TLBI_NSNH_ALL = 0x30
    ATC_INV = 0x40
    PRI_RESP = 0x41
    RESUME = 0x44
    STALL_TERM = 0x45
    SYNC = 0x46


class CError(IntEnum):
    """CMDQ_CONS.ERR: why the command queue stopped."""

    NONE = 0
    ILL = 1
    ABT = 2
    ATC_INV_SYNC = 3


class SyncCs(IntEnum):
    """CMD_SYNC.CS: completion signal (0b11 reserved)."""

    NONE = 0b00
    IRQ = 0b01
    SEV = 0b10


class PriRespCode(IntEnum):
    """CMD_PRI_RESP.Resp (0b11 reserved)."""

    FAILURE = 0b00
    INVALID = 0b01
    SUCCESS = 0b10


class CommandError(Exception):
    """A command the SMMU refuses: ``cerror`` is what CMDQ_CONS.ERR reports."""

    def __init__(self, cerror: CError, message: str) -> None:
        super().__init__(message)
        self.cerror = cerror


#: Fields shared by several layouts, each named once: those a guest's commands may carry where
#: iommufd's uAPI names them, SSec (the Secure world's, no guest's) here.
F_SSEC = bit(10)
F_SSV, F_SSID, F_SID = VCMD_FIELDS["SSV"], VCMD_FIELDS["SSID"], VCMD_FIELDS["SID"]
F_NUM, F_SCALE, F_VMID, F_ASID = (VCMD_FIELDS["NUM"], VCMD_FIELDS["SCALE"], VCMD_FIELDS["VMID"],
                                  VCMD_FIELDS["ASID"])
F_LEAF, F_TTL, F_TG, F_ADDR = (VCMD_FIELDS["Leaf"], VCMD_FIELDS["TTL"], VCMD_FIELDS["TG"],
                               VCMD_FIELDS["Addr"])
RANGE_FIELDS = {"NUM": F_NUM, "SCALE": F_SCALE, "TTL": F_TTL, "TG": F_TG}


class Command(SmmuRecord, frozen=True, gc=False):
    """A 128-bit command; ``OPCODE`` is its fixed part (``FIXED``)."""

    BITS = 128
    OPCODE: ClassVar[Opcode]
    #: The capability the command needs (an :class:`SmmuCaps` attribute), else CERROR_ILL.
    NEEDS: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if "OPCODE" in cls.__dict__:
            cls.FIXED = OPCODE.put(cls.OPCODE)  # before the base counts FIXED as defined
        super().__init_subclass__(**kwargs)

    def illegal(self, caps: SmmuCaps) -> str | None:
        """Why this command's field values are illegal beyond RES0 bits (None: legal)."""
        return None


def shared_layout(*names: str, **extra: Field) -> dict[str, Field]:
    """A layout made of the shared fields ``names`` (by their field names) plus ``extra``."""
    common = {"SSec": F_SSEC, "SSV": F_SSV, "SSID": F_SSID, "SID": F_SID, "VMID": F_VMID,
              "ASID": F_ASID, "NUM": F_NUM, "SCALE": F_SCALE, "Leaf": F_LEAF, "TTL": F_TTL,
              "TG": F_TG, "Addr": F_ADDR}
    return {**{n: common[n] for n in names}, **extra}

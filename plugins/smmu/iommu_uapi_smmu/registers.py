"""SMMUv3 control registers: offsets, the fields software programs, and the register file.

Page 0 holds the ID, control, table and queue-base registers; page 1 (base + 64 KiB) holds the
event and PRI queue producer/consumer indices. :class:`RegisterFile` keeps what software wrote,
masked to the bits the capability set implements: CR0ACK/IRQ_CTRLACK follow CR0/IRQ_CTRL once a
write took effect, GBPA.UPDATE reads back as 0 (the update is complete), GERROR is only changed by
the SMMU, the ID registers are read-only.
"""

from __future__ import annotations

import errno
from enum import IntEnum, IntFlag

from iommu_uapi.errors import UAPIError
from iommu_uapi.hw.bits import Field, bit

from .idr import SmmuCaps, id_registers
from .record import SmmuRecord

__all__ = [
    "PAGE1",
    "Cr0",
    "Cr1",
    "Cr2",
    "Gbpa",
    "Gerror",
    "QueueBase",
    "Reg",
    "RegisterFile",
    "StrtabBase",
    "StrtabBaseCfg",
    "StrtabFmt",
]

#: Offset of page 1 in the register space.
PAGE1 = 0x1_0000


class Reg(IntEnum):
    """Register offsets (page-1 registers include :data:`PAGE1`)."""

    IDR0 = 0x00
    IDR1 = 0x04
    IDR2 = 0x08
    IDR3 = 0x0C
    IDR4 = 0x10
    IDR5 = 0x14
    IIDR = 0x18
    AIDR = 0x1C
    CR0 = 0x20
    CR0ACK = 0x24
    CR1 = 0x28
    CR2 = 0x2C
    STATUSR = 0x40
    GBPA = 0x44
    AGBPA = 0x48
    IRQ_CTRL = 0x50
    IRQ_CTRLACK = 0x54
    GERROR = 0x60
    GERRORN = 0x64
    GERROR_IRQ_CFG0 = 0x68
    GERROR_IRQ_CFG1 = 0x70
    GERROR_IRQ_CFG2 = 0x74
    STRTAB_BASE = 0x80
    STRTAB_BASE_CFG = 0x88
    CMDQ_BASE = 0x90
    CMDQ_PROD = 0x98
    CMDQ_CONS = 0x9C
    EVENTQ_BASE = 0xA0
    EVENTQ_IRQ_CFG0 = 0xB0
    EVENTQ_IRQ_CFG1 = 0xB8
    EVENTQ_IRQ_CFG2 = 0xBC
    PRIQ_BASE = 0xC0
    PRIQ_IRQ_CFG0 = 0xD0
    PRIQ_IRQ_CFG1 = 0xD8
    PRIQ_IRQ_CFG2 = 0xDC
    EVENTQ_PROD = PAGE1 + 0xA8
    EVENTQ_CONS = PAGE1 + 0xAC
    PRIQ_PROD = PAGE1 + 0xC8
    PRIQ_CONS = PAGE1 + 0xCC


#: offset -> register (an enum call costs what a dictionary lookup does not)
_BY_OFFSET: dict[int, Reg] = {int(r): r for r in Reg}


class Cr0(SmmuRecord, frozen=True, gc=False):
    """SMMU_CR0: enables (mirrored in CR0ACK once effective) and the VMID wildcard."""

    BITS = 32
    LAYOUT = {"SMMUEN": bit(0), "PRIQEN": bit(1), "EVENTQEN": bit(2), "CMDQEN": bit(3),
              "ATSCHK": bit(4), "VMW": Field(6, 3)}
    SMMUEN: bool = False
    PRIQEN: bool = False
    EVENTQEN: bool = False
    CMDQEN: bool = False
    ATSCHK: bool = False
    VMW: int = 0


class Cr1(SmmuRecord, frozen=True, gc=False):
    """SMMU_CR1: cacheability and shareability of queue and table accesses."""

    BITS = 32
    LAYOUT = {"QUEUE_IC": Field(0, 2), "QUEUE_OC": Field(2, 2), "QUEUE_SH": Field(4, 2),
              "TABLE_IC": Field(6, 2), "TABLE_OC": Field(8, 2), "TABLE_SH": Field(10, 2)}
    QUEUE_IC: int = 0
    QUEUE_OC: int = 0
    QUEUE_SH: int = 0
    TABLE_IC: int = 0
    TABLE_OC: int = 0
    TABLE_SH: int = 0


class Cr2(SmmuRecord, frozen=True, gc=False):
    """SMMU_CR2: E2H, RECINVSID (record C_BAD_STREAMID), PTM (private TLB maintenance)."""

    BITS = 32
    LAYOUT = {"E2H": bit(0), "RECINVSID": bit(1), "PTM": bit(2)}
    E2H: bool = False
    RECINVSID: bool = False
    PTM: bool = False


class Gbpa(SmmuRecord, frozen=True, gc=False):
    """SMMU_GBPA: what incoming traffic does while SMMUEN = 0 (ABORT, or bypass with these
    attribute overrides)."""

    BITS = 32
    LAYOUT = {"MemAttr": Field(0, 4), "MTCFG": bit(4), "ALLOCCFG": Field(8, 4),
              "SHCFG": Field(12, 2), "PRIVCFG": Field(16, 2), "INSTCFG": Field(18, 2),
              "ABORT": bit(20), "UPDATE": bit(31)}
    MemAttr: int = 0
    MTCFG: bool = False
    ALLOCCFG: int = 0
    SHCFG: int = 0
    PRIVCFG: int = 0
    INSTCFG: int = 0
    ABORT: bool = False
    UPDATE: bool = False


class Gerror(IntFlag):
    """SMMU_GERROR / GERRORN bits: an error is active while the two registers differ in it."""

    CMDQ_ERR = 1 << 0
    EVTQ_ABT_ERR = 1 << 2
    PRIQ_ABT_ERR = 1 << 3
    MSI_CMDQ_ABT_ERR = 1 << 4
    MSI_EVTQ_ABT_ERR = 1 << 5
    MSI_PRIQ_ABT_ERR = 1 << 6
    MSI_GERROR_ABT_ERR = 1 << 7
    SFM_ERR = 1 << 8


class StrtabFmt(IntEnum):
    """STRTAB_BASE_CFG.FMT."""

    LINEAR = 0
    TWO_LEVEL = 1


class StrtabBase(SmmuRecord, frozen=True, gc=False):
    """SMMU_STRTAB_BASE (64-bit): read-allocate hint and the table's address (bits 51:6)."""

    LAYOUT = {"ADDR": Field(6, 46, 6), "RA": bit(62)}
    ADDR: int = 0
    RA: bool = False


class StrtabBaseCfg(SmmuRecord, frozen=True, gc=False):
    """SMMU_STRTAB_BASE_CFG: log2 of the StreamIDs covered, the two-level split and format."""

    BITS = 32
    LAYOUT = {"LOG2SIZE": Field(0, 6), "SPLIT": Field(6, 5), "FMT": Field(16, 2)}
    LOG2SIZE: int = 0
    SPLIT: int = 0
    FMT: int = 0


class QueueBase(SmmuRecord, frozen=True, gc=False):
    """SMMU_CMDQ_BASE / EVENTQ_BASE / PRIQ_BASE: log2 of the entries, the queue's address
    (bits 51:5) and the read- (command) or write-allocate (event, PRI) hint at bit 62."""

    LAYOUT = {"LOG2SIZE": Field(0, 5), "ADDR": Field(5, 47, 5), "ALLOC": bit(62)}
    LOG2SIZE: int = 0
    ADDR: int = 0
    ALLOC: bool = False


#: CMDQ_CONS.ERR and the overflow flags of the event/PRI PROD (OVFLG) and CONS (OVACKFLG).
CMDQ_CONS_ERR = Field(24, 7)
QUEUE_OVERFLOW = bit(31)


def _writable(caps: SmmuCaps) -> dict[int, int]:
    cr0 = Cr0.defined_mask() & ~(Cr0.LAYOUT["VMW"].mask if not caps.vmw else 0)
    cr2 = Cr2.defined_mask() & ~(Cr2.LAYOUT["E2H"].mask if not caps.hyp else 0)
    if not caps.pri:
        cr0 &= ~Cr0.LAYOUT["PRIQEN"].mask
    qptr = (2 << 19) - 1  # index and wrap of the largest queue
    irq = 0b111 if caps.pri else 0b101
    return {
        Reg.CR0: cr0, Reg.CR1: Cr1.defined_mask(), Reg.CR2: cr2,
        Reg.GBPA: Gbpa.defined_mask(), Reg.IRQ_CTRL: irq,
        Reg.GERRORN: int(sum(Gerror)),
        Reg.GERROR_IRQ_CFG0: ((1 << 52) - 1) & ~3, Reg.GERROR_IRQ_CFG1: 0xFFFF_FFFF,
        Reg.GERROR_IRQ_CFG2: 0x3F,
        Reg.STRTAB_BASE: StrtabBase.defined_mask(),
        Reg.STRTAB_BASE_CFG: StrtabBaseCfg.defined_mask(),
        Reg.CMDQ_BASE: QueueBase.defined_mask(), Reg.CMDQ_PROD: qptr, Reg.CMDQ_CONS: qptr,
        Reg.EVENTQ_BASE: QueueBase.defined_mask(),
        Reg.EVENTQ_PROD: qptr, Reg.EVENTQ_CONS: qptr | QUEUE_OVERFLOW.mask,
        Reg.EVENTQ_IRQ_CFG0: ((1 << 52) - 1) & ~3, Reg.EVENTQ_IRQ_CFG1: 0xFFFF_FFFF,
        Reg.EVENTQ_IRQ_CFG2: 0x3F,
        **({Reg.PRIQ_BASE: QueueBase.defined_mask(), Reg.PRIQ_PROD: qptr,
            Reg.PRIQ_CONS: qptr | QUEUE_OVERFLOW.mask,
            Reg.PRIQ_IRQ_CFG0: ((1 << 52) - 1) & ~3, Reg.PRIQ_IRQ_CFG1: 0xFFFF_FFFF,
            Reg.PRIQ_IRQ_CFG2: 0x3F} if caps.pri else {}),
    }



class RegisterFile:
    """The SMMU's registers as software sees them through MMIO."""

    def __init__(self, caps: SmmuCaps) -> None:
        self.caps = caps
        self._writable = _writable(caps)
        self._values: dict[int, int] = dict.fromkeys(Reg, 0)
        ids = id_registers(caps)
        for name, value in ids._asdict().items():
            self._values[Reg[name.upper()]] = value

    def read(self, offset: int) -> int:
        """The register at ``offset`` (``UAPIError(EINVAL)`` for an offset no register has)."""
        reg = _BY_OFFSET.get(offset)
        if reg is not None:
            return self._values[reg]
        try:
            return self._values[Reg(offset)]
        except ValueError:
            raise UAPIError(errno.EINVAL, f"SMMU register offset {offset:#x} is not "
                            "implemented", rule="smmu.register") from None

    def write(self, offset: int, value: int) -> None:
        """Software writes ``value`` to the register at ``offset``: read-only registers and
        unimplemented bits ignore it (the architecture's RO/RES0 behaviour). The queue indices
        are the rings' (:mod:`.queues`), which rewrite them after every write."""
        reg = _BY_OFFSET.get(offset)
        if reg is None:
            try:
                reg = Reg(offset)
            except ValueError:
                raise UAPIError(errno.EINVAL, f"SMMU register offset {offset:#x} is not "
                                "implemented", rule="smmu.register") from None
        mask = self._writable.get(reg)
        if mask is None:
            return
        self._values[reg] = value & mask
        if reg is Reg.CR0:
            self._values[Reg.CR0ACK] = value & mask
        elif reg is Reg.IRQ_CTRL:
            self._values[Reg.IRQ_CTRLACK] = value & mask
        elif reg is Reg.GBPA:
            self._values[Reg.GBPA] = value & mask & ~Gbpa.LAYOUT["UPDATE"].mask

    def value(self, reg: Reg) -> int:
        """The register ``reg`` (a :class:`Reg`: no offset check, for the SMMU's own reads on
        the data path)."""
        return self._values[reg]

    # -- what the SMMU itself changes ---------------------------------------------------------

    def set(self, reg: Reg, value: int) -> None:
        """The SMMU updates one of its registers (CMDQ_CONS, EVENTQ_PROD, GERROR, ...)."""
        self._values[reg] = value

    def toggle_gerror(self, bits: Gerror) -> None:
        """Raise global errors ``bits``: GERROR toggles them so they differ from GERRORN."""
        self._values[Reg.GERROR] ^= int(bits)

    def active_gerrors(self) -> Gerror:
        """The global errors software has not acknowledged yet (GERROR xor GERRORN)."""
        return Gerror(self._values[Reg.GERROR] ^ self._values[Reg.GERRORN])

    @property
    def cr0(self) -> Cr0:
        """CR0 as last written."""
        return Cr0.from_int(self._values[Reg.CR0])

    @property
    def cr2(self) -> Cr2:
        """CR2 as last written."""
        return Cr2.from_int(self._values[Reg.CR2])

    @property
    def gbpa(self) -> Gbpa:
        """GBPA as last written."""
        return Gbpa.from_int(self._values[Reg.GBPA])

    @property
    def strtab_base(self) -> StrtabBase:
        """STRTAB_BASE as last written."""
        return StrtabBase.from_int(self._values[Reg.STRTAB_BASE])

    @property
    def strtab_base_cfg(self) -> StrtabBaseCfg:
        """STRTAB_BASE_CFG as last written."""
        return StrtabBaseCfg.from_int(self._values[Reg.STRTAB_BASE_CFG])

"""Interrupts: the event queue, the PRI queue and global errors signal software.

IRQ_CTRL enables each source (acknowledged in IRQ_CTRLACK). An enabled source is counted as a
wired interrupt and, when IDR0.MSI is implemented and its *_IRQ_CFG0 address is non-zero, is
also delivered as an MSI: the 32-bit *_IRQ_CFG1 data written at the CFG0 address (bits 51:2).
An MSI write outside memory raises the source's MSI abort bit in GERROR.
"""

from __future__ import annotations

from collections import Counter
from enum import IntFlag
from typing import NamedTuple

from iommu_uapi.errors import MemoryAccessError
from iommu_uapi.hw.bits import Field
from iommu_uapi.memory import PhysicalMemory

from .registers import Gerror, Reg, RegisterFile

__all__ = ["IRQ_SOURCES", "MSI_ADDR", "Interrupts", "IrqCtrl", "IrqSource"]


class IrqCtrl(IntFlag):
    """SMMU_IRQ_CTRL / IRQ_CTRLACK."""

    GERROR_IRQEN = 1 << 0
    PRIQ_IRQEN = 1 << 1
    EVENTQ_IRQEN = 1 << 2


class IrqSource(NamedTuple):
    """An interrupt source: its enable, MSI address and data registers, MSI abort bit."""

    enable: IrqCtrl
    cfg0: Reg
    cfg1: Reg
    msi_abort: Gerror


#: *_IRQ_CFG0: the MSI address, bits 51:2.
MSI_ADDR = Field(2, 50, 2)

IRQ_SOURCES = {
    "gerror": IrqSource(IrqCtrl.GERROR_IRQEN, Reg.GERROR_IRQ_CFG0, Reg.GERROR_IRQ_CFG1,
                        Gerror.MSI_GERROR_ABT_ERR),
    "eventq": IrqSource(IrqCtrl.EVENTQ_IRQEN, Reg.EVENTQ_IRQ_CFG0, Reg.EVENTQ_IRQ_CFG1,
                        Gerror.MSI_EVTQ_ABT_ERR),
    "priq": IrqSource(IrqCtrl.PRIQ_IRQEN, Reg.PRIQ_IRQ_CFG0, Reg.PRIQ_IRQ_CFG1,
                      Gerror.MSI_PRIQ_ABT_ERR),
}


class Interrupts:
    """The interrupts one SMMU has signalled: ``raised[source]`` counts them."""

    def __init__(self, regs: RegisterFile, mem: PhysicalMemory) -> None:
        self.regs = regs
        self.mem = mem
        self.raised: Counter[str] = Counter()

    def signal(self, name: str) -> bool:
        """Signal source ``name`` ("gerror", "eventq", "priq"); returns whether it was enabled.
        A global-error interrupt whose MSI fails raises no further interrupt."""
        source = IRQ_SOURCES[name]
        regs = self.regs
        if not regs.value(Reg.IRQ_CTRL) & source.enable:
            return False
        self.raised[name] += 1
        addr = MSI_ADDR.get(regs.value(source.cfg0))
        if regs.caps.msi and addr:
            try:
                self.mem.write32(addr, regs.value(source.cfg1))
            except MemoryAccessError:
                regs.toggle_gerror(source.msi_abort)
                if name != "gerror":
                    self.signal("gerror")
        return True

"""The event queue and the PRI queue in memory: the SMMU is their producer.

A queue of 2^LOG2SIZE entries (capped by IDR1.EVENTQS / PRIQS) at its BASE register's address;
PROD (owned by the SMMU, page 1) and CONS (owned by software) carry an index and a wrap flag
(:class:`~.registers.QueueIndex`). An entry is written only while the queue is enabled in CR0
and not full; when it is full the entry is lost and PROD.OVFLG is toggled, once per overflow
(while OVFLG = CONS.OVACKFLG). A write outside memory raises the queue's GERROR abort bit.
"""

from __future__ import annotations

from iommu_uapi.errors import MemoryAccessError
from iommu_uapi.hw.bits import Record
from iommu_uapi.memory import PhysicalMemory

from .registers import QUEUE_OVERFLOW, Cr0, Gerror, QueueBase, QueueIndex, Reg, RegisterFile

__all__ = ["EVENTQ", "PRIQ", "OutQueue"]


class OutQueue:
    """One SMMU-produced queue: its registers, entry size, enable bit and abort error."""

    def __init__(self, base: Reg, prod: Reg, cons: Reg, entry_size: int, enable: str,
                 abort: Gerror, caps_size: str) -> None:
        self.base, self.prod, self.cons = base, prod, cons
        self.entry_size = entry_size
        self.enable = enable
        self.abort = abort
        self.caps_size = caps_size

    def push(self, regs: RegisterFile, mem: PhysicalMemory, entry: Record) -> bool:
        """Write ``entry`` at PROD and advance it; False when the queue is disabled, full (the
        overflow flag toggled) or its memory unwritable (GERROR abort raised)."""
        if not Cr0.LAYOUT[self.enable].get(regs.read(Reg.CR0)):
            return False
        base = QueueBase.from_int(regs.read(self.base))
        q = QueueIndex(min(base.LOG2SIZE, getattr(regs.caps, self.caps_size)))
        prod, cons = regs.read(self.prod), regs.read(self.cons)
        if q.full(prod, cons):
            ovf = QUEUE_OVERFLOW
            if ovf.get(prod) == ovf.get(cons):
                regs.set(self.prod, prod ^ ovf.mask)
            return False
        try:
            mem.write(base.ADDR + q.index(prod) * self.entry_size, entry.to_bytes())
        except MemoryAccessError:
            regs.toggle_gerror(self.abort)
            return False
        regs.set(self.prod, q.advance(prod))
        return True


EVENTQ = OutQueue(Reg.EVENTQ_BASE, Reg.EVENTQ_PROD, Reg.EVENTQ_CONS, 32, "EVENTQEN",
                  Gerror.EVTQ_ABT_ERR, "eventqs")
PRIQ = OutQueue(Reg.PRIQ_BASE, Reg.PRIQ_PROD, Reg.PRIQ_CONS, 16, "PRIQEN",
                Gerror.PRIQ_ABT_ERR, "priqs")

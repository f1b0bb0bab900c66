"""The command, event and PRI queues as the core's rings, behind their registers.

Each queue is a :class:`~iommu_uapi.hw.ring.Ring` with SMMUv3 positions (index plus wrap flag,
:attr:`~iommu_uapi.hw.ring.IndexStyle.WRAP_BIT`) of 2^LOG2SIZE entries, LOG2SIZE capped by
IDR1.CMDQS / EVENTQS / PRIQS. Software owns the command queue's PROD and the event and PRI
queues' CONS (with OVACKFLG); the SMMU owns the others, which software may write only while the
queue is disabled in CR0. The rings hold the positions, the stop and the overflow condition;
:class:`Queues` keeps the PROD/CONS registers equal to them (CMDQ_CONS.ERR, PROD.OVFLG,
CONS.OVACKFLG included). An entry the SMMU cannot write raises the queue's GERROR abort bit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from iommu_uapi.errors import MemoryAccessError
from iommu_uapi.hw.bits import Record
from iommu_uapi.hw.ring import IndexStyle, Ring
from iommu_uapi.memory import PhysicalMemory

from .cmd_layout import CMD_SIZE
from .events import EVENT_SIZE
from .pri import PRI_ENTRY_SIZE
from .registers import CMDQ_CONS_ERR, QUEUE_OVERFLOW, Cr0, Gerror, QueueBase, Reg, RegisterFile

__all__ = ["CMDQ", "EVENTQ", "PRIQ", "QueueSpec", "Queues"]


class QueueSpec(NamedTuple):
    """One queue's registers, entry size, CR0 enable, GERROR abort bit and IDR1 size cap, and
    whether the SMMU produces it (event, PRI) or consumes it (command)."""

    base: Reg
    prod: Reg
    cons: Reg
    entry_size: int
    enable: str
    abort: Gerror
    cap: str
    smmu_produces: bool


CMDQ = QueueSpec(Reg.CMDQ_BASE, Reg.CMDQ_PROD, Reg.CMDQ_CONS, CMD_SIZE, "CMDQEN",
                 Gerror.CMDQ_ERR, "cmdqs", False)
EVENTQ = QueueSpec(Reg.EVENTQ_BASE, Reg.EVENTQ_PROD, Reg.EVENTQ_CONS, EVENT_SIZE, "EVENTQEN",
                   Gerror.EVTQ_ABT_ERR, "eventqs", True)
PRIQ = QueueSpec(Reg.PRIQ_BASE, Reg.PRIQ_PROD, Reg.PRIQ_CONS, PRI_ENTRY_SIZE, "PRIQEN",
                 Gerror.PRIQ_ABT_ERR, "priqs", True)
_OVF = QUEUE_OVERFLOW.mask
_CMDQEN = Cr0.LAYOUT[CMDQ.enable].mask


class Queues:
    """The three rings of one SMMU and the register writes that move them."""

    def __init__(self, regs: RegisterFile, mem: PhysicalMemory,
                 on_gerror: Callable[[], object] = lambda: None) -> None:
        self.regs = regs
        self.on_gerror = on_gerror
        self.rings = {spec: Ring(mem, 0, 0, spec.entry_size, IndexStyle.WRAP_BIT)
                      for spec in (CMDQ, EVENTQ, PRIQ)}
        self._by_reg = {reg: spec for spec in self.rings for reg in (spec.base, spec.prod,
                                                                      spec.cons)}
        #: The command queue.
        self.cmdq: Ring = self.rings[CMDQ]

    def enabled(self, spec: QueueSpec) -> bool:
        """CR0 enables the queue."""
        return bool(Cr0.LAYOUT[spec.enable].get(self.regs.value(Reg.CR0)))

    def cmdq_enabled(self) -> bool:
        """:meth:`enabled` of the command queue (CR0.CMDQEN)."""
        return bool(self.regs.value(Reg.CR0) & _CMDQEN)

    def write(self, reg: Reg, value: int) -> bool:
        """Software writes a queue register (after the register file stored what it keeps);
        returns False for a register that is not a queue's."""
        spec = self._by_reg.get(reg)
        if spec is None:
            return False
        ring = self.rings[spec]
        if reg is spec.base:
            base = QueueBase.from_int(self.regs.read(reg))
            ring.configure(base.ADDR, min(base.LOG2SIZE, getattr(self.regs.caps, spec.cap)),
                           spec.entry_size)
        else:
            software_owned = (reg is spec.cons) == spec.smmu_produces
            if software_owned or not self.enabled(spec):
                pos = value & (ring.positions - 1)
                if reg is spec.prod:
                    ring.set_prod(pos)
                    ring.ovflg = bool(value & _OVF) if spec.smmu_produces else ring.ovflg
                else:
                    ring.set_cons(pos)
                    if spec.smmu_produces:
                        ring.ovackflg = bool(value & _OVF)
        self.mirror(spec)
        return True

    def mirror(self, spec: QueueSpec) -> None:
        """Make the queue's PROD and CONS registers show its ring."""
        ring, regs = self.rings[spec], self.regs
        if spec.smmu_produces:
            regs.set(spec.prod, ring.prod | (_OVF if ring.ovflg else 0))
            regs.set(spec.cons, ring.cons | (_OVF if ring.ovackflg else 0))
        else:
            regs.set(spec.prod, ring.prod)
            regs.set(spec.cons, ring.cons | CMDQ_CONS_ERR.put(ring.error) if ring.stopped
                     else ring.cons)

    def mirror_cmdq(self) -> None:
        """:meth:`mirror` of the command queue."""
        ring, regs = self.cmdq, self.regs
        regs.set(Reg.CMDQ_PROD, ring.prod)
        regs.set(Reg.CMDQ_CONS, ring.cons | CMDQ_CONS_ERR.put(ring.error) if ring.stopped
                 else ring.cons)

    def produce(self, spec: QueueSpec, entry: Record) -> bool:
        """The SMMU writes ``entry`` (an event, a page request): False when the queue is
        disabled, full (the entry lost, the overflow condition entered) or its memory
        unwritable (the GERROR abort bit raised, ``on_gerror`` called)."""
        if not self.enabled(spec):
            return False
        try:
            done = self.rings[spec].produce_or_overflow(entry.to_bytes())
        except MemoryAccessError:
            self.regs.toggle_gerror(spec.abort)
            self.on_gerror()
            return False
        self.mirror(spec)
        return done

"""The host driver's side of one SMMU: the stream table and queues it programs, and commands it
issues.

:class:`HostDriver` does what ``arm_smmu_device_reset`` and ``arm_smmu_cmdq_issue_cmdlist`` do,
through registers and memory only: a linear stream table covering every StreamID, a command
queue and an event queue, SMMUEN; :meth:`HostDriver.issue` writes commands at CMDQ_PROD followed
by a CMD_SYNC and publishes PROD, so the model consumes and executes them. A command the SMMU
refuses stops the queue (CMDQ_CONS.ERR, GERROR.CMDQ_ERR): the driver skips it as Linux does
(replacing it by a CMD_SYNC) and acknowledges, and the error is counted in :attr:`errors`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import NamedTuple

from iommu_uapi.memory import PhysicalMemory

from .cmd_codec import CommandEncoder
from .cmdq import run_batch
from .cmds import Command, Sync
from .pri import PageRequest
from .registers import (
    CMDQ_CONS_ERR,
    QUEUE_OVERFLOW,
    Cr0,
    Cr2,
    QueueBase,
    Reg,
    StrtabBase,
    StrtabBaseCfg,
)
from .smmu import Smmu
from .ste import Ste

__all__ = ["CMDQ_LOG2", "HISTORY", "STE_SIZE", "STRTAB_LOG2", "Batch", "HostDriver"]

STE_SIZE = 64
#: log2 of the StreamIDs the linear stream table covers (PCI requester IDs).
STRTAB_LOG2 = 16
#: log2 of the command-queue and event-queue entries.
CMDQ_LOG2 = 8
EVENTQ_LOG2 = 8
PRIQ_LOG2 = 8
_CMD_SIZE = 16
#: how many recent commands :attr:`HostDriver.history` keeps
HISTORY = 512
_SYNC = Sync()


class Batch(NamedTuple):
    """What one submission writes: commands ending with their CMD_SYNC, and their images."""

    cmds: tuple[Command, ...]
    images: tuple[bytes, ...]


class HostDriver:
    """Programs ``smmu`` the way the Linux driver resets it (see the module docstring)."""

    def __init__(self, smmu: Smmu, mem: PhysicalMemory) -> None:
        self.smmu = smmu
        self.mem = mem
        log2 = min(STRTAB_LOG2, smmu.caps.sidsize)
        self.strtab = mem.alloc(STE_SIZE << log2, STE_SIZE << log2)
        self.cmdq = mem.alloc(_CMD_SIZE << CMDQ_LOG2)
        self.eventq = mem.alloc(32 << EVENTQ_LOG2)
        self.priq = mem.alloc(16 << PRIQ_LOG2)
        self._wrap = (2 << CMDQ_LOG2) - 1
        self._slots = (1 << CMDQ_LOG2) - 1
        #: the images of the commands issued (commands are immutable records)
        self.encoder = CommandEncoder()
        self._prod = 0
        #: commands the SMMU refused (CMDQ_CONS.ERR), in order
        self.errors: list[int] = []
        #: commands issued, counted; the last batch (its CMD_SYNC included) and the recent ones
        self.issued = 0
        self.last: list[Command] = []
        self.history: deque[Command] = deque(maxlen=HISTORY)
        w = smmu.write_register
        w(Reg.STRTAB_BASE, StrtabBase(ADDR=self.strtab).to_int())
        w(Reg.STRTAB_BASE_CFG, StrtabBaseCfg(LOG2SIZE=log2).to_int())
        w(Reg.CMDQ_BASE, QueueBase(LOG2SIZE=CMDQ_LOG2, ADDR=self.cmdq).to_int())
        w(Reg.EVENTQ_BASE, QueueBase(LOG2SIZE=EVENTQ_LOG2, ADDR=self.eventq).to_int())
        w(Reg.PRIQ_BASE, QueueBase(LOG2SIZE=PRIQ_LOG2, ADDR=self.priq).to_int())
        w(Reg.CR2, Cr2(RECINVSID=True).to_int())
        w(Reg.CR0, Cr0(SMMUEN=True, CMDQEN=True, EVENTQEN=True,
                       PRIQEN=smmu.caps.pri).to_int())

    def write_ste(self, sid: int, ste: Ste) -> None:
        """Write the STE of ``sid`` in the stream table (the caller invalidates it)."""
        self.mem.write(self.strtab + sid * STE_SIZE, ste.to_bytes())

    def read_ste(self, sid: int) -> Ste:
        """The STE of ``sid`` as the stream table holds it."""
        return Ste.from_bytes(self.mem.read(self.strtab + sid * STE_SIZE, STE_SIZE))

    def issue(self, cmds: Iterable[Command]) -> bool:
        """Write ``cmds`` and a CMD_SYNC at CMDQ_PROD, publish PROD and let the SMMU consume
        them; False when one was refused (skipped, acknowledged and counted)."""
        return self.submit(self.prepare(cmds))

    def prepare(self, cmds: Iterable[Command]) -> tuple[Batch, ...]:
        """``cmds`` as the driver submits them: in batches the queue holds (one slot stays
        free, as a full queue reads as empty), each followed by a CMD_SYNC, with their images.
        A pure function of the commands; a field that does not fit is refused here, before
        anything is written."""
        cmds = list(cmds)
        step = self._slots - 1
        encode = self.encoder.image
        if len(cmds) < step:  # one batch
            batch = (*cmds, _SYNC)
            return (Batch(batch, tuple([encode(cmd) for cmd in batch])),)
        out: list[Batch] = []
        for start in range(0, max(len(cmds), 1), step):
            batch = (*cmds[start:start + step], _SYNC)
            out.append(Batch(batch, tuple([encode(cmd) for cmd in batch])))
        return tuple(out)

    def submit(self, batches: Iterable[Batch]) -> bool:
        """Issue batches :meth:`prepare` made, in order; False when a command was refused."""
        ok = True
        for batch in batches:
            ok = self._submit(batch) and ok
        return ok

    def _submit(self, batch: Batch) -> bool:
        cmds, raw = batch
        self.issued += len(cmds)
        self.last = list(cmds)
        self.history.extend(cmds)
        if run_batch(self.smmu, raw):  # the one-pass path of an idle queue
            self._prod = self.smmu.queues.cmdq.prod
            return True
        ok = True
        for image in raw:
            self.mem.write(self.cmdq + (self._prod & self._slots) * _CMD_SIZE, image)
            self._prod = (self._prod + 1) & self._wrap
        self.smmu.write_register(Reg.CMDQ_PROD, self._prod)  # a Reg: no offset lookup
        while self.smmu.queues.cmdq.stopped:
            ok = False
            self._skip()
        return ok

    def take_page_requests(self) -> list[PageRequest]:
        """The entries between PRIQ_CONS and PRIQ_PROD, consumed (PRIQ_CONS written back), as
        the driver's PRI-queue thread reads them."""
        regs = self.smmu.regs
        prod, cons = regs.read(Reg.PRIQ_PROD), regs.read(Reg.PRIQ_CONS)
        wrap, slots = (2 << PRIQ_LOG2) - 1, (1 << PRIQ_LOG2) - 1
        out: list[PageRequest] = []
        while (cons & wrap) != (prod & wrap):
            raw = self.mem.read(self.priq + (cons & slots) * 16, 16)
            out.append(PageRequest.from_bytes(raw))
            cons = (cons + 1) & wrap
        self.smmu.write_register(Reg.PRIQ_CONS, cons | (prod & QUEUE_OVERFLOW.mask))
        return out

    def _skip(self) -> None:
        """Replace the refused command at CMDQ_CONS by a CMD_SYNC and acknowledge the error
        (``arm_smmu_cmdq_skip_err``)."""
        regs = self.smmu.regs
        cons = regs.read(Reg.CMDQ_CONS)
        self.errors.append(CMDQ_CONS_ERR.get(cons))
        slot = cons & ((1 << CMDQ_LOG2) - 1)
        self.mem.write(self.cmdq + slot * _CMD_SIZE, Sync().to_bytes())
        self.smmu.write_register(Reg.GERRORN, regs.read(Reg.GERROR))

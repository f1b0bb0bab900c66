"""Interrupts: enabled sources counted and delivered as MSIs (CFG1 data at the CFG0 address),
MSI aborts raised in GERROR."""

from __future__ import annotations

import pytest
from test_cmdq import QRig

from iommu_uapi.memory import PhysicalMemory
from iommu_uapi_smmu.events import SmmuFault
from iommu_uapi_smmu.idr import SmmuCaps
from iommu_uapi_smmu.irq import IrqCtrl
from iommu_uapi_smmu.registers import Gerror, QueueBase, Reg
from iommu_uapi_smmu.smmu import Smmu
from iommu_uapi_smmu.ste import Ste


def _fault(rig: QRig, sid: int) -> None:
    rig.set_ste(sid, Ste(V=False))
    with pytest.raises(SmmuFault):
        rig.smmu.translate(sid, 0)


def test_event_interrupt_is_an_msi_when_enabled() -> None:
    rig = QRig()
    doorbell = rig.mem.alloc()
    smmu = rig.smmu
    smmu.write_register(Reg.EVENTQ_IRQ_CFG0, doorbell + 8)
    smmu.write_register(Reg.EVENTQ_IRQ_CFG1, 0xBEEF)
    _fault(rig, 1)
    assert smmu.irqs.raised["eventq"] == 0 and rig.mem.read32(doorbell + 8) == 0  # disabled
    smmu.write_register(Reg.IRQ_CTRL, IrqCtrl.EVENTQ_IRQEN)
    assert smmu.regs.read(Reg.IRQ_CTRLACK) == IrqCtrl.EVENTQ_IRQEN
    _fault(rig, 2)
    assert smmu.irqs.raised["eventq"] == 1 and rig.mem.read32(doorbell + 8) == 0xBEEF


def test_wired_only_without_msi_support() -> None:
    rig = QRig(caps=SmmuCaps(msi=False))
    doorbell = rig.mem.alloc()
    rig.smmu.write_register(Reg.EVENTQ_IRQ_CFG0, doorbell)
    rig.smmu.write_register(Reg.EVENTQ_IRQ_CFG1, 1)
    rig.smmu.write_register(Reg.IRQ_CTRL, IrqCtrl.EVENTQ_IRQEN)
    _fault(rig, 1)
    assert rig.smmu.irqs.raised["eventq"] == 1 and rig.mem.read32(doorbell) == 0


def test_command_error_raises_the_global_error_interrupt() -> None:
    rig = QRig()
    doorbell = rig.mem.alloc()
    rig.smmu.write_register(Reg.GERROR_IRQ_CFG0, doorbell)
    rig.smmu.write_register(Reg.GERROR_IRQ_CFG1, 7)
    rig.smmu.write_register(Reg.IRQ_CTRL, IrqCtrl.GERROR_IRQEN)
    rig.submit(0xFF)
    assert rig.smmu.irqs.raised["gerror"] == 1 and rig.mem.read32(doorbell) == 7


def test_msi_abort_and_event_queue_abort() -> None:
    smmu = Smmu(PhysicalMemory(40))
    smmu.write_register(Reg.IRQ_CTRL, IrqCtrl.EVENTQ_IRQEN | IrqCtrl.GERROR_IRQEN)
    smmu.write_register(Reg.EVENTQ_IRQ_CFG0, 1 << 45)  # outside memory
    smmu.write_register(Reg.EVENTQ_BASE, QueueBase(LOG2SIZE=2, ADDR=0x1000).to_int())
    smmu.write_register(Reg.CR0, 0b101)  # SMMUEN, EVENTQEN
    smmu.write_register(Reg.STRTAB_BASE_CFG, 4)
    with pytest.raises(SmmuFault):
        smmu.translate(1, 0)  # an all-zero STE: C_BAD_STE
    assert smmu.regs.active_gerrors() == Gerror.MSI_EVTQ_ABT_ERR
    assert smmu.irqs.raised == {"eventq": 1, "gerror": 1}
    smmu.write_register(Reg.EVENTQ_BASE, QueueBase(LOG2SIZE=2, ADDR=1 << 45).to_int())
    with pytest.raises(SmmuFault):
        smmu.translate(1, 0)
    assert smmu.regs.active_gerrors() == Gerror.MSI_EVTQ_ABT_ERR | Gerror.EVTQ_ABT_ERR

"""The register file (hw-formats 2.1): read-only ID registers, what software programs, the
acknowledge registers, GERROR/GERRORN, and queue indices with wrap bits."""

from __future__ import annotations

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi_smmu.idr import SmmuCaps, id_registers
from iommu_uapi_smmu.registers import (
    PAGE1,
    Cr0,
    Gbpa,
    Gerror,
    QueueBase,
    Reg,
    RegisterFile,
    StrtabBase,
    StrtabBaseCfg,
)


def test_offsets() -> None:
    assert (Reg.CR0, Reg.GBPA, Reg.GERRORN, Reg.STRTAB_BASE, Reg.STRTAB_BASE_CFG) == (
        0x20, 0x44, 0x64, 0x80, 0x88)
    assert (Reg.CMDQ_BASE, Reg.CMDQ_PROD, Reg.CMDQ_CONS, Reg.EVENTQ_BASE, Reg.PRIQ_BASE) == (
        0x90, 0x98, 0x9C, 0xA0, 0xC0)
    assert (Reg.EVENTQ_PROD, Reg.EVENTQ_CONS, Reg.PRIQ_PROD, Reg.PRIQ_CONS) == (
        PAGE1 + 0xA8, PAGE1 + 0xAC, PAGE1 + 0xC8, PAGE1 + 0xCC)


def test_id_registers_are_read_only() -> None:
    regs = RegisterFile(SmmuCaps())
    ids = id_registers(SmmuCaps())
    regs.write(Reg.IDR0, 0)
    assert regs.read(Reg.IDR0) == ids.idr0 and regs.read(Reg.AIDR) == ids.aidr


def test_cr0_is_acknowledged_and_masked_by_capabilities() -> None:
    regs = RegisterFile(SmmuCaps())
    regs.write(Reg.CR0, Cr0(SMMUEN=True, CMDQEN=True, VMW=3).to_int() | 1 << 20)
    assert regs.read(Reg.CR0) == regs.read(Reg.CR0ACK) == Cr0(SMMUEN=True, CMDQEN=True).to_int()
    vmw = RegisterFile(SmmuCaps(vmw=True))
    vmw.write(Reg.CR0, Cr0(VMW=3).to_int())
    assert vmw.cr0.VMW == 3
    no_pri = RegisterFile(SmmuCaps(pri=False))
    no_pri.write(Reg.CR0, Cr0(PRIQEN=True).to_int())
    assert not no_pri.cr0.PRIQEN


def test_gbpa_update_completes() -> None:
    regs = RegisterFile(SmmuCaps())
    regs.write(Reg.GBPA, Gbpa(ABORT=True, UPDATE=True).to_int())
    assert regs.gbpa == Gbpa(ABORT=True)


def test_table_registers_hold_what_software_wrote() -> None:
    regs = RegisterFile(SmmuCaps())
    regs.write(Reg.STRTAB_BASE, StrtabBase(ADDR=0x8000_0040, RA=True).to_int() | 0x3F)
    regs.write(Reg.STRTAB_BASE_CFG, StrtabBaseCfg(LOG2SIZE=16, SPLIT=8, FMT=1).to_int())
    assert regs.strtab_base == StrtabBase(ADDR=0x8000_0040, RA=True)  # bits 5:0 RES0
    assert regs.read(Reg.STRTAB_BASE_CFG) == 16 | 8 << 6 | 1 << 16
    regs.write(Reg.CMDQ_BASE, QueueBase(LOG2SIZE=8, ADDR=0x9000_0000).to_int())
    assert regs.read(Reg.CMDQ_BASE) == 8 | 0x9000_0000


def test_gerror_toggles_and_gerrorn_acknowledges() -> None:
    regs = RegisterFile(SmmuCaps())
    regs.toggle_gerror(Gerror.CMDQ_ERR)
    assert regs.active_gerrors() == Gerror.CMDQ_ERR
    regs.write(Reg.GERROR, 0)  # read-only
    assert regs.read(Reg.GERROR) == 1
    regs.write(Reg.GERRORN, regs.read(Reg.GERROR))
    assert regs.active_gerrors() == 0
    regs.toggle_gerror(Gerror.CMDQ_ERR)  # a second error toggles back to 0
    assert regs.read(Reg.GERROR) == 0 and regs.active_gerrors() == Gerror.CMDQ_ERR


def test_unimplemented_offset() -> None:
    regs = RegisterFile(SmmuCaps())
    with pytest.raises(UAPIError) as info:
        regs.read(0x30)
    assert info.value.rule == "smmu.register"
    with pytest.raises(UAPIError):
        regs.write(0x30, 0)


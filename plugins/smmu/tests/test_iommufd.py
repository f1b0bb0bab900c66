"""The SMMUv3 side of iommufd: HW_INFO from the ID registers, the guest STE a nested HWPT may
carry, and the guest commands a vIOMMU passes on."""

from __future__ import annotations

import errno

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.iommufd import IommuHwptArmSmmuv3, IommuViommuArmSmmuv3Invalidate
from iommu_uapi_smmu.cmd_layout import Opcode
from iommu_uapi_smmu.idr import SmmuCaps, id_registers
from iommu_uapi_smmu.iommufd import guest_commands, hw_info, nested_ste
from iommu_uapi_smmu.ste import Ste, SteConfig

V, S1 = 1, int(SteConfig.S1_TRANS) << 1


def test_hw_info_is_the_id_registers() -> None:
    caps = SmmuCaps()
    regs = id_registers(caps)
    info = hw_info(caps)
    assert info.idr == (regs.idr0, regs.idr1, regs.idr2, regs.idr3, regs.idr4, regs.idr5)
    assert (info.iidr, info.aidr) == (regs.iidr, regs.aidr)
    assert len(info.to_bytes()) == 40


def test_invalid_ste_is_all_zero() -> None:
    assert nested_ste(IommuHwptArmSmmuv3(ste=(0xFFFF_0000, 0xFFFF))) == (0, 0)


def test_allowed_fields_pass_and_eats_is_cleared() -> None:
    ctx = 0x8_0000_0040
    w0 = V | S1 | (1 << 4) | ctx | (3 << 59)
    w1 = 1 | (1 << 2) | (1 << 27) | (1 << 28)   # S1DSS, S1CIR, S1STALLD, EATS=full
    assert nested_ste(IommuHwptArmSmmuv3(ste=(w0, w1))) == (w0, w1 & ~(3 << 28))


@pytest.mark.parametrize(("w0", "w1"), [
    (V | S1 | (1 << 56), 0),                          # a reserved bit of word 0
    (V | S1, 1 << 30),                                 # STRW
    (V | S1, 1 << 32),                                 # MemAttr
    (V | int(SteConfig.S2_TRANS) << 1, 0),             # stage 2 is the host's
    (V | int(SteConfig.NESTED) << 1, 0),
    (V | S1, 2 << 28),                                 # EATS split
])
def test_anything_else_is_eio(w0: int, w1: int) -> None:
    with pytest.raises(UAPIError) as exc:
        nested_ste(IommuHwptArmSmmuv3(ste=(w0, w1)))
    assert (exc.value.errno, exc.value.rule) == (errno.EIO, "iommufd.hwpt_alloc.arm_ste")


def _cmd(op: int, hi: int = 0, w1: int = 0) -> IommuViommuArmSmmuv3Invalidate:
    return IommuViommuArmSmmuv3Invalidate(cmd=(op | hi << 32, w1))


def test_tlbis_get_the_viommu_vmid() -> None:
    cmds, error = guest_commands([_cmd(Opcode.TLBI_NH_VA, 0xAB, 0x1000),
                                  _cmd(Opcode.TLBI_NSNH_ALL, 0, 7)], vmid=9, vsids={})
    assert error is None
    assert cmds == [(Opcode.TLBI_NH_VA | 9 << 32, 0x1000), (Opcode.TLBI_NH_ALL | 9 << 32, 0)]


def test_sids_are_translated_through_the_vdevices() -> None:
    cmds, error = guest_commands([_cmd(Opcode.CFGI_CD, 0x10), _cmd(Opcode.ATC_INV, 0x10)],
                                 vmid=1, vsids={0x10: 0x300})
    assert error is None and [c[0] >> 32 for c in cmds] == [0x300, 0x300]


def test_first_refused_command_stops_the_list() -> None:
    cmds, error = guest_commands([_cmd(Opcode.TLBI_NH_ALL), _cmd(Opcode.CFGI_CD, 0x11),
                                  _cmd(Opcode.TLBI_NH_ALL)], vmid=1, vsids={0x10: 0x300})
    assert len(cmds) == 1 and error is not None
    assert (error.errno, error.rule) == (errno.EIO, "iommufd.viommu_arm_smmuv3_invalidate.sid")
    cmds, error = guest_commands([_cmd(Opcode.CFGI_STE)], vmid=1, vsids={})
    assert cmds == [] and error is not None
    assert error.rule == "iommufd.viommu_arm_smmuv3_invalidate.opcode"


def test_ste_layout_names_every_allowed_field() -> None:
    from iommu_uapi_smmu.iommufd import ALLOWED_STE_FIELDS
    assert all(Ste.LAYOUT[name].high < 128 for name in ALLOWED_STE_FIELDS)

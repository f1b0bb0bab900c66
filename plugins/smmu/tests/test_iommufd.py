"""The SMMUv3 side of iommufd: HW_INFO from the ID registers, the guest STE a nested HWPT may
carry, and the guest commands a vIOMMU passes on."""

from __future__ import annotations

import errno

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.iommu import IOMMU
from iommu_uapi.iommufd import (
    Client,
    HwInfoType,
    HwptAllocFlags,
    HwptDataType,
    HwptInvalidateDataType,
    IommuFd,
    IommuHwInfoArmSmmuv3,
    IommuHwptArmSmmuv3,
    IommuViommuArmSmmuv3Invalidate,
)
from iommu_uapi.memory import GuestMemory, PhysicalMemory
from iommu_uapi_smmu.cmd_layout import Opcode
from iommu_uapi_smmu.cmds import CfgiCd, TlbiNhVa
from iommu_uapi_smmu.guest import SMMU_GUEST
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


# -- the hooks, through iommufd --------------------------------------------------------------

VA = 0x7000_0000_0000
RAM_HPA = 0x1_0000_0000
VSID = 0x42


class Vmm:
    """A VMM on the smmuv3 backend through iommufd: guest RAM in an IOAS, a nesting parent, a
    guest CD table and stage-1 tables, a nested HWPT carrying the guest STE."""

    def __init__(self) -> None:
        self.mem = PhysicalMemory()
        self.iommu = IOMMU("smmuv3", memory=self.mem, profile="strict")
        self.fd = IommuFd(self.iommu)
        self.c = Client(self.fd)
        self.dev = self.iommu.add_device(0x0300)
        self.dev_id = self.fd.bind(self.dev)
        self.guest = GuestMemory(self.mem)
        self.guest.add_ram(0, 0x10_0000, RAM_HPA)
        self.fd.user.mmap_host(0x4000_0000_0000, 0x10_0000, RAM_HPA)
        self.ioas = self.c.ioas_alloc()
        self.parent = self.c.hwpt_alloc(self.dev_id, self.ioas, HwptAllocFlags.NEST_PARENT)
        self.fd.attach(self.dev_id, self.parent)
        self.c.ioas_map(self.ioas, 0x4000_0000_0000, 0x10_0000, iova=0)
        self.gpt = SMMU_GUEST.tables(self.guest)
        self.cfg = SMMU_GUEST.pasid_table(self.guest)

    def ste(self) -> IommuHwptArmSmmuv3:
        cfg = self.cfg
        w0 = (V | S1 | cfg.vendor_data.smmuv3.s1fmt << 4 | cfg.base_ptr
              | cfg.pasid_bits << 59)
        return IommuHwptArmSmmuv3(ste=(w0, cfg.vendor_data.smmuv3.s1dss))

    def nested(self) -> int:
        hwpt = self.c.hwpt_alloc(self.dev_id, self.parent, 0, self.ste(),
                                 HwptDataType.ARM_SMMUV3)
        self.fd.detach(self.dev_id)
        self.fd.attach(self.dev_id, hwpt)
        return hwpt


def _words(cmd: object) -> IommuViommuArmSmmuv3Invalidate:
    raw = cmd.to_int()  # type: ignore[attr-defined]
    return IommuViommuArmSmmuv3Invalidate(cmd=(raw & (1 << 64) - 1, raw >> 64))


def test_hw_info_through_iommufd() -> None:
    vmm = Vmm()
    out, data = vmm.c.hw_info(vmm.dev_id, 40)
    assert out.out_data_type == HwInfoType.ARM_SMMUV3
    assert IommuHwInfoArmSmmuv3.from_bytes(data) == hw_info(
        vmm.iommu.backend.caps)  # type: ignore[attr-defined]


def test_nested_ste_attach_translates_through_the_guest_cd_table() -> None:
    vmm = Vmm()
    gpa = vmm.guest.alloc()
    vmm.gpt.map(VA, gpa, 0x1000, 3)
    SMMU_GUEST.write_entry(vmm.guest, vmm.cfg, 1, vmm.gpt.root)
    vmm.nested()
    assert vmm.iommu.translate(vmm.dev, VA, pasid=1).paddr == vmm.guest.gpa_to_hpa(gpa)


def test_forbidden_ste_field_is_eio_and_nothing_is_allocated() -> None:
    vmm = Vmm()
    bad = IommuHwptArmSmmuv3(ste=(vmm.ste().ste[0], 1 << 30))
    before = sorted(vmm.fd.objects)
    with pytest.raises(UAPIError) as exc:
        vmm.c.hwpt_alloc(vmm.dev_id, vmm.parent, 0, bad, HwptDataType.ARM_SMMUV3)
    assert exc.value.errno == errno.EIO and sorted(vmm.fd.objects) == before


def test_viommu_commands_invalidate_with_partial_completion() -> None:
    vmm = Vmm()
    gpa = vmm.guest.alloc()
    vmm.gpt.map(VA, gpa, 0x1000, 3)
    SMMU_GUEST.write_entry(vmm.guest, vmm.cfg, 1, vmm.gpt.root)
    vmm.nested()
    viommu = vmm.c.viommu_alloc(vmm.dev_id, vmm.parent, 1)
    vmm.c.vdevice_alloc(viommu, vmm.dev_id, VSID)
    vmm.iommu.translate(vmm.dev, VA, pasid=1)
    vmm.gpt.unmap(VA, 0x1000)
    new = vmm.guest.alloc()
    vmm.gpt.map(VA, new, 0x1000, 3)
    assert vmm.iommu.translate(vmm.dev, VA, pasid=1).paddr != vmm.guest.gpa_to_hpa(new)
    asid = 1
    good = [_words(TlbiNhVa(ASID=asid, Addr=VA, Leaf=True)), _words(CfgiCd(SID=VSID, SSID=1))]
    bad = _words(CfgiCd(SID=VSID + 1, SSID=1))
    handled, error = vmm.c.invalidate(viommu, [*good, bad, good[0]],
                                      HwptInvalidateDataType.VIOMMU_ARM_SMMUV3)
    assert handled == 2 and error is not None and error.errno == errno.EIO
    assert vmm.iommu.translate(vmm.dev, VA, pasid=1).paddr == vmm.guest.gpa_to_hpa(new)
    handled, error = vmm.c.invalidate(viommu, [], HwptInvalidateDataType.VIOMMU_ARM_SMMUV3)
    assert handled == 0 and error is not None and error.errno == errno.EINVAL

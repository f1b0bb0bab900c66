"""The SMMUv3 side of iommufd (reference kernel-uapi.md f), as functions of the model's
structures: ``iommu_hw_info_arm_smmuv3`` from the ID registers, the guest STE of a nested HWPT
(``iommu_hwpt_arm_smmuv3``) checked and normalised as ``arm_smmu_validate_vste`` does, and the
guest's raw commands (``iommu_viommu_arm_smmuv3_invalidate``) turned into host commands as
``arm_vsmmu_convert_user_cmd`` does: TLBIs tagged with the vIOMMU's VMID, SIDs translated from
the vDEVICEs' virtual IDs, anything else EIO.

Every field is named in :mod:`.ste` and :mod:`.cmd_layout`; nothing here executes a command or
writes a table: the backend's hooks do, through its command queue and stream table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from iommu_uapi.abi import CRecord
from iommu_uapi.errors import UAPIError
from iommu_uapi.iommufd import (
    IommuHwInfoArmSmmuv3,
    IommuHwptArmSmmuv3,
    IommuViommuArmSmmuv3Invalidate,
)
from iommu_uapi.rules import fail

from .cmd_layout import F_SID, F_VMID, OPCODE, Opcode
from .idr import SmmuCaps, id_registers
from .ste import Eats, Ste, SteConfig

__all__ = ["ALLOWED_OPCODES", "ALLOWED_STE_FIELDS", "guest_commands", "hw_info", "nested_ste"]

#: The guest STE fields a nested HWPT may carry (words 0 and 1)
ALLOWED_STE_FIELDS = ("V", "Config", "S1Fmt", "S1ContextPtr", "S1CDMax", "S1DSS", "S1CIR",
                      "S1COR", "S1CSH", "S1STALLD", "EATS")
_ALLOWED_MASK = sum(Ste.LAYOUT[name].mask for name in ALLOWED_STE_FIELDS)
_V = Ste.LAYOUT["V"]
_CONFIG = Ste.LAYOUT["Config"]
_EATS = Ste.LAYOUT["EATS"]
_CONFIGS = frozenset({int(SteConfig.ABORT), int(SteConfig.BYPASS), int(SteConfig.S1_TRANS)})
_EATS_OK = frozenset({int(Eats.ABORT), int(Eats.FULL)})
_W = (1 << 64) - 1

#: The guest commands a vIOMMU passes on
ALLOWED_OPCODES = frozenset({Opcode.TLBI_NSNH_ALL, Opcode.TLBI_NH_VA, Opcode.TLBI_NH_VAA,
                             Opcode.TLBI_NH_ALL, Opcode.TLBI_NH_ASID, Opcode.ATC_INV,
                             Opcode.CFGI_CD, Opcode.CFGI_CD_ALL})
_TAGGED = frozenset({int(Opcode.TLBI_NH_VA), int(Opcode.TLBI_NH_VAA), int(Opcode.TLBI_NH_ALL),
                     int(Opcode.TLBI_NH_ASID)})
_BY_SID = frozenset({int(Opcode.ATC_INV), int(Opcode.CFGI_CD), int(Opcode.CFGI_CD_ALL)})
_NSNH_ALL = int(Opcode.TLBI_NSNH_ALL)
_NH_ALL = int(Opcode.TLBI_NH_ALL)


def hw_info(caps: SmmuCaps) -> IommuHwInfoArmSmmuv3:
    """``iommu_hw_info_arm_smmuv3``: IDR0..5, IIDR and AIDR as the SMMU reports them."""
    regs = id_registers(caps)
    return IommuHwInfoArmSmmuv3(idr=(regs.idr0, regs.idr1, regs.idr2, regs.idr3, regs.idr4,
                                     regs.idr5), iidr=regs.iidr, aidr=regs.aidr)


def nested_ste(data: IommuHwptArmSmmuv3) -> tuple[int, int]:
    """The guest STE words 0 and 1 a nested HWPT keeps: all zero when V is clear; EIO for a
    field outside :data:`ALLOWED_STE_FIELDS`, a Config other than abort/bypass/S1, or EATS
    other than abort/full; EATS itself cleared (the host sets it from the device's ATS)."""
    words = data.ste[0] | data.ste[1] << 64
    if not words & _V.mask:
        return 0, 0
    ste = f"{data.ste[0]:#x}:{data.ste[1]:#x}"
    extra = words & ~_ALLOWED_MASK
    if extra:
        raise fail("iommufd.hwpt_alloc.arm_ste", ste=ste,
                   why=f"bits {extra:#x} are outside the fields a guest may set")
    if _CONFIG.get(words) not in _CONFIGS:
        raise fail("iommufd.hwpt_alloc.arm_ste", ste=ste,
                   why=f"Config {_CONFIG.get(words):#05b} is not abort, bypass or S1")
    if _EATS.get(words) not in _EATS_OK:
        raise fail("iommufd.hwpt_alloc.arm_ste", ste=ste,
                   why=f"EATS {_EATS.get(words)} is not abort or full")
    words &= ~_EATS.mask
    return words & _W, words >> 64


def guest_commands(entries: Sequence[CRecord], vmid: int, vsids: Mapping[int, int]
                   ) -> tuple[list[tuple[int, int]], UAPIError | None]:
    """The host commands for the guest's ``entries``, in order, up to the first refused one
    (returned with its EIO): TLBI_NSNH_ALL becomes TLBI_NH_ALL of ``vmid``, the other TLBIs get
    ``vmid``, ATC_INV / CFGI_CD / CFGI_CD_ALL get the physical SID ``vsids`` maps their virtual
    SID to."""
    out: list[tuple[int, int]] = []
    for index, entry in enumerate(entries):
        assert isinstance(entry, IommuViommuArmSmmuv3Invalidate)
        w0, w1 = entry.cmd
        op = OPCODE.get(w0)
        if op == _NSNH_ALL:
            w0, w1 = _NH_ALL | vmid << F_VMID.shift, 0
        elif op in _TAGGED:
            w0 = w0 & ~F_VMID.mask | vmid << F_VMID.shift
        elif op in _BY_SID:
            vsid = F_SID.get(w0)
            sid = vsids.get(vsid)
            if sid is None:
                return out, fail("iommufd.viommu_arm_smmuv3_invalidate.sid", index=index,
                                 vsid=vsid)
            w0 = w0 & ~F_SID.mask | sid << F_SID.shift
        else:
            return out, fail("iommufd.viommu_arm_smmuv3_invalidate.opcode", index=index,
                             opcode=op)
        out.append((w0, w1))
    return out, None

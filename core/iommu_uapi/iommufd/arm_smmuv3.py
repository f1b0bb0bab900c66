"""The words an SMMUv3 guest hands to iommufd (reference kernel-uapi.md f): the guest STE of a
nested HWPT (``iommu_hwpt_arm_smmuv3``) and the raw commands a vIOMMU passes on
(``iommu_viommu_arm_smmuv3_invalidate``), as a VMM composes them from what its guest wrote.

Only the STE fields the uAPI lets a guest set (:data:`VSTE_FIELDS`) and the eight opcodes it
lets a guest issue (:class:`VcmdOpcode`) are named here, at the positions of the SMMUv3
architecture (absolute bits of the STE and of the 128-bit command); the SMMU model names the
whole STE and every command, and its tests hold the two to the same bits.
"""

from __future__ import annotations

from enum import IntEnum

from ..hw.bits import Field, bit
from ..uapi import PasidTableConfig
from ..uapi.consts import PasidConfig
from .records import IommuHwptArmSmmuv3, IommuViommuArmSmmuv3Invalidate

__all__ = ["VCMD_FIELDS", "VCMD_LAYOUT", "VSTE_FIELDS", "VcmdOpcode", "VsteConfig", "atc_span",
           "vcmd", "vste", "vste_from_table"]

#: The guest STE fields a nested HWPT may carry (words 0 and 1), at their STE bits
VSTE_FIELDS: dict[str, Field] = {
    "V": bit(0),
    "Config": Field(1, 3),
    "S1Fmt": Field(4, 2),
    "S1ContextPtr": Field(6, 50, 6),  # the CD table's IPA, bits 55:6
    "S1CDMax": Field(59, 5),
    "S1DSS": Field(64, 2),
    "S1CIR": Field(66, 2),
    "S1COR": Field(68, 2),
    "S1CSH": Field(70, 2),
    "S1STALLD": bit(91),
    "EATS": Field(92, 2),
}


class VsteConfig(IntEnum):
    """STE.Config values a guest STE may hold."""

    ABORT = 0b000
    BYPASS = 0b100
    S1_TRANS = 0b101


#: iommu_pasid_table_config.config -> the guest STE's Config that installs the same
_CONFIG_OF = {int(PasidConfig.TRANSLATE): VsteConfig.S1_TRANS,
              int(PasidConfig.BYPASS): VsteConfig.BYPASS,
              int(PasidConfig.ABORT): VsteConfig.ABORT}


class VcmdOpcode(IntEnum):
    """The command opcodes (bits 7:0) a vIOMMU accepts from a guest."""

    CFGI_CD = 0x05
    CFGI_CD_ALL = 0x06
    TLBI_NH_ALL = 0x10
    TLBI_NH_ASID = 0x11
    TLBI_NH_VA = 0x12
    TLBI_NH_VAA = 0x13
    TLBI_NSNH_ALL = 0x30
    ATC_INV = 0x40


#: The command fields of those opcodes, at their bits of the 128-bit command
VCMD_FIELDS: dict[str, Field] = {
    "G": bit(9), "SSV": bit(11), "SSID": Field(12, 20), "SID": Field(32, 32),
    "NUM": Field(12, 5), "SCALE": Field(20, 5), "VMID": Field(32, 16), "ASID": Field(48, 16),
    "Leaf": bit(64), "Size": Field(64, 6), "TTL": Field(72, 2), "TG": Field(74, 2),
    "Addr": Field(76, 52, 12),
}
#: opcode -> the fields it has (a guest's VMID is replaced by the vIOMMU's)
VCMD_LAYOUT: dict[VcmdOpcode, tuple[str, ...]] = {
    VcmdOpcode.CFGI_CD: ("SSID", "SID", "Leaf"),
    VcmdOpcode.CFGI_CD_ALL: ("SID",),
    VcmdOpcode.TLBI_NH_ALL: ("VMID",),
    VcmdOpcode.TLBI_NH_ASID: ("VMID", "ASID"),
    VcmdOpcode.TLBI_NH_VA: ("NUM", "SCALE", "VMID", "ASID", "Leaf", "TTL", "TG", "Addr"),
    VcmdOpcode.TLBI_NH_VAA: ("NUM", "SCALE", "VMID", "Leaf", "TTL", "TG", "Addr"),
    VcmdOpcode.TLBI_NSNH_ALL: (),
    VcmdOpcode.ATC_INV: ("G", "SSV", "SSID", "SID", "Size", "Addr"),
}
_OPCODE = Field(0, 8)
_W = (1 << 64) - 1
_PAGE = 4096
#: ATC_INV.Size: 4 KiB * 2^Size; 52 and above is the whole ATC
_ATC_ALL = 52


def _pack(fields: dict[str, Field], values: dict[str, int], what: str) -> int:
    raw = 0
    for name, value in values.items():
        f = fields.get(name)
        if f is None:
            raise KeyError(f"{what} has no field {name!r}")
        raw |= f.put(value)
    return raw


def vste(**fields: int) -> IommuHwptArmSmmuv3:
    """``iommu_hwpt_arm_smmuv3`` with the guest STE ``fields`` (names of
    :data:`VSTE_FIELDS`)."""
    raw = _pack(VSTE_FIELDS, fields, "guest STE")
    return IommuHwptArmSmmuv3(ste=(raw & _W, raw >> 64))


def vste_from_table(cfg: PasidTableConfig) -> IommuHwptArmSmmuv3:
    """The guest STE that installs what the 2020 ``attach_pasid_table`` of ``cfg`` installs:
    its CD table (``base_ptr``, ``pasid_bits`` as S1CDMax, S1Fmt, S1DSS) and its config."""
    v3 = cfg.vendor_data.smmuv3
    config = _CONFIG_OF[cfg.config]
    if config is not VsteConfig.S1_TRANS:
        return vste(V=1, Config=config)
    return vste(V=1, Config=config, S1ContextPtr=cfg.base_ptr, S1CDMax=cfg.pasid_bits,
                S1Fmt=v3.s1fmt if cfg.pasid_bits else 0,
                S1DSS=v3.s1dss if cfg.pasid_bits else 0)


def vcmd(op: VcmdOpcode, **fields: int) -> IommuViommuArmSmmuv3Invalidate:
    """One raw guest command: ``op`` with ``fields`` (names of its :data:`VCMD_LAYOUT`)."""
    names = VCMD_LAYOUT[op]
    unknown = sorted(set(fields) - set(names))
    if unknown:
        raise KeyError(f"{op.name} has no field(s) {', '.join(unknown)}")
    raw = _OPCODE.put(int(op)) | _pack(VCMD_FIELDS, fields, op.name)
    return IommuViommuArmSmmuv3Invalidate(cmd=(raw & _W, raw >> 64))


def atc_span(addr: int, size: int) -> tuple[int, int]:
    """ATC_INV's ``(Addr, Size)`` for the smallest naturally aligned span of 4 KiB * 2^Size
    that covers ``[addr, addr + size)`` (as a driver encodes a range)."""
    span = max(_PAGE, size)
    order = (span - 1).bit_length() - 12
    while (addr >> (12 + order)) != ((addr + span - 1) >> (12 + order)):
        order += 1
    order = min(order, _ATC_ALL)
    return addr & -(_PAGE << order), order

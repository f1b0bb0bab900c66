"""Which commands the SMMU refuses (CERROR_ILL, hw-formats 2.6.3).

:func:`check_command` decodes what software wrote into the command queue and raises
:class:`~.cmd_layout.CommandError` (CERROR_ILL) for an undefined opcode; a command the
capability set has no use for (stage-1 commands without stage 1, stage-2 commands without stage
2, EL2 commands without HYP, ATS/PRI/stall commands without those features, Secure-only
commands); SSec = 1 on the Non-secure queue; a set RES0 bit — bits no field defines, and the
fields a feature absent from the capability set leaves RES0 (:func:`allowed_mask`); or a
reserved field value (the layout's ``illegal``).
"""

from __future__ import annotations

from .cmd_layout import (
    F_ASID,
    F_SSEC,
    F_SSID,
    F_SSV,
    F_VMID,
    RANGE_FIELDS,
    CError,
    Command,
    CommandError,
)
from .cmds import CfgiCd, decode_command
from .idr import SmmuCaps, StallModel

__all__ = ["allowed_mask", "check_command"]


def allowed_mask(cls: type[Command], caps: SmmuCaps) -> int:
    """The bits of a ``cls`` command that may be set under ``caps`` (the rest are RES0)."""
    mask = cls.defined_mask() & ~(F_SSEC.mask if "SSec" in cls.LAYOUT else 0)
    layout = cls.LAYOUT
    if "SSV" in layout and not caps.ssidsize:
        mask &= ~(F_SSV.mask | F_SSID.mask | (layout["G"].mask if "G" in layout else 0))
    if "VMID" in layout:
        if not caps.s2p:
            mask &= ~F_VMID.mask
        elif not caps.vmid16:
            mask &= ~(0xFF00 << F_VMID.shift)
    if "ASID" in layout and not caps.asid16:
        mask &= ~(0xFF00 << F_ASID.shift)
    if "TG" in layout and not caps.ril:
        mask &= ~sum(f.mask for f in RANGE_FIELDS.values())
    if cls is CfgiCd and not caps.ssidsize:
        mask &= ~F_SSID.mask  # CFGI_CD has an SSID without SSV
    return mask


def _has(caps: SmmuCaps, need: str | None) -> bool:
    if need is None:
        return True
    if need == "stall":
        return caps.stall_model != StallModel.TERMINATE_ONLY
    if need in ("secure", "vms"):
        return False  # the Non-secure queue of an SMMU without a VMS
    return bool(getattr(caps, need))


def check_command(raw: int | bytes | bytearray | memoryview, caps: SmmuCaps) -> Command:
    """The command software wrote, if the SMMU described by ``caps`` executes it; else
    :class:`CommandError` with CERROR_ILL saying why."""
    value = int.from_bytes(raw, "little") if not isinstance(raw, int) else raw
    cmd = decode_command(value)
    cls = type(cmd)
    name = cls.OPCODE.name
    if not _has(caps, cls.NEEDS):
        raise CommandError(CError.ILL, f"CMD_{name} needs {cls.NEEDS}, which this SMMU lacks")
    if "SSec" in cls.LAYOUT and getattr(cmd, "SSec", False):
        raise CommandError(CError.ILL, f"CMD_{name}: SSec = 1 on the Non-secure queue")
    res0 = value & ~allowed_mask(cls, caps) & ((1 << 128) - 1)
    if res0:
        raise CommandError(CError.ILL, f"CMD_{name}: RES0 bits {res0:#x} set")
    why = cmd.illegal(caps)
    if why:
        raise CommandError(CError.ILL, f"CMD_{name}: {why}")
    return cmd

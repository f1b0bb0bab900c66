"""Command-queue entries (16 bytes): every opcode, its field layout, and CERROR_ILL detection.

Each command is a :class:`Command` record whose opcode is its fixed part and whose ``LAYOUT``
names its fields at absolute bit positions of the 128-bit entry ("w0" = bits 63:0, "w1" =
bits 127:64). :func:`check_command` decodes what software wrote into the queue and raises
:class:`CommandError` (CERROR_ILL) for what the SMMU refuses: an undefined opcode, a command the
capability set has no use for (stage-1 commands without stage 1, stage-2 commands without stage 2,
EL2 commands without HYP, ATS/PRI/stall commands without those features, Secure-only commands),
a reserved field value, or a set RES0 bit — bits no field defines, and the fields a feature
absent from the capability set leaves RES0 (VMID without stage 2, the upper VMID/ASID byte
without 16-bit IDs, SSV/SSID without substreams, range fields without IDR3.RIL).
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar

from iommu_uapi_vtd.bits import Field, Record, bit

from .idr import SmmuCaps, StallModel

__all__ = [
    "CMD_SIZE",
    "COMMANDS",
    "AtcInv",
    "CError",
    "CfgiAll",
    "CfgiCd",
    "CfgiCdAll",
    "CfgiSte",
    "CfgiSteRange",
    "CfgiVmsPidm",
    "Command",
    "CommandError",
    "Opcode",
    "PrefetchAddr",
    "PrefetchConfig",
    "PriResp",
    "PriRespCode",
    "Resume",
    "StallTerm",
    "Sync",
    "SyncCs",
    "TlbiEl2All",
    "TlbiEl2Asid",
    "TlbiEl2Va",
    "TlbiEl2Vaa",
    "TlbiEl3All",
    "TlbiEl3Va",
    "TlbiNhAll",
    "TlbiNhAsid",
    "TlbiNhVa",
    "TlbiNhVaa",
    "TlbiNsnhAll",
    "TlbiS2Ipa",
    "TlbiS12Vmall",
    "check_command",
    "decode_command",
]

CMD_SIZE = 16
OPCODE = Field(0, 8)


class Opcode(IntEnum):
    """Command opcodes (bits 7:0). CFGI_ALL is CFGI_STE_RANGE with Range = 31."""

    PREFETCH_CONFIG = 0x01
    PREFETCH_ADDR = 0x02
    CFGI_STE = 0x03
    CFGI_STE_RANGE = 0x04
    CFGI_CD = 0x05
    CFGI_CD_ALL = 0x06
    CFGI_VMS_PIDM = 0x07
    TLBI_NH_ALL = 0x10
    TLBI_NH_ASID = 0x11
    TLBI_NH_VA = 0x12
    TLBI_NH_VAA = 0x13
    TLBI_EL3_ALL = 0x18
    TLBI_EL3_VA = 0x1A
    TLBI_EL2_ALL = 0x20
    TLBI_EL2_ASID = 0x21
    TLBI_EL2_VA = 0x22
    TLBI_EL2_VAA = 0x23
    TLBI_S12_VMALL = 0x28
    TLBI_S2_IPA = 0x2A
    TLBI_NSNH_ALL = 0x30
    ATC_INV = 0x40
    PRI_RESP = 0x41
    RESUME = 0x44
    STALL_TERM = 0x45
    SYNC = 0x46


class CError(IntEnum):
    """CMDQ_CONS.ERR: why the command queue stopped."""

    NONE = 0
    ILL = 1
    ABT = 2
    ATC_INV_SYNC = 3


class SyncCs(IntEnum):
    """CMD_SYNC.CS: completion signal (0b11 reserved)."""

    NONE = 0b00
    IRQ = 0b01
    SEV = 0b10


class PriRespCode(IntEnum):
    """CMD_PRI_RESP.Resp (0b11 reserved)."""

    FAILURE = 0b00
    INVALID = 0b01
    SUCCESS = 0b10


class CommandError(Exception):
    """A command the SMMU refuses: ``cerror`` is what CMDQ_CONS.ERR reports."""

    def __init__(self, cerror: CError, message: str) -> None:
        super().__init__(message)
        self.cerror = cerror


# fields shared by several layouts, each named once
_SSEC, _SSV, _SSID, _SID = bit(10), bit(11), Field(12, 20), Field(32, 32)
_NUM, _SCALE, _VMID, _ASID = Field(12, 5), Field(20, 5), Field(32, 16), Field(48, 16)
_LEAF, _TTL, _TG, _ADDR = bit(64), Field(72, 2), Field(74, 2), Field(76, 52, 12)
_RANGE = {"NUM": _NUM, "SCALE": _SCALE, "TTL": _TTL, "TG": _TG}


class Command(Record, frozen=True, gc=False):
    """A 128-bit command; ``OPCODE`` is its fixed part (``FIXED``, set for every layout of
    :data:`COMMANDS`)."""

    BITS = 128
    OPCODE: ClassVar[Opcode]
    #: The capability the command needs (an :class:`SmmuCaps` attribute), else CERROR_ILL.
    NEEDS: ClassVar[str | None] = None

    @classmethod
    def allowed_mask(cls, caps: SmmuCaps) -> int:
        """The bits that may be set under ``caps`` (the rest are RES0)."""
        mask = cls.defined_mask() & ~(_SSEC.mask if "SSec" in cls.LAYOUT else 0)
        layout = cls.LAYOUT
        if "SSV" in layout and not caps.ssidsize:
            mask &= ~(_SSV.mask | _SSID.mask | (layout["G"].mask if "G" in layout else 0))
        if "VMID" in layout:
            if not caps.s2p:
                mask &= ~_VMID.mask
            elif not caps.vmid16:
                mask &= ~(0xFF00 << _VMID.shift)
        if "ASID" in layout and not caps.asid16:
            mask &= ~(0xFF00 << _ASID.shift)
        if "TG" in layout and not caps.ril:
            mask &= ~sum(f.mask for f in _RANGE.values())
        return mask

    def illegal(self, caps: SmmuCaps) -> str | None:
        """Why this command's field values are illegal beyond RES0 bits (None: legal)."""
        return None


def _layout(*names: str, **extra: Field) -> dict[str, Field]:
    common = {"SSec": _SSEC, "SSV": _SSV, "SSID": _SSID, "SID": _SID, "VMID": _VMID,
              "ASID": _ASID, "NUM": _NUM, "SCALE": _SCALE, "Leaf": _LEAF, "TTL": _TTL,
              "TG": _TG, "Addr": _ADDR}
    return {**{n: common[n] for n in names}, **extra}


class PrefetchConfig(Command, frozen=True, gc=False):
    """Hint: fetch the configuration of (SID, SSID)."""

    OPCODE = Opcode.PREFETCH_CONFIG
    LAYOUT = _layout("SSec", "SSV", "SSID", "SID")
    SSec: bool = False
    SSV: bool = False
    SSID: int = 0
    SID: int = 0


class PrefetchAddr(Command, frozen=True, gc=False):
    """Hint: prefetch the translation of 4 KiB·2^Size at Addr for (SID, SSID)."""

    OPCODE = Opcode.PREFETCH_ADDR
    LAYOUT = _layout("SSec", "SSV", "SSID", "SID", Size=Field(64, 5), Addr=_ADDR)
    SSec: bool = False
    SSV: bool = False
    SSID: int = 0
    SID: int = 0
    Size: int = 0
    Addr: int = 0


class CfgiSte(Command, frozen=True, gc=False):
    """Invalidate the cached STE of SID (Leaf = 0: and the L1 stream descriptor)."""

    OPCODE = Opcode.CFGI_STE
    LAYOUT = _layout("SSec", "SID", "Leaf")
    SSec: bool = False
    SID: int = 0
    Leaf: bool = False


class CfgiSteRange(Command, frozen=True, gc=False):
    """Invalidate the STEs of the 2^(Range+1) naturally aligned StreamIDs containing SID
    (Range = 31: every STE, CFGI_ALL)."""

    OPCODE = Opcode.CFGI_STE_RANGE
    LAYOUT = _layout("SSec", "SID", Range=Field(64, 5))
    SSec: bool = False
    SID: int = 0
    Range: int = 0

    @property
    def sids(self) -> range:
        """The StreamIDs the command covers."""
        span = 1 << (self.Range + 1)
        start = self.SID & -span
        return range(start, start + span)


def CfgiAll() -> CfgiSteRange:
    """CMD_CFGI_ALL: CFGI_STE_RANGE with Range = 31."""
    return CfgiSteRange(Range=31)


class CfgiCd(Command, frozen=True, gc=False):
    """Invalidate the cached CD of (SID, SSID) (Leaf = 0: and the L1 CD descriptor)."""

    OPCODE = Opcode.CFGI_CD
    NEEDS = "s1p"
    LAYOUT = _layout("SSec", "SSID", "SID", "Leaf")
    SSec: bool = False
    SSID: int = 0
    SID: int = 0
    Leaf: bool = False

    @classmethod
    def allowed_mask(cls, caps: SmmuCaps) -> int:
        mask = super().allowed_mask(caps)
        return mask if caps.ssidsize else mask & ~_SSID.mask


class CfgiCdAll(Command, frozen=True, gc=False):
    """Invalidate every cached CD of SID."""

    OPCODE = Opcode.CFGI_CD_ALL
    NEEDS = "s1p"
    LAYOUT = _layout("SSec", "SID")
    SSec: bool = False
    SID: int = 0


class CfgiVmsPidm(Command, frozen=True, gc=False):
    """Invalidate cached VMS PARTID maps (needs a VMS, which this model does not implement:
    always CERROR_ILL)."""

    OPCODE = Opcode.CFGI_VMS_PIDM
    NEEDS = "vms"
    LAYOUT = _layout("SSec", "VMID")
    SSec: bool = False
    VMID: int = 0


class TlbiNhAll(Command, frozen=True, gc=False):
    """Invalidate every stage-1 NS-EL1 entry of VMID, global ones included."""

    OPCODE = Opcode.TLBI_NH_ALL
    NEEDS = "s1p"
    LAYOUT = _layout("VMID")
    VMID: int = 0


class TlbiNhAsid(Command, frozen=True, gc=False):
    """Invalidate the non-global stage-1 entries of (VMID, ASID)."""

    OPCODE = Opcode.TLBI_NH_ASID
    NEEDS = "s1p"
    LAYOUT = _layout("VMID", "ASID")
    VMID: int = 0
    ASID: int = 0


class _RangeTlbi(Command, frozen=True, gc=False):
    """A TLBI by address: Leaf, TTL and, with IDR3.RIL, a range of (NUM+1)·2^SCALE granules of
    size TG from Addr."""

    NUM: int = 0
    SCALE: int = 0
    Leaf: bool = False
    TTL: int = 0
    TG: int = 0

    def illegal(self, caps: SmmuCaps) -> str | None:
        if not self.TG:
            if self.NUM or self.SCALE or self.TTL:
                return "NUM/SCALE/TTL are RES0 when TG = 0"
            return None
        if not (self.NUM or self.SCALE or self.TTL):
            return "TG != 0 with NUM = SCALE = TTL = 0 is reserved"
        if self.TG == 2 and self.TTL == 1:
            return "TTL = 1 with the 16 KiB granule needs 52-bit (DS) tables"
        return None

    @property
    def granule(self) -> int | None:
        """The range's granule in bytes (None: TG = 0, a single address)."""
        return {1: 4096, 2: 16384, 3: 65536}.get(self.TG)

    @property
    def span(self) -> int:
        """Bytes covered: (NUM+1)·2^SCALE granules; 0 when TG = 0 (a single address)."""
        g = self.granule
        return 0 if g is None else (self.NUM + 1) * (1 << self.SCALE) * g


class TlbiNhVa(_RangeTlbi, frozen=True, gc=False):
    """Invalidate stage-1 entries of (VMID, ASID, VA) and global entries of (VMID, VA)."""

    OPCODE = Opcode.TLBI_NH_VA
    NEEDS = "s1p"
    LAYOUT = _layout("NUM", "SCALE", "VMID", "ASID", "Leaf", "TTL", "TG", "Addr")
    VMID: int = 0
    ASID: int = 0
    Addr: int = 0


class TlbiNhVaa(_RangeTlbi, frozen=True, gc=False):
    """Invalidate stage-1 entries of VA in every ASID of VMID."""

    OPCODE = Opcode.TLBI_NH_VAA
    NEEDS = "s1p"
    LAYOUT = _layout("NUM", "SCALE", "VMID", "Leaf", "TTL", "TG", "Addr")
    VMID: int = 0
    Addr: int = 0


class TlbiEl3All(Command, frozen=True, gc=False):
    """Invalidate every EL3 entry (Secure command queue only)."""

    OPCODE = Opcode.TLBI_EL3_ALL
    NEEDS = "secure"
    LAYOUT: ClassVar[dict[str, Field]] = {}


class TlbiEl3Va(_RangeTlbi, frozen=True, gc=False):
    """Invalidate EL3 entries of VA (Secure command queue only)."""

    OPCODE = Opcode.TLBI_EL3_VA
    NEEDS = "secure"
    LAYOUT = _layout("NUM", "SCALE", "Leaf", "TTL", "TG", "Addr")
    Addr: int = 0


class TlbiEl2All(Command, frozen=True, gc=False):
    """Invalidate every EL2 entry."""

    OPCODE = Opcode.TLBI_EL2_ALL
    NEEDS = "hyp"
    LAYOUT: ClassVar[dict[str, Field]] = {}


class TlbiEl2Asid(Command, frozen=True, gc=False):
    """Invalidate the non-global EL2 entries of ASID."""

    OPCODE = Opcode.TLBI_EL2_ASID
    NEEDS = "hyp"
    LAYOUT = _layout("ASID")
    ASID: int = 0


class TlbiEl2Va(_RangeTlbi, frozen=True, gc=False):
    """Invalidate EL2 entries of (ASID, VA) and global entries of VA."""

    OPCODE = Opcode.TLBI_EL2_VA
    NEEDS = "hyp"
    LAYOUT = _layout("NUM", "SCALE", "ASID", "Leaf", "TTL", "TG", "Addr")
    ASID: int = 0
    Addr: int = 0


class TlbiEl2Vaa(_RangeTlbi, frozen=True, gc=False):
    """Invalidate EL2 entries of VA in every ASID."""

    OPCODE = Opcode.TLBI_EL2_VAA
    NEEDS = "hyp"
    LAYOUT = _layout("NUM", "SCALE", "Leaf", "TTL", "TG", "Addr")
    Addr: int = 0


class TlbiS12Vmall(Command, frozen=True, gc=False):
    """Invalidate every entry of VMID, both stages."""

    OPCODE = Opcode.TLBI_S12_VMALL
    NEEDS = "s2p"
    LAYOUT = _layout("VMID")
    VMID: int = 0


class TlbiS2Ipa(_RangeTlbi, frozen=True, gc=False):
    """Invalidate stage-2 entries of (VMID, IPA) (IPA bits 51:12)."""

    OPCODE = Opcode.TLBI_S2_IPA
    NEEDS = "s2p"
    LAYOUT = _layout("NUM", "SCALE", "VMID", "Leaf", "TTL", "TG", IPA=Field(76, 40, 12))
    VMID: int = 0
    IPA: int = 0


class TlbiNsnhAll(Command, frozen=True, gc=False):
    """Invalidate every non-hyp Non-secure entry at every stage (valid on every SMMU)."""

    OPCODE = Opcode.TLBI_NSNH_ALL
    LAYOUT: ClassVar[dict[str, Field]] = {}


class AtcInv(Command, frozen=True, gc=False):
    """Invalidate the endpoint ATC of SID: 4 KiB·2^Size at Addr (Size >= 52: everything);
    SSV: only that PASID; G with SSV: global entries across PASIDs."""

    OPCODE = Opcode.ATC_INV
    NEEDS = "ats"
    LAYOUT = _layout("SSec", "SSV", "SSID", "SID", "Addr", G=bit(9), Size=Field(64, 6))
    SSec: bool = False
    SSV: bool = False
    SSID: int = 0
    SID: int = 0
    Addr: int = 0
    G: bool = False
    Size: int = 0


class PriResp(Command, frozen=True, gc=False):
    """Answer the page request group PRGI of (SID, SSID)."""

    OPCODE = Opcode.PRI_RESP
    NEEDS = "pri"
    LAYOUT = _layout("SSec", "SSV", "SSID", "SID", PRGI=Field(64, 9), Resp=Field(76, 2))
    SSec: bool = False
    SSV: bool = False
    SSID: int = 0
    SID: int = 0
    PRGI: int = 0
    Resp: int = 0

    def illegal(self, caps: SmmuCaps) -> str | None:
        return "Resp = 0b11 is reserved" if self.Resp == 3 else None


class Resume(Command, frozen=True, gc=False):
    """Retry (Ac = 1) or terminate (Ac = 0; Ab = 1 abort, 0 RAZ/WI) the stalled transaction
    STAG of SID."""

    OPCODE = Opcode.RESUME
    NEEDS = "stall"
    LAYOUT = _layout("SSec", "SID", Ac=bit(12), Ab=bit(13), STAG=Field(64, 16))
    SSec: bool = False
    SID: int = 0
    Ac: bool = False
    Ab: bool = False
    STAG: int = 0


class StallTerm(Command, frozen=True, gc=False):
    """Terminate every stalled transaction of SID."""

    OPCODE = Opcode.STALL_TERM
    NEEDS = "stall"
    LAYOUT = _layout("SSec", "SID")
    SSec: bool = False
    SID: int = 0


class Sync(Command, frozen=True, gc=False):
    """Complete when every earlier command's effect is visible; signal per CS (IRQ: write
    MSIData to MSIAddr when MSIAddr != 0)."""

    OPCODE = Opcode.SYNC
    LAYOUT = {"CS": Field(12, 2), "MSH": Field(22, 2), "MSIAttr": Field(24, 4),
              "MSIData": Field(32, 32), "MSIAddr": Field(66, 54, 2)}
    CS: int = 0
    MSH: int = 0
    MSIAttr: int = 0
    MSIData: int = 0
    MSIAddr: int = 0

    def illegal(self, caps: SmmuCaps) -> str | None:
        return "CS = 0b11 is reserved" if self.CS == 3 else None


#: Every defined opcode's layout.
COMMANDS: dict[Opcode, type[Command]] = {
    cls.OPCODE: cls for cls in (
        PrefetchConfig, PrefetchAddr, CfgiSte, CfgiSteRange, CfgiCd, CfgiCdAll, CfgiVmsPidm,
        TlbiNhAll, TlbiNhAsid, TlbiNhVa, TlbiNhVaa, TlbiEl3All, TlbiEl3Va, TlbiEl2All,
        TlbiEl2Asid, TlbiEl2Va, TlbiEl2Vaa, TlbiS12Vmall, TlbiS2Ipa, TlbiNsnhAll, AtcInv,
        PriResp, Resume, StallTerm, Sync)
}
for _cls in COMMANDS.values():
    _cls.FIXED = OPCODE.put(_cls.OPCODE)


def _has(caps: SmmuCaps, need: str | None) -> bool:
    if need is None:
        return True
    if need == "stall":
        return caps.stall_model != StallModel.TERMINATE_ONLY
    if need in ("secure", "vms"):
        return False  # the Non-secure queue of an SMMU without a VMS
    return bool(getattr(caps, need))


def decode_command(raw: int | bytes | bytearray | memoryview) -> Command:
    """The command in its opcode's layout (``CommandError(ILL)`` for an undefined opcode); no
    legality check beyond the opcode."""
    value = int.from_bytes(raw, "little") if not isinstance(raw, int) else raw
    try:
        cls = COMMANDS[Opcode(OPCODE.get(value))]
    except ValueError:
        raise CommandError(CError.ILL, f"opcode {OPCODE.get(value):#04x} is undefined") from None
    return cls.from_int(value)


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
    res0 = value & ~cls.allowed_mask(caps) & ((1 << 128) - 1)
    if res0:
        raise CommandError(CError.ILL, f"CMD_{name}: RES0 bits {res0:#x} set")
    why = cmd.illegal(caps)
    if why:
        raise CommandError(CError.ILL, f"CMD_{name}: {why}")
    return cmd

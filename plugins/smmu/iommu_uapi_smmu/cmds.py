"""Command-queue entries (16 bytes): the field layout of every opcode (hw-formats 2.6.2).

Each layout is a :class:`~.cmd_layout.Command` record: its opcode is the fixed part, its
``LAYOUT`` names the fields at absolute bit positions of the 128-bit entry, ``NEEDS`` the
capability without which the command is CERROR_ILL and ``illegal`` its reserved field values
(:mod:`.cmd_check` applies them). :data:`COMMANDS` maps every opcode to its layout;
:func:`decode_command` reads any entry back. The shared names (:class:`~.cmd_layout.Opcode`,
:class:`~.cmd_layout.Command`, :class:`~.cmd_layout.CommandError`, ...) are re-exported.
"""

from __future__ import annotations

from typing import ClassVar

from iommu_uapi.hw.bits import Field, bit

from .cmd_layout import (
    CMD_SIZE,
    F_ADDR,
    OPCODE,
    CError,
    Command,
    CommandError,
    Opcode,
    PriRespCode,
    SyncCs,
    shared_layout,
)
from .idr import SmmuCaps

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
    "decode_command",
]

class PrefetchConfig(Command, frozen=True, gc=False):
    """Hint: fetch the configuration of (SID, SSID)."""

    OPCODE = Opcode.PREFETCH_CONFIG
    LAYOUT = shared_layout("SSec", "SSV", "SSID", "SID")
    SSec: bool = False
    SSV: bool = False
    SSID: int = 0
    SID: int = 0


class PrefetchAddr(Command, frozen=True, gc=False):
    """Hint: prefetch the translation of 4 KiB·2^Size at Addr for (SID, SSID)."""

    OPCODE = Opcode.PREFETCH_ADDR
    LAYOUT = shared_layout("SSec", "SSV", "SSID", "SID", Size=Field(64, 5), Addr=F_ADDR)
    SSec: bool = False
    SSV: bool = False
    SSID: int = 0
    SID: int = 0
    Size: int = 0
    Addr: int = 0


class CfgiSte(Command, frozen=True, gc=False):
    """Invalidate the cached STE of SID (Leaf = 0: and the L1 stream descriptor)."""

    OPCODE = Opcode.CFGI_STE
    LAYOUT = shared_layout("SSec", "SID", "Leaf")
    SSec: bool = False
    SID: int = 0
    Leaf: bool = False


class CfgiSteRange(Command, frozen=True, gc=False):
    """Invalidate the STEs of the 2^(Range+1) naturally aligned StreamIDs containing SID
    (Range = 31: every STE, CFGI_ALL)."""

    OPCODE = Opcode.CFGI_STE_RANGE
    LAYOUT = shared_layout("SSec", "SID", Range=Field(64, 5))
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
    LAYOUT = shared_layout("SSec", "SSID", "SID", "Leaf")
    SSec: bool = False
    SSID: int = 0
    SID: int = 0
    Leaf: bool = False


class CfgiCdAll(Command, frozen=True, gc=False):
    """Invalidate every cached CD of SID."""

    OPCODE = Opcode.CFGI_CD_ALL
    NEEDS = "s1p"
    LAYOUT = shared_layout("SSec", "SID")
    SSec: bool = False
    SID: int = 0


class CfgiVmsPidm(Command, frozen=True, gc=False):
    """Invalidate cached VMS PARTID maps (needs a VMS, which this model does not implement:
    always CERROR_ILL)."""

    OPCODE = Opcode.CFGI_VMS_PIDM
    NEEDS = "vms"
    LAYOUT = shared_layout("SSec", "VMID")
    SSec: bool = False
    VMID: int = 0


class TlbiNhAll(Command, frozen=True, gc=False):
    """Invalidate every stage-1 NS-EL1 entry of VMID, global ones included."""

    OPCODE = Opcode.TLBI_NH_ALL
    NEEDS = "s1p"
    LAYOUT = shared_layout("VMID")
    VMID: int = 0


class TlbiNhAsid(Command, frozen=True, gc=False):
    """Invalidate the non-global stage-1 entries of (VMID, ASID)."""

    OPCODE = Opcode.TLBI_NH_ASID
    NEEDS = "s1p"
    LAYOUT = shared_layout("VMID", "ASID")
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
    LAYOUT = shared_layout("NUM", "SCALE", "VMID", "ASID", "Leaf", "TTL", "TG", "Addr")
    VMID: int = 0
    ASID: int = 0
    Addr: int = 0


class TlbiNhVaa(_RangeTlbi, frozen=True, gc=False):
    """Invalidate stage-1 entries of VA in every ASID of VMID."""

    OPCODE = Opcode.TLBI_NH_VAA
    NEEDS = "s1p"
    LAYOUT = shared_layout("NUM", "SCALE", "VMID", "Leaf", "TTL", "TG", "Addr")
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
    LAYOUT = shared_layout("NUM", "SCALE", "Leaf", "TTL", "TG", "Addr")
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
    LAYOUT = shared_layout("ASID")
    ASID: int = 0


class TlbiEl2Va(_RangeTlbi, frozen=True, gc=False):
    """Invalidate EL2 entries of (ASID, VA) and global entries of VA."""

    OPCODE = Opcode.TLBI_EL2_VA
    NEEDS = "hyp"
    LAYOUT = shared_layout("NUM", "SCALE", "ASID", "Leaf", "TTL", "TG", "Addr")
    ASID: int = 0
    Addr: int = 0


class TlbiEl2Vaa(_RangeTlbi, frozen=True, gc=False):
    """Invalidate EL2 entries of VA in every ASID."""

    OPCODE = Opcode.TLBI_EL2_VAA
    NEEDS = "hyp"
    LAYOUT = shared_layout("NUM", "SCALE", "Leaf", "TTL", "TG", "Addr")
    Addr: int = 0


class TlbiS12Vmall(Command, frozen=True, gc=False):
    """Invalidate every entry of VMID, both stages."""

    OPCODE = Opcode.TLBI_S12_VMALL
    NEEDS = "s2p"
    LAYOUT = shared_layout("VMID")
    VMID: int = 0


class TlbiS2Ipa(_RangeTlbi, frozen=True, gc=False):
    """Invalidate stage-2 entries of (VMID, IPA) (IPA bits 51:12)."""

    OPCODE = Opcode.TLBI_S2_IPA
    NEEDS = "s2p"
    LAYOUT = shared_layout("NUM", "SCALE", "VMID", "Leaf", "TTL", "TG", IPA=Field(76, 40, 12))
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
    LAYOUT = shared_layout("SSec", "SSV", "SSID", "SID", "Addr", G=bit(9), Size=Field(64, 6))
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
    LAYOUT = shared_layout("SSec", "SSV", "SSID", "SID", PRGI=Field(64, 9), Resp=Field(76, 2))
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
    LAYOUT = shared_layout("SSec", "SID", Ac=bit(12), Ab=bit(13), STAG=Field(64, 16))
    SSec: bool = False
    SID: int = 0
    Ac: bool = False
    Ab: bool = False
    STAG: int = 0


class StallTerm(Command, frozen=True, gc=False):
    """Terminate every stalled transaction of SID."""

    OPCODE = Opcode.STALL_TERM
    NEEDS = "stall"
    LAYOUT = shared_layout("SSec", "SID")
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


def decode_command(raw: int | bytes | bytearray | memoryview) -> Command:
    """The command in its opcode's layout (``CommandError(ILL)`` for an undefined opcode); no
    legality check beyond the opcode."""
    value = int.from_bytes(raw, "little") if not isinstance(raw, int) else raw
    try:
        cls = COMMANDS[Opcode(OPCODE.get(value))]
    except ValueError:
        raise CommandError(CError.ILL, f"opcode {OPCODE.get(value):#04x} is undefined") from None
    return cls.from_int(value)

"""The Stream Table Entry (STE, 64 bytes): fields, encodings and the ILLEGAL conditions.

One STE per StreamID says what the SMMU does with the stream's traffic: abort, bypass, or
translate through stage 1 (a CD table at S1ContextPtr), stage 2 (tables at S2TTB) or both
(nested). :func:`check_ste` gives the reason an STE is ILLEGAL under a capability set — the
SMMU then records C_BAD_STE and aborts the transaction. Bits no field defines are RES0 and
ignored; fields the capability set does not implement are ILLEGAL when they ask for the feature
(EATS without ATS, S2VMID[15:8] without VMID16, ...).
"""

from __future__ import annotations

from enum import IntEnum

from iommu_uapi.errors import UAPIError
from iommu_uapi.hw.bits import Field, bit
from iommu_uapi.iommufd.arm_smmuv3 import VSTE_FIELDS
from iommu_uapi.pasid_tables.smmuv3 import S1Fmt
from iommu_uapi.pgtable.lpae import LPAEConfig

from .idr import ADDR_SIZE_BITS, SmmuCaps, StallModel, Ttendian
from .record import SmmuRecord

__all__ = [
    "STE_SIZE",
    "Eats",
    "S1Dss",
    "S1Fmt",
    "Ste",
    "SteConfig",
    "Strw",
    "check_ste",
    "granule_of_s2tg",
    "s2_config",
    "s2_root_bytes",
]

STE_SIZE = 64


class SteConfig(IntEnum):
    """STE.Config (001-011 are reserved and behave as ABORT)."""

    ABORT = 0b000
    BYPASS = 0b100
    S1_TRANS = 0b101
    S2_TRANS = 0b110
    NESTED = 0b111


class S1Dss(IntEnum):
    """STE.S1DSS: what traffic without a SubstreamID does when S1CDMax > 0 (3 reserved, as
    TERMINATE)."""

    TERMINATE = 0b00
    BYPASS = 0b01
    SSID0 = 0b10


class Eats(IntEnum):
    """STE.EATS: which ATS translation requests the stream may make."""

    ABORT = 0b00
    FULL = 0b01
    SPLIT = 0b10
    DPT = 0b11


class Strw(IntEnum):
    """STE.STRW: the StreamWorld (01 and 11 reserved)."""

    NS_EL1 = 0b00
    EL2 = 0b10


#: S2TG -> granule in bytes (0b11 reserved).
_S2TG_GRANULE = {0b00: 4096, 0b01: 65536, 0b10: 16384}
#: S2SL0 -> starting level per granule (None: reserved, or needs 52-bit DS or STT).
S2SL0_LEVEL: dict[int, tuple[int | None, ...]] = {
    4096: (2, 1, 0, 3),
    16384: (3, 2, 1, None),
    65536: (3, 2, 1, None),
}


_Fmt = S1Fmt  # the record's S1Fmt field shadows the enum inside the class


def granule_of_s2tg(s2tg: int) -> int | None:
    """The stage-2 granule S2TG encodes, or None for the reserved encoding."""
    return _S2TG_GRANULE.get(s2tg)


class Ste(SmmuRecord, frozen=True, gc=False):
    """A Stream Table Entry, field positions as absolute bits of the 512-bit structure."""

    BITS = 512
    LAYOUT = {
        # V, Config, S1Fmt, S1ContextPtr (the CD table, an IPA when nested: bits 55:6),
        # S1CDMax, S1DSS, S1CIR, S1COR, S1CSH, S1STALLD, EATS: the fields a guest STE may
        # hold, named where iommufd's uAPI names them
        **VSTE_FIELDS,
        "STRW": Field(94, 2),
        "MemAttr": Field(96, 4),
        "MTCFG": bit(100),
        "ALLOCCFG": Field(101, 4),
        "SHCFG": Field(108, 2),
        "NSCFG": Field(110, 2),
        "PRIVCFG": Field(112, 2),
        "INSTCFG": Field(114, 2),
        "S2VMID": Field(128, 16),
        "S2T0SZ": Field(160, 6),
        "S2SL0": Field(166, 2),
        "S2IR0": Field(168, 2),
        "S2OR0": Field(170, 2),
        "S2SH0": Field(172, 2),
        "S2TG": Field(174, 2),
        "S2PS": Field(176, 3),
        "S2AA64": bit(179),
        "S2ENDI": bit(180),
        "S2AFFD": bit(181),
        "S2PTW": bit(182),
        "S2HD": bit(183),
        "S2HA": bit(184),
        "S2S": bit(185),
        "S2R": bit(186),
        "S2TTB": Field(196, 48, 4),  # stage-2 table base (PA), bits 51:4
    }
    V: bool = False
    Config: int = 0
    S1Fmt: int = 0
    S1ContextPtr: int = 0
    S1CDMax: int = 0
    S1DSS: int = 0
    S1CIR: int = 0
    S1COR: int = 0
    S1CSH: int = 0
    S1STALLD: bool = False
    EATS: int = 0
    STRW: int = 0
    MemAttr: int = 0
    MTCFG: bool = False
    ALLOCCFG: int = 0
    SHCFG: int = 0
    NSCFG: int = 0
    PRIVCFG: int = 0
    INSTCFG: int = 0
    S2VMID: int = 0
    S2T0SZ: int = 0
    S2SL0: int = 0
    S2IR0: int = 0
    S2OR0: int = 0
    S2SH0: int = 0
    S2TG: int = 0
    S2PS: int = 0
    S2AA64: bool = False
    S2ENDI: bool = False
    S2AFFD: bool = False
    S2PTW: bool = False
    S2HD: bool = False
    S2HA: bool = False
    S2S: bool = False
    S2R: bool = False
    S2TTB: int = 0

    @property
    def config(self) -> SteConfig:
        """Config, the reserved encodings read as ABORT."""
        return SteConfig(self.Config) if self.Config >= 0b100 else SteConfig.ABORT

    @property
    def stage1(self) -> bool:
        """Stage 1 translates (Config 101 or 111)."""
        return self.Config in (SteConfig.S1_TRANS, SteConfig.NESTED)

    @property
    def stage2(self) -> bool:
        """Stage 2 translates (Config 110 or 111)."""
        return self.Config in (SteConfig.S2_TRANS, SteConfig.NESTED)

    @property
    def s1fmt(self) -> _Fmt:
        """S1Fmt, the reserved encoding read as LINEAR; LINEAR too when S1CDMax = 0."""
        return _Fmt(self.S1Fmt) if self.S1CDMax and self.S1Fmt != 3 else _Fmt.LINEAR

    @property
    def s1dss(self) -> S1Dss:
        """S1DSS, the reserved encoding read as TERMINATE."""
        return S1Dss(self.S1DSS) if self.S1DSS != 3 else S1Dss.TERMINATE


def _s2_oas(ste: Ste, caps: SmmuCaps, granule: int) -> int:
    """The effective stage-2 output size: S2PS capped to the OAS (and to 48 bits without the
    64 KiB granule, which alone carries OA[51:48])."""
    code = min(ste.S2PS, len(ADDR_SIZE_BITS) - 1)
    bits = min(ADDR_SIZE_BITS[code], caps.oas)
    return min(bits, 48) if granule != 65536 else bits


def s2_config(ste: Ste, caps: SmmuCaps) -> LPAEConfig:
    """The stage-2 walk configuration of a legal stage-2 STE (``UAPIError`` when the geometry
    is inconsistent: :func:`check_ste` reports that as ILLEGAL)."""
    granule = granule_of_s2tg(ste.S2TG)
    if granule is None:
        raise ValueError("S2TG 0b11 is reserved")
    return LPAEConfig(stage=2, granule=granule, t0sz=ste.S2T0SZ, sl0=ste.S2SL0,
                      oas=_s2_oas(ste, caps, granule), ha=ste.S2HA,
                      hd=ste.S2HD and ste.S2HA, stt=caps.stt)  # dirty state needs HA


def s2_root_bytes(cfg: LPAEConfig) -> int:
    """Bytes of a stage-2 start-level table, concatenated tables included."""
    g = cfg.granule.bit_length() - 1
    level = S2SL0_LEVEL[cfg.granule][cfg.sl0 or 0]
    assert level is not None
    return 8 << (cfg.ias - (g + (g - 3) * (3 - level)))


def _check_stage2(ste: Ste, caps: SmmuCaps) -> str | None:
    granule = granule_of_s2tg(ste.S2TG)
    if granule is None or granule not in caps.granules:
        return f"S2TG {ste.S2TG:#04b} is not a supported granule"
    if not ste.S2AA64:
        return "S2AA64 = 0: only VMSAv8-64 stage-2 tables are implemented"
    if (caps.ttendian == Ttendian.BIG) != ste.S2ENDI and caps.ttendian != Ttendian.MIXED:
        return "S2ENDI asks for an endianness IDR0.TTENDIAN does not support"
    if ste.S2S and caps.stall_model == StallModel.TERMINATE_ONLY:
        return "S2S = 1 but IDR0.STALL_MODEL is terminate-only"
    if not ste.S2S and caps.stall_model == StallModel.STALL_FORCED:
        return "S2S = 0 but IDR0.STALL_MODEL forces stalling"
    if (ste.S2HA and caps.httu < 1) or (ste.S2HD and caps.httu < 2):
        return "S2HA/S2HD without IDR0.HTTU support"
    if caps.ias < 64 - ste.S2T0SZ:
        return f"S2T0SZ {ste.S2T0SZ} gives an IPA wider than the {caps.ias}-bit IAS"
    try:
        cfg = s2_config(ste, caps)
    except UAPIError as exc:
        return f"stage-2 geometry: {exc}"
    if ste.S2TTB >> cfg.oas:
        return f"S2TTB {ste.S2TTB:#x} beyond the {cfg.oas}-bit stage-2 output size"
    if ste.S2TTB & (max(16, s2_root_bytes(cfg)) - 1):
        return f"S2TTB {ste.S2TTB:#x} not aligned to its {s2_root_bytes(cfg)}-byte start table"
    return None


def _check_stage1(ste: Ste, caps: SmmuCaps) -> str | None:
    if ste.S1CDMax > caps.ssidsize:
        return f"S1CDMax {ste.S1CDMax} exceeds IDR1.SSIDSIZE {caps.ssidsize}"
    if ste.S1CDMax and ste.S1Fmt in (S1Fmt.TWO_LEVEL_4K, S1Fmt.TWO_LEVEL_64K) and not caps.cd2l:
        return "two-level S1Fmt without IDR0.CD2L"
    if ste.S1STALLD and caps.stall_model != StallModel.STALL_AND_TERMINATE:
        return "S1STALLD = 1 but IDR0.STALL_MODEL is not stall-and-terminate"
    return None


def check_ste(ste: Ste, caps: SmmuCaps) -> str | None:
    """Why ``ste`` is ILLEGAL under ``caps`` (the SMMU records C_BAD_STE), or None.

    Checked only for a valid STE that does not abort: V, then Config against S1P/S2P, EATS,
    STRW, S2VMID width, the stage-1 fields (S1CDMax, S1Fmt, S1STALLD) and the stage-2 fields
    (granule, table format, endianness, stall, HTTU, S2T0SZ/S2SL0 geometry, S2TTB).
    """
    if not ste.V:
        return "V = 0"
    config = ste.config
    if config == SteConfig.ABORT:
        return None
    if ste.stage1 and not caps.s1p:
        return f"Config {ste.Config:#05b} needs stage 1 (IDR0.S1P)"
    if ste.stage2 and not caps.s2p:
        return f"Config {ste.Config:#05b} needs stage 2 (IDR0.S2P)"
    if ste.EATS and not caps.ats:
        return "EATS != 0 without IDR0.ATS"
    if ste.EATS == Eats.SPLIT and config != SteConfig.NESTED:
        return "EATS = split-stage needs Config = nested"
    if ste.EATS == Eats.DPT:
        return "EATS = DPT check is not implemented"
    if ste.STRW not in (Strw.NS_EL1, Strw.EL2):
        return f"STRW {ste.STRW:#04b} is reserved"
    if ste.STRW == Strw.EL2 and not caps.hyp:
        return "STRW = EL2 without IDR0.HYP"
    if config == SteConfig.BYPASS:
        return None
    if caps.s2p and ste.S2VMID >> 8 and not caps.vmid16:
        return f"S2VMID {ste.S2VMID:#x} has bits 15:8 set without IDR0.VMID16"
    if ste.stage1:
        why = _check_stage1(ste, caps)
        if why:
            return why
    if ste.stage2:
        return _check_stage2(ste, caps)
    return None

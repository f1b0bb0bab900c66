"""The Context Descriptor (CD, 64 bytes): stage-1 translation regime of one (StreamID, SSID).

A CD holds two VA halves (TTB0 for VA[55] = 0, TTB1 for VA[55] = 1), each with its size (TxSZ),
granule (TGx, the two halves encoded differently) and walk-disable bit (EPDx), plus the ASID,
output size (IPS) and the fault behaviour (A, R, S). :func:`check_cd` gives the reason a CD is
ILLEGAL (the SMMU records C_BAD_CD); :func:`s1_config` the walk configuration of one half.
"""

from __future__ import annotations

from iommu_uapi.hw.bits import Field, bit
from iommu_uapi.pgtable.lpae import LPAEConfig

from .idr import ADDR_SIZE_BITS, SmmuCaps, StallModel, Ttendian
from .record import SmmuRecord

__all__ = ["CD_SIZE", "TG0_GRANULE", "TG1_GRANULE", "Cd", "check_cd", "s1_config", "tsz_range"]

CD_SIZE = 64

#: CD.TG0 -> granule (0b11 reserved).
TG0_GRANULE = {0b00: 4096, 0b01: 65536, 0b10: 16384}
#: CD.TG1 -> granule: a different encoding (0b00 reserved).
TG1_GRANULE = {0b10: 4096, 0b11: 65536, 0b01: 16384}


class Cd(SmmuRecord, frozen=True, gc=False):
    """A Context Descriptor, field positions as absolute bits of the 512-bit structure."""

    BITS = 512
    LAYOUT = {
        "T0SZ": Field(0, 6),
        "TG0": Field(6, 2),
        "IR0": Field(8, 2),
        "OR0": Field(10, 2),
        "SH0": Field(12, 2),
        "EPD0": bit(14),
        "ENDI": bit(15),
        "T1SZ": Field(16, 6),
        "TG1": Field(22, 2),
        "IR1": Field(24, 2),
        "OR1": Field(26, 2),
        "SH1": Field(28, 2),
        "EPD1": bit(30),
        "V": bit(31),
        "IPS": Field(32, 3),
        "AFFD": bit(35),
        "WXN": bit(36),
        "UWXN": bit(37),
        "TBI0": bit(38),
        "TBI1": bit(39),
        "PAN": bit(40),
        "AA64": bit(41),
        "HD": bit(42),
        "HA": bit(43),
        "S": bit(44),
        "R": bit(45),
        "A": bit(46),
        "ASET": bit(47),
        "ASID": Field(48, 16),
        "NSCFG0": bit(64),
        "HAD0": bit(65),
        "TTB0": Field(68, 52, 4),  # TTB0 address bits 55:4 (IPA when nested)
        "NSCFG1": bit(128),
        "HAD1": bit(129),
        "TTB1": Field(132, 52, 4),
        "MAIR0": Field(192, 32),
        "MAIR1": Field(224, 32),
        "AMAIR": Field(256, 64),
        "IMPDEF": Field(320, 32),
        "PARTID": Field(352, 16),
        "PMG": Field(368, 8),
    }
    T0SZ: int = 0
    TG0: int = 0
    IR0: int = 0
    OR0: int = 0
    SH0: int = 0
    EPD0: bool = False
    ENDI: bool = False
    T1SZ: int = 0
    TG1: int = 0
    IR1: int = 0
    OR1: int = 0
    SH1: int = 0
    EPD1: bool = False
    V: bool = False
    IPS: int = 0
    AFFD: bool = False
    WXN: bool = False
    UWXN: bool = False
    TBI0: bool = False
    TBI1: bool = False
    PAN: bool = False
    AA64: bool = False
    HD: bool = False
    HA: bool = False
    S: bool = False
    R: bool = False
    A: bool = False
    ASET: bool = False
    ASID: int = 0
    NSCFG0: bool = False
    HAD0: bool = False
    TTB0: int = 0
    NSCFG1: bool = False
    HAD1: bool = False
    TTB1: int = 0
    MAIR0: int = 0
    MAIR1: int = 0
    AMAIR: int = 0
    IMPDEF: int = 0
    PARTID: int = 0
    PMG: int = 0

    def half(self, n: int) -> tuple[int, int | None, bool, int]:
        """``(TxSZ, granule or None for a reserved TGx, EPDx, TTBx)`` of VA half ``n``."""
        if n == 0:
            return self.T0SZ, TG0_GRANULE.get(self.TG0), self.EPD0, self.TTB0
        return self.T1SZ, TG1_GRANULE.get(self.TG1), self.EPD1, self.TTB1


def tsz_range(granule: int, caps: SmmuCaps) -> tuple[int, int]:
    """The legal stage-1 TxSZ values for ``granule``: 16..39, down to 12 with the 64 KiB
    granule and a 52-bit VA (IDR5.VAX), up to 48 (47 with 64 KiB) with IDR3.STT."""
    low = 12 if granule == 65536 and caps.vax == 1 else 16
    high = (47 if granule == 65536 else 48) if caps.stt else 39
    return low, high


def s1_oas(cd: Cd, caps: SmmuCaps, granule: int) -> int:
    """The effective stage-1 output size: IPS capped to the OAS (48 bits without the 64 KiB
    granule)."""
    bits = min(ADDR_SIZE_BITS[min(cd.IPS, len(ADDR_SIZE_BITS) - 1)], caps.oas)
    return min(bits, 48) if granule != 65536 else bits


def s1_config(cd: Cd, n: int, caps: SmmuCaps) -> LPAEConfig:
    """The walk configuration of VA half ``n`` of a legal CD (its EPDx being 0)."""
    tsz, granule, _, _ = cd.half(n)
    if granule is None:
        raise ValueError(f"TG{n} is reserved")
    had = (cd.HAD0 if n == 0 else cd.HAD1) and caps.had
    return LPAEConfig(stage=1, granule=granule, t0sz=tsz, oas=s1_oas(cd, caps, granule),
                      ha=cd.HA, hd=cd.HD and cd.HA, hpd=had, stt=caps.stt)  # HD needs HA


def check_cd(cd: Cd, caps: SmmuCaps, *, s1stalld: bool = False) -> str | None:
    """Why ``cd`` is ILLEGAL under ``caps`` (the SMMU records C_BAD_CD), or None.

    ``s1stalld`` is the STE's S1STALLD. Checked: V; AA64 (only VMSAv8-64 tables are
    implemented); each half whose EPD is 0: TxSZ range, TGx supported; ENDI against
    IDR0.TTENDIAN; HA/HD against IDR0.HTTU; ASID[15:8] without ASID16; S against the stall
    model (and S1STALLD).
    """
    if not cd.V:
        return "V = 0"
    if not cd.AA64 or not caps.aarch64:
        return "AA64 = 0: only VMSAv8-64 stage-1 tables are implemented"
    for n in (0, 1):
        tsz, granule, epd, _ = cd.half(n)
        if epd:
            continue
        if granule is None or granule not in caps.granules:
            return f"TG{n} {cd.TG0 if n == 0 else cd.TG1:#04b} is not a supported granule"
        low, high = tsz_range(granule, caps)
        if not low <= tsz <= high:
            return f"T{n}SZ {tsz} outside {low}..{high}"
    if caps.ttendian != Ttendian.MIXED and (caps.ttendian == Ttendian.BIG) != cd.ENDI:
        return "ENDI asks for an endianness IDR0.TTENDIAN does not support"
    if (cd.HA and caps.httu < 1) or (cd.HD and caps.httu < 2):
        return "HA/HD without IDR0.HTTU support"
    if cd.ASID >> 8 and not caps.asid16:
        return f"ASID {cd.ASID:#x} has bits 15:8 set without IDR0.ASID16"
    if cd.S and (caps.stall_model == StallModel.TERMINATE_ONLY or s1stalld):
        return "S = 1 but stalling is disabled (IDR0.STALL_MODEL or STE.S1STALLD)"
    if not cd.S and caps.stall_model == StallModel.STALL_FORCED:
        return "S = 0 but IDR0.STALL_MODEL forces stalling"
    return None

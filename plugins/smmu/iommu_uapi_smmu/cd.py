"""The Context Descriptor (CD, 64 bytes): stage-1 translation regime of one (StreamID, SSID).

A CD holds two VA halves (TTB0 for VA[55] = 0, TTB1 for VA[55] = 1), each with its size (TxSZ),
granule (TGx, the two halves encoded differently) and walk-disable bit (EPDx), plus the ASID,
output size (IPS) and the fault behaviour (A, R, S). :func:`check_cd` gives the reason a CD is
ILLEGAL (the SMMU records C_BAD_CD); :func:`s1_config` the walk configuration of one half.
The layout (``Cd``, the TGx encodings) lives in the core's
:mod:`iommu_uapi.pasid_tables.smmuv3` (``IOMMU_PASID_FORMAT_SMMUV3``) and is re-exported here.
"""

from __future__ import annotations

from iommu_uapi.pasid_tables.smmuv3 import (
    CD_SIZE,
    TG0_GRANULE,
    TG1_GRANULE,
    Cd,
    half_config,
)
from iommu_uapi.pgtable.lpae import LPAEConfig

from .idr import ADDR_SIZE_BITS, SmmuCaps, StallModel, Ttendian

__all__ = ["CD_SIZE", "TG0_GRANULE", "TG1_GRANULE", "Cd", "check_cd", "s1_config", "tsz_range"]


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
    return half_config(cd, n, oas=caps.oas, stt=caps.stt, had=caps.had)


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

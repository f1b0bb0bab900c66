"""``IOMMU_PASID_FORMAT_SMMUV3``: the Arm SMMUv3 Context Descriptor (CD) and its table.

A CD (64 bytes) is the stage-1 regime of one (StreamID, SubstreamID): two VA halves (TTB0 for
VA[55] = 0, TTB1 for VA[55] = 1), each with its size (TxSZ), granule (TGx, the two halves encoded
differently) and walk-disable bit (EPDx), plus the ASID, output size (IPS) and the fault
behaviour (A, R, S). The CD table (STE.S1ContextPtr, or the UAPI's ``base_ptr``) holds 2^S1CDMax
CDs (linear) or an L1 table of 8-byte descriptors whose L2 tables hold 64 CDs (4 KiB leaves) or
1024 CDs (64 KiB leaves). Nested, the table pointer and every L2Ptr are IPAs: each fetch is
translated by the host stage 2 first, and its descriptor reads counted.

What makes a CD ILLEGAL depends on an SMMU's ID registers and stays with the SMMU model; this
module holds the bit layout and the reader.
"""

from __future__ import annotations

import errno
from enum import Enum, IntEnum
from typing import NamedTuple

from ..errors import MemoryAccessError
from ..hw.bits import Field, Record, Refusal, bit
from ..memory import PhysicalMemory
from ..pgtable.common import Stage2Translate, WalkFault
from ..pgtable.lpae import LPAEConfig
from ..uapi.consts import FaultPerm

__all__ = [
    "ADDR_SIZE_BITS",
    "CD_SIZE",
    "L1CD_SIZE",
    "L2_SHIFT",
    "TG0_GRANULE",
    "TG1_GRANULE",
    "Cd",
    "CdFetch",
    "CdFetchError",
    "CdFetchErrorKind",
    "CdTableReader",
    "L1Cd",
    "S1Fmt",
    "half_config",
]

CD_SIZE = 64
L1CD_SIZE = 8

#: The 3-bit address-size encoding of CD.IPS (and the SMMU's OAS and S2PS): code -> bits.
ADDR_SIZE_BITS: tuple[int, ...] = (32, 36, 40, 42, 44, 48, 52)
#: CD.TG0 -> granule (0b11 reserved).
TG0_GRANULE = {0b00: 4096, 0b01: 65536, 0b10: 16384}
#: CD.TG1 -> granule: a different encoding (0b00 reserved).
TG1_GRANULE = {0b10: 4096, 0b11: 65536, 0b01: 16384}


class S1Fmt(IntEnum):
    """The CD table's format (STE.S1Fmt, the UAPI's ``s1fmt``; 3 is reserved)."""

    LINEAR = 0
    TWO_LEVEL_4K = 1
    TWO_LEVEL_64K = 2


#: S1Fmt -> log2 of the CDs in one L2 table (two-level formats only).
L2_SHIFT = {S1Fmt.TWO_LEVEL_4K: 6, S1Fmt.TWO_LEVEL_64K: 10}


class _PasidTableRecord(Record, frozen=True, gc=False):
    FIELD_REFUSAL = Refusal(errno.EINVAL, rule="pasid_table.field-width")
    SIZE_REFUSAL = Refusal(errno.EINVAL, rule="pasid_table.size")


class Cd(_PasidTableRecord, frozen=True, gc=False):
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


def half_config(cd: Cd, n: int, *, oas: int, stt: bool = False, had: bool = False) -> LPAEConfig:
    """The stage-1 walk configuration of VA half ``n`` of ``cd`` on an IOMMU whose output size
    is ``oas`` bits: IPS capped to it (and to 48 bits without the 64 KiB granule), HD only with
    HA, hierarchical-attribute disable only where ``had`` allows it."""
    tsz, granule, _, _ = cd.half(n)
    if granule is None:
        raise ValueError(f"TG{n} is reserved")
    bits = min(ADDR_SIZE_BITS[min(cd.IPS, len(ADDR_SIZE_BITS) - 1)], oas)
    if granule != 65536:
        bits = min(bits, 48)
    hpd = (cd.HAD0 if n == 0 else cd.HAD1) and had
    return LPAEConfig(stage=1, granule=granule, t0sz=tsz, oas=bits, ha=cd.HA,
                      hd=cd.HD and cd.HA, hpd=hpd, stt=stt)


class L1Cd(_PasidTableRecord, frozen=True, gc=False):
    """Level-1 CD descriptor: V and the L2 table's address (bits 55:12)."""

    LAYOUT = {"V": bit(0), "L2Ptr": Field(12, 44, 12)}
    V: bool = False
    L2Ptr: int = 0


class CdFetch(NamedTuple):
    """One CD fetch: the CD and the reads it took (L1 descriptor and CD in ``config_reads``,
    the host stage-2 descriptor reads of the table's IPAs in ``s2_reads``)."""

    cd: Cd
    config_reads: int
    s2_reads: int


class CdFetchErrorKind(Enum):
    """Why a CD fetch stopped (SMMUv3: C_BAD_SUBSTREAMID, F_CD_FETCH, or the stage-2 fault)."""

    BAD_SUBSTREAMID = "bad-substreamid"
    FETCH = "fetch"
    STAGE2 = "stage2"


class CdFetchError(Exception):
    """A CD fetch stopped: its ``kind``, the PA of a failed read (``fetch_addr``) and, for a
    stage-2 fault, the walk fault (``walk``) met translating table IPA ``ipa``."""

    def __init__(self, kind: CdFetchErrorKind, message: str, *, fetch_addr: int | None = None,
                 walk: WalkFault | None = None, ipa: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.fetch_addr = fetch_addr
        self.walk = walk
        self.ipa = ipa


_READ = int(FaultPerm.READ)
_K = CdFetchErrorKind


class CdTableReader:
    """The CD table at ``base`` (2^``cdmax`` SubstreamIDs, format ``fmt``) in ``mem``; ``s2``
    translates its IPAs (nested), None reads PAs. A reserved ``fmt`` reads as linear."""

    def __init__(self, mem: PhysicalMemory, base: int, cdmax: int, fmt: int,
                 s2: Stage2Translate | None = None) -> None:
        self.mem = mem
        self.base = base
        self.cdmax = cdmax
        self.fmt = S1Fmt(fmt) if fmt in S1Fmt._value2member_map_ else S1Fmt.LINEAR
        self.s2 = s2

    def _pa(self, ipa: int) -> tuple[int, int]:
        if self.s2 is None:
            return ipa, 0
        try:
            r = self.s2(ipa, _READ)
        except WalkFault as fault:
            raise CdFetchError(_K.STAGE2, f"stage 2 cannot translate CD-table IPA {ipa:#x}: "
                               f"{fault}", walk=fault, ipa=ipa) from None
        return r.oa, r.reads

    def cd_address(self, ssid: int) -> tuple[int, int, int]:
        """``(PA of the CD of ssid, configuration reads, stage-2 reads)``; raises
        :class:`CdFetchError`."""
        if not 0 <= ssid < 1 << self.cdmax:
            raise CdFetchError(_K.BAD_SUBSTREAMID,
                               f"SubstreamID {ssid:#x} beyond S1CDMax {self.cdmax}")
        if self.fmt == S1Fmt.LINEAR:
            pa, s2_reads = self._pa(self.base + ssid * CD_SIZE)
            return pa, 0, s2_reads
        shift = L2_SHIFT[self.fmt]
        l1_pa, s2_reads = self._pa(self.base + (ssid >> shift) * L1CD_SIZE)
        try:
            desc = L1Cd.from_int(self.mem.read64(l1_pa))
        except MemoryAccessError:
            raise CdFetchError(_K.FETCH, f"L1 CD descriptor at {l1_pa:#x} unreadable",
                               fetch_addr=l1_pa) from None
        if not desc.V:
            raise CdFetchError(_K.BAD_SUBSTREAMID,
                               f"SubstreamID {ssid:#x}: L1 CD descriptor invalid")
        pa, more = self._pa(desc.L2Ptr + (ssid & ((1 << shift) - 1)) * CD_SIZE)
        return pa, 1, s2_reads + more

    def fetch(self, ssid: int) -> CdFetch:
        """The CD of ``ssid`` with the reads it took."""
        pa, reads, s2_reads = self.cd_address(ssid)
        try:
            raw = self.mem.read(pa, CD_SIZE)
        except MemoryAccessError:
            raise CdFetchError(_K.FETCH, f"CD at {pa:#x} unreadable", fetch_addr=pa) from None
        return CdFetch(Cd.from_bytes(raw), reads + 1, s2_reads)

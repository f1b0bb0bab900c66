"""SMMUv3 identification registers (IDR0-IDR5, IIDR, AIDR) and the capability set behind them.

An SMMU is described once, by :class:`SmmuCaps`; the ID registers software reads are computed
from it (:func:`id_registers`) and decode back to it (:func:`caps_from_id_registers`). The
default capability set is a server-class SMMUv3.2: stage 1 and stage 2 (nesting), AArch64 tables,
16-bit ASIDs and VMIDs, two-level stream and CD tables, ATS, PRI, stalling, 20-bit SubstreamIDs,
a 48-bit OAS, all three granules and range invalidation. Every legality check of the model
(reserved STE/CD fields, illegal commands) reads this one set.
"""

from __future__ import annotations

import errno
from enum import IntEnum
from typing import NamedTuple

import msgspec

from iommu_uapi.errors import UAPIError
from iommu_uapi.hw.bits import Field, bit
from iommu_uapi.pasid_tables.smmuv3 import ADDR_SIZE_BITS

from .record import SmmuRecord

__all__ = [
    "ADDR_SIZE_BITS",
    "Aidr",
    "IdRegisters",
    "Idr0",
    "Idr1",
    "Idr3",
    "Idr5",
    "Iidr",
    "SmmuCaps",
    "StLevel",
    "StallModel",
    "Ttendian",
    "Ttf",
    "addr_size_code",
    "caps_from_id_registers",
    "id_registers",
]



def addr_size_code(bits: int) -> int:
    """The OAS/IPS/S2PS code of a ``bits``-wide address (``ValueError`` when there is none)."""
    return ADDR_SIZE_BITS.index(bits)


class Ttf(IntEnum):
    """IDR0.TTF: translation-table formats."""

    AARCH32 = 0b01
    AARCH64 = 0b10
    BOTH = 0b11


class Ttendian(IntEnum):
    """IDR0.TTENDIAN: table endianness (01 is reserved)."""

    MIXED = 0b00
    LITTLE = 0b10
    BIG = 0b11


class StallModel(IntEnum):
    """IDR0.STALL_MODEL."""

    STALL_AND_TERMINATE = 0b00
    TERMINATE_ONLY = 0b01
    STALL_FORCED = 0b10


class StLevel(IntEnum):
    """IDR0.ST_LEVEL: stream-table formats."""

    LINEAR = 0b00
    TWO_LEVEL = 0b01


class Idr0(SmmuRecord, frozen=True, gc=False):
    """SMMU_IDR0 (offset 0x00): stages, formats, ATS/PRI, stall model, stream-table levels."""

    BITS = 32
    LAYOUT = {
        "S2P": bit(0), "S1P": bit(1), "TTF": Field(2, 2), "COHACC": bit(4), "BTM": bit(5),
        "HTTU": Field(6, 2), "DORMHINT": bit(8), "HYP": bit(9), "ATS": bit(10),
        "NS1ATS": bit(11), "ASID16": bit(12), "MSI": bit(13), "SEV": bit(14), "ATOS": bit(15),
        "PRI": bit(16), "VMW": bit(17), "VMID16": bit(18), "CD2L": bit(19), "VATOS": bit(20),
        "TTENDIAN": Field(21, 2), "STALL_MODEL": Field(24, 2), "TERM_MODEL": bit(26),
        "ST_LEVEL": Field(27, 2),
    }
    S2P: bool = False
    S1P: bool = False
    TTF: int = 0
    COHACC: bool = False
    BTM: bool = False
    HTTU: int = 0
    DORMHINT: bool = False
    HYP: bool = False
    ATS: bool = False
    NS1ATS: bool = False
    ASID16: bool = False
    MSI: bool = False
    SEV: bool = False
    ATOS: bool = False
    PRI: bool = False
    VMW: bool = False
    VMID16: bool = False
    CD2L: bool = False
    VATOS: bool = False
    TTENDIAN: int = 0
    STALL_MODEL: int = 0
    TERM_MODEL: bool = False
    ST_LEVEL: int = 0


class Idr1(SmmuRecord, frozen=True, gc=False):
    """SMMU_IDR1 (0x04): StreamID/SubstreamID widths and log2 of the largest queues."""

    BITS = 32
    LAYOUT = {
        "SIDSIZE": Field(0, 6), "SSIDSIZE": Field(6, 5), "PRIQS": Field(11, 5),
        "EVENTQS": Field(16, 5), "CMDQS": Field(21, 5), "ATTR_PERMS_OVR": bit(26),
        "ATTR_TYPES_OVR": bit(27), "REL": bit(28), "QUEUES_PRESET": bit(29),
        "TABLES_PRESET": bit(30),
    }
    SIDSIZE: int = 0
    SSIDSIZE: int = 0
    PRIQS: int = 0
    EVENTQS: int = 0
    CMDQS: int = 0
    ATTR_PERMS_OVR: bool = False
    ATTR_TYPES_OVR: bool = False
    REL: bool = False
    QUEUES_PRESET: bool = False
    TABLES_PRESET: bool = False


class Idr3(SmmuRecord, frozen=True, gc=False):
    """SMMU_IDR3 (0x0C): HAD, XNX, small translation tables (STT), range invalidation (RIL)."""

    BITS = 32
    LAYOUT = {
        "HAD": bit(2), "PBHA": bit(3), "XNX": bit(4), "PPS": bit(5), "MPAM": bit(7),
        "FWB": bit(8), "STT": bit(9), "RIL": bit(10), "BBML": Field(11, 2),
    }
    HAD: bool = False
    PBHA: bool = False
    XNX: bool = False
    PPS: bool = False
    MPAM: bool = False
    FWB: bool = False
    STT: bool = False
    RIL: bool = False
    BBML: int = 0


class Idr5(SmmuRecord, frozen=True, gc=False):
    """SMMU_IDR5 (0x14): output address size, granules, VA extension, outstanding stalls."""

    BITS = 32
    LAYOUT = {
        "OAS": Field(0, 3), "GRAN4K": bit(4), "GRAN16K": bit(5), "GRAN64K": bit(6),
        "VAX": Field(10, 2), "STALL_MAX": Field(16, 16),
    }
    OAS: int = 0
    GRAN4K: bool = False
    GRAN16K: bool = False
    GRAN64K: bool = False
    VAX: int = 0
    STALL_MAX: int = 0


class Iidr(SmmuRecord, frozen=True, gc=False):
    """SMMU_IIDR (0x18): implementer (JEP106 code), product, variant, revision."""

    BITS = 32
    LAYOUT = {
        "Implementer": Field(0, 12), "Revision": Field(12, 4), "Variant": Field(16, 4),
        "ProductID": Field(20, 12),
    }
    Implementer: int = 0
    Revision: int = 0
    Variant: int = 0
    ProductID: int = 0


class Aidr(SmmuRecord, frozen=True, gc=False):
    """SMMU_AIDR (0x1C): architecture revision (major 0 = SMMUv3.x, minor = the .x)."""

    BITS = 32
    LAYOUT = {"ArchMinorRev": Field(0, 4), "ArchMajorRev": Field(4, 4)}
    ArchMinorRev: int = 0
    ArchMajorRev: int = 0


class SmmuCaps(msgspec.Struct, frozen=True):
    """What one SMMU implements; the ID registers are computed from it.

    Names follow the ID-register fields in lower case; ``oas`` is in bits (32..52), queue sizes
    and ``sidsize``/``ssidsize`` are log2 values as IDR1 holds them. The IIDR/AIDR identity is
    ``implementer`` (JEP106, Arm = 0x43B), ``product_id``, ``variant``, ``revision`` and
    ``arch_minor`` (2 = SMMUv3.2).
    """

    s1p: bool = True
    s2p: bool = True
    ttf: Ttf = Ttf.AARCH64
    cohacc: bool = True
    btm: bool = False
    httu: int = 0
    dormhint: bool = False
    hyp: bool = False
    ats: bool = True
    ns1ats: bool = False
    asid16: bool = True
    msi: bool = True
    sev: bool = True
    atos: bool = False
    pri: bool = True
    vmw: bool = False
    vmid16: bool = True
    cd2l: bool = True
    vatos: bool = False
    ttendian: Ttendian = Ttendian.LITTLE
    stall_model: StallModel = StallModel.STALL_AND_TERMINATE
    term_model: bool = False
    st_level: StLevel = StLevel.TWO_LEVEL
    sidsize: int = 16
    ssidsize: int = 20
    priqs: int = 19
    eventqs: int = 19
    cmdqs: int = 19
    had: bool = False
    xnx: bool = False
    stt: bool = False
    ril: bool = True
    bbml: int = 0
    oas: int = 48
    gran4k: bool = True
    gran16k: bool = True
    gran64k: bool = True
    vax: int = 0
    stall_max: int = 128
    implementer: int = 0x43B
    product_id: int = 0
    variant: int = 0
    revision: int = 0
    arch_minor: int = 2

    def __post_init__(self) -> None:
        problems = [text for ok, text in (
            (self.s1p or self.s2p, "at least one of stage 1 (s1p) and stage 2 (s2p)"),
            (self.oas in ADDR_SIZE_BITS, f"oas in {ADDR_SIZE_BITS}"),
            (0 <= self.sidsize <= 32, "sidsize in 0..32"),
            (0 <= self.ssidsize <= 20, "ssidsize in 0..20"),
            (all(0 <= q <= 19 for q in (self.priqs, self.eventqs, self.cmdqs)),
             "queue sizes in 0..19"),
            (0 <= self.httu <= 2, "httu in 0..2"),
            (self.gran4k or self.gran16k or self.gran64k, "at least one granule"),
            (self.vax in (0, 1), "vax 0 or 1"),
        ) if not ok]
        if problems:
            raise UAPIError(errno.EINVAL, "SmmuCaps: needs " + ", ".join(problems),
                            rule="smmu.caps")

    @property
    def granules(self) -> frozenset[int]:
        """The translation granules in bytes (IDR5.GRAN4K/16K/64K)."""
        return frozenset(g for g, ok in ((4096, self.gran4k), (16384, self.gran16k),
                                         (65536, self.gran64k)) if ok)

    @property
    def aarch64(self) -> bool:
        """Whether VMSAv8-64 tables are supported (IDR0.TTF bit 1)."""
        return bool(self.ttf & Ttf.AARCH64)

    @property
    def ias(self) -> int:
        """Intermediate address size: the OAS, or at least 40 bits with AArch32 tables."""
        return max(40, self.oas) if self.ttf & Ttf.AARCH32 else self.oas

    @property
    def nested(self) -> bool:
        """Both stages, so STE.Config = 111 is legal."""
        return self.s1p and self.s2p


class IdRegisters(NamedTuple):
    """The ID register values of one SMMU (IDR2 and IDR4 read as zero here: no VATOS page and
    no IMPLEMENTATION DEFINED regions)."""

    idr0: int
    idr1: int
    idr2: int
    idr3: int
    idr4: int
    idr5: int
    iidr: int
    aidr: int


def id_registers(caps: SmmuCaps) -> IdRegisters:
    """The ID registers ``caps`` describes."""
    idr0 = Idr0(
        S2P=caps.s2p, S1P=caps.s1p, TTF=caps.ttf, COHACC=caps.cohacc, BTM=caps.btm,
        HTTU=caps.httu, DORMHINT=caps.dormhint, HYP=caps.hyp, ATS=caps.ats,
        NS1ATS=caps.ns1ats, ASID16=caps.asid16, MSI=caps.msi, SEV=caps.sev, ATOS=caps.atos,
        PRI=caps.pri, VMW=caps.vmw, VMID16=caps.vmid16, CD2L=caps.cd2l, VATOS=caps.vatos,
        TTENDIAN=caps.ttendian, STALL_MODEL=caps.stall_model, TERM_MODEL=caps.term_model,
        ST_LEVEL=caps.st_level)
    idr1 = Idr1(SIDSIZE=caps.sidsize, SSIDSIZE=caps.ssidsize, PRIQS=caps.priqs,
                EVENTQS=caps.eventqs, CMDQS=caps.cmdqs)
    idr3 = Idr3(HAD=caps.had, XNX=caps.xnx, STT=caps.stt, RIL=caps.ril, BBML=caps.bbml)
    idr5 = Idr5(OAS=addr_size_code(caps.oas), GRAN4K=caps.gran4k, GRAN16K=caps.gran16k,
                GRAN64K=caps.gran64k, VAX=caps.vax, STALL_MAX=caps.stall_max)
    iidr = Iidr(Implementer=caps.implementer, Revision=caps.revision, Variant=caps.variant,
                ProductID=caps.product_id)
    aidr = Aidr(ArchMinorRev=caps.arch_minor)
    return IdRegisters(idr0.to_int(), idr1.to_int(), 0, idr3.to_int(), 0, idr5.to_int(),
                       iidr.to_int(), aidr.to_int())


def caps_from_id_registers(regs: IdRegisters) -> SmmuCaps:
    """The capability set a driver reads from ``regs`` (the inverse of :func:`id_registers`)."""
    i0, i1 = Idr0.from_int(regs.idr0), Idr1.from_int(regs.idr1)
    i3, i5 = Idr3.from_int(regs.idr3), Idr5.from_int(regs.idr5)
    iidr, aidr = Iidr.from_int(regs.iidr), Aidr.from_int(regs.aidr)
    if len(ADDR_SIZE_BITS) <= i5.OAS:
        raise UAPIError(errno.EINVAL, f"IDR5.OAS {i5.OAS} is reserved", rule="smmu.caps")
    try:
        ttf, endian = Ttf(i0.TTF), Ttendian(i0.TTENDIAN)
        stall, level = StallModel(i0.STALL_MODEL), StLevel(i0.ST_LEVEL)
    except ValueError as exc:
        raise UAPIError(errno.EINVAL, f"IDR0: {exc}", rule="smmu.caps") from None
    return SmmuCaps(
        s1p=i0.S1P, s2p=i0.S2P, ttf=ttf, cohacc=i0.COHACC, btm=i0.BTM, httu=i0.HTTU,
        dormhint=i0.DORMHINT, hyp=i0.HYP, ats=i0.ATS, ns1ats=i0.NS1ATS, asid16=i0.ASID16,
        msi=i0.MSI, sev=i0.SEV, atos=i0.ATOS, pri=i0.PRI, vmw=i0.VMW, vmid16=i0.VMID16,
        cd2l=i0.CD2L, vatos=i0.VATOS, ttendian=endian, stall_model=stall,
        term_model=i0.TERM_MODEL, st_level=level, sidsize=i1.SIDSIZE, ssidsize=i1.SSIDSIZE,
        priqs=i1.PRIQS, eventqs=i1.EVENTQS, cmdqs=i1.CMDQS, had=i3.HAD, xnx=i3.XNX,
        stt=i3.STT, ril=i3.RIL, bbml=i3.BBML, oas=ADDR_SIZE_BITS[i5.OAS], gran4k=i5.GRAN4K,
        gran16k=i5.GRAN16K, gran64k=i5.GRAN64K, vax=i5.VAX, stall_max=i5.STALL_MAX,
        implementer=iidr.Implementer, product_id=iidr.ProductID, variant=iidr.Variant,
        revision=iidr.Revision, arch_minor=aidr.ArchMinorRev)

"""VMSAv8-64 descriptor bits (table, stage-1 and stage-2 block/page descriptors), each named
once, as plain ints, and the permission keys a walk derives from them."""

from __future__ import annotations

from typing import Final

__all__ = ["OA52_HI", "OA52_HI_SHIFT", "S1Desc", "S2Desc", "TableDesc", "s1_key", "s2_key",
           "table_key"]


class TableDesc:
    """Table descriptor bits (the hierarchical controls are stage 1 only)."""

    VALID: Final = 1 << 0
    TABLE: Final = 1 << 1
    PXN_TABLE: Final = 1 << 59
    UXN_TABLE: Final = 1 << 60
    AP_TABLE_NO_EL0: Final = 1 << 61
    AP_TABLE_RO: Final = 1 << 62
    NS_TABLE: Final = 1 << 63
    #: the hierarchical controls PXNTable..APTable[1], as a walk accumulates them
    CONTROLS: Final = 0xF << 59
    CONTROLS_SHIFT: Final = 59


class S1Desc:
    """Stage-1 block/page descriptor bits (bit 1 set = page at level 3)."""

    VALID: Final = 1 << 0
    PAGE: Final = 1 << 1
    ATTR_INDX: Final = 0b111 << 2
    ATTR_INDX_SHIFT: Final = 2
    NS: Final = 1 << 5
    AP_EL0: Final = 1 << 6  # AP[1]: unprivileged access
    AP_RO: Final = 1 << 7  # AP[2]: read-only
    SH: Final = 0b11 << 8
    SH_SHIFT: Final = 8
    AF: Final = 1 << 10
    NG: Final = 1 << 11
    DBM: Final = 1 << 51
    CONTIG: Final = 1 << 52
    PXN: Final = 1 << 53
    UXN: Final = 1 << 54


class S2Desc:
    """Stage-2 block/page descriptor bits."""

    VALID: Final = 1 << 0
    PAGE: Final = 1 << 1
    MEM_ATTR: Final = 0b1111 << 2
    MEM_ATTR_SHIFT: Final = 2
    S2AP_R: Final = 1 << 6
    S2AP_W: Final = 1 << 7
    SH: Final = 0b11 << 8
    SH_SHIFT: Final = 8
    AF: Final = 1 << 10
    DBM: Final = 1 << 51
    CONTIG: Final = 1 << 52
    XN: Final = 1 << 54


#: With the 52-bit output size (64 KiB granule), OA[51:48] sits in descriptor bits 15:12.
OA52_HI: Final = 0xF << 12
OA52_HI_SHIFT: Final = 48 - 12


def s1_key(desc: int) -> int:
    """A stage-1 leaf's permission key: AP[2:1] in bits 1:0, PXN/UXN in bits 3:2."""
    return ((desc >> 6) & 3) | ((desc >> 51) & 0xC)


def s2_key(desc: int) -> int:
    """A stage-2 leaf's permission key: S2AP in bits 1:0, XN in bit 2."""
    return ((desc >> 6) & 3) | ((desc >> 52) & 4)


def table_key(controls: int) -> int:
    """The hierarchical controls above a leaf (``inherited``: PXNTable, UXNTable,
    APTable[1:0] in bits 3:0) as bits 7:4 of a stage-1 permission key."""
    return (controls & 0xF) << 4

"""The scalable-mode PASID table entry (512 bits; VT-d 3.x 9.6).

The entry selects the translation for one PASID of a device: first level only, second level
only, nested (first level in guest-physical space, translated by the second level) or
pass-through (PGTT). The builders below produce the entries the Linux 5.10 driver writes.
"""

from __future__ import annotations

import functools
from enum import IntEnum
from typing import Any

from .bits import Field, Record, bit
from .reasons import SmFaultReason
from .registers import VtdConfig

__all__ = [
    "PASID_ENTRY_SIZE",
    "Flpm",
    "PasidEntry",
    "Pgtt",
    "check_pasid_entry",
    "first_level_entry",
    "nested_entry",
    "pasid_reserved_mask",
    "pass_through_entry",
    "second_level_entry",
]

PASID_ENTRY_SIZE = 64


class Pgtt(IntEnum):
    """PASID-granular translation type."""

    FIRST_LEVEL = 1
    SECOND_LEVEL = 2
    NESTED = 3
    PASS_THROUGH = 4


class Flpm(IntEnum):
    """First-level paging mode."""

    LEVEL4 = 0
    LEVEL5 = 1


class PasidEntry(Record, frozen=True, gc=False):
    """A scalable-mode PASID entry (eight quadwords; QW3-QW7 are reserved)."""

    BITS = 512
    LAYOUT = {
        # QW0
        "P": bit(0),                    # present
        "FPD": bit(1),                  # fault processing disable
        "AW": Field(2, 3),              # second-level width: levels = AW + 2
        "SLEE": bit(5),                 # second-level execute enable
        "PGTT": Field(6, 3),            # translation type (Pgtt)
        "SLADE": bit(9),                # second-level accessed/dirty enable
        "SLPTPTR": Field(12, 52, 12),   # second-level root table (HPA)
        # QW1
        "DID": Field(64, 16),           # domain id tagging every cached translation
        "PWSNP": bit(87),               # page-walk snoop
        "PGSNP": bit(88),               # page snoop
        "CD": bit(89),                  # cache disable (first-level memory typing)
        "EMTE": bit(90),                # extended memory type enable
        "EMT": Field(91, 3),            # extended memory type
        "PWT": bit(94),                 # write-through for the first-level root access
        "PCD": bit(95),                 # cache disable for the first-level root access
        "PAT": Field(96, 32),           # page-attribute table for first-level typing
        # QW2
        "SRE": bit(128),                # supervisor requests enable
        "ERE": bit(129),                # execute requests enable
        "FLPM": Field(130, 2),          # first-level paging mode (Flpm)
        "WPE": bit(132),                # write-protect enable for supervisor writes
        "NXE": bit(133),                # no-execute enable (newer spec text; accepted, unused)
        "SMEP": bit(134),               # supervisor-mode execute protection
        "EAFE": bit(135),               # extended-accessed flag enable
        "FLPTPTR": Field(140, 52, 12),  # first-level root (HPA for PGTT 1, GPA for PGTT 3)
    }
    P: bool = False
    FPD: bool = False
    AW: int = 0
    SLEE: bool = False
    PGTT: int = 0
    SLADE: bool = False
    SLPTPTR: int = 0
    DID: int = 0
    PWSNP: bool = False
    PGSNP: bool = False
    CD: bool = False
    EMTE: bool = False
    EMT: int = 0
    PWT: bool = False
    PCD: bool = False
    PAT: int = 0
    SRE: bool = False
    ERE: bool = False
    FLPM: int = 0
    WPE: bool = False
    NXE: bool = False
    SMEP: bool = False
    EAFE: bool = False
    FLPTPTR: int = 0

    @property
    def sl_levels(self) -> int:
        """Second-level paging levels: AW + 2."""
        return self.AW + 2

    @property
    def fl_levels(self) -> int:
        """First-level paging levels: 4, or 5 with FLPM = 1."""
        return 5 if self.FLPM == Flpm.LEVEL5 else 4


#: Fields that exist only when a capability is reported; otherwise they are reserved(0).
#: Memory-type fields need ECAP.MTS; snoop bits need SC (PGSNP) and SMPWCS (PWSNP).
_FEATURE_FIELDS: dict[str, str] = {
    "SLADE": "slads",
    "SRE": "srs",
    "ERE": "ers",
    "EAFE": "eafs",
    "PGSNP": "sc",
    "PWSNP": "smpwcs",
    "CD": "mts",
    "EMTE": "mts",
    "EMT": "mts",
    "PWT": "mts",
    "PCD": "mts",
    "PAT": "mts",
}

#: The capability each translation type needs.
_PGTT_FEATURE: dict[int, str] = {
    Pgtt.FIRST_LEVEL: "flts",
    Pgtt.SECOND_LEVEL: "slts",
    Pgtt.NESTED: "nest",
    Pgtt.PASS_THROUGH: "pt",
}

#: Which table pointers each translation type walks (their bits above HAW are reserved).
_PGTT_POINTERS: dict[int, tuple[str, ...]] = {
    Pgtt.FIRST_LEVEL: ("FLPTPTR",),
    Pgtt.SECOND_LEVEL: ("SLPTPTR",),
    Pgtt.NESTED: ("FLPTPTR", "SLPTPTR"),
    Pgtt.PASS_THROUGH: (),
}


@functools.lru_cache(maxsize=64)
def pasid_reserved_mask(cfg: VtdConfig, pgtt: int) -> int:
    """PASID-entry bits that must be zero under ``cfg`` for an entry of type ``pgtt``.

    Always: 11:10, 86:80, 139:136, 511:192; DID bits beyond the ND domain count; every field whose
    capability ``cfg`` lacks; and the address bits at or above HAW of the pointers ``pgtt`` uses.
    """
    layout = PasidEntry.LAYOUT
    mask = ~PasidEntry.defined_mask() & ((1 << 512) - 1)
    did = layout["DID"]
    mask |= did.mask & ~(((1 << (4 + 2 * cfg.nd)) - 1) << did.shift)
    for name, feature in _FEATURE_FIELDS.items():
        if not getattr(cfg, feature):
            mask |= layout[name].mask
    for name in _PGTT_POINTERS.get(pgtt, ()):
        field = layout[name]
        mask |= field.mask & (cfg.above_haw() << (field.shift - field.unit))
    return mask


def check_pasid_entry(raw: int, cfg: VtdConfig) -> SmFaultReason | None:
    """The fault the hardware takes at PASID entry ``raw`` before using it, or None.

    Order: present (0x59), reserved bits (0x5A), then programming (0x5B): PGTT reserved or its
    capability missing; for second-level and nested types an AW outside SAGAW; for first-level
    and nested types FLPM 2/3, or 5-level without CAP.FL5LP.
    """
    layout = PasidEntry.LAYOUT
    if not layout["P"].get(raw):
        return SmFaultReason.PASID_NOT_PRESENT
    pgtt = layout["PGTT"].get(raw)
    if raw & pasid_reserved_mask(cfg, pgtt):
        return SmFaultReason.PASID_RESERVED
    feature = _PGTT_FEATURE.get(pgtt)
    if feature is None or not getattr(cfg, feature):
        return SmFaultReason.PASID_INVALID
    if "SLPTPTR" in _PGTT_POINTERS[pgtt] and not cfg.aw_supported(layout["AW"].get(raw)):
        return SmFaultReason.PASID_INVALID
    if "FLPTPTR" in _PGTT_POINTERS[pgtt]:
        flpm = layout["FLPM"].get(raw)
        if flpm > Flpm.LEVEL5 or (flpm == Flpm.LEVEL5 and not cfg.fl5lp):
            return SmFaultReason.PASID_INVALID
    return None


# -- the entries the Linux 5.10 driver writes ----------------------------------------------------


def _linux_common(cfg: VtdConfig, did: int, pgtt: Pgtt, aw: int, fpd: bool) -> dict[str, Any]:
    # Linux programs DID, AW (in every mode), page-walk snoop when SMPWCS is reported, the
    # translation type, clears FPD ("fault enable") and sets P.
    return {"P": True, "FPD": fpd, "DID": did, "AW": aw, "PGTT": pgtt, "PWSNP": cfg.smpwcs}


def nested_entry(cfg: VtdConfig, *, did: int, flptptr: int, slptptr: int, aw: int,
                 flpm: int = Flpm.LEVEL4, sre: bool = False, eafe: bool = False,
                 pgsnp: bool = False, fpd: bool = False) -> PasidEntry:
    """The nested entry ``intel_pasid_setup_nested`` writes for a guest PASID bind.

    ``flptptr`` is the guest's first-level root (gpgd, a GPA); ``slptptr`` the host second-level
    root; ``aw`` the second level's AGAW; ``sre``/``eafe`` from the bind flags. PWSNP follows
    ECAP.SMPWCS. Linux 5.10 leaves PGSNP clear (later kernels set it for snoop-forcing domains
    when ECAP.SC is reported: ``pgsnp=True``).
    """
    return PasidEntry(**_linux_common(cfg, did, Pgtt.NESTED, aw, fpd), SLPTPTR=slptptr,
                      FLPTPTR=flptptr, FLPM=flpm, SRE=sre, EAFE=eafe, PGSNP=pgsnp)


def first_level_entry(cfg: VtdConfig, *, did: int, flptptr: int, aw: int,
                      flpm: int = Flpm.LEVEL4, sre: bool = False,
                      fpd: bool = False) -> PasidEntry:
    """The first-level-only entry (``intel_pasid_setup_first_level``): FLPTPTR is an HPA."""
    return PasidEntry(**_linux_common(cfg, did, Pgtt.FIRST_LEVEL, aw, fpd), FLPTPTR=flptptr,
                      FLPM=flpm, SRE=sre)


def second_level_entry(cfg: VtdConfig, *, did: int, slptptr: int, aw: int,
                       fpd: bool = False) -> PasidEntry:
    """The second-level-only entry (``intel_pasid_setup_second_level``)."""
    return PasidEntry(**_linux_common(cfg, did, Pgtt.SECOND_LEVEL, aw, fpd), SLPTPTR=slptptr)


def pass_through_entry(cfg: VtdConfig, *, did: int, aw: int, fpd: bool = False) -> PasidEntry:
    """The pass-through entry (``intel_pasid_setup_pass_through``): output = input, DID tags
    the cached translations."""
    return PasidEntry(**_linux_common(cfg, did, Pgtt.PASS_THROUGH, aw, fpd))

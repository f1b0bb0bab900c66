"""The capability registers CAP (0x08) and ECAP (0x10), and the capability set they come from.

:class:`VtdConfig` is the IOMMU's capability set in its own terms (widths in bits, counts,
feature booleans). :func:`cap_value` and :func:`ecap_value` encode it into the two 64-bit
registers through :class:`Cap` and :class:`Ecap`, whose ``LAYOUT`` tables name every field of
VT-d 3.x sections 11.4.2/11.4.3. :func:`decode_cap`/:func:`decode_ecap` read a register value
back into named fields. Everything else in the package computes reserved-bit masks from the
configuration in force, never from constants: a :class:`VtdConfig` is the capability set a
record's ``CAPABILITY_FIELDS`` name attributes of (:meth:`iommu_uapi.hw.bits.Record.reserved_mask`).
"""

from __future__ import annotations

import errno
from typing import Any

import msgspec

from iommu_uapi.errors import UAPIError

from .bits import Field, Record, bit

__all__ = [
    "FRCD_OFFSET",
    "IOTLB_REG_OFFSET",
    "Cap",
    "Ecap",
    "VtdConfig",
    "cap_value",
    "config_from_registers",
    "decode_cap",
    "decode_ecap",
    "ecap_value",
    "modern_server",
]

#: Where the model places the fault-recording registers (CAP.FRO x 16) and the register-based
#: IOTLB invalidation pair (ECAP.IRO x 16) in the register page.
FRCD_OFFSET = 0x400
IOTLB_REG_OFFSET = 0x500


class Cap(Record, frozen=True, gc=False):
    """CAP, the capability register (offset 0x08)."""

    LAYOUT = {
        "ND": Field(0, 3),          # number of domains = 2^(4 + 2*ND)
        "AFL": bit(3),              # advanced fault logging
        "RWBF": bit(4),             # required write-buffer flushing
        "PLMR": bit(5),             # protected low-memory region
        "PHMR": bit(6),             # protected high-memory region
        "CM": bit(7),               # caching mode: not-present entries may be cached
        "SAGAW": Field(8, 5),       # bit n <-> second-level AW value n (1: 39, 2: 48, 3: 57)
        "MGAW": Field(16, 6),       # maximum guest address width - 1
        "ZLR": bit(22),             # zero-length reads
        "FRO": Field(24, 10),       # fault-recording register offset / 16
        "SLLPS": Field(34, 4),      # second-level large pages: bit 0 2 MiB, bit 1 1 GiB
        "PSI": bit(39),             # page-selective invalidation
        "NFR": Field(40, 8),        # number of fault-recording registers - 1
        "MAMV": Field(48, 6),       # maximum address-mask value of page-selective invalidation
        "DWD": bit(54),             # write draining
        "DRD": bit(55),             # read draining
        "FL1GP": bit(56),           # first-level 1 GiB pages
        "PI": bit(59),              # posted interrupts
        "FL5LP": bit(60),           # first-level 5-level paging
        "ESIRTPS": bit(62),         # enhanced set-interrupt-root-table-pointer
        "ESRTPS": bit(63),          # enhanced set-root-table-pointer
    }

    ND: int = 0
    AFL: bool = False
    RWBF: bool = False
    PLMR: bool = False
    PHMR: bool = False
    CM: bool = False
    SAGAW: int = 0
    MGAW: int = 0
    ZLR: bool = False
    FRO: int = 0
    SLLPS: int = 0
    PSI: bool = False
    NFR: int = 0
    MAMV: int = 0
    DWD: bool = False
    DRD: bool = False
    FL1GP: bool = False
    PI: bool = False
    FL5LP: bool = False
    ESIRTPS: bool = False
    ESRTPS: bool = False


class Ecap(Record, frozen=True, gc=False):
    """ECAP, the extended capability register (offset 0x10)."""

    LAYOUT = {
        "C": bit(0),                # page-walk coherency (legacy mode)
        "QI": bit(1),               # queued invalidation
        "DT": bit(2),               # device-TLB (ATS)
        "IR": bit(3),               # interrupt remapping
        "EIM": bit(4),              # extended interrupt mode
        "PT": bit(6),               # pass-through
        "SC": bit(7),               # snoop control
        "IRO": Field(8, 10),        # IOTLB register offset / 16
        "MHMV": Field(20, 4),       # maximum handle-mask value
        "MTS": bit(25),             # memory-type support
        "NEST": bit(26),            # nested translation
        "PRS": bit(29),             # page requests
        "ERS": bit(30),             # execute requests
        "SRS": bit(31),             # supervisor requests
        "NWFS": bit(33),            # no-write flag
        "EAFS": bit(34),            # extended-accessed flag
        "PSS": Field(35, 5),        # PASID width - 1
        "PASID": bit(40),           # PASID support
        "DIT": bit(41),             # device-TLB invalidation throttling
        "PDS": bit(42),             # page-request drain (PD in wait descriptors)
        "SMTS": bit(43),            # scalable-mode translation
        "VCS": bit(44),             # virtual command interface
        "SLADS": bit(45),           # second-level accessed/dirty
        "SLTS": bit(46),            # second-level translation in scalable mode
        "FLTS": bit(47),            # first-level translation
        "SMPWCS": bit(48),          # scalable-mode page-walk coherency
        "RPS": bit(49),             # RID_PASID support
        "ADMS": bit(52),            # abort-DMA mode
        "RPRIVS": bit(53),          # RID_PRIV support
    }

    C: bool = False
    QI: bool = False
    DT: bool = False
    IR: bool = False
    EIM: bool = False
    PT: bool = False
    SC: bool = False
    IRO: int = 0
    MHMV: int = 0
    MTS: bool = False
    NEST: bool = False
    PRS: bool = False
    ERS: bool = False
    SRS: bool = False
    NWFS: bool = False
    EAFS: bool = False
    PSS: int = 0
    PASID: bool = False
    DIT: bool = False
    PDS: bool = False
    SMTS: bool = False
    VCS: bool = False
    SLADS: bool = False
    SLTS: bool = False
    FLTS: bool = False
    SMPWCS: bool = False
    RPS: bool = False
    ADMS: bool = False
    RPRIVS: bool = False


#: SAGAW bits this model knows: AW 1 (39-bit), 2 (48-bit), 3 (57-bit). AW 0 and 4 are reserved.
_SAGAW_KNOWN = 0b01110


class VtdConfig(msgspec.Struct, frozen=True, gc=False):
    """An IOMMU's capability set. The defaults describe a modern server part in scalable mode.

    Widths are in bits (``mgaw=48`` is CAP.MGAW = 47); ``sagaw`` is the CAP bit set (bit n <->
    second-level AW value n); ``sllps`` bit 0 = 2 MiB, bit 1 = 1 GiB. ``fault_records`` is the
    number of FRCD registers (CAP.NFR + 1). ``mamv`` = 9: the largest page-selective
    invalidation covers 2^9 pages, one 2 MiB region (QEMU reports 18; hardware ranges from 9 to
    18+); larger ranges are invalidated by domain. ``pss`` = 19: 20-bit PASIDs.
    """

    # -- CAP ------------------------------------------------------------------------------
    nd: int = 6                  # 2^16 domain ids
    cm: bool = False             # caching mode
    rwbf: bool = False
    afl: bool = False
    plmr: bool = False
    phmr: bool = False
    zlr: bool = False
    sagaw: int = 0b00110         # 39- and 48-bit second level
    mgaw: int = 48               # also the host address width the model checks addresses against
    sllps: int = 0b11            # 2 MiB and 1 GiB second-level pages
    psi: bool = True
    mamv: int = 9
    fault_records: int = 8
    dwd: bool = True
    drd: bool = True
    fl1gp: bool = True
    fl5lp: bool = False
    pi: bool = False
    # -- ECAP -----------------------------------------------------------------------------
    c: bool = False
    qi: bool = True
    dt: bool = True
    ir: bool = False
    eim: bool = False
    pt: bool = True
    sc: bool = True
    mhmv: int = 0
    mts: bool = False
    nest: bool = True
    prs: bool = True
    ers: bool = True
    srs: bool = True
    nwfs: bool = False
    eafs: bool = True
    pss: int = 19
    pasid: bool = True
    dit: bool = False
    pds: bool = True
    smts: bool = True
    vcs: bool = False
    slads: bool = False
    slts: bool = True
    flts: bool = True
    smpwcs: bool = True
    rps: bool = False
    adms: bool = False
    rprivs: bool = False

    def __post_init__(self) -> None:
        problems: list[str] = []
        if not 0 <= self.nd <= 6:
            problems.append(f"nd {self.nd} not in 0..6")
        if self.sagaw & ~_SAGAW_KNOWN or not self.sagaw:
            problems.append(f"sagaw {self.sagaw:#x} must be a non-empty subset of "
                            f"{_SAGAW_KNOWN:#x}")
        if not 39 <= self.mgaw <= 57:
            problems.append(f"mgaw {self.mgaw} not in 39..57")
        if self.sllps & ~0b11:
            problems.append(f"sllps {self.sllps:#x} has bits other than 2 MiB/1 GiB")
        if not 0 <= self.mamv <= 63:
            problems.append(f"mamv {self.mamv} not in 0..63")
        if not 1 <= self.fault_records <= 256:
            problems.append(f"fault_records {self.fault_records} not in 1..256")
        if not 0 <= self.pss <= 19:
            problems.append(f"pss {self.pss} not in 0..19")
        if self.fl5lp and not self.sagaw & (1 << 3):
            problems.append("fl5lp needs the 57-bit second level (sagaw bit 3) for nesting")
        if self.fl5lp and self.mgaw < 57:
            problems.append("fl5lp needs mgaw 57")
        if problems:
            raise UAPIError(errno.EINVAL, "VtdConfig: " + "; ".join(problems),
                            rule="vtd.config")

    # -- derived values used by the checks --------------------------------------------------

    @property
    def haw(self) -> int:
        """Host address width: addresses in entries must lie below 2^haw."""
        return self.mgaw

    @property
    def pasid_bits(self) -> int:
        """Supported PASID width (PSS + 1), 0 without PASID support."""
        return self.pss + 1 if self.pasid else 0

    @property
    def domains(self) -> int:
        """Number of domain ids: 2^(4 + 2*ND)."""
        return 1 << (4 + 2 * self.nd)

    def aw_supported(self, aw: int) -> bool:
        """Whether a second-level AW value (1, 2, 3) is in SAGAW."""
        return 0 <= aw <= 4 and bool(self.sagaw & (1 << aw))

    def above_haw(self, width: int = 64) -> int:
        """The mask of address bits haw..width-1 (reserved in address fields)."""
        return ((1 << width) - 1) & ~((1 << self.haw) - 1)


def modern_server(*, five_level: bool = False, caching_mode: bool = False,
                  **changes: Any) -> VtdConfig:
    """The default capability set with the named options: ``five_level`` adds FL5LP, 57-bit
    SAGAW and MGAW 57; ``caching_mode`` sets CM (a virtual IOMMU); other keyword arguments
    replace fields of :class:`VtdConfig`."""
    if five_level:
        changes = {"fl5lp": True, "sagaw": 0b01110, "mgaw": 57, **changes}
    if caching_mode:
        changes = {"cm": True, **changes}
    return VtdConfig(**changes)


_CONFIG_FIELDS = frozenset(VtdConfig.__struct_fields__)

#: Register field -> (VtdConfig attribute, amount added when encoding). Fields named like their
#: attribute map one to one; MGAW and NFR hold "value - 1". FRO/IRO are placement constants.
_CAP_CONFIG: dict[str, tuple[str, int]] = {
    **{name: (name.lower(), 0) for name in Cap.LAYOUT if name.lower() in _CONFIG_FIELDS},
    "MGAW": ("mgaw", -1),
    "NFR": ("fault_records", -1),
}
_ECAP_CONFIG: dict[str, tuple[str, int]] = {
    name: (name.lower(), 0) for name in Ecap.LAYOUT if name.lower() in _CONFIG_FIELDS
}


def _encode(cfg: VtdConfig, table: dict[str, tuple[str, int]]) -> dict[str, Any]:
    return {f: getattr(cfg, attr) + adj if adj else getattr(cfg, attr)
            for f, (attr, adj) in table.items()}


def cap_value(cfg: VtdConfig) -> int:
    """The 64-bit CAP register value of ``cfg``."""
    return Cap(FRO=FRCD_OFFSET >> 4, **_encode(cfg, _CAP_CONFIG)).to_int()


def ecap_value(cfg: VtdConfig) -> int:
    """The 64-bit ECAP register value of ``cfg``."""
    return Ecap(IRO=IOTLB_REG_OFFSET >> 4, **_encode(cfg, _ECAP_CONFIG)).to_int()


def _check_u64(name: str, value: int) -> None:
    if not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise UAPIError(errno.EINVAL, f"{name}: {value!r} is not a 64-bit register value",
                        rule="vtd.register")


def decode_cap(value: int) -> Cap:
    """CAP's named fields (reserved bits are not reported; see :meth:`Cap.reserved_bits`)."""
    _check_u64("CAP", value)
    return Cap.from_int(value)


def decode_ecap(value: int) -> Ecap:
    """ECAP's named fields."""
    _check_u64("ECAP", value)
    return Ecap.from_int(value)


def config_from_registers(cap: int, ecap: int) -> VtdConfig:
    """The capability set that CAP/ECAP values describe (the inverse of :func:`cap_value` and
    :func:`ecap_value`; register offsets FRO/IRO are not part of the set)."""
    c, e = decode_cap(cap), decode_ecap(ecap)
    values = {attr: getattr(c, f) - adj if adj else getattr(c, f)
              for f, (attr, adj) in _CAP_CONFIG.items()}
    values.update({attr: getattr(e, f) for f, (attr, _) in _ECAP_CONFIG.items()})
    return VtdConfig(**values)

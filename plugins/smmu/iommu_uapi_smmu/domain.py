"""A host domain on the SMMU: its VMID, its stage-2 LPAE tables and, nested, the guest's
stage-1 configuration (the attached CD table), and the STE it gives each attached stream.

Stage 2 is built with the core's LPAE builder; its geometry (granule, IPA size and the starting
level with its concatenated tables) is the backend's configuration. The STE of a stream is
:func:`stream_entry`: stage 2 only, nested (stage 1 from the guest's CD table at the IPA
``base_ptr``, stage 2 from the domain), bypass of stage 1 (stage 2 only) or abort, exactly the
``arm_smmu_write_strtab_ent`` cases of the nested series.

The guest's stage 1 is the domain's (one CD table for every stream: the 2020 PASID-table
attach) unless a stream has its own (:attr:`SmmuDomain.streams`: an iommufd nested HWPT, one
guest STE per device, over the shared stage 2 and VMID).
"""

from __future__ import annotations

from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable.lpae import LPAEConfig, LPAEPageTable

from .ste import S2SL0_LEVEL, Eats, Ste, SteConfig

__all__ = ["S2Geometry", "SmmuDomain", "s2_geometry", "stream_entry"]

#: granule -> STE.S2TG
S2TG = {4096: 0b00, 65536: 0b01, 16384: 0b10}
#: output-size bits -> STE.S2PS / CD.IPS code
PS_CODE = {32: 0, 36: 1, 40: 2, 42: 3, 44: 4, 48: 5, 52: 6}
_MAX_CONCAT = 16


class S2Geometry:
    """A stage-2 layout: granule, input size (S2T0SZ = 64 - ias) and S2SL0."""

    __slots__ = ("granule", "ias", "sl0")

    def __init__(self, granule: int, ias: int, sl0: int) -> None:
        self.granule = granule
        self.ias = ias
        self.sl0 = sl0

    @property
    def levels(self) -> int:
        """Levels walked (the starting level to level 3)."""
        level = S2SL0_LEVEL[self.granule][self.sl0]
        assert level is not None
        return 4 - level


def s2_geometry(granule: int, ias: int) -> S2Geometry:
    """The shallowest starting level that resolves ``ias`` bits with ``granule`` using at most
    16 concatenated tables (what ``arm_smmu_domain_finalise_s2`` and io-pgtable choose)."""
    g = granule.bit_length() - 1
    per = g - 3
    for sl0, level in sorted(enumerate(S2SL0_LEVEL[granule]), key=lambda t: -(t[1] or -1)):
        if level is None:
            continue
        top = g + per * (3 - level)      # bits resolved below the starting level's index
        if ias - top <= per + 4 and ias > top:     # its index (<= 16 tables concatenated)
            return S2Geometry(granule, ias, sl0)
    raise ValueError(f"no stage-2 starting level resolves {ias} bits with {granule}")


class SmmuDomain:
    """One host domain: VMID, stage-2 tables, nesting state and the guest table attached."""

    __slots__ = ("abort", "finalised", "geometry", "mappings", "mem", "nesting", "oas", "pt",
                 "s1", "streams", "vmid")

    def __init__(self, vmid: int, mem: PhysicalMemory, geometry: S2Geometry, oas: int) -> None:
        self.vmid = vmid
        self.mem = mem
        self.mappings: dict[int, int] = {}
        self.geometry = geometry
        self.oas = oas
        self.pt = LPAEPageTable(LPAEConfig(stage=2, granule=geometry.granule,
                                           t0sz=64 - geometry.ias, sl0=geometry.sl0, oas=oas),
                                mem)
        self.nesting = False
        #: the SMMU is bound to the domain (first attach: ``arm_smmu_domain_finalise``)
        self.finalised = False
        #: the guest's stage 1 (TRANSLATE): (CD table IPA, S1CDMax, S1Fmt, S1DSS)
        self.s1: tuple[int, int, int, int] | None = None
        #: ABORT configured by the guest
        self.abort = False
        #: StreamID -> that stream's own guest configuration (stage 1 or None, abort), which
        #: replaces :attr:`s1` and :attr:`abort` for it (a nested HWPT attached to the stream)
        self.streams: dict[int, tuple[tuple[int, int, int, int] | None, bool]] = {}

    @property
    def guest_stage1(self) -> bool:
        """Whether a guest stage 1 translates any stream of the domain (its TLB entries are
        then held by guest VA, which no IPA names)."""
        return self.s1 is not None or any(s1 is not None for s1, _ in self.streams.values())

    def map(self, iova: int, paddr: int, size: int, prot: int) -> None:
        """Map in the stage-2 tables (the builder refuses overlap and misalignment)."""
        self.pt.map(iova, paddr, size, prot)
        self.mappings[iova] = size

    def unmap(self, iova: int, size: int) -> int:
        """Unmap; returns the bytes unmapped."""
        unmapped = int(self.pt.unmap(iova, size))
        if unmapped:
            self.mappings.pop(iova, None)
        return unmapped

    def release(self) -> None:
        """Free every table of the domain, the root included (the domain is being freed)."""
        self.mappings.clear()
        self.pt.free_tables()


def stream_entry(domain: SmmuDomain, *, ats: bool, stall: bool = False,
                 sid: int | None = None) -> Ste:
    """The STE of stream ``sid`` attached to ``domain`` (see the module docstring); ``stall``:
    the stream may stall (STE.S1STALLD = 0, the guest's CD.S decides)."""
    s1, abort = domain.streams.get(sid, (domain.s1, domain.abort)) if sid is not None else (
        domain.s1, domain.abort)
    if abort:
        return Ste(V=True, Config=SteConfig.ABORT)
    geo = domain.geometry
    s2 = dict(S2VMID=domain.vmid, S2T0SZ=64 - geo.ias, S2SL0=geo.sl0, S2TG=S2TG[geo.granule],
              S2PS=PS_CODE[domain.oas], S2AA64=True, S2R=True, S2TTB=domain.pt.root,
              EATS=Eats.FULL if ats else Eats.ABORT)
    if s1 is None:
        return Ste(V=True, Config=SteConfig.S2_TRANS, **s2)  # type: ignore[arg-type]
    base, cdmax, fmt, dss = s1
    return Ste(V=True, Config=SteConfig.NESTED, S1ContextPtr=base, S1CDMax=cdmax,
               S1Fmt=fmt if cdmax else 0, S1DSS=dss if cdmax else 0, S1STALLD=not stall,
               **s2)  # type: ignore[arg-type]

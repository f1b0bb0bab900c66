"""``struct iommu_pasid_table_config`` (Auger v15, SMMUv3 nested stage; reference b.1, c.7).

Attaching a guest PASID table hands the guest's stage-1 context-descriptor table (``base_ptr``,
a guest physical address) to the host SMMU, which then translates stage 1 with the guest's CDs
and stage 2 with the host's tables; ``config`` may instead bypass or abort stage 1.
"""

from __future__ import annotations

import msgspec

from .. import checks as _checks
from ..abi import U8, U32, U64, CRecord, Pad2, SizeDiscipline, copy_from_user, cstruct, cunion
from ..profiles import ProfileLike

__all__ = ["PasidSmmuv3", "PasidTableConfig", "PasidTableVendor"]


@cstruct(cname="iommu_pasid_smmuv3")
class PasidSmmuv3(CRecord, frozen=True, gc=False):
    """SMMUv3 stage-1 attributes: ``s1fmt`` (STE.S1Fmt) and ``s1dss`` (STE.S1DSS)."""

    version: U32 = 0
    s1fmt: U8 = 0
    s1dss: U8 = 0
    padding: Pad2 = bytes(2)


@cunion(cname="vendor_data")
class PasidTableVendor(CRecord, frozen=True, gc=False):
    """The ``vendor_data`` union: ``smmuv3`` for format SMMUV3."""

    smmuv3: PasidSmmuv3 = msgspec.field(default_factory=PasidSmmuv3)


@cstruct(cname="iommu_pasid_table_config", minsz="vendor_data")
class PasidTableConfig(CRecord, frozen=True, gc=False):
    """A guest PASID (CD) table at ``base_ptr`` of ``format`` with ``pasid_bits`` PASID bits;
    ``config`` (``PasidConfig``) says whether stage 1 translates, bypasses or aborts."""

    argsz: U32 = 0
    version: U32 = 0
    base_ptr: U64 = 0
    format: U32 = 0
    pasid_bits: U8 = 0
    config: U8 = 0
    padding: Pad2 = bytes(2)
    vendor_data: PasidTableVendor = msgspec.field(default_factory=PasidTableVendor)

    @classmethod
    def from_user(
        cls,
        buf: bytes | bytearray | memoryview,
        profile: ProfileLike = "linux-5.10",
        discipline: SizeDiscipline = SizeDiscipline.ARGSZ,
    ) -> PasidTableConfig:
        """What ``iommu_uapi_attach_pasid_table()`` does before calling the driver (c.7)."""
        prof = _checks.profile_of(profile)
        cfg = copy_from_user(
            cls, buf, "attach_pasid_table", discipline, _checks.attach_pasid_table_head, prof
        )
        _checks.attach_pasid_table_content(cfg, prof)
        return cfg

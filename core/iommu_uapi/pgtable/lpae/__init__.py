"""AArch64 VMSAv8-64 translation tables (LPAE), stage 1 and stage 2, as SMMUv3 walks them.

Granules of 4, 16 and 64 KiB (``g`` = 12/14/16 offset bits, ``g - 3`` index bits per level). The
starting level comes from T0SZ (stage 1: as many levels as the input size needs) or from
S2T0SZ and SL0 (stage 2, where up to 16 start-level tables may be concatenated); an inconsistent
SL0/T0SZ is refused when the configuration is made. Output addresses are 48 bits, or 52 bits
with the 64 KiB granule (OA[51:48] in descriptor bits 15:12). The format is split along its
seams: :mod:`.bits` (descriptor bits), :mod:`.config` (translation regime and levels),
:mod:`.walker` (the walk, generic faults), :mod:`.builder`. SMMU event numbers belong to an
SMMU backend.
"""

from .bits import S1Desc, S2Desc, TableDesc
from .builder import LPAEPageTable
from .config import LPAEConfig, s2_sl0
from .walker import LPAEWalker, stage2, walk

__all__ = ["LPAEConfig", "LPAEPageTable", "LPAEWalker", "S1Desc", "S2Desc", "TableDesc",
           "s2_sl0", "stage2", "walk"]

"""Intel VT-d second-level paging: the host-owned GPA -> HPA tables of scalable mode.

3, 4 or 5 levels of 512-entry tables, chosen by the PASID entry's AW (1, 2, 3: 39-, 48-, 57-bit
input). PS makes a 2 MiB (level 2) or 1 GiB (level 3) leaf where CAP.SLLPS allows it. The
format is split along its seams: :mod:`.bits` (entry bits, configuration, per-level masks),
:mod:`.walker` (the hardware's walk, generic faults with ``stage=2``), :mod:`.builder`.
VT-d's native fault reasons live in the VT-d backend.
"""

from .bits import ADDR_MASK, GRANTED, SLConfig, SLEntry
from .builder import SLPageTable
from .walker import SLWalker, stage2, walk

__all__ = ["ADDR_MASK", "GRANTED", "SLConfig", "SLEntry", "SLPageTable", "SLWalker", "stage2",
           "walk"]

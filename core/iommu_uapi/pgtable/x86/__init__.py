"""x86 IA-32e paging as VT-d first-level translation: 4-level (48-bit) and 5-level (57-bit).

512-entry tables; PS makes a 2 MiB (PDE) or, with CAP.FL1GP, a 1 GiB (PDPTE) leaf. The format
is split along its seams: :mod:`.bits` (entry bits, configuration, per-level masks),
:mod:`.walker` (the hardware's walk, generic faults), :mod:`.builder` (io-pgtable style tables).
"""

from ..common import WalkResult
from .bits import ADDR_MASK, GRANTED, FLEntry, X86Config
from .builder import X86PageTable
from .walker import X86Walker, walk

__all__ = ["ADDR_MASK", "GRANTED", "FLEntry", "WalkResult", "X86Config", "X86PageTable",
           "X86Walker", "walk"]

"""First-level (IA-32e) tables built io-pgtable style."""

from __future__ import annotations

import errno

from ...errors import UAPIError
from ..builder import Level, PageTableBuilder
from ..common import FlushOps, Prot, TableMemory
from .bits import ADDR_MASK, FLEntry, X86Config, geometry
from .walker import X86Walker

__all__ = ["X86PageTable"]

#: Leaf bits each ``Prot`` flag sets (U/S is the absence of ``PRIV``; R/W needs ``WRITE``).
_PROT_BITS = ((Prot.WRITE, FLEntry.RW), (Prot.NOEXEC, FLEntry.XD), (Prot.GLOBAL, FLEntry.G),
              (Prot.MMIO, FLEntry.PCD | FLEntry.PWT))


class X86PageTable(PageTableBuilder):
    """First-level tables built io-pgtable style (``map``/``unmap``/``iova_to_phys``).

    Input addresses are canonical (the upper half is accepted and indexed like the hardware
    does). Table entries get P|R/W|U/S; leaves get P, R/W for ``Prot.WRITE``, U/S unless
    ``Prot.PRIV``, XD for ``Prot.NOEXEC``, G for ``Prot.GLOBAL``, PCD|PWT for ``Prot.MMIO``, PS
    for 2 MiB/1 GiB leaves. A and D are left for the walker to set.
    """

    cfg: X86Config

    def __init__(self, cfg: X86Config, mem: TableMemory, flush: FlushOps | None = None) -> None:
        self.cfg = cfg
        geo = geometry(cfg)
        levels = tuple(
            Level(lv.level, lv.shift, 0x1FF, lv.size, lv.leaf_test != 0,
                  FLEntry.PS if lv.level > 1 else 0, 0 if lv.level > 1 else 1)
            for lv in geo.levels
        )
        self._va_top = geo.va_top
        self._canon_ones = geo.canon_ones
        super().__init__(mem, levels, root_size=4096, table_size=4096, oa_bits=cfg.haw,
                         name="first level", addr_mask=ADDR_MASK, flush=flush,
                         ia_limit=1 << (cfg.va_bits - 1))

    def _input(self, iova: int, op: str) -> int:
        top = iova >> self._va_top
        if iova < 0 or (top and top != self._canon_ones):
            raise UAPIError(errno.ERANGE, f"first level {op}: iova {iova:#x} is not canonical "
                            f"for {self.cfg.va_bits}-bit paging", rule="pgtable.ia_range")
        return iova

    def _make_walker(self, mem: TableMemory) -> X86Walker:
        return X86Walker(mem, self.cfg)

    def _table_desc(self, addr: int) -> int:
        return addr | FLEntry.P | FLEntry.RW | FLEntry.US

    def _leaf_bits(self, index: int, prot: int) -> int:
        desc = FLEntry.P | (0 if prot & Prot.PRIV else FLEntry.US)
        for flag, bits in _PROT_BITS:
            if prot & flag:
                desc |= bits
        return desc | (FLEntry.PS if self.levels[index].level > 1 else 0)

    def _split_first(self, desc: int, index: int) -> int:
        if self.levels[index + 1].level > 1:
            return desc  # 1 GiB -> 2 MiB: same layout, PAT stays in bit 12
        # 2 MiB -> 4 KiB: PAT moves from bit 12 to bit 7 (where PS was)
        pat = FLEntry.PS if desc & FLEntry.PAT_LARGE else 0
        return (desc & ~(FLEntry.PS | FLEntry.PAT_LARGE)) | pat

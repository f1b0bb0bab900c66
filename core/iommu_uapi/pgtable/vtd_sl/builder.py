"""VT-d second-level tables built io-pgtable style."""

from __future__ import annotations

import errno

from ...errors import UAPIError
from ..builder import Level, PageTableBuilder
from ..common import FlushOps, Prot, Stage2Translate, TableMemory, bind_stage2
from .bits import ADDR_MASK, SLConfig, SLEntry, geometry, table_grant
from .walker import SLWalker

__all__ = ["SLPageTable"]


class SLPageTable(PageTableBuilder):
    """Second-level tables built io-pgtable style (``map``/``unmap``/``iova_to_phys``).

    Table entries get R|W (and X with SLEE); leaves get R/W from ``Prot``, X with SLEE unless
    ``Prot.NOEXEC``, SNP for ``Prot.CACHE`` when ECAP.SC is set, PS for 2 MiB/1 GiB leaves.
    """

    cfg: SLConfig

    def __init__(self, cfg: SLConfig, mem: TableMemory, flush: FlushOps | None = None) -> None:
        self.cfg = cfg
        geo = geometry(cfg)
        levels = tuple(
            Level(lv.level, lv.shift, 0x1FF, lv.size, lv.leaf_test != 0,
                  SLEntry.PS if lv.level > 1 else 0, 0 if lv.level > 1 else 1)
            for lv in geo.levels
        )
        self._table_bits = table_grant(cfg)
        super().__init__(mem, levels, root_size=4096, table_size=4096, oa_bits=cfg.haw,
                         name="second level", addr_mask=ADDR_MASK, flush=flush)

    def _input(self, iova: int, op: str) -> int:
        if not 0 <= iova < 1 << self.cfg.input_bits:
            raise UAPIError(errno.ERANGE, f"second level {op}: iova {iova:#x} beyond the "
                            f"{self.cfg.input_bits}-bit AW", rule="pgtable.ia_range")
        return iova

    def _make_walker(self, mem: TableMemory) -> SLWalker:
        return SLWalker(mem, self.cfg)

    def _table_desc(self, addr: int) -> int:
        return addr | self._table_bits

    def _leaf_bits(self, index: int, prot: int) -> int:
        desc = (SLEntry.R if prot & Prot.READ else 0) | (SLEntry.W if prot & Prot.WRITE else 0)
        if self.cfg.slee and not prot & Prot.NOEXEC:
            desc |= SLEntry.X
        if self.cfg.sc and prot & Prot.CACHE:
            desc |= SLEntry.SNP
        return desc | (SLEntry.PS if self.levels[index].level > 1 else 0)

    def _split_first(self, desc: int, index: int) -> int:
        return desc & ~SLEntry.PS if self.levels[index + 1].level == 1 else desc

    def stage2(self, *, update_ad: bool = False) -> Stage2Translate:
        """A stage-2 translate function over these tables (for nested first-level walks)."""
        return bind_stage2(self.walker, self.root, update_ad)

"""VMSAv8-64 tables built io-pgtable style (Linux's io-pgtable-arm)."""

from __future__ import annotations

import errno

from ...errors import UAPIError
from ..builder import Level, PageTableBuilder
from ..common import FlushOps, Prot, Stage2Translate, TableMemory
from .bits import OA52_HI, OA52_HI_SHIFT, S1Desc, S2Desc, TableDesc
from .config import LPAEConfig, geometry
from .walker import LPAEWalker, stage2

__all__ = ["LPAEPageTable"]

_TABLE = TableDesc.VALID | TableDesc.TABLE
#: Stage-1 AttrIndx (MAIR index, as Linux's io-pgtable sets MAIR) and stage-2 MemAttr per kind
#: of memory: device for ``Prot.MMIO``, write-back for ``Prot.CACHE``, else non-cacheable.
_S1_ATTR = {"mmio": 2, "cache": 1, "nc": 0}
_S2_ATTR = {"mmio": 0x1, "cache": 0xF, "nc": 0x5}
_SH_INNER, _SH_OUTER = 3, 2


def _memory_kind(prot: int) -> str:
    return "mmio" if prot & Prot.MMIO else "cache" if prot & Prot.CACHE else "nc"


class LPAEPageTable(PageTableBuilder):
    """VMSAv8-64 tables built io-pgtable style (``map``/``unmap``/``iova_to_phys``).

    Leaves get AF; stage 1: AP[2] for read-only, AP[1] unless ``Prot.PRIV``, nG unless
    ``Prot.GLOBAL``, UXN|PXN for ``Prot.NOEXEC``, AttrIndx 1 (cacheable) / 2 (device) / 0;
    stage 2: S2AP from READ/WRITE, XN for ``Prot.NOEXEC``, MemAttr WB / Device / NC. A stage-2
    root of several concatenated tables is one allocation aligned to its size.
    """

    cfg: LPAEConfig

    def __init__(self, cfg: LPAEConfig, mem: TableMemory, flush: FlushOps | None = None) -> None:
        self.cfg = cfg
        geo = geometry(cfg)
        levels = tuple(
            Level(lv.level, lv.shift, lv.index_mask, lv.size, lv.leaf_need != -1,
                  _TABLE if lv.level < 3 else 0, _TABLE if lv.level < 3 else 1)
            for lv in geo.levels
        )
        self._oa52 = cfg.oas == 52
        self._ias = geo.ias
        super().__init__(mem, levels, root_size=max(geo.root_entries * 8, 4096),
                         table_size=cfg.granule, oa_bits=cfg.oas, name=f"LPAE stage {cfg.stage}",
                         addr_mask=geo.addr_mask, flush=flush, linear=not self._oa52)

    def _input(self, iova: int, op: str) -> int:
        if not 0 <= iova < 1 << self._ias:
            raise UAPIError(errno.ERANGE, f"LPAE stage {self.cfg.stage} {op}: iova {iova:#x} "
                            f"beyond the {self._ias}-bit input range", rule="pgtable.ia_range")
        return iova

    def _make_walker(self, mem: TableMemory) -> LPAEWalker:
        return LPAEWalker(mem, self.cfg)

    def _encode_oa(self, addr: int) -> int:
        if not self._oa52:
            return addr
        return (addr & self._amask) | ((addr >> OA52_HI_SHIFT) & OA52_HI)

    def _table_addr(self, desc: int) -> int:
        oa = desc & self._amask
        return oa | ((desc & OA52_HI) << OA52_HI_SHIFT) if self._oa52 else oa

    def _table_desc(self, addr: int) -> int:
        return self._encode_oa(addr) | _TABLE

    def _leaf_bits(self, index: int, prot: int) -> int:
        page = self.levels[index].level == 3
        kind = _memory_kind(prot)
        if self.cfg.stage == 1:
            desc = S1Desc.AF | (S1Desc.VALID | S1Desc.PAGE if page else S1Desc.VALID)
            if not prot & Prot.PRIV:
                desc |= S1Desc.AP_EL0
            if not prot & Prot.WRITE:
                desc |= S1Desc.AP_RO
            if not prot & Prot.GLOBAL:
                desc |= S1Desc.NG
            if prot & Prot.NOEXEC:
                desc |= S1Desc.PXN | S1Desc.UXN
            desc |= _S1_ATTR[kind] << S1Desc.ATTR_INDX_SHIFT
        else:
            desc = S2Desc.AF | (S2Desc.VALID | S2Desc.PAGE if page else S2Desc.VALID)
            desc |= (S2Desc.S2AP_R if prot & Prot.READ else 0) | \
                (S2Desc.S2AP_W if prot & Prot.WRITE else 0)
            if prot & Prot.NOEXEC:
                desc |= S2Desc.XN
            desc |= _S2_ATTR[kind] << S2Desc.MEM_ATTR_SHIFT
        if kind != "mmio":
            desc |= (_SH_INNER if kind == "cache" else _SH_OUTER) << S1Desc.SH_SHIFT
        return desc

    def _split_first(self, desc: int, index: int) -> int:
        return desc | S1Desc.PAGE if self.levels[index + 1].level == 3 else desc

    def stage2(self, *, update_ad: bool = False) -> Stage2Translate:
        """A stage-2 translate function over these (stage-2) tables."""
        return stage2(self.mem, self.root, self.cfg, update_ad=update_ad)

"""A second-level context's IOTLB miss (``SecondLevelContext.walk``: the walker's compiled common
case first) gives the IOTLB entry, the reads, the fault reason and the fault records the general
context gives through the full walk, for every request access, with and without PASID, RID_PRIV,
ERE/SRE, FPD, on tables corrupted at every level and for inputs at the top of AW and beyond."""

from __future__ import annotations

from functools import partial

from hypothesis import given
from hypothesis import strategies as st

from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.pgtable.vtd_sl import ADDR_MASK, SLEntry, SLPageTable, SLWalker
from iommu_uapi.testing.walks import PlainMemory
from iommu_uapi.translation import TranslationFault
from iommu_uapi_vtd.context import (
    FaultSink,
    SecondLevelContext,
    VtdContext,
    build_context,
    sl_config,
)
from iommu_uapi_vtd.context_entry import ContextEntry
from iommu_uapi_vtd.faults import FaultRecorder
from iommu_uapi_vtd.pasid_entry import PasidEntry, Pgtt
from iommu_uapi_vtd.reasons import VtdFault
from iommu_uapi_vtd.registers import VtdConfig
from iommu_uapi_vtd.tables import Resolved

SID = 0x0810
MEM_BITS = 40
#: (iova, size) of the leaves mapped: 4 KiB, 2 MiB, 1 GiB (the last at the top of a 39-bit AW).
LEAVES = ((0x1_2345_6000, 0x1000), (0x4060_0000, 0x20_0000), (0x7F_C000_0000, 0x4000_0000))
R, W, X, PS, SNP, TM = SLEntry.R, SLEntry.W, SLEntry.X, SLEntry.PS, SLEntry.SNP, SLEntry.TM
#: An edit of one entry on a leaf's walk: (bits cleared, bits set).
EDITS = {"zero": (~0, 0), "no R": (R, 0), "no W": (W, 0), "no X": (X, 0), "PS": (0, PS),
         "TM": (0, TM), "SNP": (0, SNP), "above HAW": (0, 1 << 50),
         "outside memory": (ADDR_MASK, 1 << (MEM_BITS + 1))}


def _path(mem: PhysicalMemory, pt: SLPageTable, iova: int) -> list[int]:
    """The entries a walk of ``iova`` reads in the tables as built, root level first."""
    ptrs, table = [], pt.root
    for lv in pt.levels:
        ptrs.append(table + (((iova >> lv.shift) & 0x1FF) << 3))
        desc = mem.read64(ptrs[-1])
        if lv.level == 1 or desc & PS:
            break
        table = desc & ADDR_MASK
    return ptrs


def _outcome(ctx: VtdContext, iova: int, access: int) -> object:
    try:
        return ctx.walk(iova, access)
    except TranslationFault as f:
        vf = f.native
        assert isinstance(vf, VtdFault)
        return (f.fault, f.reason, vf.reason, vf.sid, vf.pasid, vf.addr, vf.access, vf.fpd)


@given(st.sampled_from([1, 2, 3]), st.booleans(), st.booleans(), st.booleans(), st.booleans(),
       st.sampled_from([None, 7]), st.booleans(), st.booleans(),
       st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4), st.sampled_from(list(EDITS))),
                max_size=2))
def test_the_compiled_miss_is_the_general_miss(aw: int, slee: bool, ere: bool, sre: bool,
                                              rid_priv: bool, pasid: int | None, fpd: bool,
                                              counted: bool,
                                              edits: list[tuple[int, int, str]]) -> None:
    cfg = VtdConfig()
    sl_cfg = sl_config(cfg, aw, slee=slee)
    mem = PhysicalMemory(MEM_BITS, count_reads=counted)  # counted: no page view
    pt = SLPageTable(sl_cfg, mem)
    top = 1 << sl_cfg.input_bits
    for iova, size in LEAVES:
        pt.map(iova % top, 0x8_0000_0000 | size, size, Prot.READ | Prot.WRITE)
    paths = [_path(mem, pt, iova % top) for iova, _ in LEAVES]
    for which, level, name in edits:
        ptr = paths[which][min(level, len(paths[which]) - 1)]
        clear, set_ = EDITS[name]
        mem.write64(ptr, (mem.read64(ptr) & ~clear) | set_)
    entry = PasidEntry(P=True, FPD=fpd, AW=aw, SLEE=slee, PGTT=Pgtt.SECOND_LEVEL,
                       SLPTPTR=pt.root, DID=3, SRE=sre, ERE=ere)
    resolved = Resolved(ContextEntry(P=True, PASIDE=True, RID_PRIV=rid_priv), entry,
                        0 if pasid is None else pasid, 4, fpd)
    sinks = [FaultSink(FaultRecorder(cfg)) for _ in range(2)]
    ctx = build_context(cfg, mem, SID, pasid, resolved, None, sinks[0])
    assert type(ctx) is SecondLevelContext
    full = SLWalker(PlainMemory(mem), sl_cfg)
    add = ctx.add_access
    assert add == (8 if pasid is None and rid_priv else 0)
    general = VtdContext(SID, pasid, resolved, partial(full.walk, pt.root), None, sinks[1], add)
    iovas = {0, top - 1, top, -1, 1 << 64}
    for iova, size in LEAVES:
        iovas |= {iova % top, iova % top + size - 1}
    for iova in sorted(iovas):
        for access in range(16):
            got = _outcome(ctx, iova, access)
            assert got == _outcome(general, iova, access), (hex(iova), access)
    for sink, other in (sinks, sinks[::-1]):
        assert list(sink.log) == list(other.log)
        rec, other_rec = sink.recorder, other.recorder
        assert (rec.slots, rec.index, rec.recorded, rec.suppressed, rec.lost) == (
            other_rec.slots, other_rec.index, other_rec.recorded, other_rec.suppressed,
            other_rec.lost)


def test_a_clean_miss_takes_the_compiled_walk() -> None:
    """The common case never reaches the general path: its entry comes from the compiled walk
    (the general path is made to fail here), with the reads of a 4-level walk."""
    cfg = VtdConfig()
    mem = PhysicalMemory(MEM_BITS)
    pt = SLPageTable(sl_config(cfg, 2), mem)
    pt.map(0x1_2345_6000, 0x8_0000_0000, 0x1000, Prot.READ)
    entry = PasidEntry(P=True, AW=2, PGTT=Pgtt.SECOND_LEVEL, SLPTPTR=pt.root, DID=3)
    ctx = build_context(cfg, mem, SID, None, Resolved(ContextEntry(P=True), entry, 0, 4, False),
                        None, FaultSink(FaultRecorder(cfg)))
    assert isinstance(ctx, SecondLevelContext)

    def general(iova: int, access: int) -> object:
        raise AssertionError("the general path ran")

    ctx._fields = general  # type: ignore[assignment]
    assert ctx.walk(0x1_2345_6ABC, 1) == ((0x1_2345_6000, 0x1000, 0x8_0000_0000, 5, False), 4)

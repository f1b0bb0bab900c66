"""The tables in memory and the hardware lookup: one test per scalable-mode fault condition of
hw-formats 1.2-1.5."""

from __future__ import annotations

import msgspec
import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.uapi.consts import FaultPerm
from iommu_uapi_vtd.context_entry import ContextEntry
from iommu_uapi_vtd.pasid_dir import PasidDirEntry
from iommu_uapi_vtd.pasid_entry import PasidEntry, Pgtt, nested_entry, pass_through_entry
from iommu_uapi_vtd.reasons import AddressType, VtdFault
from iommu_uapi_vtd.reasons import SmFaultReason as R
from iommu_uapi_vtd.registers import VtdConfig
from iommu_uapi_vtd.root_entry import RootEntry
from iommu_uapi_vtd.tables import ScalableTables, sid_of

CFG = VtdConfig()
SID = sid_of(3, 0x10)
UPPER_SID = sid_of(3, 0x88)
PASID = 0x1234


def _tables(cfg: VtdConfig = CFG, mem: PhysicalMemory | None = None) -> ScalableTables:
    t = ScalableTables(mem or PhysicalMemory(), cfg)
    t.setup_device(SID, dte=True, pre=True)
    t.set_pasid(SID, PASID, nested_entry(cfg, did=5, flptptr=0x1234000, slptptr=0x8000_1000,
                                         aw=2, sre=True))
    t.set_pasid(SID, 0, pass_through_entry(cfg, did=1, aw=2))
    return t


def _fault(t: ScalableTables, *args: object, **kw: object) -> VtdFault:
    with pytest.raises(VtdFault) as exc:
        t.resolve(*args, **kw)  # type: ignore[arg-type]
    return exc.value


def test_resolve_finds_the_entries_written() -> None:
    t = _tables()
    r = t.resolve(SID, PASID, addr=0x5000)
    assert r.entry.PGTT == Pgtt.NESTED and r.entry.DID == 5 and r.entry.FLPTPTR == 0x1234000
    assert r.pasid == PASID and r.config_reads == 4 and not r.fpd
    assert r.context.PASIDE and r.context.PDTS == 7
    no_pasid = t.resolve(SID)
    assert no_pasid.pasid == 0 and no_pasid.entry.PGTT == Pgtt.PASS_THROUGH


def test_tables_live_in_memory_in_their_bit_layout() -> None:
    t = _tables()
    root = RootEntry.from_bytes(t.mem.read(t.root + 3 * 16, 16))
    assert root.LP and not root.UP
    ctx = ContextEntry.from_bytes(t.mem.read(root.LCTP + 0x10 * 32, 32))
    d = PasidDirEntry.from_int(t.mem.read64(ctx.PASIDDIRPTR + (PASID >> 6) * 8))
    assert d.P
    raw = t.mem.read(d.SMPTPTR + (PASID & 0x3F) * 64, 64)
    assert PasidEntry.from_bytes(raw) == t.read_pasid(SID, PASID)
    assert t.rtaddr == t.root | 1 << 10


def test_upper_devfn_uses_the_upper_context_table() -> None:
    t = _tables()
    assert _fault(t, UPPER_SID).reason == R.ROOT_NOT_PRESENT      # UP clear
    t.setup_device(UPPER_SID)
    t.set_pasid(UPPER_SID, 0, pass_through_entry(CFG, did=2, aw=2))
    assert t.resolve(UPPER_SID).entry.DID == 2
    root = RootEntry.from_bytes(t.mem.read(t.root + 3 * 16, 16))
    assert root.UP and root.UCTP != root.LCTP


def test_root_faults() -> None:
    t = _tables()
    assert _fault(t, sid_of(4, 0)).reason == R.ROOT_NOT_PRESENT
    t.mem.write64(t.root + 3 * 16, t.mem.read64(t.root + 3 * 16) | 1 << 3)
    f = _fault(t, SID, PASID, addr=0x7000)
    assert (f.reason, f.sid, f.pasid, f.addr) == (R.ROOT_RESERVED, SID, PASID, 0x7000)


def test_root_access_error() -> None:
    mem = PhysicalMemory(addr_bits=40, alloc_base=0x1000_0000, alloc_limit=0x2000_0000)
    t = ScalableTables(mem, CFG)
    mem.write64(t.root, RootEntry(LP=True, LCTP=1 << 44).to_int())   # below HAW, beyond memory
    assert _fault(t, sid_of(0, 1)).reason == R.CONTEXT_ACCESS
    t.root = 1 << 40                       # the root table itself out of memory
    assert _fault(t, sid_of(0, 1)).reason == R.ROOT_ACCESS


def test_context_faults() -> None:
    t = _tables()
    addr = t.context_entry_addr(SID)
    assert addr is not None
    good = t.mem.read64(addr)
    t.mem.write64(addr, good & ~1)
    assert _fault(t, SID, PASID).reason == R.CONTEXT_NOT_PRESENT
    t.mem.write64(addr, good | 1 << 6)
    assert _fault(t, SID, PASID).reason == R.CONTEXT_RESERVED
    t.mem.write64(addr, good & ~(1 << 2))   # PRE without DTE
    assert _fault(t, SID, PASID).reason == R.CONTEXT_INVALID


def test_request_vs_context_enables() -> None:
    t = ScalableTables(PhysicalMemory(), CFG)
    t.setup_device(SID, pdts=0)               # 128 directory entries: PASIDs below 2^13
    t.set_pasid(SID, 0, pass_through_entry(CFG, did=1, aw=2))
    t.set_pasid(SID, 5, pass_through_entry(CFG, did=1, aw=2))
    assert _fault(t, SID, at=AddressType.TRANSLATION_REQUEST).reason == R.DTE_CLEAR
    assert _fault(t, SID, page_request=True).reason == R.PRE_CLEAR
    assert _fault(t, SID, 1 << 13).reason == R.PASID_BEYOND_PDTS
    assert t.resolve(SID, 5).pasid == 5
    addr = t.context_entry_addr(SID)
    assert addr is not None
    t.mem.write64(addr, t.mem.read64(addr) & ~(1 << 3))   # PASIDE clear
    assert _fault(t, SID, 5).reason == R.PASIDE_CLEAR
    assert t.resolve(SID).pasid == 0                     # requests without PASID still work


def test_rid_pasid_beyond_the_pasid_width() -> None:
    cfg = msgspec.structs.replace(CFG, rps=True, pss=4)
    t = ScalableTables(PhysicalMemory(), cfg)
    t.setup_device(SID, pdts=0, rid_pasid=0x40)
    assert _fault(t, SID).reason == R.RID_PASID_INVALID


def test_directory_faults() -> None:
    t = _tables()
    ctx = t.read_context(SID)
    assert ctx is not None
    daddr = ctx.PASIDDIRPTR + (PASID >> 6) * 8
    assert _fault(t, SID, PASID + 64).reason == R.PASID_DIR_NOT_PRESENT
    good = t.mem.read64(daddr)
    t.mem.write64(daddr, good | 1 << 11)
    assert _fault(t, SID, PASID).reason == R.PASID_DIR_RESERVED
    t.mem.write64(daddr, good | 1 << 1)      # FPD in the directory entry marks later faults
    t.clear_pasid(SID, PASID)
    f = _fault(t, SID, PASID)
    assert f.reason == R.PASID_NOT_PRESENT and f.fpd


def test_pasid_table_and_entry_faults() -> None:
    t = _tables()
    assert _fault(t, SID, PASID + 1).reason == R.PASID_NOT_PRESENT
    addr = t.pasid_entry_addr(SID, PASID)
    assert addr is not None
    t.mem.write64(addr + 24, 1)             # QW3 is reserved
    assert _fault(t, SID, PASID).reason == R.PASID_RESERVED
    t.mem.write64(addr + 24, 0)
    t.mem.write64(addr, t.mem.read64(addr) & ~(7 << 6) | 6 << 6)   # PGTT 6
    assert _fault(t, SID, PASID).reason == R.PASID_INVALID


def test_pasid_table_access_errors() -> None:
    mem = PhysicalMemory(addr_bits=40, alloc_base=0x1000_0000, alloc_limit=0x2000_0000)
    t = ScalableTables(mem, CFG)
    ctx = t.setup_device(SID, pdts=0)
    mem.write64(ctx.PASIDDIRPTR, PasidDirEntry(P=True, SMPTPTR=1 << 44).to_int())
    assert _fault(t, SID, 1).reason == R.PASID_ACCESS
    addr = t.context_entry_addr(SID)
    assert addr is not None
    mem.write(addr, msgspec.structs.replace(ctx, PASIDDIRPTR=1 << 44).to_bytes())
    assert _fault(t, SID, 1).reason == R.PASID_DIR_ACCESS


def test_supervisor_and_execute_requests_need_sre_and_ere() -> None:
    t = _tables()
    assert t.resolve(SID, PASID, access=FaultPerm.READ | FaultPerm.PRIV).entry.SRE
    f = _fault(t, SID, PASID, access=FaultPerm.READ | FaultPerm.EXEC)
    assert f.reason == R.ERE_CLEAR and f.access == FaultPerm.READ | FaultPerm.EXEC
    t.set_pasid(SID, PASID + 1, nested_entry(CFG, did=5, flptptr=0, slptptr=0x1000, aw=2))
    assert _fault(t, SID, PASID + 1, access=FaultPerm.PRIV).reason == R.SRE_CLEAR


def test_rid_priv_makes_requests_without_pasid_supervisor() -> None:
    cfg = msgspec.structs.replace(CFG, rprivs=True)
    t = ScalableTables(PhysicalMemory(), cfg)
    t.setup_device(SID, rid_priv=True)
    t.set_pasid(SID, 0, pass_through_entry(cfg, did=1, aw=2))
    assert _fault(t, SID).reason == R.SRE_CLEAR


def test_fpd_of_the_context_entry_is_carried() -> None:
    t = ScalableTables(PhysicalMemory(), CFG)
    t.setup_device(SID, fpd=True)
    f = _fault(t, SID, 9)
    assert f.reason == R.PASID_DIR_NOT_PRESENT and f.fpd


def test_no_scalable_mode_support() -> None:
    t = ScalableTables(PhysicalMemory(), msgspec.structs.replace(CFG, smts=False))
    assert _fault(t, SID).reason == R.RTADDR_INVALID


def test_software_side_refuses_bad_input_without_changing_memory() -> None:
    t = _tables()
    before = t.mem.allocated_bytes
    for call in (lambda: t.set_pasid(SID, 1 << 20, pass_through_entry(CFG, did=1, aw=2)),
                 lambda: t.set_pasid(0x10000, 1, pass_through_entry(CFG, did=1, aw=2)),
                 lambda: t.set_pasid(sid_of(9, 0), 1, pass_through_entry(CFG, did=1, aw=2)),
                 lambda: t.set_pasid(SID, 7, PasidEntry(DID=1 << 16)),
                 lambda: t.setup_device(SID),
                 lambda: t.setup_device(sid_of(9, 9), pdts=8),
                 lambda: t.resolve(SID, -1)):
        with pytest.raises(UAPIError):
            call()
    assert t.mem.allocated_bytes == before
    assert t.read_pasid(SID, 7) == PasidEntry()    # same PASID table as PASID 0, untouched


def test_teardown_frees_every_table() -> None:
    t = _tables()
    t.teardown_device(SID)
    assert t.mem.allocated_bytes == 2 * 4096      # root table + the lower context table
    assert _fault(t, SID).reason == R.CONTEXT_NOT_PRESENT

"""The scalable-mode fault reason of every walk fault the core's walkers report: first-level,
second-level and nested (VT-d 3.x section 7.1.3), on tables written by the core's builders
and then corrupted the way each fault needs."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from iommu_uapi.memory import GuestMemory, PhysicalMemory
from iommu_uapi.pgtable import vtd_sl, x86
from iommu_uapi.pgtable.common import Prot, WalkFault
from iommu_uapi.uapi.consts import FaultPerm
from iommu_uapi_vtd.reasons import SmFaultReason as Sm
from iommu_uapi_vtd.walk_reasons import sm_reason

R, W, X, PRIV = (int(FaultPerm.READ), int(FaultPerm.WRITE), int(FaultPerm.EXEC),
                 int(FaultPerm.PRIV))
RW = Prot.READ | Prot.WRITE
IOVA = 0x7F12_3456_7000
DATA_GPA, DATA_HPA = 0x4000_0000, 0x7_0000_0000


def reason_of(call: Callable[[], object]) -> Sm:
    with pytest.raises(WalkFault) as info:
        call()
    return sm_reason(info.value)


def entry(pt: x86.X86PageTable | vtd_sl.SLPageTable, level: int, iova: int = IOVA) -> int:
    """The address of the level-``level`` entry a walk of ``iova`` reads."""
    table = pt.root
    for lv in pt.levels:
        ptr = table + (((iova >> lv.shift) & lv.index_mask) << 3)
        if lv.level == level:
            return ptr
        table = pt.mem.read64(ptr) & x86.ADDR_MASK
    raise AssertionError(level)


def flip(mem: PhysicalMemory, ptr: int, clear: int = 0, set_: int = 0) -> None:
    mem.write64(ptr, (mem.read64(ptr) & ~clear) | set_)


P, US, RW_BIT, PS, XD = (x86.FLEntry.P, x86.FLEntry.US, x86.FLEntry.RW, x86.FLEntry.PS,
                         x86.FLEntry.XD)


@pytest.mark.parametrize(("level", "clear", "set_", "access", "reason"), [
    (4, P, 0, R, Sm.FL_NOT_PRESENT),
    (1, P, 0, R, Sm.FL_NOT_PRESENT),
    (3, US, 0, R, Sm.USER_NOT_ALLOWED),
    (3, US | RW_BIT, 0, W, Sm.USER_NOT_ALLOWED),  # U/S is checked before R/W
    (2, RW_BIT, 0, W, Sm.NO_WRITE),
    (1, RW_BIT, 0, W | PRIV, Sm.NO_WRITE),  # WPE: supervisor writes honour R/W
    (2, 0, XD, X, Sm.EXECUTE_DISABLED),
    (4, 0, PS, R, Sm.FL_RESERVED),
    (1, 0, 1 << 50, R, Sm.FL_RESERVED),  # above the host address width
])
def test_first_level_reasons(level: int, clear: int, set_: int, access: int,
                             reason: Sm) -> None:
    mem = PhysicalMemory()
    pt = x86.X86PageTable(x86.X86Config(), mem)
    pt.map(IOVA, DATA_HPA, 4096, RW)
    flip(mem, entry(pt, level), clear, set_)
    assert reason_of(lambda: pt.walk(IOVA, access)) == reason


def test_first_level_input_and_memory_reasons() -> None:
    mem = PhysicalMemory(addr_bits=40)
    pt = x86.X86PageTable(x86.X86Config(), mem)
    assert reason_of(lambda: pt.walk(1 << 47, R)) == Sm.NON_CANONICAL
    walker = x86.X86Walker(mem, x86.X86Config())
    assert reason_of(lambda: walker.walk(1 << 41, IOVA, R)) == Sm.FL_ACCESS


@pytest.mark.parametrize(("level", "clear", "set_", "access", "reason"), [
    (3, vtd_sl.SLEntry.R, 0, R, Sm.NO_READ),
    (2, vtd_sl.SLEntry.W, 0, W, Sm.NO_WRITE),
    (4, vtd_sl.SLEntry.R | vtd_sl.SLEntry.W, 0, R, Sm.NO_READ),  # R=W=0 for a read
    (1, vtd_sl.SLEntry.R | vtd_sl.SLEntry.W, 0, W, Sm.NO_WRITE),  # ... and for a write
    (2, vtd_sl.SLEntry.X, 0, X | R, Sm.SL_PERMISSION),  # X with SLEE
    (3, 0, vtd_sl.SLEntry.SNP, R, Sm.SL_RESERVED),
    (4, 0, vtd_sl.SLEntry.PS, R, Sm.SL_RESERVED),
])
def test_second_level_reasons(level: int, clear: int, set_: int, access: int,
                              reason: Sm) -> None:
    mem = PhysicalMemory()
    pt = vtd_sl.SLPageTable(vtd_sl.SLConfig(slee=True), mem)
    pt.map(IOVA, DATA_HPA, 4096, RW)
    flip(mem, entry(pt, level), clear, set_)
    assert reason_of(lambda: pt.walk(IOVA, access)) == reason


def test_second_level_input_and_memory_reasons() -> None:
    mem = PhysicalMemory(addr_bits=40)
    pt = vtd_sl.SLPageTable(vtd_sl.SLConfig(), mem)
    assert reason_of(lambda: pt.walk(1 << 48, R)) == Sm.ADDRESS_BEYOND_MAX
    walker = vtd_sl.SLWalker(mem, vtd_sl.SLConfig())
    assert reason_of(lambda: walker.walk(1 << 41, IOVA, R)) == Sm.SL_ACCESS


class Nest:
    """First-level tables in guest RAM over a 4 KiB-wise second level."""

    def __init__(self) -> None:
        self.host = PhysicalMemory()
        self.guest = GuestMemory(self.host)
        ram = self.guest.add_ram(0x10_0000, 1 << 20)
        self.s2 = vtd_sl.SLPageTable(vtd_sl.SLConfig(sllps=0, slee=True), self.host)
        self.s2.map_pages(0x10_0000, ram, 4096, 256, RW)
        self.s2.map(DATA_GPA, DATA_HPA, 4096, RW)
        self.s1 = x86.X86PageTable(x86.X86Config(), self.guest)
        self.s1.map(IOVA, DATA_GPA, 4096, RW)

    def entry_gpa(self, level: int) -> int:
        table = self.s1.root
        for lv in self.s1.levels:
            ptr = table + (((IOVA >> lv.shift) & 0x1FF) << 3)
            if lv.level == level:
                return ptr
            table = self.guest.read64(ptr) & x86.ADDR_MASK
        raise AssertionError(level)

    def reprotect(self, gpa: int, prot: int) -> None:
        page = gpa & ~0xFFF
        hpa = DATA_HPA if page == DATA_GPA else self.guest.gpa_to_hpa(page)
        self.s2.unmap(page, 4096)
        if prot:
            self.s2.map(page, hpa, 4096, prot)

    def reason(self, access: int, update_ad: bool = False) -> Sm:
        return reason_of(lambda: self.s1.walk(IOVA, access, self.s2.stage2(),
                                              update_ad=update_ad))


@pytest.mark.parametrize(("level", "reason"), [(4, Sm.NESTED_FL_ROOT_READ),
                                               (3, Sm.NESTED_FL_TABLE_READ),
                                               (1, Sm.NESTED_FL_TABLE_READ)])
def test_nested_table_reads_denied_by_the_second_level(level: int, reason: Sm) -> None:
    n = Nest()
    n.reprotect(n.entry_gpa(level), 0)
    assert n.reason(R) == reason


def test_nested_table_pointer_beyond_the_second_level_aw() -> None:
    n = Nest()
    ptr = n.entry_gpa(4)
    n.guest.write64(ptr, (n.guest.read64(ptr) & 0xFFF) | (1 << 50))
    walker = x86.X86Walker(n.host, x86.X86Config(haw=52))
    assert reason_of(lambda: walker.walk(n.s1.root, IOVA, R, n.s2.stage2())) == \
        Sm.NESTED_FL_TABLE_OOR


def test_nested_ad_update_needs_second_level_write() -> None:
    n = Nest()
    n.reprotect(n.entry_gpa(2), Prot.READ)
    assert n.reason(R, update_ad=True) == Sm.NESTED_FL_AD_WRITE


@pytest.mark.parametrize(("prot", "access", "reason"), [
    (Prot.READ, W, Sm.NO_WRITE),
    (0, R, Sm.NO_READ),
    (RW | Prot.NOEXEC, R | X, Sm.SL_PERMISSION),  # the second level refuses only X
])
def test_nested_output_denied_by_the_second_level(prot: int, access: int, reason: Sm) -> None:
    n = Nest()
    n.reprotect(DATA_GPA, prot)
    assert n.reason(access) == reason

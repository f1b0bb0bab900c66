"""The command queue in memory executing real commands on the SMMU's caches (a missing
invalidation is a stale hit, a correct one leaves none), its error stop and acknowledgement, and
the event queue in memory."""

from __future__ import annotations

import pytest
from smmu_rig import RW, Rig

from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.translation import Translation
from iommu_uapi_smmu.cmdq import run_batch
from iommu_uapi_smmu.cmds import (
    CError,
    CfgiAll,
    CfgiCd,
    CfgiSte,
    CfgiSteRange,
    Command,
    Resume,
    StallTerm,
    Sync,
    TlbiEl2Asid,
    TlbiEl2Va,
    TlbiEl2Vaa,
    TlbiNhAll,
    TlbiNhAsid,
    TlbiNhVa,
    TlbiNhVaa,
    TlbiNsnhAll,
    TlbiS2Ipa,
    TlbiS12Vmall,
)
from iommu_uapi_smmu.events import EventType, SmmuFault, decode_event
from iommu_uapi_smmu.idr import SmmuCaps
from iommu_uapi_smmu.registers import (
    CMDQ_CONS_ERR,
    QUEUE_OVERFLOW,
    Cr0,
    Cr2,
    Gerror,
    QueueBase,
    Reg,
)
from iommu_uapi_smmu.smmu import Smmu
from iommu_uapi_smmu.ste import Ste, SteConfig

DATA = 0x9_0000_0000


class QRig(Rig):
    """A :class:`Rig` with a 256-entry command queue and an 8-entry event queue enabled."""

    def __init__(self, evtq_log2: int = 3, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.cmdq = self.mem.alloc()
        self.evtq = self.mem.alloc()
        smmu = self.smmu
        smmu.write_register(Reg.CMDQ_BASE, QueueBase(LOG2SIZE=8, ADDR=self.cmdq).to_int())
        smmu.write_register(Reg.EVENTQ_BASE,
                            QueueBase(LOG2SIZE=evtq_log2, ADDR=self.evtq).to_int())
        smmu.write_register(Reg.CR0, Cr0(SMMUEN=True, CMDQEN=True, EVENTQEN=True).to_int())
        self.prod = 0

    def submit(self, *cmds: Command | int) -> int:
        """Write commands at PROD, publish PROD; returns CMDQ_CONS."""
        for cmd in cmds:
            raw = cmd if isinstance(cmd, int) else cmd.to_int()
            self.mem.write(self.cmdq + (self.prod & 0xFF) * 16, raw.to_bytes(16, "little"))
            self.prod = (self.prod + 1) & 0x1FF
        self.smmu.write_register(Reg.CMDQ_PROD, self.prod)
        return self.smmu.regs.read(Reg.CMDQ_CONS)


def _faults(smmu: Smmu, sid: int, addr: int, access: int = 1) -> bool:
    try:
        smmu.translate(sid, addr, access)
    except SmmuFault:
        return True
    return False


def test_stale_ste_until_cfgi_ste() -> None:
    rig = QRig()
    rig.set_ste(1, Ste(V=True, Config=SteConfig.BYPASS))
    assert rig.smmu.translate(1, 0x1000).config_reads == 1
    assert rig.smmu.translate(1, 0x1000).config_reads == 0  # cached
    rig.set_ste(1, Ste(V=True, Config=SteConfig.ABORT))
    assert rig.smmu.translate(1, 0x1000).paddr == 0x1000  # stale: no invalidation yet
    rig.submit(CfgiSte(SID=2), Sync())
    assert rig.smmu.translate(1, 0x1000).paddr == 0x1000  # another StreamID's
    assert rig.submit(CfgiSte(SID=1, Leaf=True), Sync()) == 4
    assert _faults(rig.smmu, 1, 0x1000)


def test_cfgi_all_drops_every_ste() -> None:
    rig = QRig()
    for sid in (1, 200):
        rig.set_ste(sid, Ste(V=True, Config=SteConfig.BYPASS))
        rig.smmu.translate(sid, 0)
        rig.set_ste(sid, Ste(V=False))
    rig.submit(CfgiAll())
    assert _faults(rig.smmu, 1, 0) and _faults(rig.smmu, 200, 0)


def test_stale_cd_until_cfgi_cd() -> None:
    rig = QRig()
    a, b = rig.s1(), rig.s1()
    a.map(0x1000, DATA, 4096, RW)
    b.map(0x1000, DATA + 0x5000, 4096, RW)
    ptr = rig.cd_table({0: rig.cd(a, ASID=1)})
    rig.set_ste(3, Ste(V=True, Config=SteConfig.S1_TRANS, S1ContextPtr=ptr))
    assert rig.smmu.translate(3, 0x1000).paddr == DATA
    rig.mem.write(ptr, rig.cd(b, ASID=2).to_bytes())
    assert rig.smmu.translate(3, 0x1000).paddr == DATA  # stale CD (and TLB of ASID 1)
    rig.submit(CfgiCd(SID=3, SSID=0, Leaf=True))
    t = rig.smmu.translate(3, 0x1000)
    assert (t.paddr, t.config_reads) == (DATA + 0x5000, 1)  # new CD, new ASID: new walk


def _s1_stream(rig: Rig, sid: int, asid: int, vmid: int = 1) -> object:
    pt = rig.s1()
    pt.map(0x1000, DATA, 4096, RW)
    pt.map(0x2000, DATA + 0x1000, 4096, RW)
    pt.map(0x3000, DATA + 0x2000, 4096, RW | Prot.GLOBAL)
    rig.s1_stream(sid, {0: rig.cd(pt, ASID=asid)}, S2VMID=vmid)
    for va in (0x1000, 0x2000, 0x3000):
        rig.smmu.translate(sid, va)
    for va in (0x1000, 0x2000, 0x3000):
        pt.unmap(va, 4096)
    return pt


def _stale(rig: Rig, sid: int) -> list[int]:
    """The VAs still translated from the TLB after their tables were emptied."""
    return [va for va in (0x1000, 0x2000, 0x3000) if not _faults(rig.smmu, sid, va)]


def test_missing_tlbi_is_a_stale_hit() -> None:
    rig = QRig()
    _s1_stream(rig, 4, asid=7)
    t = rig.smmu.translate(4, 0x1008)
    assert (t.paddr, t.table_reads) == (DATA + 8, 0)
    assert _stale(rig, 4) == [0x1000, 0x2000, 0x3000]


def test_tlbi_nh_va_drops_the_page_and_its_global_entry() -> None:
    rig = QRig()
    _s1_stream(rig, 4, asid=7)
    rig.submit(TlbiNhVa(VMID=1, ASID=7, Addr=0x1000), TlbiNhVa(VMID=1, ASID=9, Addr=0x3000))
    assert _stale(rig, 4) == [0x2000]


def test_tlbi_nh_asid_spares_global_entries() -> None:
    rig = QRig()
    _s1_stream(rig, 4, asid=7)
    rig.submit(TlbiNhAsid(VMID=1, ASID=7))
    assert _stale(rig, 4) == [0x3000]


def test_tlbi_nh_all_and_vaa_include_global_and_respect_vmid() -> None:
    rig = QRig()
    _s1_stream(rig, 4, asid=7, vmid=1)
    _s1_stream(rig, 5, asid=7, vmid=2)
    rig.submit(TlbiNhVaa(VMID=1, Addr=0x3000))
    assert _stale(rig, 4) == [0x1000, 0x2000]
    rig.submit(TlbiNhAll(VMID=1))
    assert _stale(rig, 4) == []
    assert _stale(rig, 5) == [0x1000, 0x2000, 0x3000]
    rig.submit(TlbiS12Vmall(VMID=2))
    assert _stale(rig, 5) == []


def test_range_tlbi() -> None:
    rig = QRig()
    _s1_stream(rig, 4, asid=7)
    rig.submit(TlbiNhVa(VMID=1, ASID=7, Addr=0x1000, TG=1, NUM=1, TTL=3))  # 2 x 4 KiB
    assert _stale(rig, 4) == [0x3000]


def test_tlbi_s2_ipa_and_nsnh_all() -> None:
    rig = QRig()
    s2 = rig.s2()
    s2.map(0x1000, DATA, 4096, RW)
    s2.map(0x2000, DATA + 0x1000, 4096, RW)
    rig.set_ste(6, Ste(V=True, Config=SteConfig.S2_TRANS, **rig.s2_fields(s2, vmid=3)))
    for ipa in (0x1000, 0x2000):
        rig.smmu.translate(6, ipa)
        s2.unmap(ipa, 4096)
    rig.submit(TlbiS2Ipa(VMID=3, IPA=0x1000))
    assert [a for a in (0x1000, 0x2000) if not _faults(rig.smmu, 6, a)] == [0x2000]
    rig.submit(TlbiNsnhAll())
    assert _faults(rig.smmu, 6, 0x2000)


def test_illegal_command_stops_the_queue_until_acknowledged() -> None:
    rig = QRig()
    rig.set_ste(1, Ste(V=True, Config=SteConfig.BYPASS))
    rig.smmu.translate(1, 0)
    rig.set_ste(1, Ste(V=False))
    cons = rig.submit(Sync(), 0xFF, CfgiSte(SID=1))
    assert cons & 0x1FF == 1 and CMDQ_CONS_ERR.get(cons) == CError.ILL
    assert rig.smmu.regs.active_gerrors() == Gerror.CMDQ_ERR
    assert not _faults(rig.smmu, 1, 0)  # CFGI_STE behind the error did not run
    rig.submit()  # a new PROD write: still stopped
    assert rig.smmu.regs.read(Reg.CMDQ_CONS) & 0x1FF == 1
    # software overwrites the faulting slot with a CMD_SYNC and acknowledges
    rig.mem.write(rig.cmdq + 16, Sync().to_bytes())
    rig.smmu.write_register(Reg.GERRORN, rig.smmu.regs.read(Reg.GERROR))
    assert rig.smmu.regs.read(Reg.CMDQ_CONS) & 0x1FF == 3
    assert _faults(rig.smmu, 1, 0)


def test_command_fetch_abort() -> None:
    small = Smmu(PhysicalMemory(40))
    small.write_register(Reg.CMDQ_BASE, QueueBase(LOG2SIZE=2, ADDR=1 << 45).to_int())
    small.write_register(Reg.CR0, Cr0(CMDQEN=True).to_int())
    small.write_register(Reg.CMDQ_PROD, 1)
    assert CMDQ_CONS_ERR.get(small.regs.read(Reg.CMDQ_CONS)) == CError.ABT


def test_sync_msi_write() -> None:
    rig = QRig()
    flag = rig.mem.alloc()
    rig.submit(Sync(CS=1, MSIAddr=flag, MSIData=0xCAFE))
    assert rig.mem.read32(flag) == 0xCAFE
    rig.submit(Sync(CS=2, MSIAddr=flag + 4, MSIData=1))  # SEV: no write
    assert rig.mem.read32(flag + 4) == 0


def test_event_queue_in_memory_and_overflow() -> None:
    rig = QRig(evtq_log2=1)  # two entries
    for sid in (250, 251, 252):
        rig.set_ste(sid, Ste(V=False))
        assert _faults(rig.smmu, sid, 0)
    prod = rig.smmu.regs.read(Reg.EVENTQ_PROD)
    assert prod & 0b11 == 0b10  # index 0, wrap 1: full
    assert QUEUE_OVERFLOW.get(prod)  # the third event was lost
    recorded = [decode_event(rig.mem.read(rig.evtq + i * 32, 32)) for i in range(2)]
    assert [(e.Type, e.StreamID) for e in recorded] == [(EventType.C_BAD_STE, 250),
                                                        (EventType.C_BAD_STE, 251)]
    assert len(rig.smmu.events) == 3
    # software consumes both and acknowledges the overflow; the next event is written
    rig.smmu.write_register(Reg.EVENTQ_CONS, 0b10 | QUEUE_OVERFLOW.mask)
    rig.set_ste(253, Ste(V=False))
    _faults(rig.smmu, 253, 0)
    assert decode_event(rig.mem.read(rig.evtq, 32)).StreamID == 253


def test_resume_retries_and_stall_term_terminates() -> None:
    rig = QRig()
    pt = rig.s1()
    rig.s1_stream(8, {0: rig.cd(pt, S=True)})
    with pytest.raises(SmmuFault) as info:
        rig.smmu.translate(8, 0x4000)
    stag = info.value.event.STAG  # type: ignore[union-attr]
    pt.map(0x4000, DATA, 4096, RW)
    rig.submit(Resume(SID=8, STAG=stag, Ac=True))
    assert len(rig.smmu.resumed) == 1
    assert isinstance(rig.smmu.resumed[0], Translation)
    assert rig.smmu.resumed[0].paddr == DATA
    with pytest.raises(SmmuFault):
        rig.smmu.translate(8, 0x8000)
    rig.submit(StallTerm(SID=8))
    assert rig.smmu.stalled == {}


def test_recinvsid_register() -> None:
    rig = QRig(recinvsid=False)
    assert _faults(rig.smmu, 300, 0) and rig.smmu.events == []
    rig.smmu.write_register(Reg.CR2, Cr2(RECINVSID=True).to_int())
    assert _faults(rig.smmu, 300, 0) and len(rig.smmu.events) == 1


def test_el2_streams_have_their_own_entries_and_tlbis() -> None:
    rig = QRig(caps=SmmuCaps(hyp=True))
    _s1_stream(rig, 4, asid=7)  # NS-EL1
    pt = rig.s1()
    for va in (0x1000, 0x2000, 0x3000):
        pt.map(va, DATA, 4096, RW | (Prot.GLOBAL if va == 0x3000 else 0))
    rig.s1_stream(5, {0: rig.cd(pt, ASID=7)}, STRW=0b10)  # EL2, same ASID
    for va in (0x1000, 0x2000, 0x3000):
        rig.smmu.translate(5, va)
        pt.unmap(va, 4096)
    rig.submit(TlbiNsnhAll(), TlbiNhAll(VMID=0))  # neither reaches EL2 entries
    assert _stale(rig, 4) == []
    assert _stale(rig, 5) == [0x1000, 0x2000, 0x3000]
    rig.submit(TlbiEl2Va(ASID=7, Addr=0x1000))
    assert _stale(rig, 5) == [0x2000, 0x3000]
    rig.submit(TlbiEl2Asid(ASID=7))
    assert _stale(rig, 5) == [0x3000]  # global
    rig.submit(TlbiEl2Vaa(Addr=0x3000))
    assert _stale(rig, 5) == []
    assert rig.smmu.regs.active_gerrors() == 0


def test_cfgi_ste_range_drops_its_aligned_block_only() -> None:
    rig = QRig()
    for sid in range(8):
        rig.set_ste(sid, Ste(V=True, Config=SteConfig.BYPASS))
        rig.smmu.translate(sid, 0)
        rig.set_ste(sid, Ste(V=False))
    rig.submit(CfgiSteRange(SID=5, Range=1))  # 4 StreamIDs: 4..7
    assert [sid for sid in range(8) if _faults(rig.smmu, sid, 0)] == [4, 5, 6, 7]


def test_smmu_owned_indices_are_read_only_while_the_queue_runs() -> None:
    rig = QRig()
    rig.submit(Sync(), Sync())
    assert rig.smmu.regs.read(Reg.CMDQ_CONS) == 2
    rig.smmu.write_register(Reg.CMDQ_CONS, 0)  # CMDQEN = 1: the SMMU owns CONS
    assert rig.smmu.regs.read(Reg.CMDQ_CONS) == 2
    rig.smmu.write_register(Reg.EVENTQ_PROD, 5)
    assert rig.smmu.regs.read(Reg.EVENTQ_PROD) == 0
    rig.smmu.write_register(Reg.CR0, Cr0(SMMUEN=True).to_int())  # queues off
    rig.smmu.write_register(Reg.CMDQ_CONS, 0)
    rig.smmu.write_register(Reg.EVENTQ_PROD, 5)
    assert (rig.smmu.regs.read(Reg.CMDQ_CONS), rig.smmu.regs.read(Reg.EVENTQ_PROD)) == (0, 5)


def test_queue_positions_wrap_after_a_full_lap() -> None:
    rig = QRig()
    for _ in range(3):
        rig.submit(*[Sync()] * 100)  # 300 commands through a 256-entry queue
    assert rig.smmu.regs.read(Reg.CMDQ_CONS) == (300 & 0xFF) | 1 << 8  # wrap flag set


def test_tbi_addresses_share_one_tlb_entry_and_one_tlbi() -> None:
    rig = QRig()
    lo, hi = rig.s1(t0sz=25), rig.s1(t0sz=25)
    hi.map((1 << 39) - 0x1000, DATA, 4096, RW)
    rig.s1_stream(9, {0: rig.cd(lo, ASID=3, EPD1=False, T1SZ=25, TG1=0b10, TTB1=hi.root,
                                 TBI1=True)})
    for top in (0xFF, 0x12, 0xAB):
        rig.smmu.translate(9, top << 56 | 0x00FF_FFFF_FFFF_F000)
    assert len(rig.smmu.tlb.tlb) == 1
    hi.unmap((1 << 39) - 0x1000, 4096)
    rig.submit(TlbiNhVa(VMID=0, ASID=3, Addr=0xFFFF_FFFF_FFFF_F000))
    assert _faults(rig.smmu, 9, 0x12FF_FFFF_FFFF_F000)


def test_the_one_pass_batch_does_what_the_register_path_does() -> None:
    rigs = [QRig(), QRig()]
    for rig in rigs:
        _s1_stream(rig, 4, asid=7)
    cmds = [TlbiNhVa(VMID=1, ASID=7, Addr=0x1000), TlbiNhVa(VMID=1, ASID=7, Addr=0x3000),
            Sync()]
    fast, slow = rigs
    assert run_batch(fast.smmu, [c.to_bytes() for c in cmds])     # images never seen before
    slow.submit(*cmds)
    for rig in rigs:
        assert _stale(rig, 4) == [0x2000]
    assert fast.mem.read(fast.cmdq, 64) == slow.mem.read(slow.cmdq, 64)
    assert [fast.smmu.regs.read(r) for r in (Reg.CMDQ_PROD, Reg.CMDQ_CONS)] == \
        [slow.smmu.regs.read(r) for r in (Reg.CMDQ_PROD, Reg.CMDQ_CONS)] == [3, 3]


def test_a_repeated_batch_runs_from_its_kept_commands_as_a_new_one_does() -> None:
    """A prepared batch (a tuple of images) keeps its decoded commands: run again, into the
    next slots of the ring, it writes and executes what the register path does; a batch with
    an illegal image is never kept."""
    rigs = [QRig(), QRig()]
    for rig in rigs:
        _s1_stream(rig, 4, asid=7)
    cmds = [TlbiNhVa(VMID=1, ASID=7, Addr=0x1000), Sync()]
    images = tuple(c.to_bytes() for c in cmds)
    fast, slow = rigs
    for n in range(1, 4):
        assert run_batch(fast.smmu, images)
        slow.submit(*cmds)
        assert images in fast.smmu.decoded_batches
        assert _stale(fast, 4) == _stale(slow, 4) == [0x2000, 0x3000]
        assert fast.mem.read(fast.cmdq, 128) == slow.mem.read(slow.cmdq, 128)
        assert [fast.smmu.regs.read(r) for r in (Reg.CMDQ_PROD, Reg.CMDQ_CONS)] == \
            [slow.smmu.regs.read(r) for r in (Reg.CMDQ_PROD, Reg.CMDQ_CONS)] == [2 * n, 2 * n]
    bad = (images[0], (0xFF).to_bytes(16, "little"))
    assert not run_batch(fast.smmu, bad) and bad not in fast.smmu.decoded_batches


def test_the_one_pass_batch_leaves_an_illegal_image_to_the_queue() -> None:
    rig = QRig()
    _s1_stream(rig, 4, asid=7)
    images = [TlbiNhVa(VMID=1, ASID=7, Addr=0x1000).to_bytes(), (0xFF).to_bytes(16, "little")]
    assert not run_batch(rig.smmu, images)                       # nothing written or run
    assert rig.mem.read(rig.cmdq, 32) == bytes(32)
    assert rig.smmu.regs.read(Reg.CMDQ_PROD) == rig.smmu.regs.read(Reg.CMDQ_CONS) == 0
    assert _stale(rig, 4) == [0x1000, 0x2000, 0x3000]
    cons = rig.submit(*(int.from_bytes(i, "little") for i in images))  # the queue stops at it
    assert cons & 0x1FF == 1 and CMDQ_CONS_ERR.get(cons) == CError.ILL
    assert _stale(rig, 4) == [0x2000, 0x3000]
    assert not run_batch(rig.smmu, [Sync().to_bytes()])          # a stopped queue: no batch

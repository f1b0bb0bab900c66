"""Stateful check of the caches: software changes tables and configuration and issues the
invalidations the architecture asks for through the command queue; every translation the
caching SMMU gives must then equal what an SMMU with empty caches reads from memory. The same
run without the invalidations shows stale hits."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from smmu_rig import RW
from test_cmdq import QRig

from iommu_uapi.translation import Translation
from iommu_uapi_smmu.cmds import CfgiCd, CfgiSte, Sync, TlbiNhAsid, TlbiNhVa, TlbiS2Ipa
from iommu_uapi_smmu.events import SmmuFault
from iommu_uapi_smmu.registers import Reg
from iommu_uapi_smmu.smmu import Smmu
from iommu_uapi_smmu.ste import Ste, SteConfig

DATA = 0x9_0000_0000
PAGES = range(4)
#: What a cold SMMU needs programmed to read the same tables.
PROGRAMMED = (Reg.STRTAB_BASE, Reg.STRTAB_BASE_CFG, Reg.CR2, Reg.CR0)
SIDS = (1, 2)
S2_SID = 3


def _outcome(smmu: Smmu, sid: int, va: int) -> Translation | int:
    try:
        t = smmu.translate(sid, va)
    except SmmuFault as fault:
        return -1 if fault.event is None else fault.event.Type
    return Translation(t.paddr, t.page_size, t.perm, 0, 0)


class CachedSmmu(RuleBasedStateMachine):
    """Two stage-1 streams over two page tables; the streams can be switched between tables
    (a CD rewrite), disabled (an STE rewrite), and pages mapped and unmapped; a stage-2 stream
    whose IPAs are mapped and unmapped."""

    def __init__(self) -> None:
        super().__init__()
        rig = self.rig = QRig()
        self.tables = [rig.s1(), rig.s1()]
        self.mapped: list[set[int]] = [set(), set()]
        self.cd_ptr = {sid: rig.cd_table({}) for sid in SIDS}
        self.uses = dict.fromkeys(SIDS, 0)
        self.s2 = rig.s2()
        self.s2_mapped: set[int] = set()
        rig.set_ste(S2_SID, Ste(V=True, Config=SteConfig.S2_TRANS,
                                **rig.s2_fields(self.s2, vmid=5)))
        for sid in SIDS:
            self._write_cd(sid, 0)
            rig.set_ste(sid, Ste(V=True, Config=SteConfig.S1_TRANS,
                                 S1ContextPtr=self.cd_ptr[sid]))

    def _write_cd(self, sid: int, table: int) -> None:
        # each table has its own ASID: switching tables switches ASID
        cd = self.rig.cd(self.tables[table], ASID=table + 1)
        self.rig.mem.write(self.cd_ptr[sid], cd.to_bytes())
        self.uses[sid] = table

    @rule(table=st.sampled_from([0, 1]), page=st.sampled_from(PAGES))
    def map_page(self, table: int, page: int) -> None:
        if page in self.mapped[table]:
            return
        self.tables[table].map(page << 12, DATA + (table << 20) + (page << 12), 4096, RW)
        self.mapped[table].add(page)

    @rule(table=st.sampled_from([0, 1]), k=st.integers(0, len(PAGES) - 1))
    def unmap_page(self, table: int, k: int) -> None:
        pages = sorted(self.mapped[table])
        if not pages:
            return
        page = pages[k % len(pages)]
        self.tables[table].unmap(page << 12, 4096)
        self.mapped[table].discard(page)
        # the unmap frees the tables it empties: Leaf = 0 drops the walk caches' entries too
        self.rig.submit(TlbiNhVa(VMID=0, ASID=table + 1, Addr=page << 12, Leaf=False), Sync())

    @rule(table=st.sampled_from([0, 1]))
    def unmap_all(self, table: int) -> None:
        for page in sorted(self.mapped[table]):
            self.tables[table].unmap(page << 12, 4096)
        self.mapped[table].clear()
        self.rig.submit(TlbiNhAsid(VMID=0, ASID=table + 1), Sync())

    @rule(page=st.sampled_from(PAGES))
    def map_ipa(self, page: int) -> None:
        if page not in self.s2_mapped:
            self.s2.map(page << 12, DATA + (2 << 20) + (page << 12), 4096, RW)
            self.s2_mapped.add(page)

    @rule(k=st.integers(0, len(PAGES) - 1))
    def unmap_ipa(self, k: int) -> None:
        pages = sorted(self.s2_mapped)
        if pages:
            page = pages[k % len(pages)]
            self.s2.unmap(page << 12, 4096)
            self.s2_mapped.discard(page)
            self.rig.submit(TlbiS2Ipa(VMID=5, IPA=page << 12, Leaf=False), Sync())

    @rule(sid=st.sampled_from(SIDS), table=st.sampled_from([0, 1]))
    def switch_table(self, sid: int, table: int) -> None:
        self._write_cd(sid, table)
        self.rig.submit(CfgiCd(SID=sid, SSID=0, Leaf=True), Sync())

    @rule(sid=st.sampled_from(SIDS), valid=st.booleans())
    def rewrite_ste(self, sid: int, valid: bool) -> None:
        self.rig.set_ste(sid, Ste(V=valid, Config=SteConfig.S1_TRANS,
                                  S1ContextPtr=self.cd_ptr[sid]))
        self.rig.submit(CfgiSte(SID=sid), Sync())

    @rule()
    def translate(self) -> None:
        """Every (StreamID, page) through the caching SMMU and through a cold one."""
        cold = Smmu(self.rig.mem, self.rig.smmu.caps)
        for reg in PROGRAMMED:
            cold.regs.write(reg, self.rig.smmu.regs.read(reg))
        for sid in (*SIDS, S2_SID):
            for page in PAGES:
                assert _outcome(self.rig.smmu, sid, page << 12) == \
                    _outcome(cold, sid, page << 12), (sid, page)

    @invariant()
    def queue_never_errs(self) -> None:
        assert not self.rig.smmu.regs.active_gerrors()


CachedSmmu.TestCase.settings = settings(max_examples=100, stateful_step_count=20,
                                        deadline=None)
TestCachedSmmu = CachedSmmu.TestCase


def test_without_invalidation_the_cache_is_stale() -> None:
    """The counterpart: the same change without its TLBI leaves a stale hit the cold SMMU
    does not have."""
    m = CachedSmmu()
    m.map_page(0, 3)
    m.translate()
    m.tables[0].unmap(3 << 12, 4096)
    cold = Smmu(m.rig.mem, m.rig.smmu.caps)
    for reg in PROGRAMMED:
        cold.regs.write(reg, m.rig.smmu.regs.read(reg))
    assert isinstance(_outcome(m.rig.smmu, 1, 3 << 12), Translation)
    assert not isinstance(_outcome(cold, 1, 3 << 12), Translation)

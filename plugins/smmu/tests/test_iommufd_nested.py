"""iommufd on the SMMU, as a VMM uses it: the words a guest hands over are the model's bits,
one nested HWPT per device over one nesting parent, and the 2020 calls and iommufd giving the
same translations, caches and faults."""

from __future__ import annotations

import errno

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.iommu import IOMMU
from iommu_uapi.iommufd import (
    Client,
    HwptAllocFlags,
    HwptDataType,
    HwptInvalidateDataType,
    IommuFd,
    IommuHwptPageResponse,
    IommuHwptPgfault,
    PageResponseCode,
    ViommuType,
)
from iommu_uapi.iommufd.arm_smmuv3 import (
    VCMD_FIELDS,
    VCMD_LAYOUT,
    VSTE_FIELDS,
    VcmdOpcode,
    atc_span,
    vcmd,
    vste,
    vste_from_table,
)
from iommu_uapi.memory import GuestMemory, PhysicalMemory
from iommu_uapi.pasid_tables.smmuv3 import S1Fmt
from iommu_uapi.testing import generations
from iommu_uapi.testing.generations import compare_generations, run_2020, run_iommufd
from iommu_uapi.testing.iommufd_rig import IommufdRig
from iommu_uapi.translation import TranslationFault
from iommu_uapi_smmu import cmds
from iommu_uapi_smmu.cmd_layout import Opcode
from iommu_uapi_smmu.guest import SMMU_GUEST, SmmuGuestFormat, guest_cd
from iommu_uapi_smmu.iommufd import SmmuNested, nested_ste
from iommu_uapi_smmu.ste import Ste, SteConfig

VA = 0x7000_0000_0000
RAM_HPA = 0x1_0000_0000
_COMMANDS = {VcmdOpcode.CFGI_CD: cmds.CfgiCd, VcmdOpcode.CFGI_CD_ALL: cmds.CfgiCdAll,
             VcmdOpcode.TLBI_NH_ALL: cmds.TlbiNhAll, VcmdOpcode.TLBI_NH_ASID: cmds.TlbiNhAsid,
             VcmdOpcode.TLBI_NH_VA: cmds.TlbiNhVa, VcmdOpcode.TLBI_NH_VAA: cmds.TlbiNhVaa,
             VcmdOpcode.TLBI_NSNH_ALL: cmds.TlbiNsnhAll, VcmdOpcode.ATC_INV: cmds.AtcInv}


# -- the guest's words are the model's bits --------------------------------------------------


def test_guest_ste_fields_are_the_ste_bits() -> None:
    assert {n: VSTE_FIELDS[n] for n in VSTE_FIELDS} == {n: Ste.LAYOUT[n] for n in VSTE_FIELDS}
    assert vste(V=1, Config=SteConfig.S1_TRANS, S1ContextPtr=0x8_0040, S1CDMax=10,
                S1Fmt=1, S1DSS=1).ste == tuple(
        int.from_bytes(Ste(V=True, Config=SteConfig.S1_TRANS, S1ContextPtr=0x8_0040,
                           S1CDMax=10, S1Fmt=1, S1DSS=1).to_bytes()[i:i + 8], "little")
        for i in (0, 8))


@pytest.mark.parametrize("op", list(VcmdOpcode))
def test_guest_commands_are_the_commands_bits(op: VcmdOpcode) -> None:
    model = _COMMANDS[op]
    assert int(model.OPCODE) == int(op) == int(Opcode[op.name])
    non_secure = {n: f for n, f in model.LAYOUT.items() if n != "SSec"}  # no guest's
    assert {n: VCMD_FIELDS[n] for n in VCMD_LAYOUT[op]} == non_secure
    values = {n: 1 << VCMD_FIELDS[n].unit for n in VCMD_LAYOUT[op]}
    w0, w1 = vcmd(op, **values).cmd
    assert w0 | w1 << 64 == model(**values).to_int()  # type: ignore[arg-type]


def test_atc_span_is_the_drivers_encoding() -> None:
    assert atc_span(VA, 4 * 4096) == (VA, 2)
    assert atc_span(VA + 0x3000, 2 * 4096) == (VA, 3)   # crosses a 16 KiB boundary
    assert atc_span(VA, 1) == (VA, 0)


def test_the_guest_ste_of_a_cd_table_installs_what_the_2020_attach_installs() -> None:
    guest = GuestMemory(PhysicalMemory())
    guest.add_ram(0, 0x10_0000, RAM_HPA)
    cfg = SmmuGuestFormat(pasid_bits=10, s1fmt=S1Fmt.TWO_LEVEL_4K).pasid_table(guest)
    assert SmmuNested(nested_ste(vste_from_table(cfg))).table_config() == cfg


# -- several nested HWPTs on one parent ------------------------------------------------------


class TwoGuests:
    """One nesting parent (guest RAM at IPA 0), two devices, each attached to its own nested
    HWPT whose guest STE points at its own CD table; one vIOMMU with a vDEVICE per device."""

    def __init__(self) -> None:
        self.mem = PhysicalMemory()
        self.iommu = IOMMU("smmuv3", memory=self.mem, profile="strict")
        self.fd = IommuFd(self.iommu)
        self.c = Client(self.fd)
        self.guest = GuestMemory(self.mem)
        self.guest.add_ram(0, 0x10_0000, RAM_HPA)
        self.fd.user.mmap_host(0x4000_0000_0000, 0x10_0000, RAM_HPA)
        self.devs = [self.iommu.add_device(sid) for sid in (0x0300, 0x0308)]
        self.ids = [self.fd.bind(d) for d in self.devs]
        self.ioas = self.c.ioas_alloc()
        self.parent = self.c.hwpt_alloc(self.ids[0], self.ioas, HwptAllocFlags.NEST_PARENT)
        self.c.ioas_map(self.ioas, 0x4000_0000_0000, 0x10_0000, iova=0)
        self.tables = [SMMU_GUEST.pasid_table(self.guest) for _ in self.devs]
        self.gpts = [SMMU_GUEST.tables(self.guest) for _ in self.devs]
        self.gpas = [self.guest.alloc() for _ in self.devs]
        self.hwpts: list[int] = []
        for n, (dev_id, cfg, gpt, gpa) in enumerate(zip(self.ids, self.tables, self.gpts,
                                                         self.gpas, strict=True)):
            gpt.map(VA, gpa, 0x1000, 3)
            # the same PASID in both tables, with a different ASID in each
            addr = SMMU_GUEST.cd_address(self.guest, cfg, 1)
            self.guest.write(addr, guest_cd(gpt.root, asid=0x10 + n).to_bytes())
            hwpt = self.c.hwpt_alloc(dev_id, self.parent, 0, vste_from_table(cfg),
                                     HwptDataType.ARM_SMMUV3)
            self.fd.attach(dev_id, hwpt)
            self.hwpts.append(hwpt)
        self.viommu = self.c.viommu_alloc(self.ids[0], self.parent, ViommuType.ARM_SMMUV3)
        for n, dev_id in enumerate(self.ids):
            self.c.vdevice_alloc(self.viommu, dev_id, 0x40 + n)

    def dma(self, n: int) -> int:
        return self.iommu.translate(self.devs[n], VA, pasid=1).paddr

    def tlb_asids(self) -> set[int]:
        return {key[0][1] for key in self.iommu.iotlb.entries}


def test_two_nested_hwpts_share_one_parent_each_with_its_cd_table() -> None:
    t = TwoGuests()
    assert [t.dma(0), t.dma(1)] == [t.guest.gpa_to_hpa(g) for g in t.gpas]
    host = t.iommu.backend.host  # type: ignore[attr-defined]
    stes = [host.read_ste(d.sid) for d in t.devs]
    assert [s.S1ContextPtr for s in stes] == [c.base_ptr for c in t.tables]
    assert stes[0].S2TTB == stes[1].S2TTB and stes[0].S2VMID == stes[1].S2VMID
    assert {s.Config for s in stes} == {SteConfig.NESTED}


def test_invalidating_one_asid_leaves_the_other_devices_entries() -> None:
    t = TwoGuests()
    t.dma(0), t.dma(1)
    assert t.tlb_asids() == {0x10, 0x11}
    handled, error = t.c.invalidate(t.viommu, [vcmd(VcmdOpcode.TLBI_NH_ASID, ASID=0x10)],
                                    HwptInvalidateDataType.VIOMMU_ARM_SMMUV3)
    assert (handled, error) == (1, None)
    assert t.tlb_asids() == {0x11}
    reads = t.iommu.translate(t.devs[1], VA, pasid=1).table_reads
    assert reads == 0  # still cached


def test_cfgi_cd_of_one_vdevice_rereads_only_its_cd() -> None:
    t = TwoGuests()
    t.dma(0), t.dma(1)
    cd_cache = t.iommu.backend.smmu.cd_cache  # type: ignore[attr-defined]
    assert set(cd_cache.entries) == {(0x0300, 1), (0x0308, 1)}
    handled, error = t.c.invalidate(t.viommu, [vcmd(VcmdOpcode.CFGI_CD, SID=0x41, SSID=1)],
                                    HwptInvalidateDataType.VIOMMU_ARM_SMMUV3)
    assert (handled, error) == (1, None)
    assert set(cd_cache.entries) == {(0x0300, 1)}


def test_detaching_one_device_leaves_the_other_translating() -> None:
    t = TwoGuests()
    t.fd.detach(t.ids[0])
    assert t.dma(1) == t.guest.gpa_to_hpa(t.gpas[1])
    t.fd.attach(t.ids[0], t.parent)  # back to stage 2 only: no substreams
    host = t.iommu.backend.host  # type: ignore[attr-defined]
    assert host.read_ste(t.devs[0].sid).Config == SteConfig.S2_TRANS
    with pytest.raises(TranslationFault):
        t.dma(0)


def test_one_nested_hwpt_may_serve_two_devices() -> None:
    t = TwoGuests()
    t.fd.detach(t.ids[1])
    t.fd.attach(t.ids[1], t.hwpts[0])
    assert t.dma(1) == t.dma(0) == t.guest.gpa_to_hpa(t.gpas[0])


def test_a_device_holds_one_nested_hwpt_at_a_time() -> None:
    t = TwoGuests()
    with pytest.raises(UAPIError) as exc:
        t.fd.attach(t.ids[0], t.hwpts[1])
    assert (exc.value.errno, exc.value.rule) == (errno.EBUSY, "iommufd.attach.busy")


# -- both generations, one model --------------------------------------------------------------


def test_smmu_generations_agree() -> None:
    assert compare_generations("smmuv3", "strict") == []


def test_the_smmu_workload_is_not_vacuous() -> None:
    """Stale entries are hit then walked again; the TLB, ATC, STE and CD caches hold entries;
    faults are reported."""
    obs = run_iommufd("smmuv3")
    (stale,) = obs[1][0]
    (fresh,) = obs[2][0]
    assert stale[0] == fresh[0] == "paddr" and stale[1] != fresh[1]
    assert stale[2] == 0 and fresh[2] > 0
    assert obs[0][1] and obs[0][2]
    assert all(obs[0][3].values()) and set(obs[0][3]) == {"smmu.ste_cache", "smmu.cd_cache"}
    assert obs[-1][3]["smmu.cd_cache"] == []     # every CD left
    assert any(o[0] == "fault" for o in obs[-1][0]) and obs[-1][4]


@pytest.mark.parametrize("lose", ["_run", "tag"])
def test_a_lost_or_mistagged_smmu_invalidation_is_a_difference(
        monkeypatch: pytest.MonkeyPatch, lose: str) -> None:
    if lose == "_run":
        monkeypatch.setattr(generations._GenIommufd, "_run", lambda self, pasid, entries: None)
    else:  # the guest names an ASID its CDs do not hold
        monkeypatch.setattr(IommufdRig, "tag", lambda self, pasid: 0x7FF)
    diffs = compare_generations("smmuv3", "strict")
    assert any("IOTLB" in d for d in diffs) and any("DMA outcomes" in d for d in diffs)


def test_the_smmu_runs_are_deterministic() -> None:
    assert run_2020("smmuv3") == run_2020("smmuv3")


# -- page requests through a fault object ------------------------------------------------------


def _faulting_rig() -> tuple[IommufdRig, int]:
    r = IommufdRig("smmuv3")
    fault_id, fd = r.client.fault_alloc()
    r.gmap(VA)
    r.enter(5, r.dev, fault_id=fault_id)
    r.enter(6, r.dev)
    return r, fd


def _records(raw: bytes) -> list[IommuHwptPgfault]:
    return [IommuHwptPgfault.from_bytes(raw[i:i + 40]) for i in range(0, len(raw), 40)]


def test_page_requests_of_every_pasid_of_the_cd_table_reach_the_fault_object() -> None:
    """The nested HWPT of the device's RID holds the guest's whole CD table: requests of any
    PASID go to its fault object (the kernel's user_pasid_table)."""
    r, fd = _faulting_rig()
    r.iommu.page_request(r.dev, VA + 0x40, pasid=5, access=2, grpid=3)
    r.iommu.page_request(r.dev, VA, pasid=6, grpid=4)
    recs = _records(r.fd.read(fd, 120))
    assert [(x.dev_id, x.pasid, x.grpid) for x in recs] == [(r.dev_id, 5, 3), (r.dev_id, 6, 4)]
    assert recs[0].addr == VA and recs[0].perm == 2


@pytest.mark.parametrize(("code", "resp"), [(PageResponseCode.SUCCESS, 0b10),   # SUCC
                                            (PageResponseCode.INVALID, 0b00)])  # DENY
def test_a_response_is_the_smmus_pri_resp(code: PageResponseCode, resp: int) -> None:
    r, fd = _faulting_rig()
    r.iommu.page_request(r.dev, VA, pasid=5, grpid=3)
    (rec,) = _records(r.fd.read(fd, 40))
    assert r.fd.write(fd, IommuHwptPageResponse(cookie=rec.cookie, code=code).to_bytes()) == 8
    assert not list(r.iommu.pending_page_requests(r.dev))
    sent = next(c for c in r.iommu.backend.host.last  # type: ignore[attr-defined]
                if isinstance(c, cmds.PriResp))
    assert (sent.SID, sent.SSV, sent.SSID, sent.PRGI, sent.Resp) == (r.dev.sid, True, 5, 3, resp)


def test_detaching_the_rid_answers_every_pasids_groups_invalid() -> None:
    r, fd = _faulting_rig()
    r.iommu.page_request(r.dev, VA, pasid=5, grpid=3)
    r.iommu.page_request(r.dev, VA, pasid=6, grpid=4)
    r.fd.detach(r.dev_id)
    assert not list(r.iommu.pending_page_requests(r.dev))
    assert r.fd.read(fd, 80) == b""
    answered = [c for c in r.iommu.backend.host.history  # type: ignore[attr-defined]
                if isinstance(c, cmds.PriResp)]
    assert {(c.SSID, c.PRGI, c.Resp) for c in answered} == {(5, 3, 0b00), (6, 4, 0b00)}  # DENY


def test_an_unanswered_page_request_is_a_difference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generations._GenIommufd, "respond", lambda self, pasid, dev, g: None)
    diffs = compare_generations("smmuv3", "strict")
    assert any("DMA outcomes" in d and "page requests" in d for d in diffs)

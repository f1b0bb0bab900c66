"""CERROR_ILL detection (hw-formats 2.6.1-2.6.3): undefined opcodes, commands the capability set
has no use for, reserved field values and RES0 bits."""

from __future__ import annotations

import pytest

from iommu_uapi_smmu.cmd_check import check_command
from iommu_uapi_smmu.cmds import (
    COMMANDS,
    AtcInv,
    CError,
    CfgiCd,
    CfgiCdAll,
    CfgiSte,
    Command,
    CommandError,
    Opcode,
    PriResp,
    Resume,
    StallTerm,
    Sync,
    TlbiEl2All,
    TlbiEl3All,
    TlbiNhAll,
    TlbiNhAsid,
    TlbiNhVa,
    TlbiNsnhAll,
    TlbiS2Ipa,
    TlbiS12Vmall,
    decode_command,
)
from iommu_uapi_smmu.idr import SmmuCaps, StallModel

CAPS = SmmuCaps()


def _ill(raw: int | bytes, caps: SmmuCaps = CAPS) -> str:
    with pytest.raises(CommandError) as info:
        check_command(raw, caps)
    assert info.value.cerror == CError.ILL
    return str(info.value)


def test_every_opcode_has_a_layout() -> None:
    assert set(COMMANDS) == set(Opcode)
    for op, cls in COMMANDS.items():
        assert op == cls.OPCODE
        assert op == decode_command(cls().to_int()).OPCODE


@pytest.mark.parametrize("op", sorted(set(range(256)) - set(Opcode)))
def test_undefined_opcode_is_illegal(op: int) -> None:
    assert "undefined" in _ill(op)


def test_cerror_values() -> None:
    assert [int(e) for e in CError] == [0, 1, 2, 3]


@pytest.mark.parametrize("cmd", [CfgiCd(SID=1), CfgiCdAll(SID=1), TlbiNhAll(), TlbiNhAsid(),
                                 TlbiNhVa()])
def test_stage1_commands_need_stage1(cmd: Command) -> None:
    raw = cmd.to_int()
    assert "s1p" in _ill(raw, SmmuCaps(s1p=False))
    check_command(raw, CAPS)


@pytest.mark.parametrize("cmd", [TlbiS12Vmall(VMID=1), TlbiS2Ipa(VMID=1, IPA=0x1000)])
def test_stage2_commands_need_stage2(cmd: Command) -> None:
    raw = cmd.to_int()
    assert "s2p" in _ill(raw, SmmuCaps(s2p=False, ssidsize=0))
    check_command(raw, CAPS)


def test_el2_commands_need_hyp() -> None:
    _ill(TlbiEl2All().to_int())
    check_command(TlbiEl2All().to_int(), SmmuCaps(hyp=True))


def test_el3_commands_are_secure_only() -> None:
    _ill(TlbiEl3All().to_int(), SmmuCaps(hyp=True))


def test_nsnh_all_is_always_valid() -> None:
    for caps in (CAPS, SmmuCaps(s1p=False), SmmuCaps(s2p=False)):
        check_command(TlbiNsnhAll().to_int(), caps)


def test_ats_pri_stall_commands_need_their_feature() -> None:
    _ill(AtcInv(SID=1).to_int(), SmmuCaps(ats=False))
    _ill(PriResp(SID=1).to_int(), SmmuCaps(pri=False))
    terminate_only = SmmuCaps(stall_model=StallModel.TERMINATE_ONLY)
    _ill(Resume(SID=1).to_int(), terminate_only)
    _ill(StallTerm(SID=1).to_int(), terminate_only)


def test_ssec_is_illegal_on_the_ns_queue() -> None:
    assert "SSec" in _ill(CfgiSte(SID=1, SSec=True).to_int())


def test_res0_bits_are_illegal() -> None:
    assert "RES0" in _ill(CfgiSte(SID=1).to_int() | 1 << 8)
    assert "RES0" in _ill(Sync().to_int() | 1 << 127)


def test_vmid_res0_without_stage2_and_upper_byte_without_vmid16() -> None:
    _ill(TlbiNhAll(VMID=1).to_int(), SmmuCaps(s2p=False))
    check_command(TlbiNhAll().to_int(), SmmuCaps(s2p=False))
    _ill(TlbiNhAll(VMID=0x100).to_int(), SmmuCaps(vmid16=False))
    check_command(TlbiNhAll(VMID=0xFF).to_int(), SmmuCaps(vmid16=False))


def test_asid_upper_byte_without_asid16() -> None:
    _ill(TlbiNhAsid(ASID=0x100).to_int(), SmmuCaps(asid16=False))
    check_command(TlbiNhAsid(ASID=0x100).to_int(), CAPS)


def test_substream_fields_need_substreams() -> None:
    _ill(AtcInv(SID=1, SSV=True, SSID=1).to_int(), SmmuCaps(ssidsize=0))
    _ill(CfgiCd(SID=1, SSID=1).to_int(), SmmuCaps(ssidsize=0))
    check_command(AtcInv(SID=1, SSV=True, SSID=1).to_int(), CAPS)


def test_range_fields_need_ril() -> None:
    ranged = TlbiNhVa(TG=1, NUM=1, Addr=0x1000).to_int()
    _ill(ranged, SmmuCaps(ril=False))
    check_command(ranged, CAPS)


def test_range_reserved_combinations() -> None:
    assert "reserved" in _ill(TlbiNhVa(TG=1).to_int())
    assert "RES0" in _ill(TlbiNhVa(TTL=1).to_int())
    assert "16 KiB" in _ill(TlbiS2Ipa(TG=2, TTL=1).to_int())
    check_command(TlbiS2Ipa(TG=2, TTL=2).to_int(), CAPS)


def test_range_span() -> None:
    cmd = check_command(TlbiNhVa(TG=1, NUM=3, SCALE=2, Addr=0x10000).to_int(), CAPS)
    assert isinstance(cmd, TlbiNhVa)
    assert cmd.span == 4 * 4 * 4096
    assert TlbiNhVa().span == 0


def test_reserved_enumerations() -> None:
    assert "Resp" in _ill(PriResp(SID=1, Resp=3).to_int())
    assert "CS" in _ill(Sync(CS=3).to_int())


def test_bytes_and_int_agree() -> None:
    cmd = Sync(CS=1, MSIAddr=0x8000_0000)
    assert check_command(cmd.to_bytes(), CAPS) == check_command(cmd.to_int(), CAPS) == cmd

"""ILLEGAL STEs (C_BAD_STE) and CDs (C_BAD_CD) per hw-formats 2.3 and 2.4, under the capability
set in force."""

from __future__ import annotations

import pytest
from msgspec.structs import replace

from iommu_uapi_smmu.cd import Cd, check_cd
from iommu_uapi_smmu.idr import SmmuCaps, StallModel, Ttendian, Ttf
from iommu_uapi_smmu.ste import Ste, SteConfig, check_ste, s2_config, s2_root_bytes

CAPS = SmmuCaps()
S2 = dict(S2T0SZ=24, S2SL0=1, S2TG=0, S2PS=5, S2AA64=True, S2TTB=0x8000_0000)
S2_STE = Ste(V=True, Config=SteConfig.S2_TRANS, S2VMID=1, **S2)
S1_STE = Ste(V=True, Config=SteConfig.S1_TRANS, S1ContextPtr=0x8000_1000)
NESTED_STE = Ste(V=True, Config=SteConfig.NESTED, S1ContextPtr=0x1000, S1CDMax=4, **S2)
CD = Cd(V=True, AA64=True, T0SZ=16, TG0=0, EPD1=True, IPS=5, R=True, A=True, ASID=1,
        TTB0=0x8000_2000)


def test_legal_stes_pass() -> None:
    for ste in (S2_STE, S1_STE, NESTED_STE, Ste(V=True, Config=SteConfig.BYPASS),
                Ste(V=True, Config=SteConfig.ABORT)):
        assert check_ste(ste, CAPS) is None, ste


def test_ste_invalid() -> None:
    assert check_ste(Ste(V=False, Config=SteConfig.BYPASS), CAPS) == "V = 0"


@pytest.mark.parametrize("config", [0b001, 0b010, 0b011])
def test_reserved_config_behaves_as_abort(config: int) -> None:
    ste = Ste(V=True, Config=config)
    assert ste.config == SteConfig.ABORT
    assert check_ste(ste, CAPS) is None


def test_stage1_config_without_s1p() -> None:
    assert "S1P" in (check_ste(S1_STE, SmmuCaps(s1p=False)) or "")
    assert "S1P" in (check_ste(NESTED_STE, SmmuCaps(s1p=False)) or "")


def test_stage2_config_without_s2p() -> None:
    assert "S2P" in (check_ste(S2_STE, SmmuCaps(s2p=False)) or "")


def test_s1cdmax_beyond_ssidsize() -> None:
    ste = replace(S1_STE, S1CDMax=9)
    assert check_ste(ste, SmmuCaps(ssidsize=8)) is not None
    assert check_ste(ste, SmmuCaps(ssidsize=9)) is None


def test_two_level_cd_table_needs_cd2l() -> None:
    ste = replace(S1_STE, S1CDMax=8, S1Fmt=1)
    assert "CD2L" in (check_ste(ste, SmmuCaps(cd2l=False)) or "")
    assert check_ste(ste, CAPS) is None
    # S1Fmt is ignored when S1CDMax = 0
    assert check_ste(replace(S1_STE, S1Fmt=2), SmmuCaps(cd2l=False)) is None


def test_s1stalld_needs_stall_and_terminate_model() -> None:
    ste = replace(S1_STE, S1STALLD=True)
    assert check_ste(ste, CAPS) is None
    assert check_ste(ste, SmmuCaps(stall_model=StallModel.TERMINATE_ONLY)) is not None


def test_eats_rules() -> None:
    assert "ATS" in (check_ste(replace(S1_STE, EATS=1), SmmuCaps(ats=False)) or "")
    assert check_ste(replace(S1_STE, EATS=1), CAPS) is None
    assert "nested" in (check_ste(replace(S1_STE, EATS=2), CAPS) or "")
    assert check_ste(replace(NESTED_STE, EATS=2), CAPS) is None


def test_strw_rules() -> None:
    assert "reserved" in (check_ste(replace(S1_STE, STRW=1), CAPS) or "")
    assert "HYP" in (check_ste(replace(S1_STE, STRW=2), CAPS) or "")
    assert check_ste(replace(S1_STE, STRW=2), SmmuCaps(hyp=True)) is None


def test_vmid16() -> None:
    ste = replace(S2_STE, S2VMID=0x100)
    assert "VMID16" in (check_ste(ste, SmmuCaps(vmid16=False)) or "")
    assert check_ste(ste, CAPS) is None


def test_s2_granule_must_be_supported() -> None:
    assert check_ste(replace(S2_STE, S2TG=3), CAPS) is not None
    assert check_ste(S2_STE, SmmuCaps(gran4k=False)) is not None


def test_s2_aarch32_tables_not_implemented() -> None:
    assert check_ste(replace(S2_STE, S2AA64=False), CAPS) is not None


def test_s2_endianness() -> None:
    assert check_ste(replace(S2_STE, S2ENDI=True), CAPS) is not None
    assert check_ste(S2_STE, SmmuCaps(ttendian=Ttendian.BIG)) is not None


def test_s2_stall_model() -> None:
    assert check_ste(replace(S2_STE, S2S=True),
                     SmmuCaps(stall_model=StallModel.TERMINATE_ONLY)) is not None
    assert check_ste(S2_STE, SmmuCaps(stall_model=StallModel.STALL_FORCED)) is not None
    assert check_ste(replace(S2_STE, S2S=True), CAPS) is None


def test_s2_httu() -> None:
    assert check_ste(replace(S2_STE, S2HA=True), CAPS) is not None
    assert check_ste(replace(S2_STE, S2HA=True), SmmuCaps(httu=1)) is None
    assert check_ste(replace(S2_STE, S2HA=True, S2HD=True), SmmuCaps(httu=1)) is not None


@pytest.mark.parametrize(("tg", "sl0", "t0sz", "legal"), [
    # 4 KiB: start L0 16-24, L1 25-33 (down to 21 concatenated), L2 34-39 (down to 30)
    (0, 2, 16, True), (0, 2, 25, False), (0, 1, 25, True), (0, 1, 21, True), (0, 1, 20, False),
    (0, 0, 34, True), (0, 0, 30, True), (0, 0, 29, False), (0, 0, 40, False),
    (0, 3, 39, False),  # level 3 start only with STT
    # 16 KiB: L1 17-27 (16 with 2 tables), L2 28-38 (24), L3 39 (35)
    (2, 2, 16, True), (2, 2, 28, False), (2, 1, 24, True), (2, 1, 23, False), (2, 0, 35, True),
    (2, 3, 16, False),
    # 64 KiB: L1 16-21, L2 22-34 (18), L3 35-39 (31)
    (1, 2, 16, True), (1, 1, 18, True), (1, 1, 17, False), (1, 0, 31, True), (1, 0, 30, False),
    (1, 3, 30, False),
])
def test_s2_geometry(tg: int, sl0: int, t0sz: int, legal: bool) -> None:
    ste = replace(S2_STE, S2TG=tg, S2SL0=sl0, S2T0SZ=t0sz, S2TTB=0)
    assert (check_ste(ste, CAPS) is None) == legal, check_ste(ste, CAPS)


def test_s2_ipa_wider_than_ias() -> None:
    ste = replace(S2_STE, S2T0SZ=16, S2SL0=2)
    assert check_ste(ste, CAPS) is None
    assert "IAS" in (check_ste(ste, SmmuCaps(oas=44)) or "")


def test_s2ttb_alignment_to_concatenated_root() -> None:
    ste = replace(S2_STE, S2T0SZ=22, S2SL0=1)  # 4 KiB start L1, 42-bit IPA: 8 tables
    assert s2_root_bytes(s2_config(ste, CAPS)) == 8 * 4096
    assert check_ste(replace(ste, S2TTB=0x8000_8000), CAPS) is None
    assert "aligned" in (check_ste(replace(ste, S2TTB=0x8000_4000), CAPS) or "")


def test_s2ttb_beyond_output_size() -> None:
    ste = replace(S2_STE, S2PS=2, S2TTB=1 << 40)  # 40-bit S2PS
    assert "output size" in (check_ste(ste, CAPS) or "")


def test_s2ps_capped_to_oas() -> None:
    assert s2_config(replace(S2_STE, S2PS=6), SmmuCaps(oas=44)).oas == 44
    assert s2_config(replace(S2_STE, S2PS=6), SmmuCaps(oas=52)).oas == 48  # 4 KiB granule


def test_bypass_ignores_stage_fields() -> None:
    ste = Ste(V=True, Config=SteConfig.BYPASS, S2TG=3, S1CDMax=31, S2VMID=0xFFFF)
    assert check_ste(ste, SmmuCaps(vmid16=False, ssidsize=0)) is None


# -- CDs -------------------------------------------------------------------------------------


def test_legal_cd_passes() -> None:
    assert check_cd(CD, CAPS) is None


def test_cd_invalid() -> None:
    assert check_cd(replace(CD, V=False), CAPS) == "V = 0"


def test_cd_aa64() -> None:
    assert check_cd(replace(CD, AA64=False), CAPS) is not None
    assert check_cd(CD, SmmuCaps(ttf=Ttf.AARCH32)) is not None


@pytest.mark.parametrize(("t0sz", "tg0", "caps", "legal"), [
    (16, 0, CAPS, True), (39, 0, CAPS, True), (15, 0, CAPS, False), (40, 0, CAPS, False),
    (48, 0, SmmuCaps(stt=True), True), (49, 0, SmmuCaps(stt=True), False),
    (12, 1, CAPS, False), (12, 1, SmmuCaps(vax=1, oas=52), True),
    (47, 1, SmmuCaps(stt=True), True), (48, 1, SmmuCaps(stt=True), False),
])
def test_cd_txsz_range(t0sz: int, tg0: int, caps: SmmuCaps, legal: bool) -> None:
    assert (check_cd(replace(CD, T0SZ=t0sz, TG0=tg0), caps) is None) == legal


def test_cd_granule_encodings_differ_per_half() -> None:
    cd = replace(CD, EPD0=True, EPD1=False, T1SZ=25, TG1=0b00)
    assert "TG1" in (check_cd(cd, CAPS) or "")  # TG1 0b00 is reserved
    assert check_cd(replace(cd, TG1=0b10), CAPS) is None  # 4 KiB
    assert check_cd(replace(CD, TG0=0b11), CAPS) is not None  # TG0 0b11 reserved
    assert check_cd(replace(CD, TG0=0b10), SmmuCaps(gran16k=False)) is not None


def test_cd_disabled_half_is_not_checked() -> None:
    assert check_cd(replace(CD, T1SZ=0, TG1=0), CAPS) is None  # EPD1 = 1


def test_cd_endianness_and_httu() -> None:
    assert check_cd(replace(CD, ENDI=True), CAPS) is not None
    assert check_cd(replace(CD, HA=True), CAPS) is not None
    assert check_cd(replace(CD, HA=True, HD=True), SmmuCaps(httu=2)) is None


def test_cd_asid16() -> None:
    assert check_cd(replace(CD, ASID=0x100), SmmuCaps(asid16=False)) is not None
    assert check_cd(replace(CD, ASID=0x100), CAPS) is None


def test_cd_stall() -> None:
    stall = replace(CD, S=True)
    assert check_cd(stall, CAPS) is None
    assert check_cd(stall, CAPS, s1stalld=True) is not None
    assert check_cd(stall, SmmuCaps(stall_model=StallModel.TERMINATE_ONLY)) is not None
    assert check_cd(CD, SmmuCaps(stall_model=StallModel.STALL_FORCED)) is not None

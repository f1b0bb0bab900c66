"""CAP/ECAP encoders against the bit positions of VT-d 3.x 11.4.2/11.4.3 (hw-formats 1.12/1.13)."""

from __future__ import annotations

import msgspec
import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi_vtd.registers import (
    Cap,
    Ecap,
    VtdConfig,
    cap_value,
    config_from_registers,
    decode_cap,
    decode_ecap,
    ecap_value,
    modern_server,
)


def test_default_cap_is_a_modern_server_part() -> None:
    expected = (
        6                      # ND 2:0 = 6 -> 2^16 domains
        | 0b00110 << 8         # SAGAW 12:8: 39- and 48-bit
        | 47 << 16             # MGAW 21:16 = width - 1
        | (0x400 // 16) << 24  # FRO 33:24
        | 0b11 << 34           # SLLPS 37:34: 2M + 1G
        | 1 << 39              # PSI
        | 7 << 40              # NFR 47:40 = 8 registers - 1
        | 9 << 48              # MAMV 53:48
        | 1 << 54 | 1 << 55    # DWD, DRD
        | 1 << 56              # FL1GP
    )
    assert cap_value(VtdConfig()) == expected == 0x01C9_078C_402F_0606


def test_default_ecap_is_a_modern_server_part() -> None:
    expected = (
        1 << 1 | 1 << 2 | 1 << 6 | 1 << 7   # QI, DT, PT, SC
        | (0x500 // 16) << 8                # IRO 17:8
        | 1 << 26                           # NEST
        | 1 << 29 | 1 << 30 | 1 << 31       # PRS, ERS, SRS
        | 1 << 34                           # EAFS
        | 19 << 35                          # PSS 39:35 -> 20-bit PASIDs
        | 1 << 40 | 1 << 42 | 1 << 43       # PASID, PDS, SMTS
        | 1 << 46 | 1 << 47 | 1 << 48       # SLTS, FLTS, SMPWCS
    )
    assert ecap_value(VtdConfig()) == expected == 0x1_CD9C_E400_50C6


def test_five_level_option_sets_fl5lp_sagaw57_and_mgaw57() -> None:
    cap = decode_cap(cap_value(modern_server(five_level=True)))
    assert cap.FL5LP and cap.SAGAW == 0b01110 and cap.MGAW == 56
    assert cap_value(modern_server(five_level=True)) >> 60 & 1 == 1


def test_caching_mode_is_bit_7() -> None:
    assert cap_value(modern_server(caching_mode=True)) ^ cap_value(VtdConfig()) == 1 << 7


def test_registers_decode_back_to_the_config() -> None:
    for cfg in (VtdConfig(), modern_server(five_level=True, caching_mode=True, rps=True,
                                           slads=True, mamv=18, fault_records=1, pss=4)):
        back = config_from_registers(cap_value(cfg), ecap_value(cfg))
        assert back == cfg
        assert msgspec.structs.asdict(back) == msgspec.structs.asdict(cfg)
        assert all(type(getattr(back, f)) is type(getattr(cfg, f))
                   for f in cfg.__struct_fields__)


def test_every_cap_and_ecap_field_is_named_once_without_overlap() -> None:
    for cls in (Cap, Ecap):
        seen = 0
        for field in cls.LAYOUT.values():
            assert seen & field.mask == 0
            seen |= field.mask
        assert set(cls.LAYOUT) == set(cls.__struct_fields__)


def test_decode_names_fields() -> None:
    e = decode_ecap(ecap_value(VtdConfig()))
    assert e.SMTS and e.NEST and e.PSS == 19 and e.IRO == 0x50
    assert msgspec.structs.asdict(e)["FLTS"] is True


@pytest.mark.parametrize("bad", [-1, 1 << 64, "x"])
def test_decode_rejects_non_register_values(bad: object) -> None:
    with pytest.raises(UAPIError) as exc:
        decode_cap(bad)  # type: ignore[arg-type]
    assert exc.value.errno == 22


@pytest.mark.parametrize("change", [{"sagaw": 1}, {"sagaw": 0}, {"mgaw": 64}, {"pss": 20},
                                    {"fault_records": 0}, {"mamv": 64}, {"fl5lp": True}])
def test_inconsistent_config_is_refused(change: dict[str, int]) -> None:
    with pytest.raises(UAPIError) as exc:
        VtdConfig(**change)  # type: ignore[arg-type]
    assert exc.value.errno == 22

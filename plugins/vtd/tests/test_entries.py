"""Golden bit layouts of the root, context, PASID-directory and PASID entries (hw-formats
1.2-1.5) and their reserved-bit masks computed from the capability set."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi_vtd.context_entry import ContextEntry, check_context_entry
from iommu_uapi_vtd.pasid_dir import DIR_INDEX, TABLE_INDEX, PasidDirEntry, check_pasid_dir_entry
from iommu_uapi_vtd.pasid_entry import (
    PasidEntry,
    Pgtt,
    check_pasid_entry,
    first_level_entry,
    nested_entry,
    pass_through_entry,
    second_level_entry,
)
from iommu_uapi_vtd.reasons import SmFaultReason as R
from iommu_uapi_vtd.registers import VtdConfig, modern_server
from iommu_uapi_vtd.root_entry import RootEntry, Rtaddr, check_root_entry

CFG = VtdConfig()
SLPT = 0x8000_1000


def test_nested_entry_linux_writes_for_a_guest_bind() -> None:
    e = nested_entry(CFG, did=5, flptptr=0x1234000, slptptr=SLPT, aw=2, flpm=0)
    assert e.qwords() == (
        SLPT | 2 << 2 | 3 << 6 | 1,   # SLPTPTR, AW=2 (48-bit), PGTT=3 nested, P
        5 | 1 << 23,                  # DID 5, PWSNP (bit 87) since ECAP.SMPWCS
        0x1234000,                    # FLPTPTR = gpgd at bits 191:140, FLPM 0, SRE/EAFE clear
        0, 0, 0, 0, 0,
    )
    assert len(e.to_bytes()) == 64
    assert e.to_bytes()[:8] == (SLPT | 0xC9).to_bytes(8, "little")


def test_nested_entry_with_sre_eafe_and_no_smpwcs() -> None:
    cfg = msgspec.structs.replace(CFG, smpwcs=False)
    e = nested_entry(cfg, did=5, flptptr=0x1234000, slptptr=SLPT, aw=2, sre=True, eafe=True)
    assert e.qwords()[1:3] == (5, 0x1234000 | 1 | 1 << 7)


def test_first_level_second_level_and_pass_through_entries() -> None:
    assert first_level_entry(CFG, did=1, flptptr=0x5000, aw=2).qwords()[:3] == (
        1 | 2 << 2 | 1 << 6, 1 | 1 << 23, 0x5000)
    assert second_level_entry(CFG, did=7, slptptr=0x9000, aw=1).qwords()[:3] == (
        0x9000 | 1 << 2 | 2 << 6 | 1, 7 | 1 << 23, 0)
    assert pass_through_entry(CFG, did=1, aw=2).qwords()[:3] == (1 | 2 << 2 | 4 << 6,
                                                                  1 | 1 << 23, 0)


def test_pasid_entry_round_trips_every_field() -> None:
    e = PasidEntry(P=True, FPD=True, AW=3, SLEE=True, PGTT=3, SLADE=True, SLPTPTR=0xABC000,
                   DID=0xBEEF, PWSNP=True, PGSNP=True, CD=True, EMTE=True, EMT=5, PWT=True,
                   PCD=True, PAT=0x12345678, SRE=True, ERE=True, FLPM=1, WPE=True, NXE=True,
                   SMEP=True, EAFE=True, FLPTPTR=0xFFF_FFFF_F000)
    assert PasidEntry.from_bytes(e.to_bytes()) == e
    assert e.qwords()[:3] == (
        1 | 1 << 1 | 3 << 2 | 1 << 5 | 3 << 6 | 1 << 9 | 0xABC000,
        0xBEEF | 1 << 23 | 1 << 24 | 1 << 25 | 1 << 26 | 5 << 27 | 1 << 30 | 1 << 31
        | 0x12345678 << 32,
        1 | 1 << 1 | 1 << 2 | 1 << 4 | 1 << 5 | 1 << 6 | 1 << 7 | 0xFFF_FFFF_F000,
    )


def test_root_context_directory_golden() -> None:
    root = RootEntry(LP=True, LCTP=0x1000, UP=True, UCTP=0x2000)
    assert root.qwords() == (0x1001, 0x2001)
    assert root.context_table(0x7F) == 0x1000 and root.context_table(0x80) == 0x2000
    ctx = ContextEntry(P=True, FPD=True, DTE=True, PASIDE=True, PRE=True, PDTS=7,
                       PASIDDIRPTR=0x10000, RID_PASID=0x11, RID_PRIV=True)
    assert ctx.qwords() == (0x10000 | 7 << 9 | 0x1F, 0x11 | 1 << 20, 0, 0)
    assert PasidDirEntry(P=True, FPD=True, SMPTPTR=0x3000).to_int() == 0x3003
    assert Rtaddr(TTM=1, RTA=0x5000).to_int() == 0x5400
    assert DIR_INDEX.get(0xABCDE) == 0xABCDE >> 6 and TABLE_INDEX.get(0xABCDE) == 0x1E


def test_encode_refuses_values_that_do_not_fit() -> None:
    with pytest.raises(UAPIError) as exc:
        PasidEntry(DID=1 << 16).to_int()
    assert exc.value.errno == 22 and "DID" in exc.value.message
    with pytest.raises(UAPIError):
        PasidEntry(SLPTPTR=0x1234).to_int()   # not 4 KiB aligned
    with pytest.raises(UAPIError):
        PasidEntry.from_bytes(b"\0" * 63)


# -- checks ----------------------------------------------------------------------------------


def test_root_entry_checks_only_the_half_the_devfn_uses() -> None:
    raw = RootEntry(LP=True, LCTP=0x1000).to_int()
    assert check_root_entry(raw, 0x10, CFG) is None
    assert check_root_entry(raw, 0x90, CFG) == R.ROOT_NOT_PRESENT
    assert check_root_entry(raw | 1 << 5, 0x10, CFG) == R.ROOT_RESERVED
    assert check_root_entry(raw | 1 << 70, 0x10, CFG) is None       # upper half unused
    assert check_root_entry(raw | 1 << 48, 0x10, CFG) == R.ROOT_RESERVED  # above HAW 48
    assert check_root_entry(raw | 1 << 48, 0x10, modern_server(five_level=True)) is None


def test_context_entry_checks() -> None:
    good = ContextEntry(P=True, PASIDE=True, PDTS=7, PASIDDIRPTR=0x10000).to_int()
    assert check_context_entry(good, CFG) is None
    assert check_context_entry(good & ~1, CFG) == R.CONTEXT_NOT_PRESENT
    for rsvd in (5, 8, 85, 127, 128, 255, 50):
        assert check_context_entry(good | 1 << rsvd, CFG) == R.CONTEXT_RESERVED, rsvd
    assert check_context_entry(good | 1 << 4, CFG) == R.CONTEXT_INVALID   # PRE without DTE
    assert check_context_entry(good | 1 << 4 | 1 << 2, CFG) is None


@pytest.mark.parametrize(("field", "feature"), [("DTE", "dt"), ("PRE", "prs"),
                                                ("RID_PRIV", "rprivs"), ("RID_PASID", "rps")])
def test_context_field_is_reserved_exactly_when_its_feature_is_off(field: str,
                                                                   feature: str) -> None:
    extra: dict[str, Any] = {"DTE": True} if field == "PRE" else {}
    value: Any = {"RID_PASID": 3}.get(field, True)
    raw = ContextEntry(P=True, PASIDE=True, **{field: value, **extra}).to_int()
    on = msgspec.structs.replace(CFG, **{feature: True})
    off = msgspec.structs.replace(CFG, **{feature: False})
    assert check_context_entry(raw, on) is None
    assert check_context_entry(raw, off) == R.CONTEXT_RESERVED


def test_pasid_dir_entry_checks() -> None:
    good = PasidDirEntry(P=True, SMPTPTR=0x3000).to_int()
    assert check_pasid_dir_entry(good, CFG) is None
    assert check_pasid_dir_entry(0x3000, CFG) == R.PASID_DIR_NOT_PRESENT
    assert check_pasid_dir_entry(good | 1 << 2, CFG) == R.PASID_DIR_RESERVED
    assert check_pasid_dir_entry(good | 1 << 63, CFG) == R.PASID_DIR_RESERVED


def _nested(**kw: object) -> int:
    e = nested_entry(CFG, did=5, flptptr=0x1234000, slptptr=SLPT, aw=2)
    return msgspec.structs.replace(e, **kw).to_int()


def test_pasid_entry_present_and_reserved() -> None:
    assert check_pasid_entry(_nested(), CFG) is None
    assert check_pasid_entry(_nested(P=False), CFG) == R.PASID_NOT_PRESENT
    for rsvd in (10, 11, 80, 86, 136, 139, 192, 300, 511):
        assert check_pasid_entry(_nested() | 1 << rsvd, CFG) == R.PASID_RESERVED, rsvd


def test_pointer_bits_above_haw_are_reserved_only_for_pointers_the_type_walks() -> None:
    high_sl = _nested(SLPTPTR=1 << 50)
    assert check_pasid_entry(high_sl, CFG) == R.PASID_RESERVED
    fl_only = msgspec.structs.replace(PasidEntry.from_int(high_sl), PGTT=Pgtt.FIRST_LEVEL)
    assert check_pasid_entry(fl_only.to_int(), CFG) is None   # SLPTPTR ignored for PGTT 1
    assert check_pasid_entry(_nested(FLPTPTR=1 << 48), CFG) == R.PASID_RESERVED
    assert check_pasid_entry(_nested(FLPTPTR=1 << 48), modern_server(five_level=True)) is None


@pytest.mark.parametrize(("field", "feature"), [
    ("SRE", "srs"), ("ERE", "ers"), ("EAFE", "eafs"), ("SLADE", "slads"), ("PGSNP", "sc"),
    ("PWSNP", "smpwcs"), ("CD", "mts"), ("EMTE", "mts"), ("PWT", "mts"), ("PCD", "mts"),
])
def test_pasid_field_is_reserved_exactly_when_its_feature_is_off(field: str,
                                                                 feature: str) -> None:
    raw = _nested(**{field: True})
    on = msgspec.structs.replace(CFG, **{feature: True})
    off = msgspec.structs.replace(CFG, **{feature: False})
    assert check_pasid_entry(raw, on) is None
    assert check_pasid_entry(raw, off) == R.PASID_RESERVED


def test_pasid_entry_programming_errors() -> None:
    for pgtt in (0, 5, 6, 7):
        assert check_pasid_entry(_nested(PGTT=pgtt), CFG) == R.PASID_INVALID
    assert check_pasid_entry(_nested(AW=3), CFG) == R.PASID_INVALID      # 57-bit not in SAGAW
    assert check_pasid_entry(_nested(AW=3), modern_server(five_level=True)) is None
    assert check_pasid_entry(_nested(FLPM=1), CFG) == R.PASID_INVALID    # no FL5LP
    assert check_pasid_entry(_nested(FLPM=1), modern_server(five_level=True)) is None
    assert check_pasid_entry(_nested(FLPM=2), modern_server(five_level=True)) == R.PASID_INVALID
    no_nest = msgspec.structs.replace(CFG, nest=False)
    assert check_pasid_entry(_nested(), no_nest) == R.PASID_INVALID
    # AW is not checked for first-level-only and pass-through entries.
    assert check_pasid_entry(_nested(PGTT=Pgtt.PASS_THROUGH, AW=7), CFG) is None
    assert check_pasid_entry(_nested(PGTT=Pgtt.FIRST_LEVEL, AW=0), CFG) is None

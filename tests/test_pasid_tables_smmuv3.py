"""IOMMU_PASID_FORMAT_SMMUV3 in the core: the CD layout (hw-formats 2.4) and the CD-table reader,
linear and two-level, direct and through a host stage 2."""

from __future__ import annotations

import errno

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pasid_tables.smmuv3 import (
    Cd,
    CdFetchError,
    CdFetchErrorKind,
    CdTableReader,
    L1Cd,
    S1Fmt,
    half_config,
)
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.pgtable.lpae import LPAEConfig, LPAEPageTable


def _cd(asid: int) -> Cd:
    return Cd(V=True, AA64=True, T0SZ=16, EPD1=True, IPS=5, ASID=asid, TTB0=0x4000 * asid)


def test_cd_bits_at_their_positions() -> None:
    raw = Cd(V=True, ASID=0xBEEF, TTB0=0x12_3456_7890, TG0=0b10, TG1=0b01).to_bytes()
    assert len(raw) == 64
    word0 = int.from_bytes(raw[:8], "little")
    assert word0 >> 31 & 1 == 1 and word0 >> 48 == 0xBEEF
    assert word0 >> 6 & 3 == 0b10 and word0 >> 22 & 3 == 0b01
    assert int.from_bytes(raw[8:16], "little") == 0x12_3456_7890
    assert Cd.from_bytes(raw).half(0)[1] == 16384 and Cd.from_bytes(raw).half(1)[1] == 16384


def test_cd_refusals_name_the_pasid_table_rules() -> None:
    with pytest.raises(UAPIError) as exc:
        Cd(ASID=1 << 16).to_bytes()
    assert (exc.value.errno, exc.value.rule) == (errno.EINVAL, "pasid_table.field-width")
    with pytest.raises(UAPIError) as exc:
        Cd.from_bytes(bytes(32))
    assert exc.value.rule == "pasid_table.size"


def test_half_config_caps_ips_and_needs_ha_for_hd() -> None:
    cfg = half_config(Cd(T0SZ=16, IPS=6, HD=True), 0, oas=52)
    assert (cfg.granule, cfg.t0sz, cfg.oas, cfg.hd) == (4096, 16, 48, False)
    assert half_config(Cd(T0SZ=16, IPS=2), 0, oas=48).oas == 40
    with pytest.raises(ValueError):
        half_config(Cd(TG0=0b11), 0, oas=48)


def test_linear_table_reads_one_cd_per_fetch() -> None:
    mem = PhysicalMemory()
    base = mem.alloc()
    for ssid in range(4):
        mem.write(base + ssid * 64, _cd(ssid + 1).to_bytes())
    table = CdTableReader(mem, base, 2, S1Fmt.LINEAR)
    assert [table.fetch(s) for s in range(4)] == [(_cd(s + 1), 1, 0) for s in range(4)]
    with pytest.raises(CdFetchError) as exc:
        table.fetch(4)
    assert exc.value.kind is CdFetchErrorKind.BAD_SUBSTREAMID


@pytest.mark.parametrize(("fmt", "per_leaf"), [(S1Fmt.TWO_LEVEL_4K, 64),
                                               (S1Fmt.TWO_LEVEL_64K, 1024)])
def test_two_level_table(fmt: S1Fmt, per_leaf: int) -> None:
    mem = PhysicalMemory()
    l1 = mem.alloc()
    leaf = mem.alloc(per_leaf * 64, per_leaf * 64)
    mem.write64(l1 + 8, L1Cd(V=True, L2Ptr=leaf).to_int())
    mem.write(leaf + 3 * 64, _cd(7).to_bytes())
    table = CdTableReader(mem, l1, 16, fmt)
    assert table.fetch(per_leaf + 3) == (_cd(7), 2, 0)
    with pytest.raises(CdFetchError) as exc:
        table.fetch(3)  # L1 descriptor 0 invalid
    assert exc.value.kind is CdFetchErrorKind.BAD_SUBSTREAMID
    assert CdTableReader(mem, l1, 16, 3).fmt is S1Fmt.LINEAR  # reserved reads as linear


def test_nested_fetch_goes_through_stage_2_and_counts_its_reads() -> None:
    host = PhysicalMemory()
    s2 = LPAEPageTable(LPAEConfig(stage=2, granule=4096, t0sz=16, sl0=2), host)
    l1, leaf = host.alloc(), host.alloc()
    s2.map(0x10_0000, l1, 4096, Prot.READ | Prot.WRITE)
    s2.map(0x20_0000, leaf, 4096, Prot.READ | Prot.WRITE)
    host.write64(l1, L1Cd(V=True, L2Ptr=0x20_0000).to_int())
    host.write(leaf + 5 * 64, _cd(9).to_bytes())
    table = CdTableReader(host, 0x10_0000, 6, S1Fmt.TWO_LEVEL_4K, s2.stage2())
    assert table.fetch(5) == (_cd(9), 2, 8)  # two 4-level stage-2 walks
    with pytest.raises(CdFetchError) as exc:
        CdTableReader(host, 0x30_0000, 6, S1Fmt.LINEAR, s2.stage2()).fetch(0)
    assert exc.value.kind is CdFetchErrorKind.STAGE2
    assert exc.value.ipa == 0x30_0000 and exc.value.walk is not None


def test_unreadable_cd_is_a_fetch_error_with_its_address() -> None:
    mem = PhysicalMemory(40)
    with pytest.raises(CdFetchError) as exc:
        CdTableReader(mem, 1 << 40, 0, S1Fmt.LINEAR).fetch(0)
    assert exc.value.kind is CdFetchErrorKind.FETCH and exc.value.fetch_addr == 1 << 40

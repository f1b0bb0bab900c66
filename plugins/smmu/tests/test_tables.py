"""Stream-table and CD-table lookups in memory (hw-formats 2.2 and 2.4): linear and two-level,
the events a lookup calls for, and CD fetches through stage 2 in nested mode."""

from __future__ import annotations

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import PhysicalMemory
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.pgtable.lpae import LPAEConfig, LPAEPageTable
from iommu_uapi_smmu.cd import Cd
from iommu_uapi_smmu.cdtable import CdTable, L1Cd
from iommu_uapi_smmu.events import ConfigFault, EventType
from iommu_uapi_smmu.idr import SmmuCaps, StLevel
from iommu_uapi_smmu.registers import StrtabBaseCfg
from iommu_uapi_smmu.ste import Ste, SteConfig
from iommu_uapi_smmu.strtab import L1Std, StreamTable

CAPS = SmmuCaps()


def _ste(n: int) -> Ste:
    return Ste(V=True, Config=SteConfig.S2_TRANS, S2VMID=n)


def _fault(exc: pytest.ExceptionInfo[ConfigFault]) -> EventType:
    return exc.value.type


def test_linear_stream_table() -> None:
    mem = PhysicalMemory()
    base = mem.alloc()
    for sid in range(16):
        mem.write(base + sid * 64, _ste(sid).to_bytes())
    table = StreamTable(mem, base, StrtabBaseCfg(LOG2SIZE=4), CAPS)
    for sid in range(16):
        assert table.fetch(sid) == (_ste(sid), 1)
    with pytest.raises(ConfigFault) as exc:
        table.fetch(16)
    assert _fault(exc) == EventType.C_BAD_STREAMID


def test_log2size_capped_to_sidsize() -> None:
    mem = PhysicalMemory()
    table = StreamTable(mem, mem.alloc(), StrtabBaseCfg(LOG2SIZE=8), SmmuCaps(sidsize=4))
    table.fetch(15)
    with pytest.raises(ConfigFault):
        table.fetch(16)


def test_two_level_stream_table() -> None:
    mem = PhysicalMemory()
    base = mem.alloc()  # LOG2SIZE 16, SPLIT 8: 256 L1 descriptors
    l2 = mem.alloc(256 * 64, 256 * 64)
    mem.write64(base + 1 * 8, L1Std(Span=9, L2Ptr=l2).to_int())  # 256 STEs
    small = mem.alloc(4096)
    mem.write64(base + 3 * 8, L1Std(Span=3, L2Ptr=small).to_int())  # 4 STEs
    mem.write(l2 + 5 * 64, _ste(0x105).to_bytes())
    mem.write(small + 3 * 64, _ste(0x303).to_bytes())
    table = StreamTable(mem, base, StrtabBaseCfg(LOG2SIZE=16, SPLIT=8, FMT=1), CAPS)
    assert table.ste_address(0x105) == (l2 + 5 * 64, 1)
    assert table.fetch(0x105) == (_ste(0x105), 2)
    assert table.fetch(0x303) == (_ste(0x303), 2)
    for sid in (0x205, 0x304, 0x10000):  # L1 Span 0; beyond the L2 span; beyond LOG2SIZE
        with pytest.raises(ConfigFault) as exc:
            table.fetch(sid)
        assert _fault(exc) == EventType.C_BAD_STREAMID


def test_reserved_span_reads_as_invalid() -> None:
    assert L1Std(Span=12, L2Ptr=0x1000).l2_entries == 0
    assert L1Std(Span=11).l2_entries == 1024


def test_ste_fetch_abort_reports_the_address() -> None:
    mem = PhysicalMemory(addr_bits=40)
    base = mem.alloc(4096)
    far = 1 << 45
    mem.write64(base, L1Std(Span=1, L2Ptr=far).to_int())
    table = StreamTable(mem, base, StrtabBaseCfg(LOG2SIZE=8, SPLIT=6, FMT=1), CAPS)
    with pytest.raises(ConfigFault) as exc:
        table.fetch(0)
    assert (exc.value.type, exc.value.fetch_addr) == (EventType.F_STE_FETCH, far)
    linear = StreamTable(mem, far, StrtabBaseCfg(LOG2SIZE=4), CAPS)
    with pytest.raises(ConfigFault) as exc:
        linear.fetch(2)
    assert (exc.value.type, exc.value.fetch_addr) == (EventType.F_STE_FETCH, far + 128)


def test_stream_table_configuration_refusals() -> None:
    mem = PhysicalMemory()
    with pytest.raises(UAPIError, match="SPLIT"):
        StreamTable(mem, 0, StrtabBaseCfg(LOG2SIZE=16, SPLIT=7, FMT=1), CAPS)
    with pytest.raises(UAPIError, match="ST_LEVEL"):
        StreamTable(mem, 0, StrtabBaseCfg(LOG2SIZE=16, SPLIT=8, FMT=1),
                    SmmuCaps(st_level=StLevel.LINEAR))
    with pytest.raises(UAPIError, match="FMT"):
        StreamTable(mem, 0, StrtabBaseCfg(FMT=2), CAPS)


# -- CD tables -------------------------------------------------------------------------------


def _cd(asid: int) -> Cd:
    return Cd(V=True, AA64=True, T0SZ=16, EPD1=True, IPS=5, ASID=asid, TTB0=0x1000)


def test_single_cd() -> None:
    mem = PhysicalMemory()
    ptr = mem.alloc()
    mem.write(ptr, _cd(7).to_bytes())
    table = CdTable(mem, Ste(S1ContextPtr=ptr, S1CDMax=0))
    assert table.fetch(0) == (_cd(7), 1, 0)
    with pytest.raises(ConfigFault) as exc:
        table.fetch(1)
    assert exc.value.type == EventType.C_BAD_SUBSTREAMID


def test_linear_cd_table() -> None:
    mem = PhysicalMemory()
    ptr = mem.alloc()
    for ssid in range(4):
        mem.write(ptr + ssid * 64, _cd(ssid + 1).to_bytes())
    table = CdTable(mem, Ste(S1ContextPtr=ptr, S1CDMax=2, S1Fmt=3))  # reserved S1Fmt: linear
    assert [table.fetch(s).cd.ASID for s in range(4)] == [1, 2, 3, 4]
    with pytest.raises(ConfigFault):
        table.fetch(4)


@pytest.mark.parametrize(("fmt", "cdmax", "leaf", "ssid"), [
    (1, 8, 4096, 0x85),       # 4 KiB leaves: L1 index ssid >> 6
    (2, 12, 65536, 0x405),    # 64 KiB leaves: L1 index ssid >> 10
    (1, 20, 4096, 0xFFFFF),   # 20-bit SubstreamIDs
])
def test_two_level_cd_table(fmt: int, cdmax: int, leaf: int, ssid: int) -> None:
    mem = PhysicalMemory()
    shift = 6 if fmt == 1 else 10
    l1 = mem.alloc(max(4096, 8 << (cdmax - shift)))
    l2 = mem.alloc(leaf, leaf)
    mem.write64(l1 + (ssid >> shift) * 8, L1Cd(V=True, L2Ptr=l2).to_int())
    addr = l2 + (ssid & ((1 << shift) - 1)) * 64
    mem.write(addr, _cd(0x99).to_bytes())
    table = CdTable(mem, Ste(S1ContextPtr=l1, S1CDMax=cdmax, S1Fmt=fmt))
    assert table.cd_address(ssid) == (addr, 1, 0)
    assert table.fetch(ssid) == (_cd(0x99), 2, 0)
    other = ssid ^ (1 << shift)  # same L2 index under an invalid L1 descriptor
    with pytest.raises(ConfigFault) as exc:
        table.fetch(other)
    assert exc.value.type == EventType.C_BAD_SUBSTREAMID


def test_cd_fetch_abort() -> None:
    mem = PhysicalMemory(addr_bits=40)
    table = CdTable(mem, Ste(S1ContextPtr=1 << 44, S1CDMax=0))
    with pytest.raises(ConfigFault) as exc:
        table.fetch(0)
    assert (exc.value.type, exc.value.fetch_addr) == (EventType.F_CD_FETCH, 1 << 44)


def test_nested_cd_fetch_walks_stage2() -> None:
    mem = PhysicalMemory()
    s2 = LPAEPageTable(LPAEConfig(stage=2, granule=4096, t0sz=24, sl0=1, oas=48), mem)
    l1_pa, l2_pa = mem.alloc(), mem.alloc()
    s2.map(0x4000_0000, l1_pa, 4096, Prot.READ | Prot.WRITE)
    s2.map(0x4000_1000, l2_pa, 4096, Prot.READ | Prot.WRITE)
    mem.write64(l1_pa + 8, L1Cd(V=True, L2Ptr=0x4000_1000).to_int())  # an IPA
    mem.write(l2_pa + 3 * 64, _cd(5).to_bytes())
    table = CdTable(mem, Ste(S1ContextPtr=0x4000_0000, S1CDMax=8, S1Fmt=1), s2.stage2())
    cd, reads, s2_reads = table.fetch(0x43)
    assert (cd, reads) == (_cd(5), 2)
    assert s2_reads == 2 * 3  # two stage-2 walks from level 1: three descriptors each
    # an L2Ptr stage 2 does not map: the stage-2 fault, with the IPA it could not translate
    mem.write64(l1_pa + 16, L1Cd(V=True, L2Ptr=0x5000_0000).to_int())
    with pytest.raises(ConfigFault) as exc:
        table.fetch(0x83)
    assert exc.value.type == EventType.F_TRANSLATION
    assert exc.value.ipa == 0x5000_0000 + 3 * 64
    assert exc.value.walk is not None and exc.value.walk.stage == 2

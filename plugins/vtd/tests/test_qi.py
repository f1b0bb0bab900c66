"""Invalidation descriptors: golden layouts of every type (hw-formats 1.9.1-1.9.9) and the
validation of 1.9.10 with its IQEI codes."""

from __future__ import annotations

import msgspec
import pytest

from iommu_uapi_vtd.qi import (
    DESCRIPTOR_TYPES,
    ContextCacheInv,
    DescriptorError,
    DevTlbInv,
    IecInv,
    InvWait,
    IotlbInv,
    Iqei,
    PageGroupResponse,
    PasidCacheInv,
    PasidDevTlbInv,
    PasidIotlbInv,
    decode_descriptor,
    devtlb_range,
    devtlb_size_encoding,
    page_range,
)
from iommu_uapi_vtd.registers import VtdConfig

CFG = VtdConfig()

GOLDEN = [
    (ContextCacheInv(G=3, DID=5, SID=0x310, FM=1),
     (1 | 3 << 4 | 5 << 16 | 0x310 << 32 | 1 << 48, 0, 0, 0)),
    (IotlbInv(G=3, DW=True, DR=True, DID=5, AM=2, IH=True, ADDR=0x40000),
     (2 | 3 << 4 | 1 << 6 | 1 << 7 | 5 << 16, 2 | 1 << 6 | 0x40000, 0, 0)),
    (DevTlbInv(PFSID_LO=0xA, MIP=3, SID=0x310, PFSID_HI=0x123, S=True, ADDR=0x7000),
     (3 | 0xA << 12 | 3 << 16 | 0x310 << 32 | 0x123 << 52, 1 | 0x7000, 0, 0)),
    (IecInv(G=True, IM=2, IIDX=0x55), (4 | 1 << 4 | 2 << 27 | 0x55 << 32, 0, 0, 0)),
    (InvWait(IF=True, SW=True, FN=True, STDATA=0xDEAD, STADDR=0x1234),
     (5 | 1 << 4 | 1 << 5 | 1 << 6 | 0xDEAD << 32, 0x1234, 0, 0)),
    (PasidIotlbInv(G=3, DID=5, PASID=0x1234, AM=1, IH=True, ADDR=0x200000),
     (6 | 3 << 4 | 5 << 16 | 0x1234 << 32, 1 | 1 << 6 | 0x200000, 0, 0)),
    (PasidCacheInv(G=1, DID=5, PASID=0x1234), (7 | 1 << 4 | 5 << 16 | 0x1234 << 32, 0, 0, 0)),
    (PasidDevTlbInv(MIP=4, PFSID_LO=1, SID=0x310, PASID=0x1234, PFSID_HI=2, G=True, S=True,
                    ADDR=0x5000),
     (8 | 4 << 4 | 1 << 12 | 0x310 << 16 | 0x1234 << 32 | 2 << 52, 1 | 1 << 11 | 0x5000, 0, 0)),
    (PageGroupResponse(PP=True, PDP=True, RC=0xF, RID=0x310, PASID=0x1234, LPIG=True,
                       PRGI=0x1AB, PRIV0=0x11, PRIV1=0x22),
     (9 | 1 << 4 | 1 << 5 | 0xF << 12 | 0x310 << 16 | 0x1234 << 32, 1 << 2 | 0x1AB << 3,
      0x11, 0x22)),
]


@pytest.mark.parametrize(("desc", "qwords"), GOLDEN, ids=lambda v: type(v).__name__)
def test_descriptor_golden_layout_and_round_trip(desc: object, qwords: tuple[int, ...]) -> None:
    assert desc.qwords() == qwords  # type: ignore[attr-defined]
    assert decode_descriptor(qwords, CFG) == desc


def test_every_type_has_a_golden_case() -> None:
    assert {type(d).TYPE for d, _ in GOLDEN} == set(DESCRIPTOR_TYPES) == set(range(1, 10))


def _iqei(qwords: tuple[int, ...], cfg: VtdConfig = CFG, **kw: bool) -> Iqei:
    with pytest.raises(DescriptorError) as exc:
        decode_descriptor(qwords, cfg, **kw)
    return exc.value.iqei


def test_unknown_and_unsupported_types() -> None:
    assert _iqei((0xA, 0, 0, 0)) == Iqei.INVALID_TYPE
    assert _iqei((0, 0, 0, 0)) == Iqei.INVALID_TYPE
    assert _iqei((1 | 1 << 9, 0, 0, 0)) == Iqei.INVALID_TYPE        # type 0x11
    no_dt = msgspec.structs.replace(CFG, dt=False)
    assert _iqei(DevTlbInv(SID=1).qwords(), no_dt) == Iqei.INVALID_TYPE
    assert _iqei(PasidDevTlbInv(SID=1).qwords(), no_dt) == Iqei.INVALID_TYPE
    no_prs = msgspec.structs.replace(CFG, prs=False)
    assert _iqei(PageGroupResponse().qwords(), no_prs) == Iqei.INVALID_TYPE


@pytest.mark.parametrize("qwords", [
    (1 | 1 << 8, 0, 0, 0),                      # type 1 QW0 bit 8
    (1 | 1 << 4, 1, 0, 0),                      # type 1 QW1
    (2 | 1 << 4, 0, 1, 0),                      # QW2 of a non-page-response descriptor
    (2 | 1 << 4, 0, 0, 1 << 63),                # QW3
    (2 | 3 << 4, 1 << 7, 0, 0),                 # type 2 QW1 bit 7
    (5 | 1 << 5, 0x1235, 0, 0),                 # wait: STADDR bits 1:0
    (5 | 1 << 8, 0, 0, 0),                      # wait: bit 8
    (6 | 2 << 4 | 1 << 52, 0, 0, 0),            # type 6 QW0 bit 52
    (8, 1 << 1, 0, 0),                          # type 8 QW1 bit 1
    (9, 1, 0, 0),                               # type 9 QW1 bit 0
])
def test_reserved_bits(qwords: tuple[int, ...]) -> None:
    assert _iqei(qwords) == Iqei.RESERVED_FIELD


@pytest.mark.parametrize("qwords", [
    (1, 0, 0, 0), (2, 0, 0, 0), (6, 0, 0, 0), (6 | 1 << 4, 0, 0, 0), (7 | 2 << 4, 0, 0, 0),
])
def test_reserved_granularity(qwords: tuple[int, ...]) -> None:
    assert _iqei(qwords) == Iqei.RESERVED_FIELD


def test_am_above_mamv_and_psi() -> None:
    assert decode_descriptor(IotlbInv(G=3, AM=9).qwords(), CFG)
    assert _iqei(IotlbInv(G=3, AM=10).qwords()) == Iqei.RESERVED_FIELD
    assert _iqei(PasidIotlbInv(G=3, AM=10).qwords()) == Iqei.RESERVED_FIELD
    big = msgspec.structs.replace(CFG, mamv=18)
    assert decode_descriptor(PasidIotlbInv(G=3, AM=10).qwords(), big)
    no_psi = msgspec.structs.replace(CFG, psi=False)
    assert _iqei(IotlbInv(G=3).qwords(), no_psi) == Iqei.RESERVED_FIELD
    assert decode_descriptor(IotlbInv(G=2).qwords(), no_psi)


@pytest.mark.parametrize(("desc", "feature"), [
    (InvWait(PD=True, FN=True), "pds"), (IotlbInv(G=1, DW=True), "dwd"),
    (IotlbInv(G=1, DR=True), "drd"),
])
def test_feature_bits_are_reserved_exactly_when_the_feature_is_off(desc: object,
                                                                   feature: str) -> None:
    qw = desc.qwords()  # type: ignore[attr-defined]
    assert decode_descriptor(qw, msgspec.structs.replace(CFG, **{feature: True})) == desc
    assert _iqei(qw, msgspec.structs.replace(CFG, **{feature: False})) == Iqei.RESERVED_FIELD


def test_width_and_ttm() -> None:
    assert decode_descriptor((1 | 1 << 4, 0), CFG, wide=False) == ContextCacheInv(G=1)
    assert _iqei(PasidCacheInv(G=3).qwords()[:2], wide=False) == Iqei.INVALID_WIDTH
    assert _iqei((1 | 1 << 4, 0, 0)) == Iqei.INVALID_WIDTH
    assert _iqei(PasidCacheInv(G=3).qwords(), scalable=False) == Iqei.INVALID_FOR_TTM
    assert decode_descriptor(IotlbInv(G=1).qwords(), CFG, scalable=False) == IotlbInv(G=1)


def test_wait_with_neither_sw_nor_if_is_a_legal_fence() -> None:
    assert decode_descriptor((5, 0, 0, 0), CFG) == InvWait()


def test_page_range_is_naturally_aligned() -> None:
    assert page_range(0x203000, 0) == (0x203000, 0x1000)
    assert page_range(0x203000, 9) == (0x200000, 0x200000)


def test_device_tlb_size_encoding() -> None:
    assert devtlb_range(0x7123, False) == (0x7000, 0x1000)
    assert devtlb_range(0x6000, True) == (0x6000, 0x2000)      # bit 12 clear: 8 KiB
    assert devtlb_range(0x5000, True) == (0x4000, 0x4000)      # one 1: 16 KiB
    assert devtlb_range(0x7FFF_FFFF_FFFF_F000, True) == (0, 1 << 64)   # the whole space
    for order in range(0, 20):
        addr, s = devtlb_size_encoding(0x1_0000_0000, order)
        assert devtlb_range(addr, s) == (0x1_0000_0000, 0x1000 << order)
    assert devtlb_size_encoding(0, 52) == ((1 << 63) - (1 << 12), True)
    assert devtlb_range(*devtlb_size_encoding(0, 52)) == (0, 1 << 64)

"""Properties: every record round-trips through its bit image; the descriptor decoder either
accepts (and then re-encodes the same quadwords) or refuses with an IQEI code, never anything
else; reserved masks never overlap defined fields that the configuration supports."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from iommu_uapi_vtd.bits import Record
from iommu_uapi_vtd.context_entry import ContextEntry, context_reserved_mask
from iommu_uapi_vtd.faults import Frcd
from iommu_uapi_vtd.iq import Iqa
from iommu_uapi_vtd.pasid_dir import PasidDirEntry
from iommu_uapi_vtd.pasid_entry import PasidEntry, pasid_reserved_mask
from iommu_uapi_vtd.prq import PageRequestDesc
from iommu_uapi_vtd.qi import DESCRIPTOR_TYPES, DescriptorError, decode_descriptor
from iommu_uapi_vtd.registers import Cap, Ecap, VtdConfig
from iommu_uapi_vtd.root_entry import RootEntry

RECORDS: list[type[Record]] = [Cap, Ecap, RootEntry, ContextEntry, PasidDirEntry, PasidEntry,
                               Frcd, Iqa, PageRequestDesc, *DESCRIPTOR_TYPES.values()]
CFG = VtdConfig()
QW = st.integers(0, (1 << 64) - 1)


@st.composite
def records(draw: st.DrawFn) -> Record:
    cls = draw(st.sampled_from(RECORDS))
    kwargs: dict[str, Any] = {}
    for name, f in cls.LAYOUT.items():
        value = draw(st.integers(0, (1 << f.width) - 1)) << f.unit
        kwargs[name] = bool(value) if f.width == 1 else value
    return cls(**kwargs)


@settings(max_examples=150, deadline=None)
@given(records())
def test_record_round_trip(rec: Record) -> None:
    cls = type(rec)
    assert cls.from_bytes(rec.to_bytes()) == rec
    assert cls.reserved_bits(rec.to_int()) == 0


@settings(max_examples=200, deadline=None)
@given(st.tuples(st.integers(0, 15) | QW, QW, st.integers(0, 3) | QW, st.just(0) | QW))
def test_descriptor_decoder_accepts_or_gives_an_iqei(qwords: tuple[int, int, int, int]) -> None:
    try:
        desc = decode_descriptor(qwords, CFG)
    except DescriptorError as exc:
        assert 1 <= exc.iqei <= 7
    else:
        assert desc.qwords() == qwords


def test_supported_fields_are_never_reserved() -> None:
    assert context_reserved_mask(CFG) & ContextEntry(P=True, DTE=True, PASIDE=True, PRE=True,
                                                     PDTS=7, PASIDDIRPTR=0xFFFF_FFFF_F000
                                                     ).to_int() == 0
    full = PasidEntry(P=True, FPD=True, AW=7, SLEE=True, PGTT=3, SRE=True, ERE=True, FLPM=3,
                      WPE=True, NXE=True, SMEP=True, EAFE=True, PWSNP=True, PGSNP=True,
                      DID=0xFFFF, SLPTPTR=0xFFFF_FFFF_F000, FLPTPTR=0xFFFF_FFFF_F000).to_int()
    assert pasid_reserved_mask(CFG, 3) & full == 0

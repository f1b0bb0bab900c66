"""Round trips (hypothesis, bounded): every record decodes to what it encodes, every image
encodes back to its defined bits, and the ID registers decode to the capability set they came
from."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iommu_uapi.hw.bits import Record
from iommu_uapi_smmu.cd import Cd
from iommu_uapi_smmu.cdtable import L1Cd
from iommu_uapi_smmu.cmd_check import check_command
from iommu_uapi_smmu.cmds import COMMANDS, CommandError, decode_command
from iommu_uapi_smmu.events import EVENT_RECORD, EventType, decode_event
from iommu_uapi_smmu.idr import (
    ADDR_SIZE_BITS,
    Aidr,
    Idr0,
    Idr1,
    Idr3,
    Idr5,
    Iidr,
    SmmuCaps,
    StallModel,
    StLevel,
    Ttendian,
    Ttf,
    caps_from_id_registers,
    id_registers,
)
from iommu_uapi_smmu.pri import PageRequest
from iommu_uapi_smmu.registers import Cr0, Cr1, Cr2, Gbpa, QueueBase, StrtabBase, StrtabBaseCfg
from iommu_uapi_smmu.ste import Ste
from iommu_uapi_smmu.strtab import L1Std

RECORDS: list[type[Record]] = [
    Ste, Cd, L1Std, L1Cd, PageRequest, Idr0, Idr1, Idr3, Idr5, Iidr, Aidr, Cr0, Cr1, Cr2, Gbpa,
    StrtabBase, StrtabBaseCfg, QueueBase, *set(EVENT_RECORD.values()), *COMMANDS.values(),
]


def _fields(cls: type[Record]) -> st.SearchStrategy[dict[str, Any]]:
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for name, field in cls.LAYOUT.items():
        if field.width == 1:
            parts[name] = st.booleans()
        else:
            parts[name] = st.integers(0, (1 << field.width) - 1).map(
                lambda v, u=field.unit: v << u)
    return st.fixed_dictionaries(parts)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
@given(data=st.data())
def test_fields_round_trip(cls: type[Record], data: st.DataObject) -> None:
    values = data.draw(_fields(cls))
    rec = cls(**values)
    assert cls.from_bytes(rec.to_bytes()) == rec
    assert rec.describe() == values


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
@given(data=st.data())
def test_images_round_trip(cls: type[Record], data: st.DataObject) -> None:
    raw = data.draw(st.integers(0, (1 << cls.BITS) - 1)) & cls.defined_mask() | cls.FIXED
    assert cls.from_int(raw).to_int() == raw


@given(data=st.data())
def test_every_event_decodes_in_its_layout(data: st.DataObject) -> None:
    etype = data.draw(st.sampled_from(list(EventType)))
    cls = EVENT_RECORD[etype]
    values = data.draw(_fields(cls))
    values["Type"] = int(etype)
    ev = cls(**values)
    back = decode_event(ev.to_bytes())
    assert type(back) is cls and back == ev and back.event_type == etype


@given(data=st.data())
def test_every_command_decodes_in_its_layout(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(list(COMMANDS.values())))
    cmd = cls(**data.draw(_fields(cls)))
    assert decode_command(cmd.to_bytes()) == cmd


@given(raw=st.integers(0, (1 << 128) - 1))
def test_command_check_is_total(raw: int) -> None:
    """Any 16 bytes either decode to a command the SMMU runs or raise CommandError."""
    try:
        cmd = check_command(raw, SmmuCaps())
    except CommandError:
        return
    assert cmd.to_int() == raw


caps_strategy = st.builds(
    SmmuCaps,
    s1p=st.just(True), s2p=st.booleans(), ttf=st.sampled_from(list(Ttf)),
    httu=st.integers(0, 2), hyp=st.booleans(), ats=st.booleans(), asid16=st.booleans(),
    pri=st.booleans(), vmid16=st.booleans(), cd2l=st.booleans(),
    ttendian=st.sampled_from(list(Ttendian)), stall_model=st.sampled_from(list(StallModel)),
    st_level=st.sampled_from(list(StLevel)), sidsize=st.integers(0, 32),
    ssidsize=st.integers(0, 20), cmdqs=st.integers(0, 19), had=st.booleans(),
    stt=st.booleans(), ril=st.booleans(), oas=st.sampled_from(ADDR_SIZE_BITS),
    gran16k=st.booleans(), vax=st.integers(0, 1), stall_max=st.integers(0, 0xFFFF),
    product_id=st.integers(0, 0xFFF), arch_minor=st.integers(0, 15),
)


@given(caps=caps_strategy)
def test_caps_round_trip_through_id_registers(caps: SmmuCaps) -> None:
    assert caps_from_id_registers(id_registers(caps)) == caps

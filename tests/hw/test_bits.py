"""Bit-field records declared once: exact bit images, round trips through ints, bytes and memory,
reserved masks per capability set, and refusals carrying the rule ids the record names."""

from __future__ import annotations

import errno
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from iommu_uapi.errors import MemoryAccessError, UAPIError
from iommu_uapi.hw.bits import (
    Field,
    Record,
    Refusal,
    bit,
    capability,
    int_to_qwords,
    qwords_to_int,
)
from iommu_uapi.memory import PhysicalMemory

WIDTH = Refusal(errno.EINVAL, rule="test.field-width")
SIZE = Refusal(errno.EINVAL, rule="test.size")
RESERVED = Refusal(errno.EINVAL, rule="test.reserved")


class TestRecord(Record, frozen=True, gc=False):
    """A backend's base record: it names the refusals."""

    __test__ = False
    FIELD_REFUSAL = WIDTH
    SIZE_REFUSAL = SIZE
    RESERVED_REFUSAL = RESERVED


class Entry(TestRecord, frozen=True, gc=False):
    """A 128-bit table entry: a valid bit, a mode, two capability-gated flags, an address whose
    usable width is a capability, a tag in QW1 and a fixed format code at 11:8."""

    BITS = 128
    FIXED = 0x5 << 8
    LAYOUT = {
        "V": bit(0),
        "MODE": Field(1, 3),
        "AD": bit(5),                  # exists with capability "ad"
        "PRIV": bit(6),                # exists with capability "priv"
        "ADDR": Field(12, 52, 12),     # value bits at or above "oas" are reserved
        "TAG": Field(64, 16),
        "HINT": bit(100),
    }
    CAPABILITY_FIELDS = {"AD": "ad", "PRIV": "priv"}
    CAPABILITY_WIDTHS = {"ADDR": "oas"}
    V: bool = False
    MODE: int = 0
    AD: bool = False
    PRIV: bool = False
    ADDR: int = 0
    TAG: int = 0
    HINT: bool = False


class Caps(msgspec.Struct, frozen=True):
    """A backend's capability set as a configuration Struct."""

    ad: bool = True
    priv: bool = True
    oas: int = 48


#: Bits no field or set fixed bit of Entry occupies: 4, 7, 9, 11, 99:80, 127:101.
UNDEFINED = 1 << 4 | 1 << 7 | 1 << 9 | 1 << 11 | ((1 << 20) - 1) << 80 | ((1 << 27) - 1) << 101
ADDR_MASK = ((1 << 52) - 1) << 12


def test_golden_image() -> None:
    e = Entry(V=True, MODE=5, AD=True, ADDR=0x1234_5000, TAG=0xBEEF, HINT=True)
    raw = 1 | 5 << 1 | 1 << 5 | 0x5 << 8 | 0x1234_5000 | 0xBEEF << 64 | 1 << 100
    assert e.to_int() == raw
    assert e.qwords() == (raw & (1 << 64) - 1, raw >> 64)
    assert e.to_bytes() == raw.to_bytes(16, "little")
    assert e.to_bytes()[:2] == bytes([0x2B, 0x55])      # V, MODE, AD | fixed code, ADDR 15:12
    assert Entry.from_int(raw) == e and Entry.from_int(raw).V is True
    assert e.describe() == {"V": True, "MODE": 5, "AD": True, "PRIV": False,
                            "ADDR": 0x1234_5000, "TAG": 0xBEEF, "HINT": True}


def test_defined_and_reserved_bits_come_from_the_table() -> None:
    assert Entry.defined_mask() == ((1 << 128) - 1) & ~UNDEFINED
    assert Entry.reserved_bits(UNDEFINED | 1) == UNDEFINED
    assert Entry.reserved_bits(1 << 130) == 0              # beyond the record: not its bits


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    kwargs: dict[str, Any] = {}
    for name, f in Entry.LAYOUT.items():
        value = draw(st.integers(0, (1 << f.width) - 1)) << f.unit
        kwargs[name] = bool(value) if f.width == 1 else value
    return Entry(**kwargs)


@given(entries())
def test_round_trips_through_ints_bytes_qwords_and_memory(e: Entry) -> None:
    raw = e.to_int()
    assert Entry.from_int(raw) == e
    assert Entry.from_bytes(e.to_bytes()) == e
    assert qwords_to_int(e.qwords()) == raw and int_to_qwords(raw, 2) == e.qwords()
    assert Entry.reserved_bits(raw) == 0
    mem = PhysicalMemory()
    e.to_memory(mem, 0x1ff8)                              # straddles a page boundary
    assert mem.read(0x1ff8, 16) == e.to_bytes()
    assert Entry.from_memory(mem, 0x1ff8) == e
    assert Entry.from_memory(mem, 0x1ff8, Caps(oas=64)) == e


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"MODE": 8}, "MODE"), ({"TAG": 1 << 16}, "TAG"), ({"ADDR": 0x1001}, "ADDR"),
    ({"ADDR": 1 << 64}, "ADDR"), ({"MODE": -1}, "MODE"),
])
def test_a_value_that_does_not_fit_is_the_records_field_refusal(kwargs: dict[str, int],
                                                                field: str) -> None:
    e = Entry(**kwargs)
    for encode in (e.to_int, e.to_bytes, e.qwords, lambda: e.to_memory(PhysicalMemory(), 0)):
        with pytest.raises(UAPIError) as exc:
            encode()
        assert exc.value.errno == errno.EINVAL and exc.value.rule == "test.field-width"
        assert f"Entry.{field}" in exc.value.message


@pytest.mark.parametrize("size", [0, 15, 17, 32])
def test_an_image_of_the_wrong_size_is_the_records_size_refusal(size: int) -> None:
    with pytest.raises(UAPIError) as exc:
        Entry.from_bytes(bytes(size))
    assert exc.value.errno == errno.EINVAL and exc.value.rule == "test.size"
    assert f"need 16 bytes, got {size}" in exc.value.message


def test_reserved_mask_per_capability_set() -> None:
    ad, priv = Entry.LAYOUT["AD"].mask, Entry.LAYOUT["PRIV"].mask
    above = {oas: ADDR_MASK & ~((1 << oas) - 1) for oas in (40, 48, 52)}
    assert Entry.reserved_mask(Caps()) == UNDEFINED | above[48]
    assert Entry.reserved_mask(Caps(ad=False)) == UNDEFINED | ad | above[48]
    assert Entry.reserved_mask(Caps(ad=False, priv=False, oas=40)) == \
        UNDEFINED | ad | priv | above[40]
    assert Entry.reserved_mask(Caps(oas=64)) == UNDEFINED
    assert Entry.reserved_mask(Caps(oas=12)) == UNDEFINED | ADDR_MASK  # no address bit exists
    # a mapping and a set of names are capability sets too (a set gives no widths: 0 or 1)
    assert Entry.reserved_mask({"ad": True, "priv": False, "oas": 52}) == \
        UNDEFINED | priv | above[52]
    assert Entry.reserved_mask(frozenset({"priv"})) == UNDEFINED | ad | ADDR_MASK
    assert Entry.reserved_mask({"priv", "ad"}) == UNDEFINED | ADDR_MASK  # unhashable: uncached


def test_a_capability_the_set_does_not_know_is_a_declaration_error() -> None:
    class Partial(msgspec.Struct, frozen=True):
        ad: bool = True

    with pytest.raises(AttributeError):
        Entry.reserved_mask(Partial())
    assert capability(Partial(), "ad") == 1 and capability({"x": 7}, "x") == 7
    assert capability(frozenset(), "ad") == 0


def test_decode_refuses_reserved_bits_with_the_rule_the_record_names() -> None:
    ok = Entry(V=True, AD=True, PRIV=True, ADDR=0xFFFF_FFFF_F000).to_int()
    assert Entry.decode(ok, Caps()) == Entry.from_int(ok)
    for raw, caps in [(ok, Caps(ad=False)), (ok, Caps(priv=False)), (ok, Caps(oas=47)),
                      (1 << 7, Caps()), (1 << 127, Caps()), (1 << 128, Caps())]:
        with pytest.raises(UAPIError) as exc:
            Entry.decode(raw, caps)
        assert exc.value.errno == errno.EINVAL and exc.value.rule == "test.reserved"
        assert "reserved bits" in exc.value.message
    with pytest.raises(UAPIError) as exc:
        Entry.decode(1 << 7, Caps(), refusal=Refusal(errno.ENODEV, rule="caller.rule"))
    assert (exc.value.errno, exc.value.rule) == (errno.ENODEV, "caller.rule")
    assert "0x80" in exc.value.message


def test_decode_from_memory_checks_reserved_bits_and_memory_bounds() -> None:
    mem = PhysicalMemory(addr_bits=32)
    mem.write(0x1000, (Entry(V=True).to_int() | 1 << 7).to_bytes(16, "little"))
    assert Entry.from_memory(mem, 0x1000).V                  # unchecked: fields only
    with pytest.raises(UAPIError) as exc:
        Entry.from_memory(mem, 0x1000, Caps())
    assert exc.value.rule == "test.reserved"
    with pytest.raises(MemoryAccessError) as mexc:
        Entry.from_memory(mem, (1 << 32) - 8)
    assert mexc.value.rule == "memory.range"
    with pytest.raises(MemoryAccessError):
        Entry().to_memory(mem, 1 << 32)


def test_a_record_without_a_reserved_refusal_needs_the_callers() -> None:
    class Plain(Record, frozen=True, gc=False):
        FIELD_REFUSAL = WIDTH
        SIZE_REFUSAL = SIZE
        LAYOUT = {"A": Field(0, 4)}
        A: int = 0

    assert Plain.decode(0xF, frozenset()) == Plain(A=0xF)
    with pytest.raises(TypeError):
        Plain.decode(0x10, frozenset())
    with pytest.raises(UAPIError) as exc:
        Plain.decode(0x10, frozenset(), refusal=RESERVED)
    assert exc.value.rule == "test.reserved"


def test_a_record_must_name_its_refusals_and_gate_only_its_own_fields() -> None:
    with pytest.raises(TypeError, match="FIELD_REFUSAL, SIZE_REFUSAL"):
        class Unnamed(Record, frozen=True, gc=False):
            LAYOUT = {"A": bit(0)}
            A: bool = False
    with pytest.raises(TypeError, match="not in LAYOUT"):
        class Stray(TestRecord, frozen=True, gc=False):
            LAYOUT = {"A": bit(0)}
            CAPABILITY_FIELDS = {"B": "b"}
            A: bool = False


def test_field_arithmetic() -> None:
    f = Field(12, 40, 12)
    assert f.mask == ((1 << 40) - 1) << 12 and f.high == 51
    assert f.get(0xABCD_E000 | 0xFFF) == 0xABCD_E000
    assert f.put(0xABCD_E000) == 0xABCD_E000 and not f.fits(0x800)
    assert f.beyond(48) == ((1 << 52) - 1) & ~((1 << 48) - 1)
    assert f.beyond(60) == 0 and f.beyond(0) == f.mask
    assert bit(3) == Field(3, 1) and bit(3).get(0b1000) == 1
    with pytest.raises(ValueError, match="aligned to 0x1000"):
        f.put(0x1800)

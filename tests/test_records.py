"""Every UAPI record: sizes and offsets against the kernel headers, ctypes, golden bytes,
byte/JSON/MessagePack round trips."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iommu_uapi.abi import CRecord
from iommu_uapi.uapi import (
    RECORDS,
    CacheInvalidateInfo,
    CacheType,
    Fault,
    FaultPageRequest,
    FaultType,
    GpasidBindData,
    GpasidBindDataVtd,
    GpasidBindVendor,
    InvAddrFlags,
    InvAddrInfo,
    InvGranu,
    InvGranularity,
    NestingInfo,
    PageRequestFlags,
    PageResponse,
    PasidTableConfig,
    VfioInfoCapNesting,
    VfioIommuType1CacheInvalidate,
    VfioIommuType1NestingOp,
    VfioIommuType1SetPasidTable,
    VtdGpasidFlags,
)

# (path, offset, size) straight from the reference tables (kernel-uapi.md a.3, b.1, b.2).
OFFSETS: dict[str, tuple[int, list[tuple[str, int, int]]]] = {
    "FaultUnrecoverable": (32, [
        ("reason", 0, 4), ("flags", 4, 4), ("pasid", 8, 4), ("perm", 12, 4), ("addr", 16, 8),
        ("fetch_addr", 24, 8)]),
    "FaultPageRequest": (40, [
        ("flags", 0, 4), ("pasid", 4, 4), ("grpid", 8, 4), ("perm", 12, 4), ("addr", 16, 8),
        ("private_data", 24, 16)]),
    "Fault": (64, [
        ("type", 0, 4), ("padding", 4, 4), ("event", 8, 32), ("prm", 8, 40), ("padding2", 8, 56),
        ("event.addr", 24, 8), ("event.fetch_addr", 32, 8), ("prm.grpid", 16, 4),
        ("prm.addr", 24, 8), ("prm.private_data", 32, 16)]),
    "PageResponse": (24, [
        ("argsz", 0, 4), ("version", 4, 4), ("flags", 8, 4), ("pasid", 12, 4), ("grpid", 16, 4),
        ("code", 20, 4)]),
    "InvAddrInfo": (40, [
        ("flags", 0, 4), ("archid", 4, 4), ("pasid", 8, 8), ("addr", 16, 8),
        ("granule_size", 24, 8), ("nb_granules", 32, 8)]),
    "InvPasidInfo": (16, [("flags", 0, 4), ("archid", 4, 4), ("pasid", 8, 8)]),
    "CacheInvalidateInfo": (56, [
        ("argsz", 0, 4), ("version", 4, 4), ("cache", 8, 1), ("granularity", 9, 1),
        ("padding", 10, 6), ("granu", 16, 40), ("granu.pasid_info", 16, 16),
        ("granu.pasid_info.flags", 16, 4), ("granu.pasid_info.archid", 20, 4),
        ("granu.pasid_info.pasid", 24, 8), ("granu.addr_info", 16, 40),
        ("granu.addr_info.flags", 16, 4), ("granu.addr_info.archid", 20, 4),
        ("granu.addr_info.pasid", 24, 8), ("granu.addr_info.addr", 32, 8),
        ("granu.addr_info.granule_size", 40, 8), ("granu.addr_info.nb_granules", 48, 8)]),
    "GpasidBindDataVtd": (16, [("flags", 0, 8), ("pat", 8, 4), ("emt", 12, 4)]),
    "GpasidBindData": (72, [
        ("argsz", 0, 4), ("version", 4, 4), ("format", 8, 4), ("addr_width", 12, 4),
        ("flags", 16, 8), ("gpgd", 24, 8), ("hpasid", 32, 8), ("gpasid", 40, 8),
        ("padding", 48, 8), ("vendor", 56, 16), ("vendor.vtd", 56, 16),
        ("vendor.vtd.flags", 56, 8), ("vendor.vtd.pat", 64, 4), ("vendor.vtd.emt", 68, 4)]),
    "PasidSmmuv3": (8, [("version", 0, 4), ("s1fmt", 4, 1), ("s1dss", 5, 1), ("padding", 6, 2)]),
    "PasidTableConfig": (32, [
        ("argsz", 0, 4), ("version", 4, 4), ("base_ptr", 8, 8), ("format", 16, 4),
        ("pasid_bits", 20, 1), ("config", 21, 1), ("padding", 22, 2), ("vendor_data", 24, 8),
        ("vendor_data.smmuv3", 24, 8), ("vendor_data.smmuv3.version", 24, 4),
        ("vendor_data.smmuv3.s1fmt", 28, 1), ("vendor_data.smmuv3.s1dss", 29, 1),
        ("vendor_data.smmuv3.padding", 30, 2)]),
    "NestingInfo": (64, [
        ("argsz", 0, 4), ("flags", 4, 4), ("format", 8, 4), ("features", 12, 4),
        ("addr_width", 16, 2), ("pasid_bits", 18, 2), ("padding", 20, 12), ("vendor", 32, 32),
        ("vendor.vtd", 32, 32), ("vendor.vtd.flags", 32, 4), ("vendor.vtd.padding", 36, 12),
        ("vendor.vtd.cap_reg", 48, 8), ("vendor.vtd.ecap_reg", 56, 8)]),
    "NestingInfoVtd": (32, [
        ("flags", 0, 4), ("padding", 4, 12), ("cap_reg", 16, 8), ("ecap_reg", 24, 8)]),
    "VfioIommuType1NestingOp": (8, [("argsz", 0, 4), ("flags", 4, 4)]),
    "VfioIommuType1SetPasidTable": (40, [
        ("argsz", 0, 4), ("flags", 4, 4), ("config", 8, 32), ("config.vendor_data", 32, 8)]),
    "VfioIommuType1CacheInvalidate": (64, [
        ("argsz", 0, 4), ("flags", 4, 4), ("info", 8, 56), ("info.granu.addr_info.addr", 40, 8)]),
    "VfioInfoCapNesting": (72, [
        ("header", 0, 8), ("header.id", 0, 2), ("header.version", 2, 2), ("header.next", 4, 4),
        ("info", 8, 64), ("info.vendor.vtd.ecap_reg", 64, 8)]),
}

MINSZ = {"CacheInvalidateInfo": 16, "GpasidBindData": 56, "PasidTableConfig": 24,
         "PageResponse": 24, "NestingInfo": 32}

BY_NAME = {r.__name__: r for r in RECORDS}


@pytest.mark.parametrize("name", sorted(OFFSETS))
def test_size_and_every_offset_match_the_header(name: str) -> None:
    cls = BY_NAME[name]
    size, rows = OFFSETS[name]
    assert size == cls.SIZE
    lay = cls.c_layout()
    for path, off, sz in rows:
        assert lay[path] == (off, sz), path
    assert MINSZ.get(name, size) == cls.MINSZ


_CT = {"u8": ctypes.c_uint8, "u16": ctypes.c_uint16, "u32": ctypes.c_uint32,
       "u64": ctypes.c_uint64}


def _ctype(cls: type[CRecord], cache: dict[type, Any]) -> Any:
    """A ctypes Structure/Union built from the record's C declarations, for gcc's rules."""
    if cls in cache:
        return cache[cls]
    lay = cls.__cabi__
    fields: list[tuple[str, Any]] = []
    anon: list[str] = []
    groups: dict[str, list[tuple[str, Any]]] = {}
    for f in lay.fields:
        if f.kind == "int":
            t: Any = _CT[f.ctype]
        elif f.kind == "bytes":
            t = ctypes.c_uint8 * f.length
        elif f.kind == "array":
            t = _CT[f.ctype.split("[")[0]] * f.length
        else:
            assert f.cls is not None
            t = _ctype(f.cls, cache)
        if f.group is None:
            fields.append((f.name, t))
        else:
            if f.group not in groups:
                groups[f.group] = []
                fields.append((f"_anon_{f.group}", f.group))
                anon.append(f"_anon_{f.group}")
            groups[f.group].append((f.name, t))
    resolved = []
    for n, t in fields:
        if isinstance(t, str):
            u = type(f"{cls.__name__}_{t}", (ctypes.Union,), {"_fields_": groups[t]})
            resolved.append((n, u))
        else:
            resolved.append((n, t))
    base = ctypes.Union if lay.is_union else ctypes.Structure
    ns: dict[str, Any] = {"_fields_": resolved}
    if anon:
        ns["_anonymous_"] = anon
    ct = type(f"C_{cls.__name__}", (base,), ns)
    cache[cls] = ct
    return ct


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_ctypes_agrees_on_natural_alignment(cls: type[CRecord]) -> None:
    ct = _ctype(cls, {})
    assert ctypes.sizeof(ct) == cls.SIZE
    assert ctypes.alignment(ct) == cls.ALIGN
    assert cls.__cabi__.holes == ()
    for path, (off, size) in cls.c_layout().items():
        t: Any = ct
        total = 0
        for part in path.split("."):
            desc = getattr(t, part)
            total += desc.offset
            t = dict(_all_fields(t))[part]
        assert (total, ctypes.sizeof(t)) == (off, size), path


def _all_fields(t: Any) -> list[tuple[str, Any]]:
    out = []
    for name, ft in t._fields_:
        if name.startswith("_anon_"):
            out.extend(_all_fields(ft))
        else:
            out.append((name, ft))
    return out


# ---- golden bytes, written by hand from the offset tables -----------------------------------


def test_golden_cache_invalidate_addr() -> None:
    info = CacheInvalidateInfo(
        argsz=56, version=1, cache=CacheType.IOTLB | CacheType.DEV_IOTLB,
        granularity=InvGranularity.ADDR,
        granu=InvGranu(addr_info=InvAddrInfo(
            flags=InvAddrFlags.PASID | InvAddrFlags.LEAF, archid=0, pasid=0x1234,
            addr=0x7F00_0000_1000, granule_size=0x1000, nb_granules=8)),
    )
    golden = bytes.fromhex(
        "38000000" "01000000" "03" "02" "000000000000"  # argsz, version, cache, granu, pad
        "05000000" "00000000" "3412000000000000"  # addr_info.flags, archid, pasid
        "00100000007f0000"  # addr 0x7f0000001000
        "0010000000000000" "0800000000000000"  # granule_size, nb_granules
    )
    assert len(golden) == 56
    assert info.to_bytes() == golden
    back = CacheInvalidateInfo.from_bytes(golden)
    assert back.granu.addr_info == info.granu.addr_info
    assert back.granu.pasid_info.pasid == 0x1234
    assert CacheInvalidateInfo.from_user(golden, "strict") == back


def test_golden_bind_with_vtd_vendor_data() -> None:
    data = GpasidBindData(
        argsz=72, version=1, format=1, addr_width=48, flags=1, gpgd=0x1234_5000, hpasid=0x100,
        gpasid=5, vendor=GpasidBindVendor(vtd=GpasidBindDataVtd(
            flags=VtdGpasidFlags.SRE | VtdGpasidFlags.EAFE, pat=0x0704_0604, emt=6)),
    )
    golden = bytes.fromhex(
        "48000000" "01000000" "01000000" "30000000"  # argsz, version, format, addr_width
        "0100000000000000" "0050341200000000"  # flags, gpgd
        "0001000000000000" "0500000000000000"  # hpasid, gpasid
        "0000000000000000"  # padding
        "0300000000000000" "04060407" "06000000"  # vtd.flags, pat, emt
    )
    assert data.to_bytes() == golden
    assert GpasidBindData.from_bytes(golden) == data
    assert GpasidBindData.from_user(golden, "strict") == data


def test_golden_fault_page_request() -> None:
    flags = (PageRequestFlags.PASID_VALID | PageRequestFlags.LAST_PAGE
             | PageRequestFlags.RESPONSE_NEEDS_PASID)
    fault = Fault(type=FaultType.PAGE_REQ, prm=FaultPageRequest(
        flags=flags, pasid=0x42, grpid=0x1FF, perm=3, addr=0xDEAD000,
        private_data=(0x1122_3344_5566_7788, 0x99)))
    golden = bytes.fromhex(
        "02000000" "00000000"  # type, padding
        "0b000000" "42000000" "ff010000" "03000000"  # prm.flags, pasid, grpid, perm
        "00d0ea0d00000000"  # prm.addr
        "8877665544332211" "9900000000000000"  # private_data[0], [1]
        + "00" * 16  # rest of padding2
    )
    assert len(golden) == 64
    assert fault.to_bytes() == golden
    back = Fault.from_bytes(golden)
    assert back.prm == fault.prm
    assert back.padding2 == golden[8:]
    assert back.event.fetch_addr == 0x1122_3344_5566_7788


def test_golden_page_response() -> None:
    msg = PageResponse(argsz=24, version=1, flags=1, pasid=0x42, grpid=0x1FF, code=1)
    golden = bytes.fromhex("18000000" "01000000" "01000000" "42000000" "ff010000" "01000000")
    assert msg.to_bytes() == golden
    assert PageResponse.from_user(golden, "strict") == msg


def test_vfio_wrappers_embed_the_records() -> None:
    info = CacheInvalidateInfo(argsz=56, version=1, cache=1, granularity=0)
    wrap = VfioIommuType1CacheInvalidate(argsz=64, flags=0, info=info)
    assert wrap.to_bytes()[8:] == info.to_bytes()
    cfg = PasidTableConfig(argsz=32, version=1, base_ptr=0x8000, format=1, config=1)
    assert VfioIommuType1SetPasidTable(40, 1, cfg).to_bytes()[8:] == cfg.to_bytes()
    assert VfioIommuType1NestingOp(argsz=80, flags=2).op == 2
    cap = VfioInfoCapNesting.for_info(NestingInfo(argsz=64, format=1))
    assert cap.to_bytes()[:8] == bytes.fromhex("0400" "0100" "00000000")


# ---- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_round_trips(cls: type[CRecord]) -> None:
    @settings(max_examples=100, deadline=None)
    @given(st.binary(min_size=cls.SIZE, max_size=cls.SIZE))
    def run(raw: bytes) -> None:
        rec = cls.from_bytes(raw)
        assert rec.to_bytes() == raw
        assert cls.from_json(rec.to_json()) == rec
        assert cls.from_msgpack(rec.to_msgpack()) == rec

    run()

"""Decode cost of a 56-byte ``iommu_cache_invalidate_info``: iommu-uapi against ctypes and
construct. Run ``python bench/bench_codec.py`` (not a test; needs the ``bench`` extra); prints
per-call medians of 15 repeats, their spread (interquartile range) and the ratios to ctypes.

Targets: decode + strict checks <= 1.0 us median and <= 2x ctypes ``from_buffer_copy`` plus
reading every field.
"""

from __future__ import annotations

import ctypes
import statistics
import timeit
from collections.abc import Callable

import construct as cs  # type: ignore[import-untyped]

from iommu_uapi import checks, profiles
from iommu_uapi.uapi import CacheInvalidateInfo, InvAddrInfo, InvGranu

BUF = CacheInvalidateInfo(
    argsz=56, version=1, cache=3, granularity=2,
    granu=InvGranu(addr_info=InvAddrInfo(flags=5, pasid=0x1234, addr=0x7F00_0000_1000,
                                         granule_size=4096, nb_granules=8)),
).to_bytes()
STRICT = profiles.get("strict")


class CInvPasid(ctypes.LittleEndianStructure):
    _fields_ = [("flags", ctypes.c_uint32), ("archid", ctypes.c_uint32),
                ("pasid", ctypes.c_uint64)]


class CInvAddr(ctypes.LittleEndianStructure):
    _fields_ = [("flags", ctypes.c_uint32), ("archid", ctypes.c_uint32),
                ("pasid", ctypes.c_uint64), ("addr", ctypes.c_uint64),
                ("granule_size", ctypes.c_uint64), ("nb_granules", ctypes.c_uint64)]


class CGranu(ctypes.Union):
    _fields_ = [("pasid_info", CInvPasid), ("addr_info", CInvAddr)]


class CInfo(ctypes.LittleEndianStructure):
    _fields_ = [("argsz", ctypes.c_uint32), ("version", ctypes.c_uint32),
                ("cache", ctypes.c_uint8), ("granularity", ctypes.c_uint8),
                ("padding", ctypes.c_uint8 * 6), ("granu", CGranu)]


def ctypes_decode() -> tuple[object, ...]:
    c = CInfo.from_buffer_copy(BUF)
    p = c.granu.pasid_info
    a = c.granu.addr_info
    return (c.argsz, c.version, c.cache, c.granularity, bytes(c.padding), p.flags, p.archid,
            p.pasid, a.flags, a.archid, a.pasid, a.addr, a.granule_size, a.nb_granules)


_PASID = cs.Struct("flags" / cs.Int32ul, "archid" / cs.Int32ul, "pasid" / cs.Int64ul)
_ADDR = cs.Struct("flags" / cs.Int32ul, "archid" / cs.Int32ul, "pasid" / cs.Int64ul,
                  "addr" / cs.Int64ul, "granule_size" / cs.Int64ul, "nb_granules" / cs.Int64ul)
CONSTRUCT = cs.Struct(
    "argsz" / cs.Int32ul, "version" / cs.Int32ul, "cache" / cs.Int8ul, "granularity" / cs.Int8ul,
    "padding" / cs.Bytes(6), "granu" / cs.Union(0, "pasid_info" / _PASID, "addr_info" / _ADDR),
)


def ours_from_user() -> object:
    return CacheInvalidateInfo.from_user(BUF, STRICT)


def ours_decode_and_check() -> object:
    info = CacheInvalidateInfo.from_bytes(BUF)
    checks.cache_invalidate_content(info, STRICT)
    return info


def ours_decode() -> object:
    return CacheInvalidateInfo.from_bytes(BUF)


INFO = CacheInvalidateInfo.from_bytes(BUF)


def ours_encode() -> object:
    return INFO.to_bytes()


def construct_decode() -> object:
    return CONSTRUCT.parse(BUF)


def per_call_us(fn: Callable[[], object], number: int) -> tuple[float, float, float]:
    """Median, first and third quartile of the per-call time over 15 repeats, in us."""
    runs = [t / number * 1e6 for t in timeit.repeat(fn, number=number, repeat=15)]
    q1, median, q3 = statistics.quantiles(runs, n=4)
    return median, q1, q3


def main() -> None:
    assert ctypes.sizeof(CInfo) == len(BUF) == 56
    assert ctypes_decode()[11] == ours_decode().granu.addr_info.addr  # type: ignore[attr-defined]
    cases = [
        ("ctypes from_buffer_copy + all fields", ctypes_decode, 20000),
        ("iommu-uapi from_user (ARGSZ, strict)", ours_from_user, 20000),
        ("iommu-uapi from_bytes + strict checks", ours_decode_and_check, 20000),
        ("iommu-uapi from_bytes only", ours_decode, 20000),
        ("iommu-uapi to_bytes", ours_encode, 20000),
        ("construct parse", construct_decode, 2000),
    ]
    spreads = {name: per_call_us(fn, n) for name, fn, n in cases}
    results = {name: spread[0] for name, spread in spreads.items()}
    base = results["ctypes from_buffer_copy + all fields"]
    print(f"{'case':<42} {'median us':>10} {'IQR us':>15} {'vs ctypes':>10}")
    for name, (us, q1, q3) in spreads.items():
        print(f"{name:<42} {us:>10.3f} {q1:>7.3f}-{q3:<7.3f} {us / base:>9.2f}x")
    target = results["iommu-uapi from_user (ARGSZ, strict)"]
    print(f"target: from_user <= 1.0 us and <= 2x ctypes: "
          f"{'met' if target <= 1.0 and target <= 2 * base else 'NOT met'}")


if __name__ == "__main__":
    main()

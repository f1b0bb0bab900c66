"""Cache geometries to start from: ``unbounded`` (every cache keeps everything: the default) and
``gem5-smmuv3`` (the defaults of gem5's SMMUv3 model).

gem5's ``src/dev/arm/SMMUv3.py`` declares, per device interface, a micro-TLB of 32 entries,
fully associative (``utlb_entries = 32``, ``utlb_assoc = 0``) and a main TLB of 2048 entries,
4-way (``tlb_entries``, ``tlb_assoc``); in the SMMU, a configuration cache of 64 entries, 4-way
(``cfg_entries``, ``cfg_assoc``), an IPA cache of 128 entries, 4-way, and walk caches sized per
stage and level (``walk_S1L0`` .. ``walk_S1L3`` = 4, 28, 348, 4; ``walk_S2L0`` .. ``walk_S2L3``
= 4, 28, 92, 4; ``walk_assoc = 4``). Every one of them replaces round-robin (``"rr"``), which is
FIFO here. Walk-cache levels are counted from the leaf in :class:`~.walk.WalkCache`: with four
levels, Arm's level L is level 4 - L.
"""

from __future__ import annotations

from typing import NamedTuple

from .replacement import UNBOUNDED, Geometry

__all__ = ["PRESETS", "CachePreset", "preset"]


class CachePreset(NamedTuple):
    """The geometry of each translation cache of a unit; walk caches by level (from the leaf)."""

    name: str
    micro_tlb: Geometry
    iotlb: Geometry
    config: Geometry
    ipa: Geometry
    walk_s1: dict[int, Geometry]
    walk_s2: dict[int, Geometry]
    devtlb: Geometry


def _walk(arm_sizes: tuple[int, int, int, int], ways: int) -> dict[int, Geometry]:
    """Arm levels 0..3 (4 KiB granule, four levels) -> levels from the leaf 4..1."""
    return {4 - arm: Geometry(n, ways, "fifo") for arm, n in enumerate(arm_sizes)}


PRESETS: dict[str, CachePreset] = {
    "unbounded": CachePreset("unbounded", UNBOUNDED, UNBOUNDED, UNBOUNDED, UNBOUNDED, {}, {},
                             UNBOUNDED),
    "gem5-smmuv3": CachePreset(
        "gem5-smmuv3",
        micro_tlb=Geometry(32, None, "fifo"),
        iotlb=Geometry(2048, 4, "fifo"),
        config=Geometry(64, 4, "fifo"),
        ipa=Geometry(128, 4, "fifo"),
        walk_s1=_walk((4, 28, 348, 4), 4),
        walk_s2=_walk((4, 28, 92, 4), 4),
        devtlb=Geometry(32, None, "fifo"),
    ),
}


def preset(name: str) -> CachePreset:
    """The preset called ``name`` (``KeyError`` listing the known ones otherwise)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"no cache preset {name!r}; known: {', '.join(PRESETS)}") from None

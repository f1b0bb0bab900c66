"""Arm SMMUv3 hardware model for iommu-uapi.

One module per hardware structure: :mod:`.idr` (ID registers and the capability set),
:mod:`.registers` (control registers), :mod:`.ste`, :mod:`.cd`, :mod:`.strtab` and
:mod:`.cdtable` (the configuration tables in memory), :mod:`.cmds` (command queue entries),
:mod:`.events` (event records), :mod:`.pri` (page requests).
"""

from __future__ import annotations

from .idr import SmmuCaps, caps_from_id_registers, id_registers

__all__ = ["SmmuCaps", "caps_from_id_registers", "id_registers"]

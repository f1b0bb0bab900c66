"""The test backend's guest PASID table (what the suite's PASID-table tests run against): stage 1
through the guest's table, bypassed or aborting; cached entries need a PASID-cache invalidation;
guest PASID binds and a PASID table exclude each other."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import minibackend
import pytest

from iommu_uapi import plugins
from iommu_uapi.features import CacheCell
from iommu_uapi.testing.conformance import refused_unchanged
from iommu_uapi.testing.harness import Harness
from iommu_uapi.testing.rule_cases import pasid_table_bytes
from iommu_uapi.translation import TranslationFault
from iommu_uapi.uapi import PasidTableConfig
from iommu_uapi.uapi.consts import CacheType, FaultReason, InvGranularity, PasidConfig

VA = 0x7F00_0000_1000


@pytest.fixture
def h() -> Iterator[Harness]:
    plugins.register_plugin("mini", minibackend)
    try:
        yield Harness("mini")
    finally:
        plugins.unregister_plugin("mini")


def attach_table(h: Harness, pasid_bits: int = 4) -> int:
    """A guest PASID table in guest RAM, attached to the harness domain; returns its GPA."""
    table = h.guest_page()
    cfg = PasidTableConfig.from_bytes(pasid_table_bytes())
    h.iommu.attach_pasid_table(h.domain, PasidTableConfig(
        argsz=32, version=1, base_ptr=table, format=1, pasid_bits=pasid_bits,
        config=PasidConfig.TRANSLATE, vendor_data=cfg.vendor_data))
    return table


def reason(h: Harness, pasid: int | None, va: int = VA) -> int:
    with pytest.raises(TranslationFault) as info:
        h.translate(va, pasid)
    assert info.value.fault is not None
    return int(info.value.fault.event.reason)


def test_stage_1_walks_the_guest_table_entry_of_the_pasid(h: Harness) -> None:
    gpa = h.gmap(VA)
    table = attach_table(h)
    assert reason(h, 3) == FaultReason.PASID_INVALID  # entry not valid yet
    h.guest.write64(table + 3 * 8, h.gpt.root | 1)  # type: ignore[union-attr]
    h.invalidate(Harness.inv_info(CacheCell(CacheType.PASID, InvGranularity.PASID), 3))
    tr = h.translate(VA + 0x10, 3)
    assert tr.paddr == h.hpa(gpa) + 0x10 and tr.config_reads == 2
    assert reason(h, 16) == FaultReason.PASID_INVALID  # beyond the table's 4 PASID bits
    assert h.translate(0x2000).paddr == h.hpa(0x2000)  # no PASID: stage 2 only


def test_a_changed_entry_needs_a_pasid_cache_invalidation(h: Harness) -> None:
    h.gmap(VA)
    table = attach_table(h)
    h.guest.write64(table + 8, h.gpt.root | 1)  # type: ignore[union-attr]
    h.translate(VA, 1)
    h.guest.write64(table + 8, 0)
    h.invalidate(Harness.inv_info(CacheCell(CacheType.IOTLB, InvGranularity.PASID), 1))
    h.translate(VA, 1)  # the context (the cached entry) still holds the old table root
    h.invalidate(Harness.inv_info(CacheCell(CacheType.PASID, InvGranularity.PASID), 1))
    assert reason(h, 1) == FaultReason.PASID_INVALID


def test_bypass_abort_and_detach(h: Harness) -> None:
    for config, no_pasid in ((PasidConfig.BYPASS, True), (PasidConfig.ABORT, False)):
        h.iommu.uapi_attach_pasid_table(h.domain, pasid_table_bytes(config=config))
        assert reason(h, 1) in (FaultReason.PASID_INVALID, FaultReason.BAD_PASID_ENTRY)
        if no_pasid:
            assert h.translate(0x2000).paddr == h.hpa(0x2000)
        else:
            assert reason(h, None, 0x2000) == FaultReason.BAD_PASID_ENTRY
    h.iommu.detach_pasid_table(h.domain)
    h.iommu.detach_pasid_table(h.domain)  # nothing attached: still succeeds
    assert h.translate(0x2000).paddr == h.hpa(0x2000)


def test_binds_and_a_pasid_table_exclude_each_other(h: Harness) -> None:
    pasid = h.vm.alloc()
    h.gmap(VA)
    h.bind(pasid)
    table = pasid_table_bytes(config=PasidConfig.BYPASS)
    assert refused_unchanged(h, lambda: h.iommu.uapi_attach_pasid_table(h.domain, table)) \
        == errno.EBUSY
    h.unbind(pasid)
    h.iommu.uapi_attach_pasid_table(h.domain, table)
    assert refused_unchanged(h, lambda: h.bind(pasid)) == errno.EBUSY


def test_the_registered_backend_declares_the_table_and_the_bare_class_does_not() -> None:
    from iommu_uapi.features import Feature
    from iommu_uapi.memory import PhysicalMemory

    assert not minibackend.MiniBackend(PhysicalMemory()).iommu_capabilities().features & \
        Feature.BIND_PASID_TABLE
    assert minibackend.MiniBackend(PhysicalMemory(), pasid_table=True).iommu_capabilities() \
        .features & Feature.BIND_PASID_TABLE

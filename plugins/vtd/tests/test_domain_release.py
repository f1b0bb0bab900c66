"""Freeing a domain frees every table of its host page table, the ones partial unmaps emptied
(which stay allocated while the domain lives, as in Linux) included."""

from __future__ import annotations

from iommu_uapi import PhysicalMemory
from iommu_uapi.iommu import IOMMU


def test_domain_free_returns_all_its_table_memory() -> None:
    mem = PhysicalMemory()
    iommu = IOMMU("vtd", memory=mem)
    dev = iommu.add_device(0x0300)
    first = iommu.domain_alloc()
    iommu.attach_device(first, dev)  # the context tables, which outlive the domain
    iommu.detach_device(first, dev)
    iommu.domain_free(first)
    before = mem.allocated_bytes
    domain = iommu.domain_alloc()
    iommu.attach_device(domain, dev)
    iommu.map(domain, 0x5000, 0x8000_0000, 0x1000, 3)  # type: ignore[arg-type]
    iommu.map(domain, 0x4000_0000, 0x8000_0000, 0x20_0000, 3)  # type: ignore[arg-type]
    assert iommu.unmap(domain, 0x5000, 0x1000) == 0x1000  # type: ignore[arg-type]
    assert mem.allocated_bytes > before  # the emptied tables stay while the domain lives
    iommu.detach_device(domain, dev)
    iommu.domain_free(domain)
    assert mem.allocated_bytes == before

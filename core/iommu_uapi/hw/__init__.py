"""Hardware machinery every backend builds from: bit-field records declared once
(:mod:`iommu_uapi.hw.bits`) and rings of fixed-size entries in memory
(:mod:`iommu_uapi.hw.ring`: invalidation, command, event and page-request queues)."""

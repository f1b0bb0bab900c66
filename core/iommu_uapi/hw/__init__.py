"""Hardware machinery every backend builds from: bit-field records declared once
(:mod:`iommu_uapi.hw.bits`), rings of fixed-size entries in memory (:mod:`iommu_uapi.hw.ring`:
invalidation, command, event and page-request queues) and the PCIe ATS encoding
(:mod:`iommu_uapi.hw.ats`)."""

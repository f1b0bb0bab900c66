"""Tests of the hardware machinery every backend shares (iommu_uapi.hw)."""

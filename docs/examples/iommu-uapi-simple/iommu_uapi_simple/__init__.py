"""simple: a single-stage IOMMU model for iommu-uapi (see docs/writing-a-backend.md)."""

"""The packaged conformance suite.

Run it with ``pytest --pyargs iommu_uapi.testing.suite --iommu-backend NAME``.
"""

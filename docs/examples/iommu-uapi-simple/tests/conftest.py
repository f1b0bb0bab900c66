"""Select this backend for the iommu-uapi conformance suite."""

import os

os.environ.setdefault("IOMMU_UAPI_BACKEND", "simple")

"""Intel VT-d (scalable mode) hardware model for iommu-uapi.

One module per hardware format: :mod:`.registers` (CAP/ECAP and the capability set),
:mod:`.root_entry`, :mod:`.context_entry`, :mod:`.pasid_dir`, :mod:`.pasid_entry`, :mod:`.tables`
(the tables in memory and the hardware lookup), :mod:`.caches`, :mod:`.qi` (invalidation
descriptors), :mod:`.iq` (the invalidation queue), :mod:`.status` (FSTS/FECTL/ICS/IECTL/IQERCD),
:mod:`.faults` (fault reasons and recording), :mod:`.prq` (page requests).
"""

from __future__ import annotations

from .registers import VtdConfig, cap_value, ecap_value, modern_server

__all__ = ["VtdConfig", "cap_value", "ecap_value", "modern_server"]

"""Page-table formats, io-pgtable style: ``x86`` (IA-32e = VT-d first level), ``vtd_sl`` (VT-d
second level), ``lpae`` (AArch64 stage 1 and 2), each split into its descriptor bits, its walker
(generic faults, ``walk`` and ``walk_partial``) and its builder (``map``/``map_pages``,
``unmap``/``unmap_pages``, ``iova_to_phys``, flush callbacks); ``common`` holds what they
share."""

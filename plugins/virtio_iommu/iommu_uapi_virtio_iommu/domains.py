"""Domains: an address space (its mappings) shared by the endpoints attached to it.

A domain exists from the first ATTACH naming its id until its last endpoint leaves (DETACH, a
re-ATTACH elsewhere, or a device reset); its id and mappings are then freed and the id may be
reused. A *bypass* domain (ATTACH flag BYPASS) has no mappings: its endpoints' accesses are not
translated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .mappings import MappingTable

if TYPE_CHECKING:
    from iommu_uapi.caches.iotlb import Fields

    from .tables import SharedTable

__all__ = ["Domain"]


class Domain:
    """Domain ``id``: its kind (``bypass``), its endpoints and its mappings; ``tag`` tags its
    IOTLB entries and ``bucket`` is the IOTLB's live bucket of that tag (the data path's one
    lookup); ``table`` the guest table it shares (:mod:`.tables`)."""

    __slots__ = ("bucket", "bypass", "endpoints", "id", "mappings", "table", "tag")

    def __init__(self, domain_id: int, *, bypass: bool, bucket: dict[int, Fields]) -> None:
        self.id = domain_id
        self.bypass = bypass
        self.endpoints: set[int] = set()
        self.mappings = MappingTable()
        self.tag: tuple[int] = (domain_id,)
        self.bucket = bucket
        #: the guest CD table the domain shares (``rfc2021``'s ATTACH_TABLE), or None
        self.table: SharedTable | None = None

    @property
    def kind(self) -> str:
        """``"bypass"`` or ``"translated"``."""
        return "bypass" if self.bypass else "translated"

    def __repr__(self) -> str:
        return (f"Domain({self.id}, {self.kind}, endpoints={sorted(self.endpoints)}, "
                f"mappings={len(self.mappings)})")

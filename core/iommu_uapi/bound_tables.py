"""Which guest table each host PASID of a domain is bound to, and ``strict``'s rule against
binding one PASID of a domain to two different tables.

A guest PASID bind makes requests with host PASID ``hpasid`` translate through the guest's
table over the domain's stage 2. The IOTLB of a nesting IOMMU tags what it caches by domain and
PASID, not by device (VT-d: DID and PASID; SMMUv3: VMID and ASID): two devices of one domain
bound to the same host PASID with different guest tables fill and hit the same entries, so each
reaches pages of the other's table. That is how the hardware works, and Linux 5.10 allowed it
(``intel_svm_bind_gpasid`` sets up a nested PASID entry per device with the ``gpgd`` of each
call, under the domain's DID), so ``linux-5.10`` keeps it. ``strict`` refuses the second bind
with ``EBUSY`` (rule ``bind.shared_pasid``): the PASID is in use in the domain with another
address space, and the call would succeed once that binding is gone. Binding the same table
again (same format, ``gpgd``, address width and vendor attributes) is allowed: the shared
entries are then the same translations.
"""

from __future__ import annotations

import errno

from .device import Device, Domain
from .errors import UAPIError
from .rules import STRICT
from .uapi import GpasidBindData, GpasidBindVendor

__all__ = ["REFUSING_PROFILES", "BoundTables", "GuestTable", "guest_table"]

#: The profiles that refuse binding a host PASID of a domain to a second, different table.
REFUSING_PROFILES: tuple[str, ...] = (STRICT,)

#: What a walk through a bound guest table depends on: format, gpgd, address width, vendor data.
GuestTable = tuple[int, int, int, GpasidBindVendor]


def guest_table(data: GpasidBindData) -> GuestTable:
    """The guest table ``data`` binds (everything of the record but the PASIDs, flags, sizes)."""
    return (data.format, data.gpgd, data.addr_width, data.vendor)


class BoundTables:
    """The guest table of every binding, by (domain id, host PASID) and then requester ID."""

    def __init__(self) -> None:
        self._tables: dict[tuple[int, int], dict[int, GuestTable]] = {}

    def check(self, domain: Domain, dev: Device, data: GpasidBindData, profile: str) -> None:
        """Under a refusing profile, ``EBUSY`` (``bind.shared_pasid``) when another device of
        ``domain`` has ``data.hpasid`` bound to a different guest table. Costs the devices
        bound to that PASID in the domain."""
        if profile not in REFUSING_PROFILES:
            return
        bound = self._tables.get((domain.id, data.hpasid))
        if not bound:
            return
        table = guest_table(data)
        for sid, other in bound.items():
            if sid != dev.sid and other != table:
                raise UAPIError(
                    errno.EBUSY, f"bind: host PASID {data.hpasid:#x} of domain {domain.id} is "
                    f"bound on device {sid:#06x} to guest table {other[1]:#x}; the IOTLB is "
                    f"tagged by domain and PASID, so {data.gpgd:#x} would share its entries",
                    rule="bind.shared_pasid")

    def add(self, domain: Domain, dev: Device, data: GpasidBindData) -> None:
        """Record that ``dev`` has ``data.hpasid`` bound to ``data``'s table in ``domain``."""
        self._tables.setdefault((domain.id, data.hpasid), {})[dev.sid] = guest_table(data)

    def remove(self, domain: Domain, sid: int, pasid: int) -> None:
        """Forget the binding of ``pasid`` on device ``sid`` in ``domain`` (if any)."""
        bound = self._tables.get((domain.id, pasid))
        if bound is not None:
            bound.pop(sid, None)
            if not bound:
                del self._tables[(domain.id, pasid)]

    def table_of(self, domain: Domain, sid: int, pasid: int) -> GuestTable | None:
        """The guest table ``pasid`` of device ``sid`` is bound to in ``domain``, or None."""
        return self._tables.get((domain.id, pasid), {}).get(sid)

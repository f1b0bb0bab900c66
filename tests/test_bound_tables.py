"""The core's isolation pieces: which ATC entries a PCIe invalidation request reaches, and the
guest table each host PASID of a domain is bound to (``strict``'s ``bind.shared_pasid``)."""

from __future__ import annotations

import errno

import pytest

from iommu_uapi.bound_tables import BoundTables, guest_table
from iommu_uapi.caches import DeviceTlbs, TLBEntry, ats_selection
from iommu_uapi.device import Device, Domain
from iommu_uapi.errors import UAPIError
from iommu_uapi.model_rules import MODEL_RULES_BY_ID
from iommu_uapi.uapi import GpasidBindData

DEV = 0x0100


def _atc() -> DeviceTlbs:
    tlbs = DeviceTlbs()
    atc = tlbs.enable(DEV)
    for pasid, iova in [(None, 0x1000), (5, 0x1000), (6, 0x1000), (5, 0x9000)]:
        atc.fill((pasid,), iova, TLBEntry(iova, 0x1000, 0x8000_0000 + iova, 3))
    return tlbs


def _left(tlbs: DeviceTlbs) -> set[tuple[int | None, int]]:
    return {(tag[0], e.iova) for tag, e in tlbs.tlbs[DEV]}


def test_ats_selection_follows_pcie() -> None:
    assert ats_selection(None) == () and ats_selection(5, global_invalidate=True) == ()
    assert ats_selection(5) == (5,)


def test_a_request_without_pasid_reaches_every_pasid_of_its_range() -> None:
    tlbs = _atc()
    assert tlbs.ats_invalidate(DEV, None, 0x1000, False) == 3
    assert _left(tlbs) == {(5, 0x9000)}


def test_a_request_with_pasid_reaches_that_pasid_unless_global() -> None:
    tlbs = _atc()
    assert tlbs.ats_invalidate(DEV, 5, 0x1000, False) == 1
    assert _left(tlbs) == {(None, 0x1000), (6, 0x1000), (5, 0x9000)}
    assert tlbs.ats_invalidate(DEV, 6, 0x1000, False, global_invalidate=True) == 2


def _data(gpgd: int, pasid: int = 7) -> GpasidBindData:
    return GpasidBindData(argsz=72, version=1, format=1, addr_width=48, gpgd=gpgd, hpasid=pasid)


def test_strict_refuses_a_second_table_for_a_pasid_of_the_domain() -> None:
    tables, dom, other = BoundTables(), Domain(1), Domain(2)
    a, b = Device(0x0100), Device(0x0208)
    tables.add(dom, a, _data(0x1000))
    with pytest.raises(UAPIError) as err:
        tables.check(dom, b, _data(0x2000), "strict")
    assert (err.value.errno, err.value.rule) == (errno.EBUSY, "bind.shared_pasid")
    assert MODEL_RULES_BY_ID["bind.shared_pasid"].errno == errno.EBUSY
    tables.check(dom, b, _data(0x1000), "strict")               # the same table
    tables.check(dom, b, _data(0x2000, pasid=8), "strict")      # another PASID
    tables.check(other, b, _data(0x2000), "strict")             # another domain
    tables.check(dom, b, _data(0x2000), "linux-5.10")           # the kernel binds it
    tables.check(dom, a, _data(0x2000), "strict")               # the device's own binding
    assert tables.table_of(dom, a.sid, 7) == guest_table(_data(0x1000))
    tables.remove(dom, a.sid, 7)
    tables.check(dom, b, _data(0x2000), "strict")
    assert tables.table_of(dom, a.sid, 7) is None

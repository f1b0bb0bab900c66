"""Guest cache invalidation (reference d.3): every cache type x granularity in both profiles -
which descriptors reach the invalidation queue and which cache entries go."""

from __future__ import annotations

import errno
from collections.abc import Callable

import pytest
from vtd_rig import GVA, RW, Rig, errno_of, inv_addr, inv_domain, inv_pasid

from iommu_uapi.uapi.consts import CacheType, InvGranularity
from iommu_uapi_vtd.invalidate import QI_GRANULARITY
from iommu_uapi_vtd.qi import (
    Descriptor,
    IotlbInv,
    PasidDevTlbInv,
    PasidIotlbInv,
    devtlb_size_encoding,
)

IOTLB, DEV, PASIDC = CacheType.IOTLB, CacheType.DEV_IOTLB, CacheType.PASID
GVA2 = GVA + 0x1000


class Setup:
    """A bound PASID with two translated pages in the IOTLB and the device's ATC."""

    def __init__(self, profile: str, ats: bool = True) -> None:
        self.rig = rig = Rig(profile=profile, ats=ats)
        rig.gpt.map(GVA2, rig.guest.alloc(), 0x1000, RW)
        self.p = rig.bind()
        self.other = rig.bind()
        for pasid in (self.p, self.other):
            rig.iommu.translate(rig.dev, GVA, pasid=pasid)
            rig.iommu.translate(rig.dev, GVA2, pasid=pasid)
        self.did = rig.domain.data.did
        self.n = rig.b.queue.executed

    def iotlb(self, pasid: int) -> set[int]:
        return {vpn for (tag, vpn) in self.rig.iommu.iotlb.entries
                if tag == ("fl", self.did, pasid)}

    def atc(self, pasid: int) -> set[int]:
        atc = self.rig.dev.atc
        return set() if atc is None else {v for (t, v) in atc.entries if t == (pasid,)}

    def submitted(self) -> list[Descriptor]:
        return self.rig.submitted(self.n)


def full_devtlb(sid: int, pasid: int) -> PasidDevTlbInv:
    addr, s = devtlb_size_encoding(0, 52)
    return PasidDevTlbInv(SID=sid, PASID=pasid, PFSID_LO=sid & 0xF, PFSID_HI=sid >> 4, S=s,
                          ADDR=addr)


def page_devtlb(sid: int, pasid: int, addr: int) -> PasidDevTlbInv:
    return PasidDevTlbInv(SID=sid, PASID=pasid, PFSID_LO=sid & 0xF, PFSID_HI=sid >> 4,
                          ADDR=addr)


PAGES = {GVA >> 12, GVA2 >> 12}
GRANUS: dict[InvGranularity, Callable[[int, int], bytes]] = {
    InvGranularity.DOMAIN: lambda cache, pasid: inv_domain(cache),
    InvGranularity.PASID: inv_pasid,
    InvGranularity.ADDR: lambda cache, pasid: inv_addr(cache, pasid, GVA),
}


def expected(s: Setup, cache: CacheType, granu: InvGranularity) -> tuple[
        list[Descriptor], set[int], set[int]]:
    """Descriptors, and the IOTLB and ATC pages of PASID p left, for one executed cell."""
    sid, p, did = s.rig.dev.sid, s.p, s.did
    if (cache, granu) == (IOTLB, InvGranularity.PASID):
        return [PasidIotlbInv(G=2, DID=did, PASID=p), full_devtlb(sid, p)], set(), set()
    if (cache, granu) == (IOTLB, InvGranularity.ADDR):
        return ([PasidIotlbInv(G=3, DID=did, PASID=p, ADDR=GVA), page_devtlb(sid, p, GVA)],
                {GVA2 >> 12}, {GVA2 >> 12})
    if (cache, granu) == (DEV, InvGranularity.ADDR):
        return [page_devtlb(sid, p, GVA)], PAGES, {GVA2 >> 12}
    raise AssertionError("not an executed cell")


CELLS = [(c, g) for c in (IOTLB, DEV, PASIDC) for g in InvGranularity]
#: Cells the header's table excludes: the core refuses them before the driver is called.
HEADER_INVALID = {(DEV, InvGranularity.DOMAIN), (PASIDC, InvGranularity.ADDR)}


@pytest.mark.parametrize(("cache", "granu"), CELLS, ids=[f"{c.name}x{g.name}" for c, g in CELLS])
@pytest.mark.parametrize("profile", ["linux-5.10", "strict"])
def test_every_cell_in_both_profiles(profile: str, cache: CacheType,
                                     granu: InvGranularity) -> None:
    s = Setup(profile)
    rig = s.rig
    pasid_cache = dict(rig.b.caches.pasid.entries)
    call = lambda: rig.iommu.uapi_cache_invalidate(  # noqa: E731
        rig.domain, rig.dev, GRANUS[granu](cache, s.p))
    if (cache, granu) in HEADER_INVALID:
        e = errno_of(call)
        assert (e.errno, e.rule) == (errno.EINVAL, "cache_invalidate.cache_granularity")
        assert s.submitted() == []
        assert (s.iotlb(s.p), s.atc(s.p)) == (PAGES, PAGES)
    elif QI_GRANULARITY[(cache, granu)] is None:
        if profile == "strict":
            e = errno_of(call)
            assert (e.errno, e.rule) == (errno.EINVAL, "vtd.cache_invalidate.cell")
        else:
            call()      # the driver's silent success
        assert s.submitted() == []
        assert (s.iotlb(s.p), s.atc(s.p)) == (PAGES, PAGES)
    else:
        call()
        descs, iotlb_left, atc_left = expected(s, cache, granu)
        assert s.submitted() == descs
        assert (s.iotlb(s.p), s.atc(s.p)) == (iotlb_left, atc_left)
    # other PASIDs and the configuration caches are never touched
    assert (s.iotlb(s.other), s.atc(s.other)) == (PAGES, PAGES)
    assert rig.b.caches.pasid.entries == pasid_cache


def test_linux_breaks_out_at_a_refused_bit_and_skips_the_rest() -> None:
    s = Setup("linux-5.10")
    s.rig.iommu.uapi_cache_invalidate(s.rig.domain, s.rig.dev,
                                      inv_pasid(IOTLB | DEV | PASIDC, s.p))
    # IOTLB (+ the device-TLB fall-through) done; DEV_IOTLB x PASID ends the loop
    assert s.submitted() == [PasidIotlbInv(G=2, DID=s.did, PASID=s.p),
                             full_devtlb(s.rig.dev.sid, s.p)]


def test_strict_refuses_a_mixed_request_before_executing_anything() -> None:
    s = Setup("strict")
    before = s.rig.state(s.p)
    e = errno_of(lambda: s.rig.iommu.uapi_cache_invalidate(
        s.rig.domain, s.rig.dev, inv_pasid(IOTLB | DEV, s.p)))
    assert e.errno == errno.EINVAL and "DEV_IOTLB x PASID" in str(e)
    assert s.rig.state(s.p) == before


def test_iotlb_and_dev_iotlb_by_address_send_the_device_two_invalidations() -> None:
    s = Setup("linux-5.10")
    s.rig.iommu.uapi_cache_invalidate(s.rig.domain, s.rig.dev, inv_addr(IOTLB | DEV, s.p, GVA))
    sid = s.rig.dev.sid
    assert s.submitted() == [PasidIotlbInv(G=3, DID=s.did, PASID=s.p, ADDR=GVA),
                             page_devtlb(sid, s.p, GVA), page_devtlb(sid, s.p, GVA)]


def test_without_ats_no_device_tlb_descriptor() -> None:
    s = Setup("linux-5.10", ats=False)
    rig = s.rig
    rig.iommu.uapi_cache_invalidate(rig.domain, rig.dev, inv_pasid(IOTLB, s.p))
    rig.iommu.uapi_cache_invalidate(rig.domain, rig.dev, inv_addr(DEV, s.p, GVA))
    assert s.submitted() == [PasidIotlbInv(G=2, DID=s.did, PASID=s.p)]
    assert s.iotlb(s.p) == set()


def test_address_range_mask_leaf_and_alignment() -> None:
    s = Setup("linux-5.10", ats=False)
    rig = s.rig
    rig.iommu.uapi_cache_invalidate(rig.domain, rig.dev,
                                    inv_addr(IOTLB, s.p, GVA2, pages=3, leaf=True))
    # 3 pages -> AM 2 (4 pages), address aligned down to 16 KiB, IH from LEAF
    assert s.submitted() == [PasidIotlbInv(G=3, DID=s.did, PASID=s.p, AM=2, IH=True,
                                           ADDR=GVA)]
    assert s.iotlb(s.p) == set()


def test_pasid_flag_clear_means_pasid_0() -> None:
    s = Setup("linux-5.10", ats=False)
    rig = s.rig
    rig.iommu.uapi_cache_invalidate(rig.domain, rig.dev, inv_addr(IOTLB, s.p, GVA, flags=0))
    assert s.submitted() == [PasidIotlbInv(G=3, DID=s.did, PASID=0, ADDR=GVA)]
    assert s.iotlb(s.p) == PAGES          # PASID 0 is not the guest's PASID: nothing went


def test_range_beyond_mamv_is_lost_in_linux_and_widened_in_strict() -> None:
    s = Setup("linux-5.10", ats=False)
    rig = s.rig
    rig.iommu.uapi_cache_invalidate(rig.domain, rig.dev, inv_addr(IOTLB, s.p, GVA, pages=1024))
    assert [type(d) for d in rig.b.queue.lost] == [PasidIotlbInv]
    assert rig.b.queue.lost[0].AM == 10      # type: ignore[attr-defined]
    assert s.iotlb(s.p) == PAGES               # refused by the hardware: stale
    assert not rig.b.status.fsts_get("IQE")    # the driver recovered the queue
    st = Setup("strict", ats=False)
    st.rig.iommu.uapi_cache_invalidate(st.rig.domain, st.rig.dev,
                                       inv_addr(IOTLB, st.p, GVA, pages=1024))
    assert st.submitted() == [IotlbInv(G=2, DID=st.did)]
    assert st.iotlb(st.p) == set() and st.iotlb(st.other) == set()


def test_cache_invalidate_needs_a_nesting_domain() -> None:
    rig = Rig()
    plain = rig.iommu.domain_alloc()
    dev = rig.iommu.add_device(0x0400)
    rig.iommu.attach_device(plain, dev)
    e = errno_of(lambda: rig.iommu.uapi_cache_invalidate(plain, dev, inv_pasid(IOTLB, 1)))
    assert (e.errno, e.rule) == (errno.EINVAL, "vtd.cache_invalidate.not_nesting")


def test_cache_invalidate_of_an_unattached_device() -> None:
    rig = Rig()
    dev = rig.iommu.add_device(0x0400)
    e = errno_of(lambda: rig.iommu.uapi_cache_invalidate(rig.domain, dev, inv_pasid(IOTLB, 1)))
    assert (e.errno, e.rule) == (errno.EINVAL, "vtd.cache_invalidate.not_attached")


def test_cache_invalidate_of_a_non_pci_device_is_enodev() -> None:
    rig = Rig()
    dev = rig.iommu.add_device(0x0400, pci=False)
    rig.iommu.attach_device(rig.domain, dev)
    e = errno_of(lambda: rig.iommu.uapi_cache_invalidate(rig.domain, dev, inv_pasid(IOTLB, 1)))
    assert (e.errno, e.rule) == (errno.ENODEV, "vtd.cache_invalidate.not_pci")

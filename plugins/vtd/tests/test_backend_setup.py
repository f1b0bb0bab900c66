"""The vtd backend's discovery, configuration, capabilities, domains, attach and nesting info."""

from __future__ import annotations

import errno

import pytest
from vtd_rig import RW, Rig, errno_of

from iommu_uapi import FeatureError, PhysicalMemory
from iommu_uapi.features import CacheCell, Feature
from iommu_uapi.iommu import IOMMU
from iommu_uapi.plugins import get_backend
from iommu_uapi.uapi import NestingInfo
from iommu_uapi.uapi.consts import CacheType, InvGranularity
from iommu_uapi_vtd.backend import VtdBackend
from iommu_uapi_vtd.context_entry import ContextEntry
from iommu_uapi_vtd.pasid_entry import PasidEntry, Pgtt
from iommu_uapi_vtd.qi import ContextCacheInv, IotlbInv, PasidCacheInv, PasidIotlbInv
from iommu_uapi_vtd.registers import Cap, Ecap, decode_cap, decode_ecap


def test_discovered_through_the_entry_point() -> None:
    spec = get_backend("vtd")
    assert spec.factory is VtdBackend
    assert spec.distribution == "iommu-uapi-vtd"
    iommu = IOMMU("vtd")
    assert isinstance(iommu.backend, VtdBackend)
    assert iommu.backend.iommu is iommu
    assert iommu.backend.caches.iotlb is iommu.iotlb


def test_config_keys_reach_cap_and_ecap() -> None:
    b = VtdBackend(PhysicalMemory(), five_level=True, caching_mode=True, nd=2, prs=False)
    cap, ecap = decode_cap(b.cap), decode_ecap(b.ecap)
    assert (cap.FL5LP, cap.CM, cap.ND, cap.MGAW, ecap.PRS) == (True, True, 2, 56, False)
    caps = b.capabilities
    assert caps.input_address_widths == (48, 57)
    assert caps.output_address_width == 57
    assert not caps.features & Feature.PAGE_REQUEST


def test_unknown_config_key_is_einval_naming_it() -> None:
    err = errno_of(lambda: VtdBackend(PhysicalMemory(), warp_drive=True, nd=1))
    assert err.errno == errno.EINVAL
    assert "warp_drive" in str(err) and "nd," not in str(err)


def test_capabilities_declare_only_executed_cells() -> None:
    iommu = IOMMU("vtd")
    caps = iommu.capabilities
    assert caps.features == (Feature.SYSWIDE_PASID | Feature.BIND_PGTBL | Feature.CACHE_INVLD
                             | Feature.PAGE_REQUEST)
    assert caps.cache_cells == {CacheCell(CacheType.IOTLB, InvGranularity.PASID),
                                CacheCell(CacheType.IOTLB, InvGranularity.ADDR),
                                CacheCell(CacheType.DEV_IOTLB, InvGranularity.ADDR)}
    assert caps.pasid_bits == 20 and caps.formats == (1,)
    assert caps.page_sizes == 0x1000 | 0x20_0000 | 0x4000_0000
    assert set(caps.failure_reporting) == {"cache_invalidate", "sva_unbind_gpasid",
                                           "free_pasid"}
    iommu.negotiate(Feature.BIND_PGTBL, [(CacheType.IOTLB, InvGranularity.ADDR)])
    with pytest.raises(FeatureError) as info:
        iommu.negotiate(0, [(CacheType.PASID, InvGranularity.PASID),
                            (CacheType.IOTLB, InvGranularity.DOMAIN)])
    assert "PASIDxPASID" in str(info.value) and "IOTLBxDOMAIN" in str(info.value)


def test_page_sizes_follow_sllps() -> None:
    assert IOMMU("vtd", sllps=1).capabilities.page_sizes == 0x1000 | 0x20_0000


def test_domain_ids_exhaust_with_enospc_and_did_0_reserved() -> None:
    iommu = IOMMU("vtd", nd=0)          # 16 domain ids, 0 reserved
    domains = [iommu.domain_alloc() for _ in range(15)]
    assert sorted(d.data.did for d in domains) == list(range(1, 16))
    assert errno_of(iommu.domain_alloc).errno == errno.ENOSPC
    iommu.domain_free(domains[3])
    assert iommu.domain_alloc().data.did == 4


def test_set_nesting_needs_smts_and_nest() -> None:
    iommu = IOMMU("vtd", nest=False)
    domain = iommu.domain_alloc()
    assert errno_of(lambda: iommu.set_nesting(domain)).errno == errno.ENODEV
    assert not domain.nesting and not domain.data.nesting


def test_set_nesting_after_attach_is_enodev() -> None:
    iommu = IOMMU("vtd")
    domain = iommu.domain_alloc()
    iommu.attach_device(domain, iommu.add_device(0x10))
    assert errno_of(lambda: iommu.set_nesting(domain)).errno == errno.ENODEV


def test_attach_programs_context_and_rid_pasid_entries() -> None:
    rig = Rig(ats=True)
    ctx = rig.b.tables.read_context(rig.dev.sid)
    assert ctx is not None
    assert (ctx.P, ctx.PASIDE, ctx.DTE, ctx.PRE, ctx.PDTS, ctx.RID_PASID) == (
        True, True, True, True, 7, 0)
    entry = rig.b.tables.read_pasid(rig.dev.sid, 0)
    assert entry is not None
    d = rig.domain.data
    want = {"P": True, "PGTT": Pgtt.SECOND_LEVEL, "DID": d.did, "SLPTPTR": d.pt.root, "AW": 2}
    assert {k: v for k, v in entry.describe().items() if k in want} == want
    # no ATS/PRI: neither DTE nor PRE
    dev = rig.iommu.add_device(0x0308)
    dom = rig.iommu.domain_alloc()
    rig.iommu.attach_device(dom, dev)
    ctx2 = rig.b.tables.read_context(dev.sid)
    assert ctx2 is not None and (ctx2.DTE, ctx2.PRE) == (False, False)


def test_attach_without_caching_mode_issues_no_invalidation() -> None:
    iommu = IOMMU("vtd")
    domain = iommu.domain_alloc()
    iommu.attach_device(domain, iommu.add_device(0x10))
    assert not iommu.backend.queue.log  # type: ignore[attr-defined]


def test_attach_in_caching_mode_flushes_through_the_queue() -> None:
    iommu = IOMMU("vtd", caching_mode=True)
    domain = iommu.domain_alloc()
    iommu.attach_device(domain, iommu.add_device(0x10))
    did = domain.data.did
    descs = [r.descriptor for r in iommu.backend.queue.log]  # type: ignore[attr-defined]
    assert descs == [ContextCacheInv(G=3, DID=0, SID=0x10), IotlbInv(G=2, DID=did, DW=True,
                                                                     DR=True),
                     PasidCacheInv(G=1, DID=did, PASID=0), PasidIotlbInv(G=2, DID=did, PASID=0)]


def test_detach_tears_down_and_flushes() -> None:
    rig = Rig()
    rig.iommu.translate(rig.dev, 0x1000)
    sid, did = rig.dev.sid, rig.domain.data.did
    assert sid in rig.b.caches.context.entries and len(rig.iommu.iotlb) == 1
    n = rig.b.queue.executed
    rig.iommu.detach_device(rig.domain, rig.dev)
    assert rig.submitted(n) == [PasidCacheInv(G=1, DID=did, PASID=0),
                                PasidIotlbInv(G=2, DID=did, PASID=0),
                                ContextCacheInv(G=3, DID=did, SID=sid),
                                IotlbInv(G=2, DID=did, DW=True, DR=True)]
    ctx = rig.b.tables.read_context(sid)
    assert ctx is not None and not ctx.P
    assert not rig.b.caches.context.entries and not rig.b.caches.pasid.entries
    assert len(rig.iommu.iotlb) == 0


def test_map_unmap_and_page_selective_flush() -> None:
    rig = Rig(ats=True)
    rig.iommu.translate(rig.dev, 0x3000)
    assert rig.iommu.iova_to_phys(rig.domain, 0x3010) == 0x4000_3010
    n = rig.b.queue.executed
    assert rig.iommu.unmap(rig.domain, 0x3000, 0x1000) == 0x1000
    log = rig.submitted(n)
    assert log[0] == IotlbInv(G=3, DID=rig.domain.data.did, DW=True, DR=True, AM=0,
                              ADDR=0x3000)
    assert type(log[1]).__name__ == "DevTlbInv"
    assert log[1].describe()["SID"] == rig.dev.sid
    assert len(rig.iommu.iotlb) == 0 and not rig.dev.atc.entries  # type: ignore[union-attr]
    assert rig.iommu.iova_to_phys(rig.domain, 0x3010) == 0
    assert rig.iommu.unmap(rig.domain, 0x3000, 0x1000) == 0
    assert rig.b.queue.executed == n + 2   # nothing unmapped, nothing flushed


def test_map_beyond_the_domain_width_is_einval() -> None:
    rig = Rig()
    err = errno_of(lambda: rig.iommu.map(rig.domain, 1 << 48, 0x1000, 0x1000, RW))
    assert err.errno == errno.EINVAL


def test_nesting_info_as_the_intel_driver_reports_it() -> None:
    rig = Rig()
    info = rig.iommu.nesting_info(rig.domain)
    assert info is not None
    cap, ecap = rig.b.cap, rig.b.ecap
    fl = Cap.LAYOUT["FL1GP"].mask | Cap.LAYOUT["FL5LP"].mask
    em = sum(Ecap.LAYOUT[n].mask for n in ("PRS", "ERS", "SRS", "EAFS", "PASID"))
    assert (info.argsz, info.format, info.features, info.addr_width, info.pasid_bits) == (
        64, 1, 0b11, 48, 20)
    assert info.vendor.vtd.cap_reg == cap & fl != 0
    assert info.vendor.vtd.ecap_reg == ecap & em != 0
    ubuf = bytearray(NestingInfo.SIZE)
    ubuf[:4] = (64).to_bytes(4, "little")
    rig.iommu.nesting_info(rig.domain, ubuf)
    assert bytes(ubuf) == info.to_bytes()


def test_nesting_info_of_a_non_nesting_domain_is_enodev() -> None:
    rig = Rig()
    plain = rig.iommu.domain_alloc()
    assert errno_of(lambda: rig.iommu.nesting_info(plain)).errno == errno.ENODEV


def test_rid_pasid_entry_is_a_real_512_bit_entry() -> None:
    rig = Rig()
    raw = rig.pasid_entry(0)
    entry = PasidEntry.from_bytes(raw)
    assert entry.to_bytes() == raw and entry.PGTT == Pgtt.SECOND_LEVEL
    ctx = rig.b.tables.read_context(rig.dev.sid)
    assert isinstance(ctx, ContextEntry)

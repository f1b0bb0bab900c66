"""Guest PASID bind and unbind (reference d.1, d.2): every check of the driver, in its order, with
its errno, and nothing changed by a refusal; the nested PASID entry a bind writes."""

from __future__ import annotations

import errno
from typing import Any

import pytest
from vtd_rig import GVA, Rig, bind_data, errno_of

from iommu_uapi.errors import ENOTSUPP
from iommu_uapi.iommu import IOMMU
from iommu_uapi.pasid import PasidSpace
from iommu_uapi.translation import TranslationFault
from iommu_uapi.uapi.consts import VtdGpasidFlags
from iommu_uapi_vtd.pasid_entry import Flpm, PasidEntry, Pgtt, second_level_entry
from iommu_uapi_vtd.qi import InvWait, PasidCacheInv, PasidDevTlbInv, PasidIotlbInv


def refused(rig: Rig, pasid: int, call: Any, err: int, rule: str) -> None:
    """``call`` fails with ``err`` by the backend rule ``rule`` and changes nothing."""
    before = rig.state(pasid)
    e = errno_of(call)
    assert (e.errno, e.rule) == (err, rule), str(e)
    assert rig.state(pasid) == before


def hook_bind(rig: Rig, pasid: int, argsz: int = 80, **kw: Any) -> Any:
    data = bind_data(pasid, rig.gpt.root, **kw)
    return lambda: rig.b.iommu_sva_bind_gpasid(domain=rig.domain, dev=rig.dev, data=data,
                                               argsz=argsz, profile="linux-5.10")


def uapi_bind(rig: Rig, pasid: int, dev: Any = None, gpgd: int | None = None,
              **kw: Any) -> Any:
    data = bind_data(pasid, rig.gpt.root if gpgd is None else gpgd, **kw).to_bytes()
    return lambda: rig.iommu.uapi_sva_bind_gpasid(rig.domain, dev or rig.dev, data)


# -- d.1 in the driver's order ------------------------------------------------------------------


def test_1_format_other_than_intel_vtd() -> None:
    rig = Rig()
    p = rig.vm.alloc()
    refused(rig, p, hook_bind(rig, p, format=2), errno.EINVAL, "vtd.bind.format")


def test_2_argsz_below_the_end_of_vendor_vtd() -> None:
    rig = Rig()
    p = rig.vm.alloc()
    refused(rig, p, hook_bind(rig, p, argsz=71), errno.EINVAL, "vtd.bind.argsz")
    hook_bind(rig, p, argsz=72)()     # exactly offsetofend(vendor.vtd) is enough


def test_3_vendor_flags_outside_0x3f() -> None:
    rig = Rig()
    p = rig.vm.alloc()
    refused(rig, p, hook_bind(rig, p, vflags=0x40), errno.EINVAL, "vtd.bind.vtd_flags")


def test_4_non_pci_device_is_enotsupp() -> None:
    rig = Rig()
    dev = rig.iommu.add_device(0x0400, pci=False)
    rig.iommu.attach_device(rig.domain, dev)
    p = rig.vm.alloc()
    refused(rig, p, uapi_bind(rig, p, dev), ENOTSUPP, "vtd.bind.not_pci")


def test_5_device_without_2_pow_20_pasids() -> None:
    rig = Rig()
    dev = rig.iommu.add_device(0x0400, max_pasids=1 << 16)
    rig.iommu.attach_device(rig.domain, dev)
    p = rig.vm.alloc()
    refused(rig, p, uapi_bind(rig, p, dev), errno.EINVAL, "vtd.bind.max_pasids")


@pytest.mark.parametrize("hpasid", [0, 1 << 20, 1 << 32])
def test_6_hpasid_outside_1_to_2_pow_20(hpasid: int) -> None:
    rig = Rig()
    refused(rig, 1, hook_bind(rig, hpasid), errno.EINVAL, "vtd.bind.hpasid")


def test_7_device_not_attached() -> None:
    rig = Rig()
    dev = rig.iommu.add_device(0x0400)
    p = rig.vm.alloc()
    refused(rig, p, uapi_bind(rig, p, dev), errno.EINVAL, "vtd.bind.not_attached")


def test_8_hpasid_not_allocated_is_enoent() -> None:
    rig = Rig()
    refused(rig, 77, uapi_bind(rig, 77), errno.ENOENT, "pasid.allocated")


def test_8_hpasid_outside_the_ioasid_space_is_einval() -> None:
    rig = Rig()
    rig.iommu.pasids = PasidSpace(16)
    refused(rig, 0x10000, uapi_bind(rig, 0x10000), errno.EINVAL, "pasid.range")


def test_9_already_bound_is_ebusy() -> None:
    rig = Rig()
    p = rig.bind()
    refused(rig, p, uapi_bind(rig, p), errno.EBUSY, "vtd.bind.busy")


def test_10_unit_without_nest() -> None:
    iommu = IOMMU("vtd", nest=False)
    b: Any = iommu.backend
    dev = iommu.add_device(0x10)
    domain = iommu.domain_alloc()
    iommu.attach_device(domain, dev)
    p = iommu.pasid_set("vm", 4).alloc()
    e = errno_of(lambda: b.iommu_sva_bind_gpasid(domain=domain, dev=dev, data=bind_data(p, 0),
                                                 argsz=80, profile="linux-5.10"))
    assert (e.errno, e.rule) == (errno.EINVAL, "vtd.bind.no_nest")
    entry = b.tables.read_pasid(dev.sid, p)
    assert entry is None or not entry.P


def test_11_domain_not_in_nesting_mode() -> None:
    rig = Rig()
    plain = rig.iommu.domain_alloc()
    dev = rig.iommu.add_device(0x0400)
    rig.iommu.attach_device(plain, dev)
    p = rig.vm.alloc()
    before = rig.state(p)
    e = errno_of(lambda: rig.iommu.uapi_sva_bind_gpasid(
        plain, dev, bind_data(p, rig.gpt.root).to_bytes()))
    assert (e.errno, e.rule) == (errno.EINVAL, "vtd.bind.not_nesting")
    assert rig.state(p) == before


def test_12_present_pasid_entry_is_ebusy() -> None:
    rig = Rig()
    p = rig.vm.alloc()
    rig.b.tables.set_pasid(rig.dev.sid, p, second_level_entry(
        rig.b.cfg, did=9, slptptr=rig.domain.data.pt.root, aw=2))
    refused(rig, p, uapi_bind(rig, p), errno.EBUSY, "vtd.bind.entry_present")


@pytest.mark.parametrize("width", [0, 39, 47, 56, 64])
def test_13_addr_width_not_48_or_57(width: int) -> None:
    rig = Rig()
    p = rig.vm.alloc()
    refused(rig, p, uapi_bind(rig, p, addr_width=width), errno.EINVAL, "vtd.bind.addr_width")


def test_13_addr_width_57_needs_fl5lp() -> None:
    rig = Rig()
    p = rig.vm.alloc()
    refused(rig, p, uapi_bind(rig, p, addr_width=57), errno.EINVAL, "vtd.bind.addr_width")
    five = Rig(five_level=True)
    p5 = five.bind(addr_width=57)
    entry = PasidEntry.from_bytes(five.pasid_entry(p5))
    assert (entry.FLPM, entry.AW) == (Flpm.LEVEL5, 3)


def test_14_gpgd_beyond_the_domain_max_addr() -> None:
    rig = Rig()
    p = rig.vm.alloc()
    top = rig.domain.data.max_addr
    refused(rig, p, uapi_bind(rig, p, gpgd=top + 0x1000), errno.EINVAL, "vtd.bind.gpgd")


def test_15_sre_without_srs() -> None:
    rig = Rig(srs=False)
    p = rig.vm.alloc()
    refused(rig, p, uapi_bind(rig, p, vflags=VtdGpasidFlags.SRE), errno.EINVAL,
            "vtd.bind.sre")


def test_16_eafe_without_eafs() -> None:
    rig = Rig(eafs=False)
    p = rig.vm.alloc()
    refused(rig, p, uapi_bind(rig, p, vflags=VtdGpasidFlags.EAFE), errno.EINVAL,
            "vtd.bind.eafe")


@pytest.mark.parametrize("flag", [VtdGpasidFlags.PCD, VtdGpasidFlags.PWT, VtdGpasidFlags.EMTE,
                                  VtdGpasidFlags.CD])
def test_17_memory_type_flags(flag: int) -> None:
    rig = Rig()
    p = rig.vm.alloc()
    refused(rig, p, uapi_bind(rig, p, vflags=flag), errno.EINVAL, "vtd.bind.memory_type")


def test_checks_run_in_the_driver_order() -> None:
    """A bind breaking two rules is refused by the earlier one."""
    rig = Rig()
    e = errno_of(hook_bind(rig, 0, argsz=10, format=2))
    assert e.rule == "vtd.bind.format"
    e = errno_of(uapi_bind(rig, 99, addr_width=39))          # not allocated before width
    assert e.rule == "pasid.allocated"


def test_bind_writes_the_nested_entry_and_flushes_the_pasid_cache() -> None:
    rig = Rig()
    n = rig.b.queue.executed
    p = rig.bind(vflags=VtdGpasidFlags.SRE | VtdGpasidFlags.EAFE)
    d = rig.domain.data
    entry = PasidEntry.from_bytes(rig.pasid_entry(p))
    want = {"P": True, "PGTT": Pgtt.NESTED, "FLPTPTR": rig.gpt.root, "SLPTPTR": d.pt.root,
            "DID": d.did, "AW": 2, "FLPM": Flpm.LEVEL4, "SRE": True, "EAFE": True,
            "FPD": False}
    assert {k: v for k, v in entry.describe().items() if k in want} == want
    assert rig.submitted(n) == [PasidCacheInv(G=1, DID=d.did, PASID=p)]
    assert rig.iommu.bound_pasids(rig.dev) == [p]


def test_bind_in_caching_mode_also_flushes_the_pasid_iotlb() -> None:
    rig = Rig(caching_mode=True)
    n = rig.b.queue.executed
    p = rig.bind()
    did = rig.domain.data.did
    assert rig.submitted(n) == [PasidCacheInv(G=1, DID=did, PASID=p),
                                PasidIotlbInv(G=2, DID=did, PASID=p)]


# -- d.2 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pasid", [0, 1 << 20])
def test_unbind_pasid_outside_the_space_is_einval(pasid: int) -> None:
    rig = Rig()
    p = rig.bind()
    before = rig.state(p)
    e = errno_of(lambda: rig.iommu.sva_unbind_gpasid(rig.domain, rig.dev, pasid))
    assert (e.errno, e.rule) == (errno.EINVAL, "pasid.range")
    assert rig.state(p) == before


def test_unbind_not_allocated_is_enoent() -> None:
    rig = Rig()
    p = rig.bind()
    before = rig.state(p)
    e = errno_of(lambda: rig.iommu.sva_unbind_gpasid(rig.domain, rig.dev, 500))
    assert e.errno == errno.ENOENT
    assert rig.state(p) == before


def test_unbind_not_bound_succeeds_and_changes_nothing() -> None:
    rig = Rig()
    p = rig.bind()
    other = rig.vm.alloc()
    before = rig.state(p, other)
    rig.iommu.sva_unbind_gpasid(rig.domain, rig.dev, other)
    assert rig.state(p, other) == before


def test_unbind_tears_down_flushes_and_drains() -> None:
    rig = Rig(ats=True)
    p = rig.bind()
    rig.iommu.translate(rig.dev, GVA, pasid=p)
    assert rig.dev.atc is not None and rig.dev.atc.entries
    assert any(t == ("fl", rig.domain.data.did, p) for t in rig.iommu.iotlb.tags())
    n = rig.b.queue.executed
    rig.iommu.uapi_sva_unbind_gpasid(rig.domain, rig.dev,
                                     bind_data(p, rig.gpt.root).to_bytes())
    did = rig.domain.data.did
    log = rig.submitted(n)
    assert log[:2] == [PasidCacheInv(G=1, DID=did, PASID=p),
                       PasidIotlbInv(G=2, DID=did, PASID=p)]
    assert isinstance(log[2], PasidDevTlbInv)
    assert log[2].describe()["SID"] == rig.dev.sid
    assert log[2].describe()["PASID"] == p and log[2].describe()["S"]
    assert isinstance(log[3], InvWait) and log[3].PD
    assert rig.pasid_entry(p) == bytes(64)
    assert not rig.iommu.iotlb.tags() or all(t[2] != p for t in rig.iommu.iotlb.tags())
    assert not rig.dev.atc.entries
    with pytest.raises(TranslationFault):
        rig.iommu.translate(rig.dev, GVA, pasid=p)
    assert rig.iommu.bound_pasids(rig.dev) == []
    rig.iommu.sva_unbind_gpasid(rig.domain, rig.dev, p)        # twice: success, nothing
    rig.bind()                                                 # the entry can be reused


def test_free_pasid_unbinds_first() -> None:
    rig = Rig()
    p = rig.bind()
    rig.iommu.free_pasid(p)
    assert rig.pasid_entry(p) == bytes(64) and not rig.b.binds

"""Every check of c.7 (the core) and d.5 (the driver) with its errno and rule, in both
profiles, through the user-bytes entry points; the commands each accepted call issues."""

from __future__ import annotations

import errno

import pytest
from backend_rig import VA, Rig, addr_inv, domain_inv, pasid_inv, table_config

from iommu_uapi.errors import UAPIError
from iommu_uapi.features import Feature
from iommu_uapi.uapi.consts import CacheType, PasidConfig
from iommu_uapi_smmu.cmds import (
    AtcInv,
    CfgiCd,
    CfgiCdAll,
    TlbiNhAll,
    TlbiNhAsid,
    TlbiNhVa,
    TlbiNsnhAll,
)

EINVAL, ENOENT, EFAULT, ENODEV = errno.EINVAL, errno.ENOENT, errno.EFAULT, errno.ENODEV


def _refused(rig: Rig, call: object) -> UAPIError:
    before = (rig.backend.host.read_ste(rig.dev.sid), rig.domain.data.s1,
              rig.domain.data.abort, rig.backend.host.issued)
    with pytest.raises(UAPIError) as info:
        call()  # type: ignore[operator]
    after = (rig.backend.host.read_ste(rig.dev.sid), rig.domain.data.s1,
             rig.domain.data.abort, rig.backend.host.issued)
    assert after == before
    return info.value


# -- attach_pasid_table: c.7 then d.5 ---------------------------------------------------------

#: (bytes of the record, errno, rule) refused by the core in the kernel's order (c.7)
_CORE = [
    (table_config().to_bytes()[:20], EFAULT, "attach_pasid_table.copy_minsz"),
    (table_config(argsz=20).to_bytes(), EINVAL, "attach_pasid_table.argsz_minsz"),
    (table_config(version=2).to_bytes(), EINVAL, "attach_pasid_table.version"),
    (table_config(argsz=24).to_bytes()[:24], EINVAL, "attach_pasid_table.argsz_format"),
    (table_config(config=4).to_bytes(), EINVAL, "attach_pasid_table.config_range"),
    (table_config(config=0).to_bytes(), EINVAL, "attach_pasid_table.config_range"),
]


@pytest.mark.parametrize("profile", ["linux-5.10", "strict"])
@pytest.mark.parametrize(("data", "err", "rule"), _CORE, ids=[c[2] + str(i) for i, c in
                                                               enumerate(_CORE)])
def test_core_checks_of_attach(profile: str, data: bytes, err: int, rule: str) -> None:
    rig = Rig(profile, attach=False)
    e = _refused(rig, lambda: rig.iommu.uapi_attach_pasid_table(rig.domain, data))
    assert (e.errno, e.rule) == (err, rule)


_BITS = "smmu.attach_table.pasid_bits"
#: (fields, the rule refusing them under linux-5.10 and under strict), d.5 in the driver's order
_DRIVER = [
    (dict(format=2), "smmu.attach_table.format", "smmu.attach_table.format"),
    (dict(smmuv3=dict(version=2)), "smmu.attach_table.version", "smmu.attach_table.version"),
    (dict(version=1, smmuv3=dict(version=0)), "smmu.attach_table.version",
     "smmu.attach_table.version"),
    (dict(pasid_bits=4), _BITS, None),
    (dict(pasid_bits=21), _BITS, _BITS),
    (dict(pasid_bits=4, smmuv3=dict(s1fmt=3)), _BITS, "smmu.attach_table.s1fmt"),
    (dict(pasid_bits=4, smmuv3=dict(s1dss=3)), _BITS, "smmu.attach_table.s1dss"),
    (dict(base_ptr=0x10_0020), None, "smmu.attach_table.base_ptr"),
]


@pytest.mark.parametrize("profile", ["linux-5.10", "strict"])
@pytest.mark.parametrize(("fields", "v15", "strict"), _DRIVER,
                         ids=[f"{c[1] or c[2]}-{i}" for i, c in enumerate(_DRIVER)])
def test_driver_checks_of_attach(profile: str, fields: dict[str, object], v15: str | None,
                                 strict: str | None) -> None:
    rig = Rig(profile, attach=False)
    data = table_config(**fields).to_bytes()
    rule = v15 if profile == "linux-5.10" else strict
    if rule is None:
        rig.iommu.uapi_attach_pasid_table(rig.domain, data)
        return
    e = _refused(rig, lambda: rig.iommu.uapi_attach_pasid_table(rig.domain, data))
    assert (e.errno, e.rule) == (EINVAL, rule)


def test_v15_masks_an_unaligned_table_pointer_as_the_ste_field_does() -> None:
    rig = Rig("linux-5.10", attach=False)
    rig.iommu.uapi_attach_pasid_table(rig.domain, table_config(base_ptr=0x10_0020).to_bytes())
    assert rig.backend.host.read_ste(rig.dev.sid).S1ContextPtr == 0x10_0000


def test_the_format_is_checked_before_the_domain() -> None:
    rig = Rig(attach=False)
    e = _refused(rig, lambda: rig.iommu.uapi_attach_pasid_table(
        rig.iommu.domain_alloc(), table_config(format=2).to_bytes()))
    assert e.rule == "smmu.attach_table.format"


def test_unbound_and_unnested_domains_are_einval_in_order() -> None:
    rig = Rig(attach=False)
    fresh = rig.iommu.domain_alloc(nesting=True)
    e = _refused(rig, lambda: rig.iommu.uapi_attach_pasid_table(fresh,
                                                                table_config().to_bytes()))
    assert (e.errno, e.rule) == (EINVAL, "smmu.attach_table.not_finalised")
    plain = rig.iommu.domain_alloc()
    dev = rig.iommu.add_device(0x0300)
    rig.iommu.attach_device(plain, dev)
    e = _refused(rig, lambda: rig.iommu.uapi_attach_pasid_table(plain,
                                                                table_config().to_bytes()))
    assert (e.errno, e.rule) == (EINVAL, "smmu.attach_table.not_nested")


def test_s1_to_s1_replacement_refused_by_v15_allowed_by_strict() -> None:
    rig = Rig("linux-5.10")
    again = table_config(base_ptr=0x20_0000).to_bytes()
    e = _refused(rig, lambda: rig.iommu.uapi_attach_pasid_table(rig.domain, again))
    assert (e.errno, e.rule) == (EINVAL, "smmu.attach_table.s1_replace")
    bypass = table_config(config=PasidConfig.BYPASS).to_bytes()
    rig.iommu.uapi_attach_pasid_table(rig.domain, bypass)  # through BYPASS it may change
    rig.iommu.uapi_attach_pasid_table(rig.domain, again)
    assert rig.backend.host.read_ste(rig.dev.sid).S1ContextPtr == 0x20_0000
    strict = Rig("strict")
    strict.iommu.uapi_attach_pasid_table(strict.domain, table_config(
        base_ptr=0x20_0000, pasid_bits=4).to_bytes())
    assert strict.backend.host.read_ste(strict.dev.sid).S1CDMax == 4


def test_v15_ignores_s1fmt_and_s1dss_with_a_single_cd() -> None:
    rig = Rig("linux-5.10", attach=False)
    rig.iommu.uapi_attach_pasid_table(rig.domain, table_config(
        smmuv3=dict(s1fmt=3, s1dss=3)).to_bytes())
    ste = rig.backend.host.read_ste(rig.dev.sid)
    assert (ste.S1CDMax, ste.S1Fmt, ste.S1DSS) == (0, 0, 0)


def test_padding_is_refused_under_strict_only() -> None:
    data = bytearray(table_config().to_bytes())
    data[22] = 1
    rig = Rig("linux-5.10", attach=False)
    rig.iommu.uapi_attach_pasid_table(rig.domain, bytes(data))
    strict = Rig("strict", attach=False)
    e = _refused(strict, lambda: strict.iommu.uapi_attach_pasid_table(strict.domain,
                                                                      bytes(data)))
    assert (e.errno, e.rule) == (EINVAL, "attach_pasid_table.padding")


def test_sva_bind_gpasid_does_not_exist_on_the_smmu() -> None:
    rig = Rig()
    assert not rig.iommu.capabilities.features & Feature.BIND_PGTBL
    e = _refused(rig, lambda: rig.iommu.uapi_sva_bind_gpasid(rig.domain, rig.dev, b"\0" * 72))
    assert (e.errno, e.rule) == (ENODEV, "op.missing")


# -- cache_invalidate: d.5 ---------------------------------------------------------------------

#: (record, errno and rule under linux-5.10)
_INV_5_10 = [
    (pasid_inv(CacheType.IOTLB | CacheType.PASID, archid=1), ENOENT, "smmu.inv.cache"),
    (addr_inv(VA, cache=CacheType.IOTLB | CacheType.DEV_IOTLB, archid=1), ENOENT,
     "smmu.inv.cache"),
    (pasid_inv(CacheType.PASID, pasid=1), ENOENT, "smmu.inv.cache"),
    (pasid_inv(pasid=1, archid=1), ENOENT, "smmu.inv.pasid_flag"),
    (pasid_inv(), EINVAL, "smmu.inv.archid"),
    (addr_inv(VA, pasid=1, archid=1), ENOENT, "smmu.inv.pasid_flag"),
    (addr_inv(VA, archid=1, granule=0x3000), EINVAL, "smmu.inv.granule"),
]


@pytest.mark.parametrize(("info", "err", "rule"), _INV_5_10,
                         ids=[f"{c[2]}-{i}" for i, c in enumerate(_INV_5_10)])
def test_v15_invalidation_refusals(info: object, err: int, rule: str) -> None:
    rig = Rig("linux-5.10")
    e = _refused(rig, lambda: rig.invalidate(info))  # type: ignore[arg-type]
    assert (e.errno, e.rule) == (err, rule)


def test_invalidation_of_a_domain_not_nested_is_einval() -> None:
    rig = Rig()
    plain = rig.iommu.domain_alloc()
    dev = rig.iommu.add_device(0x0300)
    rig.iommu.attach_device(plain, dev)
    e = _refused(rig, lambda: rig.iommu.uapi_cache_invalidate(plain, dev,
                                                              domain_inv().to_bytes()))
    assert (e.errno, e.rule) == (EINVAL, "smmu.inv.not_nested")


def test_v15_commands() -> None:
    rig = Rig("linux-5.10")
    vmid = rig.domain.data.vmid
    rig.invalidate(pasid_inv(archid=7))
    assert rig.commands() == [TlbiNhAsid(VMID=vmid, ASID=7)]
    rig.invalidate(addr_inv(0x10_0000, archid=7, pages=1, leaf=True))
    assert rig.commands() == [TlbiNhVa(VMID=vmid, ASID=7, Addr=0x10_0000, Leaf=True)]
    rig.invalidate(addr_inv(0x10_0000, archid=7, pages=3))  # RIL: one range command
    assert rig.commands() == [TlbiNhVa(VMID=vmid, ASID=7, Addr=0x10_0000, TG=1, NUM=2)]
    rig.invalidate(addr_inv(0x10_0000))  # no ARCHID: the global stage-1 invalidation
    assert rig.commands() == [TlbiNsnhAll()]
    rig.invalidate(domain_inv())
    assert rig.commands() == [TlbiNsnhAll()]


def test_without_range_invalidation_one_command_per_page() -> None:
    rig = Rig("linux-5.10", ril=False)
    rig.invalidate(addr_inv(0x10_0000, archid=2, pages=3))
    vmid = rig.domain.data.vmid
    assert rig.commands() == [TlbiNhVa(VMID=vmid, ASID=2, Addr=0x10_0000 + i * 4096)
                              for i in range(3)]


def test_strict_executes_the_pasid_cache_and_the_device_tlb() -> None:
    rig = Rig("strict")
    vmid = rig.domain.data.vmid
    rig.gmap()
    rig.enter(9)
    rig.invalidate(pasid_inv(CacheType.PASID, pasid=9))
    assert rig.commands() == [CfgiCd(SID=0x100, SSID=9), CfgiCd(SID=0x208, SSID=9)]
    rig.invalidate(domain_inv(CacheType.PASID))
    assert rig.commands() == [CfgiCdAll(SID=0x100), CfgiCdAll(SID=0x208)]
    rig.iommu.translate(rig.dev, VA, pasid=9)
    rig.invalidate(pasid_inv(pasid=9))  # the ASID the SMMU used for SubstreamID 9
    assert rig.commands() == [TlbiNhAsid(VMID=vmid, ASID=9)]
    rig.invalidate(addr_inv(VA, cache=CacheType.IOTLB | CacheType.DEV_IOTLB, pasid=9))
    assert rig.commands() == [TlbiNhVa(VMID=vmid, ASID=9, Addr=VA),
                              AtcInv(SID=0x100, SSV=True, SSID=9, Addr=VA, Size=0)]
    rig.invalidate(domain_inv())
    assert rig.commands() == [TlbiNhAll(VMID=vmid)]

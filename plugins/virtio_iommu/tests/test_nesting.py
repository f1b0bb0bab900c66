"""Table sharing (the Jan 2021 RFC, ``rfc2021`` profile): nested translation through
ATTACH_TABLE with the guest tables the SMMUv3 tests build, giving the SMMUv3 model's translation;
ATTACH_TABLE and INVALIDATE as bytes with their statuses; the façade's attach_pasid_table and
cache_invalidate on them."""

from __future__ import annotations

import errno

import msgspec
import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.features import CacheCell
from iommu_uapi.iommu import IOMMU
from iommu_uapi.memory import GuestMemory, PhysicalMemory
from iommu_uapi.pasid_tables.smmuv3 import TG0_GRANULE, Cd
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.pgtable.lpae import LPAEConfig, LPAEPageTable
from iommu_uapi.testing.harness import Harness
from iommu_uapi.translation import TranslationFault
from iommu_uapi.uapi import PasidTableConfig
from iommu_uapi.uapi.consts import CacheType, InvGranularity, PasidConfig
from iommu_uapi.uapi.pasid_table import PasidSmmuv3, PasidTableVendor
from iommu_uapi_smmu.registers import Cr0, Reg, StrtabBase, StrtabBaseCfg
from iommu_uapi_smmu.smmu import Smmu
from iommu_uapi_smmu.ste import Ste, SteConfig
from iommu_uapi_virtio_iommu import Feature, Status, VirtioIommuDevice, layouts
from iommu_uapi_virtio_iommu.tables import (
    PSTF_ARM_SMMU_V3,
    InvFlags,
    InvGran,
    InvType,
    SharedTable,
    encode_attach_table,
    encode_invalidate,
)

RW = Prot.READ | Prot.WRITE
TG0 = {g: code for code, g in TG0_GRANULE.items()}
GUEST_RAM, RAM_SIZE, DATA, VA = 0x4000_0000, 1 << 21, 0x9_0000_0000, 0x1000_0000
#: the SMMUv3 tests' stage 2 per granule: (S2TG, S2T0SZ, S2SL0) of a 40-bit IPA
S2 = {4096: (0, 24, 1), 16384: (2, 24, 1), 65536: (1, 24, 1)}


def smmu_cd(s1: LPAEPageTable, asid: int = 1) -> Cd:
    """The CD the SMMUv3 translation tests write for stage-1 tables ``s1``."""
    return Cd(V=True, AA64=True, T0SZ=s1.cfg.t0sz, TG0=TG0[s1.cfg.granule], EPD1=True, IPS=5,
              R=True, A=True, ASID=asid, TTB0=s1.root)


class Both:
    """One guest (LPAE stage 1 and a linear CD table in guest RAM) behind an SMMUv3 model
    (nested STE, stage 2 in LPAE tables) and behind virtio-iommu (ATTACH_TABLE, stage 2 as
    MAPs) sharing one physical memory."""

    def __init__(self, granule: int) -> None:
        self.mem = PhysicalMemory(52)
        smmu = self.smmu = Smmu(self.mem)
        strtab = self.mem.alloc(256 * 64)
        smmu.regs.write(Reg.STRTAB_BASE, StrtabBase(ADDR=strtab).to_int())
        smmu.regs.write(Reg.STRTAB_BASE_CFG, StrtabBaseCfg(LOG2SIZE=8).to_int())
        smmu.regs.write(Reg.CR0, Cr0(SMMUEN=True).to_int())
        tg, t0sz, sl0 = S2[granule]
        s2 = LPAEPageTable(LPAEConfig(stage=2, granule=granule, t0sz=t0sz, sl0=sl0, oas=48),
                           self.mem)
        self.guest = GuestMemory(self.mem)
        hpa = self.mem.alloc(RAM_SIZE)
        self.guest.add_ram(GUEST_RAM, RAM_SIZE, hpa)
        self.iommu = IOMMU("virtio-iommu", memory=self.mem)
        self.dev = self.iommu.add_device(12)
        self.domain = self.iommu.domain_alloc(nesting=True)
        self.iommu.attach_device(self.domain, self.dev)
        for gpa, pa, size in ((GUEST_RAM, hpa, RAM_SIZE), (0x7000_0000, DATA, granule)):
            for off in range(0, size, granule):
                s2.map(gpa + off, pa + off, granule, RW)
                self.iommu.map(self.domain, gpa + off, pa + off, granule, RW)
        self.s1 = LPAEPageTable(LPAEConfig(stage=1, granule=granule, t0sz=16, oas=48),
                                self.guest)
        self.s1.map(VA, 0x7000_0000, granule, RW)
        self.cds = self.guest.alloc(1 << 14)           # 256 CDs
        self.guest.write(self.cds + 3 * 64, smmu_cd(self.s1).to_bytes())
        # the SMMU reads the same CD table through its nested STE
        self.mem.write(strtab + 12 * 64, Ste(
            V=True, Config=SteConfig.NESTED, S1ContextPtr=self.cds, S1CDMax=8, S1DSS=1,
            S2VMID=1,
            S2T0SZ=t0sz, S2SL0=sl0, S2TG=tg, S2PS=5, S2AA64=True, S2R=True,
            S2TTB=s2.root).to_bytes())
        self.cfg = PasidTableConfig(
            argsz=PasidTableConfig.SIZE, version=1, base_ptr=self.cds, format=1, pasid_bits=8,
            config=PasidConfig.TRANSLATE, vendor_data=PasidTableVendor(
                smmuv3=PasidSmmuv3(version=1, s1fmt=0, s1dss=1)))
        self.iommu.uapi_attach_pasid_table(self.domain, self.cfg.to_bytes())


@pytest.mark.parametrize("granule", [4096, 16384, 65536])
def test_nested_translation_is_the_smmuv3_models(granule: int) -> None:
    both = Both(granule)
    for offset, access in ((0x10, 2), (granule - 8, 1)):
        want = both.smmu.translate(12, VA + offset, access, ssid=3)
        got = both.iommu.translate(both.dev, VA + offset, pasid=3, access=access)
        assert got.paddr == want.paddr == DATA + offset
        assert (got.page_size, got.perm) == (want.page_size, want.perm)
    assert both.iommu.translate(both.dev, VA, pasid=3).table_reads == 0       # an IOTLB hit
    both.iommu.iotlb.flush()
    assert both.iommu.translate(both.dev, VA, pasid=3).table_reads > 0        # a walk
    # requests without PASID bypass stage 1 (S1DSS 1) on both
    assert both.iommu.translate(both.dev, 0x7000_0000).paddr == DATA
    assert both.smmu.translate(12, 0x7000_0000).paddr == DATA


def test_a_table_backed_domain_refuses_map_and_unmap() -> None:
    both = Both(4096)
    for call, rule in ((lambda: both.iommu.map(both.domain, 0x8000_0000, DATA, 0x1000, RW),
                        "virtio.map.table_domain"),
                       (lambda: both.iommu.unmap(both.domain, GUEST_RAM, 0x1000),
                        "virtio.unmap.table_domain")):
        with pytest.raises(UAPIError) as info:
            call()
        assert (info.value.errno, info.value.rule) == (errno.EINVAL, rule)
    both.iommu.detach_pasid_table(both.domain)                   # stage 2 only again
    with pytest.raises(TranslationFault) as fault:
        both.iommu.translate(both.dev, VA, pasid=3)
    assert fault.value.reason.startswith("[" + "virtio.dma.pasid" + "]")
    assert both.iommu.translate(both.dev, GUEST_RAM + 0x40).paddr == \
        both.guest.gpa_to_hpa(GUEST_RAM + 0x40)
    assert both.iommu.unmap(both.domain, GUEST_RAM, 0x1000) == 0x1000


def test_invalidation_makes_guest_changes_visible() -> None:
    both = Both(4096)
    iommu, dev = both.iommu, both.dev
    assert iommu.translate(dev, VA, pasid=3).paddr == DATA
    both.s1.unmap(VA, 0x1000)
    assert iommu.translate(dev, VA, pasid=3).paddr == DATA       # still cached
    iommu.uapi_cache_invalidate(both.domain, dev, Harness.inv_info(
        CacheCell(CacheType.IOTLB, InvGranularity.ADDR), 3, VA).to_bytes())
    with pytest.raises(TranslationFault) as fault:
        iommu.translate(dev, VA, pasid=3)
    assert fault.value.reason.startswith("[" + "virtio.dma.walk" + "]")
    # a CD cleared is seen after the PASID cache is invalidated
    both.s1.map(VA, 0x7000_0000, 0x1000, RW)
    both.guest.write(both.cds + 3 * 64, bytes(64))
    assert iommu.translate(dev, VA, pasid=3).paddr == DATA       # the old CD is cached
    for cache in (CacheType.PASID, CacheType.IOTLB):
        iommu.uapi_cache_invalidate(both.domain, dev, Harness.inv_info(
            CacheCell(cache, InvGranularity.PASID), 3).to_bytes())
    with pytest.raises(TranslationFault) as fault:
        iommu.translate(dev, VA, pasid=3)
    assert fault.value.reason.startswith("[" + "virtio.dma.cd" + "]")


def test_cells_the_draft_cannot_express() -> None:
    both = Both(4096)
    info = Harness.inv_info(CacheCell(CacheType.IOTLB, InvGranularity.ADDR), 3, VA)
    devtlb = msgspec.structs.replace(info, cache=CacheType.IOTLB | CacheType.DEV_IOTLB)
    with pytest.raises(UAPIError) as err:
        both.iommu.uapi_cache_invalidate(both.domain, both.dev, devtlb.to_bytes(),
                                         profile="strict")
    assert (err.value.errno, err.value.rule) == (errno.EINVAL, "virtio.backend.cell")
    both.iommu.translate(both.dev, VA, pasid=3)
    both.iommu.uapi_cache_invalidate(both.domain, both.dev, devtlb.to_bytes())  # 5.10: drops
    assert both.iommu.translate(both.dev, VA, pasid=3).table_reads > 0         # IOTLB went


def test_pasid_table_configs() -> None:
    both = Both(4096)
    abort = msgspec.structs.replace(both.cfg, config=PasidConfig.ABORT)
    with pytest.raises(UAPIError) as err:
        both.iommu.attach_pasid_table(both.domain, abort)
    assert (err.value.errno, err.value.rule) == (errno.EINVAL, "virtio.backend.pasid_config")
    for fmt in (0, 2):  # only SMMUV3 (1); refused before the config is looked at
        for config in (PasidConfig.BYPASS, PasidConfig.TRANSLATE):
            bad = msgspec.structs.replace(both.cfg, format=fmt, config=config)
            before = both.iommu.translate(both.dev, VA, pasid=3)
            with pytest.raises(UAPIError) as err:
                both.iommu.attach_pasid_table(both.domain, bad)
            assert (err.value.errno, err.value.rule) == (errno.EINVAL,
                                                         "virtio.backend.pasid_format")
            assert both.iommu.translate(both.dev, VA, pasid=3).paddr == before.paddr
    other = msgspec.structs.replace(both.cfg, base_ptr=both.cds + 0x1000)
    with pytest.raises(UAPIError) as err:
        both.iommu.attach_pasid_table(both.domain, other)
    assert (err.value.errno, err.value.rule) == (errno.EINVAL, "virtio.attach_table.other_table")
    bypass = msgspec.structs.replace(both.cfg, config=PasidConfig.BYPASS)
    both.iommu.attach_pasid_table(both.domain, bypass)           # no table: stage 2 only
    both.iommu.map(both.domain, 0x8000_0000, DATA, 0x1000, RW)
    dev2 = both.iommu.add_device(13)                             # attached later: replayed
    both.iommu.attach_pasid_table(both.domain, both.cfg)
    both.iommu.attach_device(both.domain, dev2)
    assert both.iommu.translate(dev2, VA + 4, pasid=3).paddr == DATA + 4


def test_nesting_needs_the_draft() -> None:
    for profile in ("spec", "qemu"):
        iommu = IOMMU("virtio-iommu", device_profile=profile)
        with pytest.raises(UAPIError) as err:
            iommu.domain_alloc(nesting=True)
        assert (err.value.errno, err.value.rule) == (errno.ENODEV,
                                                     "virtio.backend.nesting_unsupported")
    with pytest.raises(UAPIError) as err:
        IOMMU("virtio-iommu").nesting_info(IOMMU("virtio-iommu").domain_alloc())
    info = Both(4096).iommu
    assert info.nesting_info(info.domains[1]).format == 1


# -- the requests as bytes --------------------------------------------------------------------

TABLE = SharedTable(0, 1, 0x10_0000, 4)


def rfc_device(negotiate: bool = True) -> VirtioIommuDevice:
    dev = VirtioIommuDevice([8, 9], profile="rfc2021",
                            features=Feature.MAP_UNMAP | Feature.ATTACH_TABLE)
    assert dev.wire_offered == (1 << 2) | (1 << 6)               # the RFC's bit 6
    dev.negotiate_wire(dev.wire_offered if negotiate else 1 << 2)
    assert dev.handle(layouts.encode_attach(1, 8), 4).status == Status.OK
    return dev


@pytest.mark.parametrize(("readable", "status", "rule"), [
    (encode_attach_table(1, 8, TABLE, fmt=1), Status.UNSUPP, "virtio.attach_table.format"),
    (encode_attach_table(1, 8, TABLE._replace(s1fmt=3)), Status.INVAL,
     "virtio.attach_table.fields"),
    (encode_attach_table(1, 8, TABLE._replace(s1contextptr=0x10_0020)), Status.INVAL,
     "virtio.attach_table.fields"),
    (encode_attach_table(1, 7, TABLE), Status.NOENT, "virtio.attach_table.endpoint"),
    (encode_attach_table(1, 9, TABLE), Status.INVAL, "virtio.attach_table.not_attached"),
    (encode_invalidate(2, InvGran.DOMAIN, InvType.IOTLB), Status.NOENT,
     "virtio.invalidate.domain"),
    (encode_invalidate(1, InvGran.DOMAIN | InvGran.PASID, InvType.IOTLB), Status.INVAL,
     "virtio.invalidate.fields"),
    (encode_invalidate(1, InvGran.VA, InvType.IOTLB, flags=InvFlags.PASID, nr_pages=1,
                       granule=13), Status.INVAL, "virtio.invalidate.fields"),
    (encode_invalidate(1, InvGran.PASID, InvType.IOTLB, flags=InvFlags.ARCHID, archid=5),
     Status.UNSUPP, "virtio.invalidate.archid"),
])
def test_table_requests_refused(readable: bytes, status: Status, rule: str) -> None:
    dev = rfc_device()
    assert dev.handle(encode_attach_table(1, 8, TABLE), 4).status == Status.OK
    reply = dev.handle(readable, 4)
    assert (reply.status, reply.rule, reply.written) == (status, rule, bytes([status, 0, 0, 0]))


def test_table_request_preconditions() -> None:
    dev = rfc_device(negotiate=False)
    for readable, rule in ((encode_attach_table(1, 8, TABLE),
                            "virtio.attach_table.not_negotiated"),
                           (encode_invalidate(1, InvGran.DOMAIN, InvType.IOTLB),
                            "virtio.invalidate.not_negotiated")):
        assert dev.handle(readable, 4)[1:3] == (Status.UNSUPP, rule)
    dev = rfc_device()
    reply = dev.handle(encode_invalidate(1, InvGran.DOMAIN, InvType.IOTLB), 4)
    assert reply[1:3] == (Status.INVAL, "virtio.invalidate.not_table")
    assert dev.handle(encode_attach_table(1, 8, TABLE), 4).status == Status.OK
    assert dev.handle(layouts.encode_map(1, 0, 0xFFF, 0, 3), 4)[1:3] == (
        Status.INVAL, "virtio.map.table_domain")
    assert dev.handle(layouts.encode_unmap(1, 0, 0xFFF), 4)[1:3] == (
        Status.INVAL, "virtio.unmap.table_domain")
    spec = VirtioIommuDevice([8])                                # no table requests: type 6
    assert spec.handle(encode_attach_table(1, 8, TABLE), 4).written == b""  # is unknown


def test_the_rfc_bit_cannot_be_bypass_config_too() -> None:
    with pytest.raises(UAPIError) as err:
        VirtioIommuDevice([8], profile="rfc2021",
                          features=Feature.ATTACH_TABLE | Feature.BYPASS_CONFIG)
    assert (err.value.errno, err.value.rule) == (errno.EINVAL, "virtio.device.table_bit")
    assert PSTF_ARM_SMMU_V3 == 2


def test_a_wide_pasid_cannot_be_sent() -> None:
    both = Both(4096)
    info = Harness.inv_info(CacheCell(CacheType.IOTLB, InvGranularity.PASID), 1 << 33)
    with pytest.raises(UAPIError) as err:
        both.iommu.cache_invalidate(both.domain, both.dev, info, profile="linux-5.10")
    assert (err.value.errno, err.value.rule) == (errno.EINVAL, "virtio.backend.pasid_width")

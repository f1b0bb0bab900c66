"""The iommufd commands on VT-d: HW_INFO, IOAS map/unmap, HWPT_ALLOC, attach, destroy, and the
vIOMMU commands a backend without vIOMMU refuses. Every refusal names its rule, carries the
kernel's errno and changes nothing."""

from __future__ import annotations

import errno
from collections.abc import Callable

import msgspec
import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.iommufd import (
    Cmd,
    HwCap,
    HwInfoType,
    HwptAllocFlags,
    HwptDataType,
    IoasMapFlags,
    IommuHwInfo,
    IommuHwInfoVtd,
    IommuHwptAlloc,
    IommuHwptArmSmmuv3,
    IommuHwptVtdS1,
    IommuIoasAlloc,
    VtdS1Flags,
)
from iommu_uapi.testing.harness import Harness
from iommu_uapi.testing.iommufd_rig import VMM_RAM_VA, IommufdRig

VA = 0x7000_0000_0000


def refused(rig: IommufdRig, call: Callable[[], object]) -> UAPIError:
    before = rig.snapshot()
    with pytest.raises(UAPIError) as exc:
        call()
    assert rig.snapshot() == before
    return exc.value


# -- IOMMU_GET_HW_INFO ----------------------------------------------------------------------


def test_hw_info_reports_the_units_registers(rig: IommufdRig) -> None:
    backend = rig.iommu.backend
    out, data = rig.client.hw_info(rig.dev_id, 24)
    assert out.out_data_type == HwInfoType.INTEL_VTD and out.data_len == 24
    assert IommuHwInfoVtd.from_bytes(data) == IommuHwInfoVtd(
        cap_reg=backend.cap, ecap_reg=backend.ecap)  # type: ignore[attr-defined]
    assert out.out_max_pasid_log2 == rig.caps.pasid_bits
    assert out.out_capabilities == HwCap.PCI_ATS_ENABLED   # dev has ATS
    assert rig.client.hw_info(rig.dev2_id, 24)[0].out_capabilities == 0


def test_hw_info_larger_buffer_is_zero_filled_and_keeps_its_length(rig: IommufdRig) -> None:
    va = rig.client.put(b"\xff" * 64)
    buf = bytearray(IommuHwInfo(size=40, dev_id=rig.dev_id, data_len=64,
                                data_uptr=va).to_bytes())
    rig.fd.ioctl(Cmd.GET_HW_INFO, buf)
    data = rig.fd.user.read(va, 64)
    assert data[24:] == bytes(40)
    assert IommuHwInfo.from_bytes(buf).data_len == 64


def test_hw_info_smaller_buffer_is_truncated_and_told_the_size(rig: IommufdRig) -> None:
    out, data = rig.client.hw_info(rig.dev_id, 8)
    assert out.data_len == IommuHwInfoVtd.SIZE
    assert data == IommuHwInfoVtd(cap_reg=1).to_bytes()[:8]


def test_hw_info_with_an_older_struct_writes_back_32_bytes(rig: IommufdRig) -> None:
    va = rig.client.put(bytes(24))
    raw = IommuHwInfo(size=32, dev_id=rig.dev_id, data_len=24, data_uptr=va).to_bytes()[:32]
    buf = bytearray(raw)
    rig.fd.ioctl(Cmd.GET_HW_INFO, buf)
    assert len(buf) == 32 and buf[24] == HwInfoType.INTEL_VTD


@pytest.mark.parametrize(("fields", "err", "rule"), [
    ({"flags": 1}, errno.EOPNOTSUPP, "iommufd.hw_info.flags"),
    ({"reserved": b"\0\1\0"}, errno.EOPNOTSUPP, "iommufd.hw_info.flags"),
    ({"dev_id": 99}, errno.ENOENT, "iommufd.object.unknown"),
    ({"data_uptr": 0x10}, errno.EFAULT, "iommufd.user.write"),
])
def test_hw_info_refusals(rig: IommufdRig, fields: dict[str, object], err: int,
                          rule: str) -> None:
    va = rig.client.put(bytes(24))
    cmd = msgspec.structs.replace(IommuHwInfo(size=40, dev_id=rig.dev_id, data_len=24,
                                              data_uptr=va), **fields)
    exc = refused(rig, lambda: rig.fd.ioctl(Cmd.GET_HW_INFO, bytearray(cmd.to_bytes())))
    assert (exc.errno, exc.rule) == (err, rule)


def test_hw_info_object_of_another_type_is_enoent(rig: IommufdRig) -> None:
    with pytest.raises(UAPIError) as exc:
        rig.client.hw_info(rig.ioas, 24)
    assert exc.value.errno == errno.ENOENT


# -- IOAS -----------------------------------------------------------------------------------


def test_ioas_map_reaches_every_paging_hwpt(rig: IommufdRig) -> None:
    domain = rig.fd.objects[rig.parent].domain  # type: ignore[attr-defined]
    assert rig.iommu.iova_to_phys(domain, 0x3000) == 0x1_0000_3000
    iova = rig.client.ioas_map(rig.ioas, VMM_RAM_VA, 0x2000)
    assert rig.iommu.iova_to_phys(domain, iova + 0x1000) == 0x1_0000_1000
    assert rig.client.ioas_unmap(rig.ioas, iova, 0x2000) == 0x2000
    assert rig.iommu.iova_to_phys(domain, iova) == 0


@pytest.mark.parametrize(("kwargs", "err", "rule"), [
    ({"iova": 0}, errno.EEXIST, "ioas_map.exists"),
    ({"iova": 0x1_0000_0800}, errno.EINVAL, "ioas_map.range"),
    ({"length": 0}, errno.EINVAL, "ioas_map.range"),
    ({"user_va": 0x1234_0000}, errno.EFAULT, "ioas_map.unbacked"),
    ({"flags": 8 | int(IoasMapFlags.FIXED_IOVA)}, errno.EOPNOTSUPP, "ioas_map.flags"),
])
def test_ioas_map_refusals(rig: IommufdRig, kwargs: dict[str, int], err: int,
                           rule: str) -> None:
    args = {"ioas_id": rig.ioas, "user_va": VMM_RAM_VA, "length": 0x1000,
            "iova": 0x2_0000_0000, **kwargs}
    exc = refused(rig, lambda: rig.client.ioas_map(**args))
    assert (exc.errno, exc.rule) == (err, f"iommufd.{rule}")


def test_ioas_unmap_refusals(rig: IommufdRig) -> None:
    exc = refused(rig, lambda: rig.client.ioas_unmap(rig.ioas, 0x1000, 0x1000))
    assert (exc.errno, exc.rule) == (errno.EINVAL, "iommufd.ioas_unmap.split")
    exc = refused(rig, lambda: rig.client.ioas_unmap(rig.ioas, 0x5_0000_0000, 0x1000))
    assert (exc.errno, exc.rule) == (errno.ENOENT, "iommufd.ioas_unmap.none")


def test_ioas_alloc_flags_and_readonly_write_back(rig: IommufdRig) -> None:
    exc = refused(rig, lambda: rig.fd.ioctl(Cmd.IOAS_ALLOC, bytearray(
        IommuIoasAlloc(size=12, flags=1).to_bytes())))
    assert exc.errno == errno.EOPNOTSUPP
    exc = refused(rig, lambda: rig.fd.ioctl(Cmd.IOAS_ALLOC, IommuIoasAlloc(size=12).to_bytes()))
    assert (exc.errno, exc.rule) == (errno.EFAULT, "iommufd.user.write")


def test_unknown_command_is_enotty(rig: IommufdRig) -> None:
    exc = refused(rig, lambda: rig.fd.ioctl(0x3B8F, bytearray(16)))
    assert exc.errno == errno.ENOTTY


# -- HWPT_ALLOC and attach ------------------------------------------------------------------


def _s1(rig: IommufdRig, **fields: int) -> IommuHwptVtdS1:
    return IommuHwptVtdS1(**{"pgtbl_addr": rig.gpt.root, "addr_width": 48, **fields})


def test_nested_attach_installs_the_entry_a_guest_bind_installs(rig: IommufdRig) -> None:
    rig.gmap(VA)
    rig.enter(5, rig.dev2)
    h = Harness("vtd")
    h.gmap(VA)
    pasid = h.vm.alloc()
    h.bind(pasid, h.dev2)
    ours = rig.iommu.backend.tables.read_pasid(rig.dev2.sid, 5)  # type: ignore[attr-defined]
    theirs = h.iommu.backend.tables.read_pasid(h.dev2.sid, pasid)  # type: ignore[attr-defined]
    assert ours is not None and theirs is not None
    assert msgspec.structs.replace(ours, FLPTPTR=0) == msgspec.structs.replace(theirs,
                                                                               FLPTPTR=0)
    assert rig.gpt.root == ours.FLPTPTR and ours.PGTT == 3


def test_wpe_sets_the_entry_bit(rig: IommufdRig) -> None:
    hwpt = rig.client.hwpt_alloc(rig.dev_id, rig.parent, HwptAllocFlags.PASID,
                                 _s1(rig, flags=VtdS1Flags.WPE), HwptDataType.VTD_S1)
    rig.fd.attach(rig.dev_id, hwpt, 9)
    entry = rig.iommu.backend.tables.read_pasid(rig.dev.sid, 9)  # type: ignore[attr-defined]
    assert entry is not None and entry.WPE


def test_rid_attach_replaces_the_second_level_entry_and_detach_restores_it(
        rig: IommufdRig) -> None:
    tables = rig.iommu.backend.tables  # type: ignore[attr-defined]
    sl = tables.read_pasid(rig.dev2.sid, 0)
    gpa = rig.gmap(VA)
    hwpt = rig.client.hwpt_alloc(rig.dev_id, rig.parent, 0, _s1(rig), HwptDataType.VTD_S1)
    rig.fd.detach(rig.dev2_id)
    rig.fd.attach(rig.dev2_id, hwpt)
    assert tables.read_pasid(rig.dev2.sid, 0).PGTT == 3
    assert rig.translate(VA, dev=rig.dev2).paddr == rig.hpa(gpa)
    rig.fd.detach(rig.dev2_id)
    rig.fd.attach(rig.dev2_id, rig.parent)
    assert tables.read_pasid(rig.dev2.sid, 0) == sl


@pytest.mark.parametrize(("fields", "err", "rule"), [
    ({"flags": 2}, errno.EOPNOTSUPP, "hwpt_alloc.flags"),
    ({"flags": 16}, errno.EOPNOTSUPP, "hwpt_alloc.flags"),
    ({"reserved": 1}, errno.EOPNOTSUPP, "hwpt_alloc.flags"),
    ({"reserved2": 1}, errno.EOPNOTSUPP, "hwpt_alloc.flags"),
    ({"data_len": 8}, errno.EINVAL, "hwpt_alloc.data"),
    ({"data_type": 1}, errno.EINVAL, "hwpt_alloc.data"),
    ({"dev_id": 77}, errno.ENOENT, "object.unknown"),
    ({"pt_id": 77}, errno.ENOENT, "object.unknown"),
    ({"flags": 4, "fault_id": 0}, errno.EOPNOTSUPP, "hwpt_alloc.fault_paging"),
])
def test_paging_alloc_refusals(rig: IommufdRig, fields: dict[str, int], err: int,
                               rule: str) -> None:
    cmd = msgspec.structs.replace(IommuHwptAlloc(size=48, dev_id=rig.dev_id, pt_id=rig.ioas),
                                  **fields)
    exc = refused(rig, lambda: rig.fd.ioctl(Cmd.HWPT_ALLOC, bytearray(cmd.to_bytes())))
    assert (exc.errno, exc.rule) == (err, f"iommufd.{rule}")


@pytest.mark.parametrize(("pt", "flags", "dtype", "data", "err", "rule"), [
    ("parent", HwptAllocFlags.NEST_PARENT, 1, None, errno.EOPNOTSUPP, "hwpt_alloc.flags"),
    ("auto", 0, 1, None, errno.EINVAL, "hwpt_alloc.parent"),
    ("parent", 0, 3, None, errno.EOPNOTSUPP, "hwpt_alloc.data_type"),
    ("parent", 0, 2, IommuHwptArmSmmuv3(), errno.EOPNOTSUPP, "hwpt_alloc.nested_type"),
    ("parent", 0, 1, {"flags": 8}, errno.EOPNOTSUPP, "hwpt_alloc.vtd_s1_flags"),
    ("parent", 0, 1, {"reserved": 1}, errno.EOPNOTSUPP, "hwpt_alloc.vtd_s1_flags"),
    ("parent", HwptAllocFlags.FAULT_ID_VALID, 1, None, errno.ENOENT, "object.unknown"),
])
def test_nested_alloc_refusals(rig: IommufdRig, pt: str, flags: int, dtype: int,
                               data: object, err: int, rule: str) -> None:
    pt_id = rig.parent
    if pt == "auto":
        pt_id = rig.client.hwpt_alloc(rig.dev_id, rig.ioas)
    rec = data if not isinstance(data, dict | type(None)) else _s1(rig, **(data or {}))
    exc = refused(rig, lambda: rig.client.hwpt_alloc(rig.dev_id, pt_id, int(flags), rec,
                                                     dtype, 42))
    assert (exc.errno, exc.rule) == (err, f"iommufd.{rule}")


def test_nested_data_size_rules(rig: IommufdRig) -> None:
    raw = _s1(rig).to_bytes()
    for data, err in ((raw[:16], errno.EINVAL), (raw + b"\1", errno.E2BIG)):
        va = rig.client.put(data)
        cmd = IommuHwptAlloc(size=48, dev_id=rig.dev_id, pt_id=rig.parent, data_type=1,
                             data_len=len(data), data_uptr=va)
        exc = refused(rig, lambda c=cmd: rig.fd.ioctl(Cmd.HWPT_ALLOC, bytearray(c.to_bytes())))
        assert exc.errno == err
    va = rig.client.put(raw + bytes(8))
    cmd = IommuHwptAlloc(size=48, dev_id=rig.dev_id, pt_id=rig.parent, data_type=1,
                         data_len=32, data_uptr=va)
    buf = bytearray(cmd.to_bytes())
    rig.fd.ioctl(Cmd.HWPT_ALLOC, buf)
    assert IommuHwptAlloc.from_bytes(buf).out_hwpt_id in rig.fd.objects


@pytest.mark.parametrize(("data", "rule"), [
    ({"addr_width": 39}, "vtd.bind.addr_width"),
    ({"addr_width": 57}, "vtd.bind.addr_width"),
])
def test_attach_time_checks_of_the_unit(data: dict[str, int], rule: str) -> None:
    rig = IommufdRig("vtd", five_level=False)
    hwpt = rig.client.hwpt_alloc(rig.dev_id, rig.parent, HwptAllocFlags.PASID,
                                 _s1(rig, **data), HwptDataType.VTD_S1)
    exc = refused(rig, lambda: rig.fd.attach(rig.dev_id, hwpt, 5))
    assert (exc.errno, exc.rule) == (errno.EINVAL, rule)


def test_attach_rules(rig: IommufdRig) -> None:
    hwpt = rig.client.hwpt_alloc(rig.dev_id, rig.parent, HwptAllocFlags.PASID, _s1(rig),
                                 HwptDataType.VTD_S1)
    no_pasid = rig.client.hwpt_alloc(rig.dev_id, rig.parent, 0, _s1(rig), HwptDataType.VTD_S1)
    rig.fd.attach(rig.dev_id, hwpt, 5)
    for call, err, rule in [
        (lambda: rig.fd.attach(rig.dev_id, hwpt, 5), errno.EBUSY, "attach.busy"),
        (lambda: rig.fd.attach(rig.dev_id, no_pasid, 6), errno.EINVAL, "attach.pasid_flag"),
        (lambda: rig.fd.attach(rig.dev_id, rig.parent, 6), errno.EOPNOTSUPP,
         "attach.pasid_paging"),
        (lambda: rig.fd.attach(rig.dev_id, rig.parent), errno.EBUSY, "attach.busy"),
        (lambda: rig.fd.detach(rig.dev_id, 6), errno.EINVAL, "attach.not_attached"),
    ]:
        exc = refused(rig, call)
        assert (exc.errno, exc.rule) == (err, f"iommufd.{rule}")


def test_pasid_attach_needs_the_rid_on_the_parent(rig: IommufdRig) -> None:
    hwpt = rig.client.hwpt_alloc(rig.dev_id, rig.parent, HwptAllocFlags.PASID, _s1(rig),
                                 HwptDataType.VTD_S1)
    rig.fd.detach(rig.dev2_id)
    exc = refused(rig, lambda: rig.fd.attach(rig.dev2_id, hwpt, 5))
    assert (exc.errno, exc.rule) == (errno.EINVAL, "iommufd.attach.parent")


def test_attach_to_an_ioas_uses_an_automatic_hwpt(rig: IommufdRig) -> None:
    rig.fd.detach(rig.dev2_id)
    auto = rig.fd.attach(rig.dev2_id, rig.ioas)
    assert rig.translate(0x2000, dev=rig.dev2).paddr == 0x1_0000_2000
    rig.fd.detach(rig.dev2_id)
    assert auto not in rig.fd.objects


# -- destroy and the vIOMMU commands --------------------------------------------------------


def test_destroy_refuses_what_is_in_use_and_frees_the_rest(rig: IommufdRig) -> None:
    for obj in (rig.parent, rig.ioas, rig.dev_id):
        exc = refused(rig, lambda o=obj: rig.client.destroy(o))
        assert (exc.errno, exc.rule) == (errno.EBUSY, "iommufd.object.busy")
    hwpt = rig.client.hwpt_alloc(rig.dev_id, rig.parent, 0, _s1(rig), HwptDataType.VTD_S1)
    rig.client.destroy(hwpt)
    assert hwpt not in rig.fd.objects
    exc = refused(rig, lambda: rig.client.destroy(hwpt))
    assert exc.errno == errno.ENOENT


def test_unbind_detaches_everything(rig: IommufdRig) -> None:
    rig.enter(5, rig.dev2)
    rig.fd.unbind(rig.dev2_id)
    assert rig.dev2.domain is None
    assert not [k for k in rig.fd.attached if k[0] == rig.dev2_id]


def test_vtd_has_no_viommu(rig: IommufdRig) -> None:
    exc = refused(rig, lambda: rig.client.viommu_alloc(rig.dev_id, rig.parent, 1))
    assert (exc.errno, exc.rule) == (errno.EOPNOTSUPP, "iommufd.viommu_alloc.type")
    exc = refused(rig, lambda: rig.client.vdevice_alloc(99, rig.dev_id, 3))
    assert exc.errno == errno.ENOENT

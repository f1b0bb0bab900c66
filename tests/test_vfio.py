"""The VFIO type1 nesting container: header checks, every device of the group, and the two
series' failure handling per profile."""

from __future__ import annotations

import errno
import struct

import pytest
from test_iommu import Rig, bind_bytes, errno_of, inv_addr

from iommu_uapi import UAPIError
from iommu_uapi.pgtable.common import Prot
from iommu_uapi.testing.rule_cases import cache_invalidate_bytes, pasid_table_bytes
from iommu_uapi.uapi import NestingInfo, VfioInfoCapNesting
from iommu_uapi.uapi.consts import NestingOp, PasidConfig
from iommu_uapi.vfio import VfioContainer

BIND, UNBIND, INVLD = NestingOp.BIND_PGTBL, NestingOp.UNBIND_PGTBL, NestingOp.CACHE_INVLD
GVA = 0x7F00_0000_0000


def op(code: int, data: bytes = b"", argsz: int | None = None) -> bytes:
    """A VFIO ioctl wrapper: ``{argsz; flags}`` then ``data``."""
    return struct.pack("<II", 8 + len(data) if argsz is None else argsz, code) + data


def rule_of(call: object) -> tuple[int, str | None]:
    with pytest.raises(UAPIError) as exc:
        call()  # type: ignore[operator]
    return exc.value.errno, exc.value.rule


@pytest.fixture
def rig() -> Rig:
    return Rig(pasid_table=True)


def test_the_container_needs_a_nesting_domain_and_reports_its_capability(rig: Rig) -> None:
    plain = rig.iommu.domain_alloc()
    assert rule_of(lambda: VfioContainer(rig.iommu, plain)) == (errno.ENOENT, "vfio.no_nesting")
    c = VfioContainer(rig.iommu, rig.domain)
    cap = VfioInfoCapNesting.from_bytes(c.info_cap())
    assert (cap.header.id, cap.header.version, cap.header.next) == (4, 1, 0)
    assert cap.info == rig.iommu.nesting_info(rig.domain) and isinstance(cap.info, NestingInfo)
    assert c.devices == [rig.dev, rig.dev2]


def test_bind_and_unbind_reach_every_device_of_the_group(rig: Rig) -> None:
    c = VfioContainer(rig.iommu, rig.domain)
    pasid = rig.vm.alloc()
    c.nesting_op(op(BIND, bind_bytes(pasid, rig.gpt.root)))
    assert rig.iommu.bound_pasids(rig.dev) == rig.iommu.bound_pasids(rig.dev2) == [pasid]
    c.nesting_op(op(UNBIND, bind_bytes(pasid, rig.gpt.root)))
    assert rig.iommu.bound_pasids(rig.dev) == rig.iommu.bound_pasids(rig.dev2) == []
    # unbind never fails once the header passed: nothing bound, or bytes the core refuses
    c.nesting_op(op(UNBIND, bind_bytes(pasid, rig.gpt.root)))
    c.nesting_op(op(UNBIND, bind_bytes(pasid, rig.gpt.root, version=9)))


@pytest.mark.parametrize(("profile", "left_on_dev2"), [("linux-5.10", []), ("strict", [True])])
def test_a_failed_bind_is_undone_on_the_whole_group_in_linux_and_only_its_own_in_strict(
        rig: Rig, profile: str, left_on_dev2: list[bool]) -> None:
    """v8 unbinds the PASID on every device of the group when one bind fails, a binding made
    before the call included; strict undoes only what the call bound."""
    c = VfioContainer(rig.iommu, rig.domain)
    pasid = rig.vm.alloc()
    rig.bind(pasid, dev=rig.dev2)  # bound before: the container's bind will meet EBUSY there
    data = op(BIND, bind_bytes(pasid, rig.gpt.root))
    assert errno_of(lambda: c.nesting_op(data, profile=profile)) == errno.EBUSY
    assert rig.iommu.bound_pasids(rig.dev) == []
    assert rig.iommu.bound_pasids(rig.dev2) == [pasid] * len(left_on_dev2)


def test_nesting_cache_invalidation_ignores_failures_in_linux_and_reports_them_in_strict(
        rig: Rig) -> None:
    c = VfioContainer(rig.iommu, rig.domain)
    pasid = rig.vm.alloc()
    rig.gpt.map(GVA, rig.guest.alloc(), 0x1000, Prot.READ | Prot.WRITE)
    c.nesting_op(op(BIND, bind_bytes(pasid, rig.gpt.root)))
    for profile in ("linux-5.10", "strict"):
        rig.iommu.translate(rig.dev2, GVA, pasid=pasid)
        assert len(rig.iommu.iotlb) == 1
        c.nesting_op(op(INVLD, inv_addr(pasid, GVA, 1).to_bytes()), profile=profile)
        assert len(rig.iommu.iotlb) == 0                  # reached the IOTLB
    bad = cache_invalidate_bytes(version=2)
    assert c.nesting_op(op(INVLD, bad)) is None           # v8: the ioctl returns 0
    assert rule_of(lambda: c.nesting_op(op(INVLD, bad), profile="strict")) == (
        errno.EINVAL, "cache_invalidate.version")


def test_features_missing_from_the_nesting_info_are_eopnotsupp(rig: Rig) -> None:
    c = VfioContainer(rig.iommu, rig.domain)
    c.info = NestingInfo(argsz=64, format=c.info.format, features=0)  # as read at attach
    assert rule_of(lambda: c.nesting_op(op(BIND, bind_bytes(2, rig.gpt.root)))) == (
        errno.EOPNOTSUPP, "vfio.feature")
    assert rule_of(lambda: c.nesting_op(op(INVLD, cache_invalidate_bytes()))) == (
        errno.EOPNOTSUPP, "vfio.feature")


@pytest.mark.parametrize(("call", "data", "rule"), [
    ("nesting_op", op(BIND)[:7], "nesting_op.copy_minsz"),
    ("nesting_op", op(BIND, argsz=7), "nesting_op.argsz_minsz"),
    ("nesting_op", op(0x10000 | BIND), "nesting_op.flags"),
    ("nesting_op", op(3), "nesting_op.op"),
    ("set_pasid_table", op(1)[:4], "set_pasid_table.copy_minsz"),
    ("set_pasid_table", op(1, argsz=0), "set_pasid_table.argsz_minsz"),
    ("set_pasid_table", op(3), "set_pasid_table.flags"),
    ("cache_invalidate", b"", "vfio_cache_invalidate.copy_minsz"),
    ("cache_invalidate", op(0, argsz=4), "vfio_cache_invalidate.argsz_minsz"),
    ("cache_invalidate", op(1), "vfio_cache_invalidate.flags"),
])
def test_the_header_rules_refuse_before_anything_happens(rig: Rig, call: str, data: bytes,
                                                          rule: str) -> None:
    c = VfioContainer(rig.iommu, rig.domain)
    iotlb = len(rig.iommu.iotlb)
    assert rule_of(lambda: getattr(c, call)(data))[1] == rule
    assert len(rig.iommu.iotlb) == iotlb and rig.iommu.bound_pasids(rig.dev) == []


def test_set_pasid_table_attaches_and_unset_detaches_quietly(rig: Rig) -> None:
    c = VfioContainer(rig.iommu, rig.domain)
    c.set_pasid_table(op(1, pasid_table_bytes(config=PasidConfig.BYPASS)))
    entry = rig.backend.entries[rig.domain.id]
    assert rig.mem.read64(entry) != 0                     # the domain's configuration entry
    assert errno_of(lambda: c.set_pasid_table(op(1, pasid_table_bytes(version=2)))) == \
        errno.EINVAL
    c.set_pasid_table(op(2))
    assert rig.mem.read64(entry) == 0
    c.set_pasid_table(op(2))                              # nothing attached: still no error


def test_auger_cache_invalidate_stops_at_the_first_error(rig: Rig) -> None:
    c = VfioContainer(rig.iommu, rig.domain)
    pasid = rig.vm.alloc()
    c.nesting_op(op(BIND, bind_bytes(pasid, rig.gpt.root)))
    c.cache_invalidate(op(0, inv_addr(pasid, 0x10_0000, 1).to_bytes()))
    assert rule_of(lambda: c.cache_invalidate(op(0, cache_invalidate_bytes(version=2)))) == (
        errno.EINVAL, "cache_invalidate.version")

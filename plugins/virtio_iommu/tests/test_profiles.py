"""The device's profiles are the core's :class:`~iommu_uapi.profiles.Profile` s, its rule table
and quirks the core's types, handed over with the backend's spec; ``iommu-uapi rules`` prints
them."""

from __future__ import annotations

import errno
import json

import pytest

from iommu_uapi import plugins, profiles, ruletable
from iommu_uapi.cli import main
from iommu_uapi.errors import UAPIError
from iommu_uapi.iommu import IOMMU
from iommu_uapi.profiles import Profile
from iommu_uapi.ruletable import Rule
from iommu_uapi.uapi import CacheInvalidateInfo, InvGranu, InvPasidInfo
from iommu_uapi_virtio_iommu.device import VirtioIommuDevice
from iommu_uapi_virtio_iommu.nesting import invalidate_request
from iommu_uapi_virtio_iommu.profiles import DEVICE_PROFILES, PROFILES, Quirk, table_bit
from iommu_uapi_virtio_iommu.rules import RULES, VIRTIO_QUIRKS, VIRTIO_TABLE, refusal


def test_the_table_and_profiles_come_with_the_backends_spec() -> None:
    spec = plugins.get_backend("virtio-iommu")
    assert spec.rules is VIRTIO_TABLE and ruletable.get_table("virtio-iommu") is VIRTIO_TABLE
    assert spec.profiles == DEVICE_PROFILES
    assert {"spec", "qemu", "rfc2021"} <= set(profiles.names())
    assert all(isinstance(r, Rule) for r in VIRTIO_TABLE)
    assert [r.id for r in VIRTIO_TABLE] == [r.id for r in RULES]
    assert [(r.errno, r.profiles) for r in VIRTIO_TABLE] == [(r.errno, r.profiles) for r in RULES]
    err = ruletable.fail("virtio.backend.pasid_width", pasid=1 << 33)
    assert (err.errno, err.rule) == (errno.EINVAL, "virtio.backend.pasid_width")
    assert err.message == refusal("virtio.backend.pasid_width", pasid=1 << 33).message


def test_the_device_profiles_take_their_rules_and_quirks_from_the_table() -> None:
    spec, qemu, rfc = (profiles.get(n) for n in ("spec", "qemu", "rfc2021"))
    assert PROFILES["qemu"] == qemu
    assert spec.rules == {r.id for r in RULES if "spec" in r.profiles}
    assert qemu.rules == {r.id for r in RULES if "qemu" in r.profiles}
    assert rfc.base == "spec" and rfc.rules == spec.rules | {
        r.id for r in RULES if "rfc2021" in r.profiles}
    for quirk in Quirk:
        assert qemu.quirk(quirk) is True and spec.quirk(quirk) is False
        assert rfc.quirk(quirk) is False
    assert (table_bit(rfc), table_bit(spec), table_bit(qemu)) == (6, None, None)
    assert VirtioIommuDevice(profile="qemu").profile == qemu


def test_a_device_profile_made_from_spec_with_one_quirk_behaves_so() -> None:
    """``spec`` with QEMU's endpoint records: DETACH of an endpoint never attached is S_NOENT
    only once it has had a record."""
    mine = Profile("test-spec-records", "", base="spec",
                   quirks={Quirk.ENDPOINT_RECORDS: True})
    dev = VirtioIommuDevice(profile=mine)
    assert dev.endpoint_records and dev.profile.rules == profiles.get("spec").rules
    assert not VirtioIommuDevice(profile="spec").endpoint_records


def test_an_unknown_device_profile_is_refused() -> None:
    for name in ("nosuch", "strict"):
        with pytest.raises(UAPIError) as exc:
            VirtioIommuDevice(profile=name)
        assert (exc.value.errno, exc.value.rule) == (errno.EINVAL, "virtio.profile.unknown")


def test_linux_5_10_drops_an_inexpressible_cache_and_strict_refuses_it() -> None:
    info = CacheInvalidateInfo(argsz=CacheInvalidateInfo.SIZE, version=1, cache=2,
                               granularity=1, granu=InvGranu(pasid_info=InvPasidInfo(
                                   pasid=5, flags=1)))  # DEV_IOTLB x PASID
    assert profiles.get("linux-5.10").quirk("virtio.quirk.drop_inexpressible_cells") is True
    assert invalidate_request(1, info, "linux-5.10") is None
    with pytest.raises(UAPIError) as exc:
        invalidate_request(1, info, "strict")
    assert (exc.value.errno, exc.value.rule) == (errno.EINVAL, "virtio.backend.cell")
    assert len(VIRTIO_QUIRKS) == len(Quirk) + 2


@pytest.mark.parametrize("backend", ["virtio-iommu", "smmuv3"])
def test_rules_command_prints_each_backends_table(backend: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    table = plugins.get_backend(backend).rules
    assert table is not None
    assert main(["rules", "--backend", backend]) == 0
    out = capsys.readouterr().out
    ids = {line.split()[0] for line in out.splitlines() if line and line[0] != "#"}
    assert {r.id for r in table} | {q.id for q in table.quirks} | {"bind.version"} <= ids
    assert main(["rules", "--backend", backend, "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert {r.id for r in table} <= set(rows)
    assert all(rows[r.id]["table"] == table.name for r in table)
    assert main(["rules", "--backend", backend, "--markdown"]) == 0
    assert f"## {table.title}" in capsys.readouterr().out
    IOMMU(backend)  # the backend builds with its table registered

"""Feature bits, negotiation and the configuration space bytes."""

from __future__ import annotations

import struct

import pytest
from virtio_rig import device

from iommu_uapi.errors import UAPIError
from iommu_uapi_virtio_iommu import Feature, VirtioIommuDevice

ALL = range(1 << 7)
BOTH = Feature.BYPASS | Feature.BYPASS_CONFIG


def test_feature_bit_numbers() -> None:
    assert [f.bit_length() - 1 for f in Feature] == [0, 1, 2, 3, 4, 5, 6, 32]
    assert [f.name for f in Feature] == ["INPUT_RANGE", "DOMAIN_RANGE", "MAP_UNMAP", "BYPASS",
                                         "PROBE", "MMIO", "BYPASS_CONFIG", "ATTACH_TABLE"]


@pytest.mark.parametrize("feats", ALL)
def test_config_bytes_for_every_feature_combination(feats: int) -> None:
    f = Feature(feats)
    profile = "qemu" if f & BOTH == BOTH else "spec"
    kw: dict[str, object] = {}
    if Feature.INPUT_RANGE in f:
        kw["input_range"] = (0x1000, 0xFFFF_FFFF)
    if Feature.DOMAIN_RANGE in f:
        kw["domain_range"] = (1, 255)
    dev = VirtioIommuDevice([1], features=feats, profile=profile, page_size_mask=0x40201000,
                            **kw)  # type: ignore[arg-type]
    expect = struct.pack(
        "<QQQIIIB3x", 0x40201000,
        0x1000 if Feature.INPUT_RANGE in f else 0,
        0xFFFF_FFFF if Feature.INPUT_RANGE in f else (1 << 64) - 1,
        1 if Feature.DOMAIN_RANGE in f else 0,
        255 if Feature.DOMAIN_RANGE in f else (1 << 32) - 1,
        512 if Feature.PROBE in f else 0,
        1 if Feature.BYPASS_CONFIG in f else 0)
    assert dev.config == expect and len(dev.config) == 40
    assert dev.read_config(36, 1) == expect[36:37]
    assert dev.read_config(8, 16) == expect[8:24]


def test_restricted_ranges_need_their_feature() -> None:
    with pytest.raises(UAPIError) as e:
        VirtioIommuDevice([1], features=int(Feature.MAP_UNMAP), input_range=(0, 0xFFFF))
    assert e.value.rule == "virtio.device.config"
    for kw in ({"domain_range": (0, 9)}, {"probe_size": 64}, {"bypass": 1},
               {"page_size_mask": 0}, {"input_range": (5, 4)}, {"endpoints": [1 << 32]}):
        with pytest.raises(UAPIError) as e:
            VirtioIommuDevice(**{"endpoints": [1], "features": int(Feature.MAP_UNMAP), **kw})  # type: ignore[arg-type]
        assert e.value.rule == "virtio.device.config" and e.value.errno == 22


def test_unknown_feature_bits_are_refused() -> None:
    with pytest.raises(UAPIError) as e:
        VirtioIommuDevice([1], features=1 << 7)
    assert e.value.rule == "virtio.device.features"


def test_offering_both_bypass_bits_is_refused_by_spec_only() -> None:
    with pytest.raises(UAPIError) as e:
        VirtioIommuDevice([1], features=int(BOTH))
    assert e.value.rule == "virtio.device.both_bypass"
    assert VirtioIommuDevice([1], features=int(BOTH), profile="qemu").offered == BOTH


def test_unknown_profile() -> None:
    with pytest.raises(UAPIError) as e:
        VirtioIommuDevice([1], profile="kvmtool")
    assert e.value.rule == "virtio.profile.unknown"


def test_negotiation_keeps_the_driver_subset(profile: str) -> None:
    dev = VirtioIommuDevice([1], profile=profile)
    assert dev.negotiate_features(int(Feature.MAP_UNMAP | Feature.PROBE)) == \
        Feature.MAP_UNMAP | Feature.PROBE
    with pytest.raises(UAPIError) as e:
        dev.negotiate_features(int(Feature.BYPASS))
    assert e.value.rule == "virtio.features.not_offered"
    with pytest.raises(UAPIError):
        dev.negotiate_features(1 << 40)
    assert dev.negotiated == Feature.MAP_UNMAP | Feature.PROBE


# ---- bypass writes -----------------------------------------------------------------------------

def test_bypass_write_with_bypass_config(profile: str) -> None:
    dev = device(profile)
    assert dev.write_config(36, b"\0") is None and dev.bypass == 0
    assert dev.config[36] == 0
    assert dev.write_config(32, b"\0\0\0\0\x01\0\0\0") is None and dev.bypass == 1


def test_bypass_write_without_bypass_config() -> None:
    dev = device("spec", negotiate=int(Feature.MAP_UNMAP))
    assert dev.write_config(36, b"\0") == "virtio.config.bypass_not_negotiated"
    assert dev.bypass == 1 and dev.broken is None  # ignored
    qdev = device("qemu", negotiate=int(Feature.MAP_UNMAP))
    assert qdev.write_config(36, b"\0") == "virtio.config.bypass_not_negotiated"
    assert qdev.bypass == 1 and qdev.broken == "virtio.config.bypass_not_negotiated"
    assert qdev.write_config(36, b"\x01") is None  # unchanged value: nothing to refuse


@pytest.mark.parametrize("value", [2, 0x80, 0xFF])
def test_bypass_holds_only_0_or_1(value: int) -> None:
    dev = device("spec")
    assert dev.write_config(36, bytes([value])) == "virtio.config.bypass_value"
    assert dev.config[36] == 1 and dev.broken is None
    qdev = device("qemu")
    assert qdev.write_config(36, bytes([value])) == "virtio.config.bypass_value"
    assert qdev.config[36] == 1 and qdev.broken == "virtio.config.bypass_value"


def test_other_fields_are_read_only(profile: str) -> None:
    dev = device(profile)
    before = dev.config
    assert dev.write_config(0, b"\xff" * 8) == "virtio.config.read_only"
    assert dev.write_config(37, b"\xff") == "virtio.config.read_only"
    assert dev.config == before


def test_bypass_survives_device_reset_not_system_reset(profile: str) -> None:
    dev = device(profile)
    dev.write_config(36, b"\0")
    dev.reset()
    assert dev.bypass == 0 and dev.negotiated == Feature(0)
    dev.system_reset()
    assert dev.bypass == 1
    assert device(profile, bypass=0).config[36] == 0


def test_reserved_regions_of_an_endpoint_do_not_overlap_in_spec() -> None:
    from iommu_uapi_virtio_iommu import ReservedRegion, ResvSubtype
    a, b = ReservedRegion(0x1000, 0x1FFF), ReservedRegion(0x1800, 0x27FF)
    with pytest.raises(UAPIError) as e:
        VirtioIommuDevice({1: (b,)}, reserved_regions=[a])
    assert e.value.rule == "virtio.device.resv_overlap"
    msi = [ReservedRegion(0, 0xFFF, ResvSubtype.MSI), ReservedRegion(0x2000, 0x2FFF,
                                                                    ResvSubtype.MSI)]
    with pytest.raises(UAPIError) as e:
        VirtioIommuDevice([1], reserved_regions=msi)
    assert e.value.rule == "virtio.device.resv_msi"
    assert VirtioIommuDevice({1: (b,)}, reserved_regions=[a, *msi], profile="qemu")
    with pytest.raises(UAPIError) as e:
        VirtioIommuDevice([1], reserved_regions=[ReservedRegion(5, 4)])
    assert e.value.rule == "virtio.device.config"

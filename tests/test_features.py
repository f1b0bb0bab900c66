"""Feature flags at their stated values; negotiation lists everything missing."""

from __future__ import annotations

import errno

import msgspec
import pytest

from iommu_uapi import FeatureError
from iommu_uapi.features import CacheCell, Capabilities, FailureReport, Feature, negotiate
from iommu_uapi.uapi.consts import CacheType, InvGranularity

VTD_LIKE = Capabilities(
    features=Feature.BIND_PGTBL | Feature.CACHE_INVLD | Feature.PAGE_REQUEST,
    formats=(1,),
    pasid_bits=20,
    input_address_widths=(48,),
    cache_cells=frozenset({CacheCell(CacheType.IOTLB, InvGranularity.PASID),
                           CacheCell(CacheType.IOTLB, InvGranularity.ADDR),
                           CacheCell(CacheType.DEV_IOTLB, InvGranularity.ADDR)}),
    failure_reporting={"cache_invalidate": FailureReport.NONE},
)


def test_feature_values() -> None:
    assert [int(f) for f in Feature] == [1, 2, 4, 8, 16]
    assert [f.name for f in Feature] == ["SYSWIDE_PASID", "BIND_PGTBL", "CACHE_INVLD",
                                         "BIND_PASID_TABLE", "PAGE_REQUEST"]


def test_negotiation_succeeds_on_what_is_declared() -> None:
    result = negotiate(VTD_LIKE, Feature.BIND_PGTBL | Feature.CACHE_INVLD,
                       [(CacheType.IOTLB | CacheType.DEV_IOTLB, InvGranularity.ADDR)],
                       pasid_bits=20, address_width=48, formats=[1])
    assert result.features == Feature.BIND_PGTBL | Feature.CACHE_INVLD
    assert CacheCell(CacheType.DEV_IOTLB, InvGranularity.ADDR) in result.cache_cells


def test_negotiation_refuses_listing_every_missing_item() -> None:
    with pytest.raises(FeatureError) as err:
        negotiate(VTD_LIKE, Feature.BIND_PASID_TABLE | Feature.SYSWIDE_PASID,
                  [(CacheType.IOTLB, InvGranularity.DOMAIN), (CacheType.PASID,
                                                              InvGranularity.PASID)],
                  pasid_bits=22, address_width=57, formats=[2])
    assert err.value.errno == errno.EOPNOTSUPP
    assert err.value.missing == (
        "feature SYSWIDE_PASID", "feature BIND_PASID_TABLE", "cache cell IOTLBxDOMAIN",
        "cache cell PASIDxPASID", "pasid_bits 22 (backend has 20)",
        "address width 57 (backend has [48])", "format 2")


def test_cells_need_the_cache_invalidation_feature() -> None:
    caps = msgspec.structs.replace(VTD_LIKE, features=Feature.BIND_PGTBL)
    with pytest.raises(FeatureError) as err:
        negotiate(caps, 0, [(CacheType.IOTLB, InvGranularity.PASID)])
    assert err.value.missing == ("feature CACHE_INVLD",)


def test_supports_every_bit_of_a_multi_cache_request() -> None:
    assert VTD_LIKE.supports(CacheType.IOTLB | CacheType.DEV_IOTLB, InvGranularity.ADDR)
    assert not VTD_LIKE.supports(CacheType.IOTLB | CacheType.DEV_IOTLB, InvGranularity.PASID)
    assert not VTD_LIKE.supports(0, InvGranularity.ADDR)
    assert not VTD_LIKE.supports(CacheType.IOTLB, 7)


def test_capabilities_round_trip_as_json() -> None:
    data = msgspec.json.encode(VTD_LIKE)
    assert msgspec.json.decode(data, type=Capabilities) == VTD_LIKE
    assert VTD_LIKE.to_dict()["cache_cells"] == ["DEV_IOTLBxADDR", "IOTLBxADDR", "IOTLBxPASID"]

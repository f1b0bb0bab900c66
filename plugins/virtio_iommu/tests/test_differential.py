"""Differential mode: virtio-iommu's table sharing and the SMMUv3 backend run the guest
workload with the same guest (CD table and LPAE stage 1) and give the same answers."""

from __future__ import annotations

from iommu_uapi.testing.differential import compare, run_workload


def test_virtio_iommu_agrees_with_smmuv3() -> None:
    skipped, diffs = compare(["smmuv3", "virtio-iommu"], "strict")
    assert skipped == {} and diffs == []
    outcomes = run_workload("virtio-iommu", "strict")
    assert {o[0] for o in outcomes} == {"paddr", "fault"} and len(outcomes) == 17


def test_linux_5_10_leaves_smmuv3_out_with_its_reason() -> None:
    skipped, diffs = compare(["smmuv3", "virtio-iommu"])
    assert list(skipped) == ["smmuv3"] and skipped["smmuv3"].startswith("no guest format")
    assert diffs == []

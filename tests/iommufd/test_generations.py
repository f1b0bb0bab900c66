"""Both generations, one model: the 2020 calls and iommufd give the same translations, cache
contents and faults on the same backend."""

from __future__ import annotations

import pytest

from iommu_uapi.testing import generations
from iommu_uapi.testing.generations import compare_generations, run_2020, run_iommufd


@pytest.mark.parametrize("profile", ["linux-5.10", "strict"])
def test_vtd_generations_agree(profile: str) -> None:
    assert compare_generations("vtd", profile) == []


def test_the_workload_sees_stale_entries_and_their_invalidation() -> None:
    """The comparison is not vacuous: step 1 hits the stale entry, step 2 walks again."""
    obs = run_iommufd("vtd")
    (stale,) = obs[1][0]
    (fresh,) = obs[2][0]
    assert stale[0] == fresh[0] == "paddr"
    assert stale[1] != fresh[1] and stale[2] == 0 and fresh[2] > 0
    assert obs[0][1] and obs[0][2]          # IOTLB and device TLB hold entries
    assert all(obs[0][3].values())          # the context and PASID caches hold entries
    assert any(o[0] == "fault" for o in obs[-1][0])
    assert obs[5][0] == [("page requests", 1, 0)]  # asked, then answered through the queue


def test_a_lost_invalidation_is_a_difference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generations._GenIommufd, "_run", lambda self, pasid, entries: None)
    diffs = compare_generations("vtd")
    assert any("IOTLB" in d for d in diffs) and any("DMA outcomes" in d for d in diffs)


def test_both_runs_are_deterministic() -> None:
    assert run_2020("vtd") == run_2020("vtd")


def test_an_unanswered_page_request_is_a_difference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generations._GenIommufd, "respond", lambda self, pasid, dev, g: None)
    assert any("page requests" in d for d in compare_generations("vtd"))

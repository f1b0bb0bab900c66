"""The suite is backend-neutral: run on VT-d (guest contexts by ``sva_bind_gpasid``) and on the
test backend whose guest contexts enter through a guest PASID table, every area is exercised —
some of its tests pass, none skipped wholesale — on at least one of them, and neither fails."""

from __future__ import annotations

from collections.abc import Iterator

import minibackend
import pytest

from iommu_uapi import plugins
from iommu_uapi.matrix import run_backend


@pytest.fixture
def table_backend() -> Iterator[str]:
    plugins.register_plugin("mini-table", minibackend.table_plugin)
    yield "mini-table"
    plugins.unregister_plugin("mini-table")


def test_every_area_runs_on_vtd_or_the_pasid_table_backend(table_backend: str) -> None:
    pytest.importorskip("iommu_uapi_vtd", reason="the vtd plugin is not installed")
    results = {name: run_backend(name) for name in ("vtd", table_backend)}
    for name, result in results.items():
        assert result.ok and not result.error, (name, result.error, {
            a: r.verdict for a, r in result.areas.items()})
    areas = set().union(*(r.areas for r in results.values()))
    assert len(areas) >= 10
    unexercised = [a for a in sorted(areas)
                   if not any(a in r.areas and r.areas[a].passed for r in results.values())]
    assert unexercised == []
    table = results[table_backend].areas
    for area in ("bind lifecycle", "invalidation", "isolation", "faults"):
        assert table[area].passed, f"{area}: the table backend's guest contexts were not used"

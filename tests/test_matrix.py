"""iommu-uapi matrix: the suite per backend, areas in a table, failures make the exit non-zero."""

from __future__ import annotations

import json
from collections.abc import Iterator

import minibackend
import pytest
from test_suite_catches_bugs import ForgetsInvalidations, plugin_for

from iommu_uapi import plugins
from iommu_uapi.cli import main
from iommu_uapi.matrix import run_backend


@pytest.fixture
def installed() -> Iterator[None]:
    plugins.register_plugin("mini", minibackend)
    plugins.register_plugin("broken", plugin_for(ForgetsInvalidations))
    yield
    plugins.unregister_plugin("mini")
    plugins.unregister_plugin("broken")


def test_good_backend_passes_every_area(installed: None) -> None:
    result = run_backend("mini")
    assert result.ok and not result.error
    assert {"size rules", "rules", "negotiation", "bind lifecycle", "invalidation", "isolation",
            "faults", "pasids", "fuzz", "stateful"} <= set(result.areas)
    assert all(area.verdict == "passed" for area in result.areas.values())


def test_broken_backend_fails_and_the_exit_status_says_so(
        installed: None, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["matrix", "--backend", "mini", "--backend", "broken", "--json"])
    rows = {row["backend"]: row for row in json.loads(capsys.readouterr().out)}
    assert code == 1
    assert rows["mini"]["ok"] and not rows["broken"]["ok"]
    assert rows["broken"]["areas"]["invalidation"]["verdict"] == "failed"
    assert rows["broken"]["areas"]["isolation"]["verdict"] == "passed"


def test_unknown_backend_is_refused(installed: None) -> None:
    assert main(["matrix", "--backend", "nosuch"]) == 1

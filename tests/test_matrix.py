"""iommu-uapi matrix: the suite per backend, areas in a table, failures make the exit non-zero."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import metadata

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
    assert main(["matrix", "--backend", "nosuch"]) == 2


@pytest.fixture
def ghost(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An installed backend whose module does not import."""
    found = plugins._entry_points

    def entry_points() -> list[metadata.EntryPoint]:
        return [*found(), metadata.EntryPoint("ghost", "iommu_uapi_ghost_nosuch.hooks",
                                              plugins.ENTRY_POINT_GROUP)]

    monkeypatch.setattr(plugins, "_entry_points", entry_points)
    plugins.reset()
    yield
    monkeypatch.undo()
    plugins.reset()


def test_a_backend_that_does_not_load_fails_the_matrix_naming_it(
        ghost: None, capsys: pytest.CaptureFixture[str]) -> None:
    installed = sorted(plugins.registry().backends)
    code = main(["matrix", "--json", *(f"--exclude={n}" for n in installed)])
    rows = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [row["backend"] for row in rows] == ["ghost"] and not rows[0]["ok"]
    assert "iommu_uapi_ghost_nosuch" in rows[0]["error"]
    assert main(["matrix", "--backend", "ghost"]) == 1
    assert "ghost" in capsys.readouterr().out


def test_excluding_the_broken_backend_lets_the_matrix_pass(
        ghost: None, installed: None, capsys: pytest.CaptureFixture[str]) -> None:
    others = [n for n in plugins.registry().backends if n != "mini"]
    code = main(["matrix", "--json", "--exclude", "ghost", *(f"--exclude={n}" for n in others)])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and [row["backend"] for row in rows] == ["mini"]

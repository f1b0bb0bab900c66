"""iommu-uapi matrix: the suite per backend, areas in a table, failures make the exit non-zero."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import metadata

import minibackend
import pluggy
import pytest
from test_suite_catches_bugs import ForgetsInvalidations, plugin_for

from iommu_uapi import plugins
from iommu_uapi.cli import main
from iommu_uapi.matrix import areas, run_backend
from iommu_uapi.memory import PhysicalMemory


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
    # the test backend implements none of the iommufd hooks: that area is not supported
    assert result.areas["iommufd"].verdict == "not supported"
    assert result.areas["iommufd"].skip_reasons == ["backend does not implement iommu_hw_info"]
    assert all(area.verdict == "passed" for name, area in result.areas.items()
               if name != "iommufd")


def test_broken_backend_fails_and_the_exit_status_says_so(
        installed: None, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["matrix", "--backend", "mini", "--backend", "broken", "--json",
                 "--area", "invalidation", "--area", "isolation"])
    rows = {row["backend"]: row for row in json.loads(capsys.readouterr().out)}
    assert code == 1
    assert rows["mini"]["ok"] and not rows["broken"]["ok"]
    assert rows["broken"]["areas"]["invalidation"]["verdict"] == "failed"
    assert rows["broken"]["areas"]["isolation"]["verdict"] == "passed"
    assert set(rows["mini"]["areas"]) == {"invalidation", "isolation"}


def test_areas_are_the_suites_classes_and_unknown_ones_are_a_usage_error(
        installed: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert areas() == ["size rules", "rules", "negotiation", "bind lifecycle", "invalidation",
                       "iommufd", "isolation", "concurrency", "faults", "pasids", "fuzz",
                       "stateful"]
    assert main(["matrix", "--backend", "mini", "--area", "nosuch"]) == 2
    assert "areas: size rules, rules" in capsys.readouterr().err


def test_building_an_iommu_reuses_what_pluggy_found_for_the_class() -> None:
    """Hook discovery is remembered per backend class: a second instance looks up no
    attribute statically, and each instance still routes its hooks to itself alone."""
    first, second = minibackend.MiniBackend(PhysicalMemory()), \
        minibackend.MiniBackend(PhysicalMemory())
    plugins.instance_manager(first, "one")
    looked_up: list[str] = []
    real = pluggy.PluginManager.parse_hookimpl_opts

    def counting(self: pluggy.PluginManager, plugin: object, name: str) -> object:
        looked_up.append(name)
        return real(self, plugin, name)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pluggy.PluginManager, "parse_hookimpl_opts", counting)
        pm = plugins.instance_manager(second, "two")
    assert looked_up == []
    impls = pm.hook.iommu_capabilities.get_hookimpls()
    assert [i.plugin for i in impls] == [second]
    assert pm.hook.iommu_capabilities() == second.iommu_capabilities()


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
    code = main(["matrix", "--json", "--exclude", "ghost", "--area", "negotiation",
                 *(f"--exclude={n}" for n in others)])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and [row["backend"] for row in rows] == ["mini"]

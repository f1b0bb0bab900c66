"""Plugin discovery from real installed distributions, duplicates, disabling, broken plugins."""

from __future__ import annotations

import errno
import importlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from iommu_uapi import UAPIError, plugins

PLUGIN = '''
"""A backend distribution used by the discovery tests."""
from iommu_uapi.hookspecs import hookimpl
from iommu_uapi.plugins import BackendSpec


class Unit:
    name = "{name}"


@hookimpl
def iommu_register_backends(register):
    register(BackendSpec(name="{name}", factory=lambda memory, **cfg: Unit(),
                         description="{description}"))
'''


def make_dist(root: Path, dist: str, module: str, body: str) -> Path:
    src = root / dist
    src.mkdir()
    (src / f"{module}.py").write_text(body)
    (src / "pyproject.toml").write_text(textwrap.dedent(f"""
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"
        [project]
        name = "{dist}"
        version = "1.2.3"
        [project.entry-points."iommu_uapi.backends"]
        {module} = "{module}"
        [tool.hatch.build.targets.wheel]
        include = ["{module}.py"]
        """))
    return src


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two real distributions (and a broken one) installed with pip into a private site dir."""
    root = tmp_path_factory.mktemp("dists")
    target = root / "site"
    sources = [
        make_dist(root, "iommu-uapi-alpha", "alpha_backend",
                  PLUGIN.format(name="alpha", description="first")),
        make_dist(root, "iommu-uapi-beta", "beta_backend",
                  PLUGIN.format(name="alpha", description="same name, other distribution")),
        make_dist(root, "iommu-uapi-broken", "broken_backend", "raise ImportError('no')\n"),
    ]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), *map(str, sources)],
                   check=True, capture_output=True)
    return target


@pytest.fixture
def installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    plugins.reset()
    yield
    plugins.reset()
    for name in ("alpha_backend", "beta_backend", "broken_backend"):
        sys.modules.pop(name, None)


def test_backend_found_through_its_entry_point(installed: None) -> None:
    spec = plugins.get_backend("alpha")
    assert spec.distribution in {"iommu-uapi-alpha", "iommu-uapi-beta"}
    assert spec.version == "1.2.3"
    assert spec.factory(None).name == "alpha"  # type: ignore[attr-defined]


def test_duplicate_name_names_both_distributions(installed: None) -> None:
    problems = [p.error for p in plugins.registry().problems if "both" in p.error]
    assert len(problems) == 1
    assert "iommu-uapi-alpha" in problems[0] and "iommu-uapi-beta" in problems[0]


def test_broken_plugin_is_logged_and_skipped(installed: None,
                                              caplog: pytest.LogCaptureFixture) -> None:
    reg = plugins.registry(refresh=True)
    assert "alpha" in reg.backends
    broken = [p for p in reg.problems if p.entry_point == "broken_backend"]
    assert broken and "ImportError" in broken[0].error
    assert broken[0].distribution == "iommu-uapi-broken"
    assert "skipping plugin broken_backend" in caplog.text


def test_strict_mode_makes_a_broken_plugin_an_error(installed: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOMMU_UAPI_STRICT_PLUGINS", "1")
    with pytest.raises(UAPIError) as err:
        plugins.registry(refresh=True)
    assert "iommu-uapi-" in str(err.value)


def test_disable_plugins_by_entry_point_name(installed: None,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOMMU_UAPI_DISABLE_PLUGINS", "alpha_backend, beta_backend")
    reg = plugins.registry(refresh=True)
    assert "alpha" not in reg.backends
    with pytest.raises(UAPIError) as err:
        plugins.get_backend("alpha")
    assert err.value.errno == errno.ENODEV and "available" in str(err.value)


def test_asking_for_a_backend_whose_plugin_does_not_load_names_the_load_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    found = plugins._entry_points
    monkeypatch.setattr(plugins, "_entry_points", lambda: [
        *found(), metadata.EntryPoint("ghost", "iommu_uapi_ghost_nosuch.hooks",
                                      plugins.ENTRY_POINT_GROUP)])
    plugins.reset()
    try:
        with pytest.raises(UAPIError) as err:
            plugins.get_backend("ghost")
        assert err.value.errno == errno.ENODEV and err.value.rule == "backend.unknown"
        assert "does not load" in err.value.message
        assert "iommu_uapi_ghost_nosuch" in err.value.message
    finally:
        monkeypatch.undo()
        plugins.reset()

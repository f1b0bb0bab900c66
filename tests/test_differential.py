"""Differential mode: the test backend and every installed backend able to run the guest
workload give the same translations and the same generic faults (run in tox's matrix env, where
the VT-d backend is installed)."""

from __future__ import annotations

from collections.abc import Iterator

import minibackend
import pytest

from iommu_uapi import plugins
from iommu_uapi.testing.differential import compare, run_workload


@pytest.fixture
def backends() -> Iterator[list[str]]:
    plugins.register_plugin("mini", minibackend)
    yield sorted(plugins.registry().backends)
    plugins.unregister_plugin("mini")


def test_workload_outcomes_are_real(backends: list[str]) -> None:
    outcomes = run_workload("mini")
    kinds = {o[0] for o in outcomes}
    assert kinds == {"paddr", "fault"} and len(outcomes) == 17


def test_installed_backends_agree_with_the_test_backend(backends: list[str]) -> None:
    others = [b for b in backends if b != "mini"]
    if not others:
        pytest.skip("no other backend installed (tox -e matrix installs them)")
    skipped, diffs = compare(["mini", *others])
    assert set(skipped) < {"mini", *others}, skipped
    assert diffs == []

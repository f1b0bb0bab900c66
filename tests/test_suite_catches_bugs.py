"""The conformance suite must fail on broken backends: each case breaks the test backend in one
way a real backend could, and the suite has to notice."""

from __future__ import annotations

import types
from collections.abc import Iterator

import minibackend
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from iommu_uapi import plugins
from iommu_uapi.hookspecs import hookimpl
from iommu_uapi.testing.stateful import machine_for


class ForgetsInvalidations(minibackend.MiniBackend):
    @hookimpl
    def iommu_cache_invalidate(self, domain: object, dev: object, info: object,
                               profile: str) -> None:
        return None


class KeepsStaleEntriesOnUnbind(minibackend.MiniBackend):
    @hookimpl
    def iommu_sva_unbind_gpasid(self, domain: object, dev: object, pasid: int) -> None:
        key = (dev.sid, pasid)  # type: ignore[attr-defined]
        self.binds.pop(key, None)  # no IOTLB flush, no config-cache flush


def plugin_for(cls: type) -> types.ModuleType:
    module = types.ModuleType(f"broken_{cls.__name__}")

    @hookimpl
    def iommu_register_backends(register: object) -> None:
        register(plugins.BackendSpec(name="broken", factory=cls))  # type: ignore[operator]

    module.iommu_register_backends = iommu_register_backends  # type: ignore[attr-defined]
    return module


@pytest.fixture(params=[ForgetsInvalidations, KeepsStaleEntriesOnUnbind])
def broken(request: pytest.FixtureRequest) -> Iterator[str]:
    plugins.register_plugin("broken", plugin_for(request.param))
    yield "broken"
    plugins.unregister_plugin("broken")


def test_state_machine_catches_the_broken_backend(broken: str) -> None:
    with pytest.raises(AssertionError):
        run_state_machine_as_test(machine_for(broken), settings=settings(
            max_examples=200, stateful_step_count=30, deadline=None, database=None,
            report_multiple_bugs=False, phases=[Phase.generate],
            suppress_health_check=list(HealthCheck)))

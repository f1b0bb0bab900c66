"""The conformance suite must fail on broken backends: each case breaks the test backend in one
way a real backend could, and the suite has to notice."""

from __future__ import annotations

import errno
import functools
import types
from collections.abc import Iterator
from typing import Any

import minibackend
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from iommu_uapi import plugins, profiles
from iommu_uapi.errors import UAPIError
from iommu_uapi.hookspecs import hookimpl
from iommu_uapi.iommu import IOMMU
from iommu_uapi.profiles import Profile
from iommu_uapi.testing.conformance import RuleTests
from iommu_uapi.testing.harness import Harness
from iommu_uapi.testing.isolation import IsolationTests
from iommu_uapi.testing.stateful import machine_for
from iommu_uapi.uapi import CacheInvalidateInfo


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


class KeepsStage2EntriesOnUnmap(minibackend.MiniBackend):
    @hookimpl
    def iommu_unmap(self, domain: Any, iova: int, size: int) -> int:
        return int(domain.data.unmap(iova, size))  # no IOTLB flush


class KeepsAtcEntriesOnUnmap(minibackend.MiniBackend):
    @hookimpl
    def iommu_unmap(self, domain: Any, iova: int, size: int) -> int:
        unmapped = int(domain.data.unmap(iova, size))
        self._iotlb().invalidate((domain.id,))  # the IOTLB only: ATS devices keep theirs
        return unmapped


class TableAbortsNothing(minibackend.MiniBackend):
    def _table_context(self, dev: Any, domain: Any, pasid: int | None, word0: int) -> Any:
        return super()._table_context(dev, domain, pasid, word0 & ~1)  # ABORT read as BYPASS


class WritesTableBeforeChecking(minibackend.MiniBackend):
    @hookimpl
    def iommu_attach_pasid_table(self, domain: Any, cfg: Any, profile: str) -> None:
        self.memory.write64(self.entries[domain.id] + 8, cfg.pasid_bits)
        if cfg.format != 1:
            raise UAPIError(errno.EINVAL, "attach_pasid_table: format unknown")
        super().iommu_attach_pasid_table(domain, cfg, profile)


class DetachTableFails(minibackend.MiniBackend):
    @hookimpl
    def iommu_detach_pasid_table(self, domain: Any) -> None:
        if not self._table_config(domain):
            raise UAPIError(errno.EINVAL, "detach_pasid_table: nothing attached")
        super().iommu_detach_pasid_table(domain)


class SkipsCoreChecks(minibackend.MiniBackend):
    """Installs its own fast path for guest invalidations that decodes the user's bytes without
    the core's size discipline and content checks."""

    @hookimpl
    def iommu_instance_init(self, iommu: IOMMU) -> None:
        self.iommu = iommu

        def fast(domain: Any, dev: Any, ubuf: bytes, **kw: Any) -> None:
            raw = bytes(ubuf[:CacheInvalidateInfo.SIZE]).ljust(CacheInvalidateInfo.SIZE, b"\0")
            iommu.uapi._invalidate(domain, dev, CacheInvalidateInfo.from_bytes(raw),
                                   iommu.profile)

        iommu.uapi_cache_invalidate = fast  # type: ignore[method-assign]


def plugin_for(cls: type) -> types.ModuleType:
    module = types.ModuleType(f"broken_{cls.__name__}")

    @hookimpl
    def iommu_register_backends(register: object) -> None:
        register(plugins.BackendSpec(  # type: ignore[operator]
            name="broken", factory=functools.partial(cls, pasid_table=True)))

    module.iommu_register_backends = iommu_register_backends  # type: ignore[attr-defined]
    return module


@pytest.fixture(params=[ForgetsInvalidations, KeepsStaleEntriesOnUnbind,
                        KeepsStage2EntriesOnUnmap, TableAbortsNothing,
                        WritesTableBeforeChecking, DetachTableFails])
def broken(request: pytest.FixtureRequest) -> Iterator[str]:
    plugins.register_plugin("broken", plugin_for(request.param))
    yield "broken"
    plugins.unregister_plugin("broken")


def test_state_machine_catches_the_broken_backend(broken: str) -> None:
    # a model mismatch fails an assertion; a call that must not fail raises its UAPIError
    with pytest.raises((AssertionError, UAPIError)):
        run_state_machine_as_test(machine_for(broken), settings=settings(
            max_examples=200, stateful_step_count=30, deadline=None, database=None,
            derandomize=True,  # the same sequences every run: a catch here is never luck
            report_multiple_bugs=False, phases=[Phase.generate],
            suppress_health_check=list(HealthCheck)))


def _rule_test_fails(backend: str, rule_id: str, profile: str) -> bool:
    try:
        RuleTests().test_rule(Harness(backend), rule_id, profile)
    except (AssertionError, pytest.fail.Exception):
        return True
    return False


@pytest.mark.parametrize("rule_id", ["cache_invalidate.padding", "cache_invalidate.version",
                                     "cache_invalidate.copy_rest",
                                     "cache_invalidate.argsz_granularity"])
def test_rule_tests_catch_a_backend_that_bypasses_the_core_checks(rule_id: str) -> None:
    plugins.register_plugin("broken", plugin_for(SkipsCoreChecks))
    try:
        assert _rule_test_fails("broken", rule_id, "strict")
    finally:
        plugins.unregister_plugin("broken")
    plugins.register_plugin("mini", minibackend)
    try:
        assert not _rule_test_fails("mini", rule_id, "strict")  # the same test, sound backend
    finally:
        plugins.unregister_plugin("mini")


@pytest.mark.parametrize("profile", ["linux-5.10", "strict"])
@pytest.mark.parametrize("rule_id", ["cache_invalidate.padding", "bind.padding",
                                     "page_response.flags", "attach_pasid_table.config_range",
                                     "cache_invalidate.argsz_granularity"])
def test_rule_tests_catch_a_mutated_check(rule_id: str, profile: str) -> None:
    """The profile a check consults loses one rule: the check is skipped, the suite fails."""
    plugins.register_plugin("mini", minibackend)
    original = profiles.get(profile)
    try:
        assert not _rule_test_fails("mini", rule_id, profile)
        profiles.register(Profile(profile, original.description, original.rules - {rule_id}),
                          replace=True)
        assert _rule_test_fails("mini", rule_id, profile)
    finally:
        profiles.register(original, replace=True)
        plugins.unregister_plugin("mini")


def test_isolation_area_catches_ats_entries_kept_after_a_host_unmap() -> None:
    plugins.register_plugin("broken", plugin_for(KeepsAtcEntriesOnUnmap))
    try:
        h = Harness("broken")
        with pytest.raises(pytest.fail.Exception, match="after the host unmap"):
            IsolationTests().test_host_unmap_reaches_every_device_with_and_without_pasid(h)
    finally:
        plugins.unregister_plugin("broken")

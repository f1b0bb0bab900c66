"""Bounded hypothesis profiles (the same names as the core's tests) and the device fixtures."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(params=["spec", "qemu"])
def profile(request: pytest.FixtureRequest) -> str:
    """Both profiles, for rules that read the same in each."""
    return str(request.param)

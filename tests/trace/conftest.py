"""Fixtures of the trace tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import register_mini


@pytest.fixture(autouse=True)
def mini() -> Iterator[None]:
    """The test backend, registered as ``mini``."""
    yield from register_mini()

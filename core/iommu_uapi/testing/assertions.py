"""What every conformance test asks of a call: gating by capabilities, and refusals that name
their errno and rule and change nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ..errors import UAPIError
from ..features import CacheCell, Feature
from .harness import Harness

__all__ = ["errno_of", "need", "outcome", "refusal", "refused_unchanged"]


def need(h: Harness, feature: Feature | None = None, cell: CacheCell | None = None,
         nesting: bool = False) -> None:
    """Skip the running test unless the backend declares ``feature``/``cell``/nesting."""
    if feature is not None and not h.caps.features & feature:
        pytest.skip(f"backend does not declare feature {feature.name}")
    if cell is not None and cell not in h.caps.cache_cells:
        pytest.skip(f"backend does not declare cache cell {cell}")
    if nesting and not h.nesting:
        pytest.skip("backend binds no guest page table format this suite can build "
                    f"(formats {list(h.caps.formats)})")


def errno_of(call: Callable[[], object]) -> int:
    """The errno of the UAPIError ``call`` raises (the test fails if it raises nothing)."""
    with pytest.raises(UAPIError) as info:
        call()
    return info.value.errno


def refusal(h: Harness, call: Callable[[], object]) -> UAPIError:
    """Run ``call``, which must be refused, and check it changed nothing; returns the error."""
    before = h.snapshot()
    with pytest.raises(UAPIError) as info:
        call()
    assert h.snapshot() == before, "a refused call changed state"
    return info.value


def refused_unchanged(h: Harness, call: Callable[[], object]) -> int:
    """Run ``call``, which must be refused, and check it changed nothing; returns the errno."""
    return refusal(h, call).errno


def outcome(call: Callable[[], object]) -> UAPIError | None:
    """Run ``call``: None if it succeeded, else the :class:`UAPIError` it raised. (A backend's
    own refusal may change state where the profile says so: linux-5.10 drops a pending page
    request whatever the driver answers.)"""
    try:
        call()
    except UAPIError as err:
        return err
    return None

"""What every conformance test asks of a call: gating by capabilities, and refusals that name
their errno and rule and change nothing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ..errors import UAPIError
from ..features import CacheCell, Feature
from ..guest import GuestEntry
from .harness import Harness, no_guest_reason

__all__ = ["errno_of", "need", "outcome", "refusal", "refused_unchanged"]


def need(h: Harness, feature: Feature | None = None, cell: CacheCell | None = None,
         nesting: bool = False, entry: GuestEntry | None = None, pasids: bool = False) -> None:
    """Skip the running test unless the backend declares ``feature``/``cell``, a guest can nest
    (``nesting``), guest contexts enter by ``entry``, or (``pasids``) the guest has contexts
    told apart by the PASID their DMA carries (the last two imply nesting)."""
    if feature is not None and not h.caps.features & feature:
        pytest.skip(f"backend does not declare feature {feature.name}")
    if cell is not None and cell not in h.caps.cache_cells:
        pytest.skip(f"backend does not declare cache cell {cell}")
    if (nesting or entry is not None or pasids) and not h.nesting:
        pytest.skip(f"no guest can nest: {no_guest_reason(h.iommu)}")
    if pasids and h.single_context:
        pytest.skip(f"the guest format {h.format!r} holds a single context, reached by DMA "
                    f"without PASID ({h.caps.profiles[0]} profile)")
    if entry is not None and h.entry is not entry:
        pytest.skip(f"guest contexts enter by {h.entry.value if h.entry else None}, "
                    f"not {entry.value}")


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

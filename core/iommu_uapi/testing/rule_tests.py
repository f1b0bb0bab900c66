"""Conformance area: every core rule of the table, through the backend's user-bytes entry
points, in every profile the backend supports (the cases are :mod:`.rule_cases`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial

import pytest

from ..abi import SizeDiscipline
from ..errors import UAPIError
from ..features import Feature
from ..rules import LINUX_5_10, RULES_BY_ID, STRICT
from ..vfio import VfioContainer
from .assertions import need, outcome, refusal
from .harness import GUEST_VA as VA
from .harness import Harness
from .rule_cases import BIND_HPASID, RESPONSE_GRPID, RULE_CASES

__all__ = ["PROFILES", "RULE_ENTRY_POINTS", "RuleTests"]


Send = Callable[[Harness, bytes, str, SizeDiscipline], object]

#: The entry points that take user bytes, as :data:`~.rule_cases.RULE_CASES` names them (the
#: façade's, and a VFIO container's ioctls as ``vfio.*``):
#: the feature each needs from the backend (None: every nesting backend answers it) and how the
#: harness calls it with (bytes, profile, discipline).
RULE_ENTRY_POINTS: dict[str, tuple[Feature | None, Send]] = {
    "uapi_cache_invalidate": (Feature.CACHE_INVLD, lambda h, b, p, d: (
        h.iommu.uapi_cache_invalidate(h.domain, h.dev, b, profile=p, discipline=d))),
    "uapi_sva_bind_gpasid": (Feature.BIND_PGTBL, lambda h, b, p, d: (
        h.iommu.uapi_sva_bind_gpasid(h.domain, h.dev2, b, profile=p, discipline=d))),
    "uapi_sva_unbind_gpasid": (Feature.BIND_PGTBL, lambda h, b, p, d: (
        h.iommu.uapi_sva_unbind_gpasid(h.domain, h.dev2, b, profile=p, discipline=d))),
    "uapi_page_response": (Feature.PAGE_REQUEST, lambda h, b, p, d: (
        h.iommu.uapi_page_response(h.dev, b, profile=p, discipline=d))),
    "uapi_attach_pasid_table": (Feature.BIND_PASID_TABLE, lambda h, b, p, d: (
        h.iommu.uapi_attach_pasid_table(h.domain, b, profile=p, discipline=d))),
    "nesting_info": (None, lambda h, b, p, d: h.iommu.nesting_info(h.domain, bytearray(b))),
    "vfio.nesting_op": (None, lambda h, b, p, d: (
        VfioContainer(h.iommu, h.domain).nesting_op(b, profile=p, discipline=d))),
    "vfio.set_pasid_table": (None, lambda h, b, p, d: (
        VfioContainer(h.iommu, h.domain).set_pasid_table(b, profile=p, discipline=d))),
    "vfio.cache_invalidate": (None, lambda h, b, p, d: (
        VfioContainer(h.iommu, h.domain).cache_invalidate(b, profile=p, discipline=d))),
}
#: Entry points that need a domain in nesting mode (a VFIO nesting container reads its
#: nesting info at attach).
_NESTING_ENTRIES = frozenset({"nesting_info", "vfio.nesting_op", "vfio.set_pasid_table",
                              "vfio.cache_invalidate"})


def _own_bind_pasid(h: Harness) -> None:
    if BIND_HPASID not in h.iommu.pasids:
        h.vm.alloc(BIND_HPASID, BIND_HPASID)


def _pending_request(h: Harness) -> None:
    if not any(f.prm.grpid == RESPONSE_GRPID for f in h.iommu.pending_page_requests(h.dev)):
        with contextlib.suppress(UAPIError):  # a device that cannot ask leaves none pending
            h.iommu.page_request(h.dev, VA, grpid=RESPONSE_GRPID)


#: What an entry point needs in place so that a passing neighbour reaches the backend (and a
#: refusal is seen to leave it alone): the host PASID the bind cases name is allocated; a page
#: request of the group the response cases answer is pending.
_READY: dict[str, Callable[[Harness], None]] = {
    "uapi_sva_bind_gpasid": _own_bind_pasid,
    "uapi_sva_unbind_gpasid": _own_bind_pasid,
    "uapi_page_response": _pending_request,
}

#: The built-in validation profiles; a backend runs the ones its capabilities list.
PROFILES = (LINUX_5_10, STRICT)
_DRIVEN = [c.rule for c in RULE_CASES.values() if c.via]


def _nothing(h: Harness) -> None:
    return None


def _message_op(entry: str, operation: str) -> str:
    return "unbind" if entry == "uapi_sva_unbind_gpasid" else operation


class RuleTests:
    """Every core rule, through the backend's user-bytes entry points, in every profile the
    backend supports: the rule's failing bytes are refused with its errno and rule id and
    change nothing; its passing neighbour is not refused by that rule. Rules outside their
    profile (the linux-5.10 quirks) must let the failing bytes past that rule."""

    @pytest.mark.parametrize("profile", PROFILES)
    @pytest.mark.parametrize("rule_id", _DRIVEN)
    def test_rule(self, harness: Harness, rule_id: str, profile: str) -> None:
        if profile not in harness.caps.profiles:
            pytest.skip(f"backend does not declare profile {profile}")
        case, rule = RULE_CASES[rule_id], RULES_BY_ID[rule_id]
        for entry in case.via:
            need(harness, RULE_ENTRY_POINTS[entry][0])
        if _NESTING_ENTRIES.intersection(case.via):
            need(harness, nesting=True)
        sends = [(entry, d) for entry in case.via for d in case.disciplines]

        def send(entry: str, data: bytes, d: SizeDiscipline) -> Callable[[], object]:
            return partial(RULE_ENTRY_POINTS[entry][1], harness, data, profile, d)

        for entry, d in sends:
            where = f"{rule_id} via {entry} ({profile}, {d.name})"
            _READY.get(entry, _nothing)(harness)
            if rule.applies_in(profile):
                err = refusal(harness, send(entry, case.bad, d))
                assert (err.errno, err.rule) == (rule.errno, rule_id), f"{where}: got {err}"
                assert err.message.startswith(_message_op(entry, rule.operation) + ": "), where
            else:
                quirk = outcome(send(entry, case.bad, d))
                assert quirk is None or quirk.rule != rule_id, f"{where}: outside its profiles"
        for entry, d in sends:
            _READY.get(entry, _nothing)(harness)
            later = outcome(send(entry, case.good, d))
            assert later is None or later.rule != rule_id, (
                f"{rule_id} via {entry} ({profile}, {d.name}): the passing neighbour was "
                f"refused by the rule: {later}")

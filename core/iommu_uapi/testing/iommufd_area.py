"""The iommufd area of the conformance suite: the successor API over the backend's hooks.

Gated like the other areas, by what the backend declares and implements, never by its name: it
needs the iommufd hooks (``iommu_hw_info``, ``iommu_hwpt_nested_*``), a guest format, the hooks
its way of entering takes (per PASID: ``iommu_hwpt_invalidate``; through a guest PASID table:
``iommu_viommu_alloc`` and ``iommu_viommu_invalidate``), and a hardware information type the
rig knows how to nest on (:mod:`~.iommufd_kits`); otherwise every test is skipped with the
reason. Each test drives an :class:`~.iommufd_rig.IommufdRig` through iommufd's commands and
checks what a VMM relies on: the hardware information, translation through a nested HWPT,
invalidation and its partial completion, and agreement with the 2020 calls.

The rig runs under profile ``strict`` whatever the harness's profile: iommufd belongs to
kernels without the 5.10 quirks (an SMMUv3 guest enters through its CD table there, where
v15's ``linux-5.10`` refuses the PASID-selective invalidations that needs).
"""

from __future__ import annotations

import errno

import pytest

from ..errors import UAPIError
from ..features import Feature
from ..iommufd import ENTRY_TYPES, CopyHelper, HwInfoType
from ..translation import TranslationFault
from .generations import compare_generations
from .harness import GUEST_VA, Harness
from .iommufd_rig import IommufdRig

STRICT = "strict"
#: the errno of an empty array per copy helper: the per-entry helper takes it as the support
#: probe, the full-array helper refuses it
_EMPTY_ARRAY: dict[CopyHelper, int | None] = {CopyHelper.PER_ENTRY: None,
                                              CopyHelper.FULL_ARRAY: errno.EINVAL}

__all__ = ["IommufdTests"]

VA = GUEST_VA


class IommufdTests:
    """iommufd: HW_INFO, nested HWPTs, HWPT_INVALIDATE, both generations agreeing."""

    @pytest.fixture
    def iommufd_rig(self, harness: Harness, iommu_backend_name: str) -> IommufdRig:
        """The backend driven through iommufd (profile ``strict``). Skipped, with the reason,
        when it cannot nest through it (the hooks, a guest format, a known hardware type);
        built after the 2020 ``harness``, so a backend that cannot build a host yet is skipped
        as there."""
        del harness
        try:
            return IommufdRig(iommu_backend_name, profile=STRICT)
        except LookupError as exc:
            pytest.skip(str(exc))

    def test_hw_info_names_the_hardware(self, iommufd_rig: IommufdRig) -> None:
        r = iommufd_rig
        out, data = r.client.hw_info(r.dev_id, 256)
        assert out.out_data_type != HwInfoType.NONE
        assert 0 < out.data_len <= 256 and any(data[:out.data_len])
        if r.caps.features & Feature.SYSWIDE_PASID:
            assert out.out_max_pasid_log2 == r.caps.pasid_bits

    def test_nested_hwpt_translates_through_both_stages(self, iommufd_rig: IommufdRig
                                                        ) -> None:
        r = iommufd_rig
        gpa = r.gmap(VA)
        r.enter(5, r.dev2)
        assert r.translate(VA, 5, dev=r.dev2).paddr == r.hpa(gpa)
        with pytest.raises(TranslationFault):
            r.translate(VA + 0x1000, 5, dev=r.dev2)

    def test_detach_stops_translation(self, iommufd_rig: IommufdRig) -> None:
        r = iommufd_rig
        r.gmap(VA)
        hwpt = r.enter(5, r.dev2)
        r.translate(VA, 5, dev=r.dev2)
        r.leave(hwpt, 5, r.dev2)
        with pytest.raises(TranslationFault):
            r.translate(VA, 5, dev=r.dev2)

    @pytest.mark.parametrize("whole", [False, True], ids=["page", "whole"])
    def test_invalidation_makes_a_change_visible(self, iommufd_rig: IommufdRig,
                                                 whole: bool) -> None:
        r = iommufd_rig
        r.gmap(VA)
        hwpt = r.enter(5, r.dev2)
        r.translate(VA, 5, dev=r.dev2)
        r.gunmap(VA)
        new = r.gmap(VA)
        assert r.translate(VA, 5, dev=r.dev2).paddr != r.hpa(new)  # the stale entry
        tag = r.tag(5)
        entries = r.entries.whole(tag) if whole else r.entries.page(tag, VA, 1)
        assert r.invalidate(hwpt, entries) == (len(entries), None)
        assert r.translate(VA, 5, dev=r.dev2).paddr == r.hpa(new)

    @pytest.mark.parametrize("k", [1, 2, 4])
    def test_partial_completion(self, iommufd_rig: IommufdRig, k: int) -> None:
        r = iommufd_rig
        r.gmap(VA)
        hwpt = r.enter(5, r.dev2)
        page, whole = r.entries.page(r.tag(5), VA, 1)[0], r.entries.whole(r.tag(5))[0]
        entries = [page] * (k - 1) + [r.entries.bad(), whole]
        handled, error = r.invalidate(hwpt, entries)
        assert handled == k - 1 and error is not None and error.errno in (
            errno.EINVAL, errno.EOPNOTSUPP, errno.EIO)

    def test_empty_array_changes_nothing(self, iommufd_rig: IommufdRig) -> None:
        r = iommufd_rig
        r.gmap(VA)
        hwpt = r.enter(5, r.dev2)
        r.translate(VA, 5, dev=r.dev2)
        before = r.snapshot()
        handled, error = r.invalidate(hwpt, [])
        want = _EMPTY_ARRAY[ENTRY_TYPES[r.entries.data_type][1]]
        assert handled == 0 and (error and error.errno) == want
        assert r.snapshot() == before

    def test_unknown_nested_data_type_is_refused_unchanged(self, iommufd_rig: IommufdRig
                                                           ) -> None:
        r = iommufd_rig
        dtype, data = r.nested_data()
        before = r.snapshot()
        with pytest.raises(UAPIError) as exc:
            r.client.hwpt_alloc(r.dev_id, r.parent, 0, data, 0x7F)
        assert exc.value.errno == errno.EOPNOTSUPP
        assert r.snapshot() == before
        del dtype

    def test_generations_agree(self, iommufd_rig: IommufdRig, iommu_backend_name: str
                               ) -> None:
        del iommufd_rig  # the gate
        assert compare_generations(iommu_backend_name, STRICT) == []

"""The isolation area of the conformance suite: after an unbind, unmap or invalidation returns,
nothing it removed is reachable by any device, cache or path.

Domains and PASIDs never see each other's translations, in every profile. The tests of what a
call removed run under ``strict`` (skipped when the backend does not declare it): a backend's
other profiles may reproduce a real kernel's hazard, which its own tests and documentation show
(``docs/isolation.md``); ``strict`` never has one. Each test is gated by what it needs: a guest
that can nest, an ATS device (a backend that declares a device-TLB cache cell gets one from the
harness), a guest format with global pages (:attr:`~iommu_uapi.guest.GuestFormat.global_pages`),
or guest contexts that enter by ``sva_bind_gpasid``.
"""

from __future__ import annotations

import errno

import pytest

from ..guest import GuestEntry
from ..pgtable.common import Prot
from ..rules import STRICT
from ..translation import TranslationFault
from .assertions import need, refusal
from .harness import GUEST_VA, RW, Harness

__all__ = ["IsolationTests"]

VA = GUEST_VA
GUEST_RAM_PROBE = 0x1000  # a GPA mapped in the harness domain only


def under(h: Harness, profile: str) -> None:
    """Run the rest of the test under ``profile``; skip when the backend does not declare it."""
    if profile not in h.caps.profiles:
        pytest.skip(f"backend does not declare profile {profile}")
    h.iommu.profile = profile


def need_ats(h: Harness) -> None:
    """Skip unless the harness's first device has ATS (a device TLB)."""
    if h.dev.atc is None:
        pytest.skip("no ATS device: the backend declares no DEV_IOTLB cache cell")


def need_global_pages(h: Harness) -> None:
    """Skip unless the guest format can mark leaves global."""
    if h.format is None or not h.format.global_pages:
        pytest.skip(f"guest format {h.format!r} has no global pages")


def unreachable(h: Harness, va: int, pasid: int | None, why: str) -> None:
    """Every device of the harness faults on ``va`` (with ``pasid``, or without)."""
    for dev in (h.dev, h.dev2):
        with pytest.raises(TranslationFault):
            h.translate(va, pasid, dev=dev)
            pytest.fail(f"{dev!r} still translates {va:#x} (pasid {pasid}) {why}")


class IsolationTests:
    """Domains and PASIDs do not see each other's translations; what a call removed is gone
    from every device and cache when it returns."""

    def test_domains_are_isolated(self, harness: Harness) -> None:
        other = harness.new_domain()
        dev = harness.iommu.add_device(0x0310)
        harness.iommu.attach_device(other, dev)
        harness.iommu.map(other, 0x4000_0000, 0x2_0000_0000, 0x1000, 3)
        assert harness.iommu.translate(dev, 0x4000_0000).paddr == 0x2_0000_0000
        with pytest.raises(TranslationFault):
            harness.iommu.translate(harness.dev2, 0x4000_0000)
        with pytest.raises(TranslationFault):
            harness.iommu.translate(dev, GUEST_RAM_PROBE)

    def test_pasids_are_isolated(self, harness: Harness) -> None:
        need(harness, pasids=True)
        a, b = harness.vm.alloc(), harness.vm.alloc()
        harness.gmap(VA)
        harness.enter(a, harness.dev2)
        harness.translate(VA, a, dev=harness.dev2)
        with pytest.raises(TranslationFault):
            harness.translate(VA, b, dev=harness.dev2)

    def test_host_unmap_reaches_every_device_with_and_without_pasid(self,
                                                                    harness: Harness) -> None:
        """A stage-2 unmap of a guest page: no device, ATS or not, translates it afterwards,
        through a guest PASID or without one (an ATS device's PASID entries included)."""
        need(harness, pasids=True)  # DMA without PASID sees stage 2
        need_ats(harness)
        under(harness, STRICT)
        pasid = harness.vm.alloc()
        gpa = harness.gmap(VA)
        harness.enter(pasid)
        if harness.entry is GuestEntry.BIND_GPASID:
            harness.enter(pasid, harness.dev2)
        for dev in (harness.dev, harness.dev2):
            assert harness.translate(VA, pasid, dev=dev).paddr == harness.hpa(gpa)
            assert harness.translate(gpa, dev=dev).paddr == harness.hpa(gpa)
        assert harness.iommu.unmap(harness.domain, gpa, 0x1000) == 0x1000
        unreachable(harness, VA, pasid, "through its guest PASID after the host unmap")
        unreachable(harness, gpa, None, "without PASID after the host unmap")

    def test_unbind_leaves_no_global_entry_for_the_next_binding(self, harness: Harness) -> None:
        """A global guest page cached for a PASID does not survive the PASID's unbind: binding
        the PASID again to another table translates through that table only."""
        need(harness, entry=GuestEntry.BIND_GPASID)
        need_global_pages(harness)
        under(harness, STRICT)
        pasid = harness.vm.alloc()
        old = harness.gmap(VA, prot=RW | Prot.GLOBAL)
        for dev in (harness.dev, harness.dev2):
            harness.bind(pasid, dev)
            assert harness.translate(VA, pasid, dev=dev).paddr == harness.hpa(old)
            harness.unbind(pasid, dev)
        assert harness.format is not None
        harness.gpt = harness.format.tables(harness.guest)    # the guest's next table
        new = harness.gmap(VA + 0x1000)
        for dev in (harness.dev, harness.dev2):
            harness.bind(pasid, dev)
            with pytest.raises(TranslationFault):
                harness.translate(VA, pasid, dev=dev)
                pytest.fail(f"{dev!r}: the unbound table's global page is still served")
            assert harness.translate(VA + 0x1000, pasid, dev=dev).paddr == harness.hpa(new)

    def test_one_pasid_of_a_domain_is_not_bound_to_two_tables(self, harness: Harness) -> None:
        """Two devices of one domain share the IOTLB entries of a host PASID: binding it on
        the second device to another guest table is refused (EBUSY, ``bind.shared_pasid``),
        the same table is accepted, and after the first unbinds another table is too."""
        need(harness, entry=GuestEntry.BIND_GPASID)
        under(harness, STRICT)
        pasid = harness.vm.alloc()
        first = harness.gmap(VA)
        harness.bind(pasid, harness.dev)
        assert harness.translate(VA, pasid).paddr == harness.hpa(first)
        assert harness.format is not None
        mine, other = harness.gpt, harness.format.tables(harness.guest)
        second = harness.guest_page()
        other.map(VA, second, 0x1000, RW)
        harness.gpt = other
        err = refusal(harness, lambda: harness.bind(pasid, harness.dev2))
        assert (err.errno, err.rule) == (errno.EBUSY, "bind.shared_pasid")
        with pytest.raises(TranslationFault):
            harness.translate(VA, pasid, dev=harness.dev2)
        harness.gpt = mine
        harness.bind(pasid, harness.dev2)
        assert harness.translate(VA, pasid, dev=harness.dev2).paddr == harness.hpa(first)
        harness.unbind(pasid, harness.dev)
        harness.unbind(pasid, harness.dev2)
        harness.gpt = other
        harness.bind(pasid, harness.dev2)
        assert harness.translate(VA, pasid, dev=harness.dev2).paddr == harness.hpa(second)

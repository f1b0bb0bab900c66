"""The state machine's rules on a second domain with a guest PASID table (see
:mod:`.stateful`): attach a config whose stage 1 bypasses or aborts, detach it, send garbage
configs; requests without PASID see stage 2 (bypass) or fault (abort), requests with a PASID
never translate there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from ..errors import UAPIError
from ..translation import TranslationFault
from ..uapi.consts import PasidConfig
from .harness import GUEST_RAM_HPA, RW, Harness
from .rule_cases import pasid_table_bytes

__all__ = ["FAULT", "PasidTableDomainRules"]

#: The model's name for "this access faults".
FAULT = -1
#: The second device (with its own domain) that a guest PASID table is attached for.
_TABLE_SID = 0x0318
#: GPAs the PASID-table domain maps at stage 2 (to the harness's guest RAM pages).
_TABLE_GPAS = tuple(range(0, 0x4000, 0x1000))
_TABLE_CONFIGS = (PasidConfig.BYPASS, PasidConfig.ABORT)


class PasidTableDomainRules:
    """Mixed into :class:`~.stateful.BackendModelMachine` (whose ``h``, ``tables``,
    ``allocated``, ``_check`` and ``_translate_gpa`` these rules use)."""

    h: Harness
    tables: bool
    allocated: set[int]
    #: a guest address requests with a PASID try on the table's device
    base_va: int = 0

    _check: Callable[[int, set[int], str], None]
    _translate_gpa: Callable[[Any, int], int]

    def table_domain(self) -> None:
        """The second domain and its device, guest RAM mapped at stage 2, no table yet."""
        self.table_config = 0  # the stage-1 config attached (0: no table)
        self.tdom = self.h.iommu.domain_alloc(nesting=True)
        self.tdev = self.h.iommu.add_device(_TABLE_SID)
        self.h.iommu.attach_device(self.tdom, self.tdev)
        for gpa in _TABLE_GPAS:
            self.h.iommu.map(self.tdom, gpa, GUEST_RAM_HPA + gpa, 0x1000, RW)

    @precondition(lambda self: self.tables)
    @rule(config=st.sampled_from((0, *_TABLE_CONFIGS)))
    def table(self, config: int) -> None:
        """Attach a PASID-table config whose stage 1 bypasses or aborts (the same config in a
        format the backend does not declare is refused first, changing nothing), or (0) detach
        the table, which never fails on valid input."""
        if config:
            fmt = max(self.h.caps.formats, default=0) + 1
            before = self.h.snapshot()
            try:
                self.h.iommu.uapi_attach_pasid_table(
                    self.tdom, pasid_table_bytes(config=config, fmt=fmt))
            except UAPIError:
                assert self.h.snapshot() == before, "a refused PASID-table attach changed state"
            else:
                raise AssertionError(f"a PASID table of undeclared format {fmt} was attached")
            self.h.iommu.uapi_attach_pasid_table(self.tdom, pasid_table_bytes(config=config))
        else:
            self.h.iommu.detach_pasid_table(self.tdom)
        self.table_config = config

    @precondition(lambda self: self.tables)
    @rule(offset=st.integers(0, 35), value=st.integers(0, 255),
          config=st.sampled_from(_TABLE_CONFIGS))
    def table_garbage(self, offset: int, value: int, config: PasidConfig) -> None:
        """A config with one byte changed (or the buffer cut there): refused unchanged, or
        accepted as some config, which is then detached."""
        good = pasid_table_bytes(config=config)
        data = good[:offset] + bytes([value]) + good[offset + 1:] if offset < 32 else \
            good[:offset - 4]
        before = self.h.snapshot()
        try:
            self.h.iommu.uapi_attach_pasid_table(self.tdom, data)
        except UAPIError:
            assert self.h.snapshot() == before, "a refused PASID-table attach changed state"
            return
        self.h.iommu.detach_pasid_table(self.tdom)
        self.table_config = 0


    @invariant()
    def the_pasid_table_domain_agrees_with_the_model(self) -> None:
        """Stage 1 bypassed (or no table): requests without PASID see stage 2; aborted: every
        request faults. Requests with a PASID never translate there (nothing is bound)."""
        if not self.tables:
            return
        for gpa in _TABLE_GPAS:
            want = FAULT if self.table_config == PasidConfig.ABORT else GUEST_RAM_HPA + gpa
            got = self._translate_gpa(self.tdev, gpa)
            self._check(got, {want}, f"table domain ({self.table_config}) {gpa:#x}")
        for pasid in sorted(self.allocated):
            try:
                self.h.iommu.translate(self.tdev, self.base_va, pasid=pasid)
            except TranslationFault:
                continue
            raise AssertionError(f"PASID {pasid} translated on the PASID-table device")

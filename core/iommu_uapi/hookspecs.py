# mypy: disable-error-code="empty-body"
"""The hooks a backend implements, and the markers to implement them with.

Hooks come in two groups:

* **Discovery** — implemented by the object an ``iommu_uapi.backends`` entry point names (usually
  the backend's module): :func:`iommu_register_backends`.
* **Instance** — implemented by the backend *instance* that a backend's factory returns. Each
  :class:`~iommu_uapi.iommu.IOMMU` owns a plugin manager holding that one instance plus its
  observers, so a hook call reaches exactly one backend. These hooks build and change the data
  path (tables, caches, translation contexts); they never run per DMA: ``IOMMU.translate`` calls
  the translation context a hook built, directly.

A ``profile`` argument is a profile's name: look the profile up with
:func:`iommu_uapi.profiles.get` and ask it (its ``rules``, its ``quirk(...)``); never compare
the name.

Every instance hook is ``firstresult``: the backend's answer is the answer. An instance hook
the backend does not implement makes the façade refuse the call with ``ENODEV``, as the kernel
does for a missing ``iommu_ops`` member. Hooks raise :class:`~iommu_uapi.errors.UAPIError` to
refuse; a refusal must leave the backend's state unchanged. Observers may wrap any hook with
``@hookimpl(wrapper=True)`` (fault injection, timing) or watch every call through
``IOMMU.add_observer``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .abi import CRecord
    from .device import Device, Domain
    from .errors import UAPIError
    from .features import Capabilities
    from .guest import GuestFormat
    from .iommu import IOMMU
    from .plugins import BackendSpec
    from .translation import TranslationContext
    from .uapi import (
        CacheInvalidateInfo,
        Fault,
        GpasidBindData,
        NestingInfo,
        PageResponse,
        PasidTableConfig,
    )

PROJECT = "iommu_uapi"
hookspec = pluggy.HookspecMarker(PROJECT)
#: Mark a backend's (or an observer's) hook implementations with this.
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["PROJECT", "hookimpl", "hookspec"]


# --- Discovery -----------------------------------------------------------------------------------


@hookspec
def iommu_register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register the backends this plugin provides.

    Called once per process when the registry is first built, on every plugin found in the
    ``iommu_uapi.backends`` entry-point group. Call ``register(BackendSpec(name=..., factory=...,
    description=...))`` for each backend; ``factory(memory, **config)`` must return a new backend
    instance (the object holding the instance hooks). Hand over the backend's own rule table
    (``rules=RuleTable(...)``, :mod:`iommu_uapi.ruletable`) and any validation profiles it adds
    (``profiles=(Profile(...),)``) with the spec: they are registered with it, so ``fail()``,
    ``iommu-uapi rules --backend NAME`` and the profiles know them. Two backends registering
    one name is an error that names both distributions, and so is a table or profile that
    clashes with a registered one. Returns nothing.
    """


# --- Instance: life cycle ------------------------------------------------------------------------


@hookspec(firstresult=True)
def iommu_instance_init(iommu: IOMMU) -> None:
    """The ``IOMMU`` façade holding this backend instance was created.

    Called once, before anything else. Keep ``iommu``: its ``iotlb`` is the IOTLB the backend's
    invalidation commands act on, ``memory`` the physical memory its tables live in,
    ``forget_contexts(sid, pasids)`` drops the core's cached translation contexts built from
    configuration an invalidation removed (``forget_all_contexts()`` after a global one), and
    ``pasids`` is the PASID space binds are checked against.
    """


# --- Instance: description -----------------------------------------------------------------------


@hookspec(firstresult=True)
def iommu_capabilities() -> Capabilities:
    """Return this instance's :class:`~iommu_uapi.features.Capabilities`.

    Called when the ``IOMMU`` is created and again after a configuration change. The core refuses
    at negotiation whatever is not declared here, so declare only what the backend executes:
    a cache-type x granularity cell that would be silently dropped must not be listed.
    """


@hookspec(firstresult=True)
def iommu_nesting_info(domain: Domain) -> NestingInfo:
    """Return the ``iommu_nesting_info`` record describing ``domain``'s nesting support.

    Called by ``IOMMU.nesting_info`` after the size probe (an ``argsz`` below the record's size is
    answered by the core). Raise ``UAPIError(ENODEV)`` when the domain is not in nesting mode, as
    the Intel driver did.
    """


# --- Instance: devices and domains ---------------------------------------------------------------


@hookspec(firstresult=True)
def iommu_device_add(dev: Device) -> None:
    """A device (requester) appears behind this IOMMU: create its hardware state.

    ``dev.sid`` is its PCI requester ID. Raise ``UAPIError(EEXIST)`` if the SID is taken.
    """


@hookspec(firstresult=True)
def iommu_device_remove(dev: Device) -> None:
    """A device goes away; it is already detached from every domain. Never fails."""


@hookspec(firstresult=True)
def iommu_domain_alloc(domain: Domain) -> None:
    """Allocate a host (unmanaged) domain: its ID, its stage-2 tables. Store backend state in
    ``domain.data``. Raise ``UAPIError(ENOSPC)`` when the domain-ID space is exhausted."""


@hookspec(firstresult=True)
def iommu_domain_free(domain: Domain) -> None:
    """Free a domain with no devices attached: tables, ID, cached entries tagged with it."""


@hookspec(firstresult=True)
def iommu_domain_set_nesting(domain: Domain) -> None:
    """Put ``domain`` in nesting mode (``DOMAIN_ATTR_NESTING``).

    Must be called before the first attach. Raise ``UAPIError(ENODEV)`` when the hardware cannot
    nest or a device is already attached, as the Intel driver did.
    """


@hookspec(firstresult=True)
def iommu_attach_dev(domain: Domain, dev: Device) -> None:
    """Attach ``dev`` to ``domain``: program its context (and RID_PASID entry / STE) so requests
    without PASID translate through the domain's stage-2 tables, and invalidate the device's
    configuration caches as the driver would."""


@hookspec(firstresult=True)
def iommu_detach_dev(domain: Domain, dev: Device) -> None:
    """Detach ``dev`` from ``domain``: clear its configuration and invalidate what was cached.
    Guest PASIDs still bound to the device are unbound first by the façade."""


@hookspec(firstresult=True)
def iommu_map(domain: Domain, iova: int, paddr: int, size: int, prot: int) -> None:
    """Map ``[iova, iova + size)`` to ``paddr`` in the domain's stage-2 tables with ``prot``
    (:class:`~iommu_uapi.pgtable.common.Prot`). ``EEXIST`` on overlap, ``EINVAL`` on
    misalignment or an address beyond the domain's width; nothing changes on error."""


@hookspec(firstresult=True)
def iommu_unmap(domain: Domain, iova: int, size: int) -> int:
    """Unmap ``[iova, iova + size)`` from the domain's stage-2 tables and invalidate the IOTLB as
    the host driver does; return the number of bytes unmapped (0 when nothing was mapped).
    ``size`` is any multiple of the smallest declared page size: the backend cuts the range
    into its pages (:func:`~iommu_uapi.pgtable.tree.page_chunks`) and flushes what it unmapped
    with one range invalidation, as the kernel's ``iommu_unmap`` syncs its gather once."""


@hookspec(firstresult=True)
def iommu_map_pages(domain: Domain, iova: int, paddr: int, pgsize: int, pgcount: int,
                    prot: int) -> int:
    """Map ``pgcount`` pages of ``pgsize`` (one of the declared ``page_sizes``) from ``iova`` to
    ``paddr`` onwards in the domain's stage-2 tables (io-pgtable's ``map_pages``, Linux 5.15);
    all or nothing, refusals as :func:`iommu_map`. Return the bytes mapped. Optional: without
    it the façade calls :func:`iommu_map` with the whole range."""


@hookspec(firstresult=True)
def iommu_unmap_pages(domain: Domain, iova: int, pgsize: int, pgcount: int) -> int:
    """Unmap ``pgcount`` pages of ``pgsize`` from ``iova`` (io-pgtable's ``unmap_pages``) and
    invalidate what was unmapped with one range invalidation, as :func:`iommu_unmap` does;
    return the bytes unmapped (they stop at the first page not mapped). Optional: without it
    the façade calls :func:`iommu_unmap` with the whole range."""


@hookspec(firstresult=True)
def iommu_iova_to_phys(domain: Domain, iova: int) -> int:
    """Return the physical address ``iova`` maps to in the domain's stage-2 tables, or 0."""


# --- Instance: the UAPI operations ---------------------------------------------------------------


@hookspec(firstresult=True)
def iommu_sva_bind_gpasid(domain: Domain, dev: Device, data: GpasidBindData, argsz: int,
                          profile: str) -> None:
    """Bind a guest page table to a host PASID of ``dev`` (``sva_bind_gpasid`` op).

    ``data`` has passed the core's checks of ``profile``; ``argsz`` is the user's untouched size
    (the vendor checks it against its union member). Apply the vendor rules in the driver's order
    with its errnos, then program the PASID entry (or equivalent) and flush its caches.
    """


@hookspec(firstresult=True)
def iommu_sva_unbind_gpasid(domain: Domain, dev: Device, pasid: int) -> None:
    """Unbind host PASID ``pasid`` of ``dev``: tear down the entry, flush caches, drain the
    page requests in flight. Not bound: do nothing and succeed, as 5.10 did. A PASID outside the
    space is ``EINVAL``, one that is not allocated ``ENOENT``."""


@hookspec(firstresult=True)
def iommu_cache_invalidate(domain: Domain, dev: Device, info: CacheInvalidateInfo,
                           profile: str) -> None:
    """Invalidate the caches ``info`` names for a guest (``cache_invalidate`` op).

    ``info`` has passed the core's checks of ``profile``. Translate it into the architecture's
    native commands (VT-d QI descriptors, SMMU CMDQ commands, virtio requests) and execute them
    on the backend's caches. Per ``profile``, cells the hardware cannot execute are silently
    dropped (``linux-5.10``) or refused with ``EINVAL`` (``strict``): tabulate the refusal as a
    rule of the backend's table that names the profiles applying it, and ask
    ``rule_id in profiles.get(profile).rules``.
    """


@hookspec(firstresult=True)
def iommu_attach_pasid_table(domain: Domain, cfg: PasidTableConfig, profile: str) -> None:
    """Install a guest PASID table (SMMU CD table) for ``domain`` (``attach_pasid_table`` op)."""


@hookspec(firstresult=True)
def iommu_detach_pasid_table(domain: Domain) -> None:
    """Remove the guest PASID table of ``domain``. Never fails on a valid domain."""


# --- Instance: faults and page requests ----------------------------------------------------------


@hookspec(firstresult=True)
def iommu_page_request(dev: Device, pasid: int | None, addr: int, access: int, grpid: int,
                       last: bool, private_data: tuple[int, int] | None) -> Fault:
    """A device with PRI asks for a page: write the native page-request record and return the
    generic ``Fault`` (type ``PAGE_REQ``) the host driver would report. Raise
    ``UAPIError(EOPNOTSUPP)`` if the device or its configuration does not allow page requests
    (recording the native fault, e.g. VT-d 0x47)."""


@hookspec(firstresult=True)
def iommu_page_response(dev: Device, fault: Fault, msg: PageResponse, profile: str) -> None:
    """Answer the pending page request ``fault`` with ``msg``: build and execute the native
    response (VT-d page group response descriptor, SMMU CMD_PRI_RESP / CMD_RESUME). The core has
    already matched ``msg`` to ``fault`` by grpid and PASID."""


# --- Instance: the data path ---------------------------------------------------------------------


@hookspec(firstresult=True)
def iommu_translation_context(dev: Device, pasid: int | None, iova: int,
                              access: int) -> TranslationContext:
    """Build the translation context for requests of ``dev`` with ``pasid`` (None: no PASID).

    ``iova`` and ``access`` are the request that needs the context: they describe a fault raised
    while building it (the faulting address and access of a configuration fault) and nothing
    else, since the context serves every later request too. An implementation may leave them
    out of its signature.

    Called on the first translation after the core's context map was cleared (a configuration
    change: attach, bind, a configuration-cache invalidation). Read the configuration the way the
    hardware does — through the backend's configuration caches, so stale configuration stays
    visible until invalidated — and return an object with ``tag`` (the IOTLB tag),
    ``config_reads``, ``atc`` (the device TLB to use, or None) and ``walk(iova, access)``. Raise
    :class:`~iommu_uapi.iommu.TranslationFault` when the configuration itself faults.
    """


# --- Instance: the guest side --------------------------------------------------------------------


@hookspec(firstresult=True)
def iommu_guest_formats() -> Sequence[GuestFormat]:
    """Describe the guest side: the guest PASID formats this backend accepts, preferred first.

    Called when a guest is built for this instance — by the conformance suite's harness and the
    differential runner, once per ``IOMMU`` — never per DMA or per control call. Each
    :class:`~iommu_uapi.guest.GuestFormat` gives the ``IOMMU_PASID_FORMAT_*`` value, builds the
    stage-1 tables a guest driver writes in guest memory for it (``tables(guest)``), and says
    how a guest context enters the IOMMU: ``GuestEntry.BIND_GPASID`` with the exact
    ``iommu_gpasid_bind_data`` a VMM sends (``bind_data(hpasid, root)``), or
    ``GuestEntry.PASID_TABLE`` with the ``iommu_pasid_table_config`` attaching an empty guest
    PASID table (``pasid_table(guest)``) and the guest's write of one table entry
    (``write_entry(guest, cfg, pasid, root)``). Declare only what the backend executes: the
    suite binds or attaches with exactly these records and expects translation through the
    tables. Return an empty sequence when no guest can nest on this backend (not implementing
    the hook means the same). Raises nothing.
    """


# --- Instance: iommufd (the successor API, iommu_uapi.iommufd) -----------------------------------


@hookspec(firstresult=True)
def iommu_hw_info(dev: Device) -> tuple[int, CRecord]:
    """Describe the hardware behind ``dev`` for ``IOMMU_GET_HW_INFO``.

    Called once per ``IOMMU_GET_HW_INFO`` call, after the command struct passed its checks and
    ``dev_id`` named a bound device. Return ``(data_type, record)``: the
    ``enum iommu_hw_info_type`` value (``INTEL_VTD`` 1, ``ARM_SMMUV3`` 2) and the vendor struct
    (:class:`~iommu_uapi.iommufd.IommuHwInfoVtd`: the CAP and ECAP registers as the unit reports
    them; :class:`~iommu_uapi.iommufd.IommuHwInfoArmSmmuv3`: SMMU_IDR0..5, IIDR, AIDR). The core
    writes the record at ``data_uptr`` (truncated to, or zero-filled up to, ``data_len``) and
    derives ``out_max_pasid_log2`` and ``out_capabilities`` from the declared
    :class:`~iommu_uapi.features.Capabilities` and the device. Raises nothing; a backend
    without the hook reports type NONE and is refused with EOPNOTSUPP.
    """


@hookspec(firstresult=True)
def iommu_hwpt_nested_alloc(parent: Domain, dev: Device, data_type: int, data: CRecord) -> object:
    """Allocate a nested HWPT (stage 1) over the nesting parent ``parent`` (``IOMMU_HWPT_ALLOC``
    with vendor data).

    Called after the core checked the command, found ``parent`` (a domain in nesting mode made
    for a ``NEST_PARENT`` HWPT) and copied ``data`` (the vendor struct of ``data_type``:
    :class:`~iommu_uapi.iommufd.IommuHwptVtdS1`, :class:`~iommu_uapi.iommufd.IommuHwptArmSmmuv3`)
    under the iommufd size rules. Apply the driver's allocation checks (unknown flags or a
    non-zero reserved field EOPNOTSUPP, a bad value EINVAL, a ``data_type`` the backend does not
    build EOPNOTSUPP, forbidden STE fields EIO) and return the backend's state of the nested
    HWPT (opaque to the core, passed back to the other iommufd hooks). Nothing reaches the
    hardware until a device attaches. Raises :class:`~iommu_uapi.errors.UAPIError`.
    """


@hookspec(firstresult=True)
def iommu_hwpt_nested_attach(parent: Domain, dev: Device, pasid: int | None,
                             nested: object) -> None:
    """Install the nested configuration ``nested`` for requests of ``dev`` with ``pasid`` (None:
    requests without PASID) in the backend's real structures.

    Called when a device attaches to a nested HWPT. ``dev`` is attached to ``parent`` (the core
    attached it first for a RID attach). Program the structures the hardware reads (VT-d: a
    nested PASID entry, the same entry a guest PASID bind writes; SMMUv3: the STE with the
    guest's stage-1 fields over the parent's stage 2) and flush the configuration caches the
    way the driver does. Apply the driver's attach-time checks (VT-d: address width, SRE/EAFE
    against ECAP: EINVAL). Several nested HWPTs may share one parent, and one nested HWPT may
    serve several devices: the configuration installed is ``dev``'s alone (SMMUv3: one guest
    STE per stream), the parent's other devices keep theirs. A refusal changes nothing. Raises
    :class:`~iommu_uapi.errors.UAPIError`.
    """


@hookspec(firstresult=True)
def iommu_hwpt_nested_detach(parent: Domain, dev: Device, pasid: int | None,
                             nested: object) -> None:
    """Remove the nested configuration of ``dev`` and ``pasid`` installed by
    :func:`iommu_hwpt_nested_attach`: a PASID attach is torn down as an unbind, a RID attach
    goes back to the parent's stage 2 alone. Called on detach and before a device or HWPT is
    destroyed. Never fails on a configuration the attach hook installed.
    """


@hookspec(firstresult=True)
def iommu_hwpt_invalidate(parent: Domain, nested: object, data_type: int,
                          targets: Sequence[tuple[Device, int | None]],
                          entries: Sequence[CRecord]) -> tuple[int, UAPIError | None]:
    """Execute the vendor invalidation ``entries`` of a nested HWPT (``IOMMU_HWPT_INVALIDATE``).

    Called with the entries the core copied (in order, up to the first one it could not copy)
    and ``targets``: every (device, PASID) the nested HWPT is attached at. For each entry in
    order apply the driver's checks (VT-d ``iommu_hwpt_vtd_s1_invalidate``: unknown flags or a
    non-zero reserved field EOPNOTSUPP, an unaligned address EINVAL) and issue the native
    commands a guest invalidation issues (VT-d: the same PASID-based IOTLB and device-TLB
    descriptors as ``iommu_cache_invalidate``). Stop at the first refused entry. Return
    ``(handled, refusal)``: how many entries were executed and the refusal of the next one
    (None when all were). Executed entries stay executed: that is the partial completion the
    core reports in ``entry_num``.
    """



@hookspec(firstresult=True)
def iommu_viommu_alloc(parent: Domain, dev: Device, viommu_type: int) -> object:
    """Allocate a virtual IOMMU of ``viommu_type`` (``enum iommu_viommu_type``, e.g.
    ``ARM_SMMUV3`` 1) over the nesting parent ``parent`` (``IOMMU_VIOMMU_ALLOC``).

    Called after the core found ``parent`` (a domain made for a ``NEST_PARENT`` HWPT) and the
    device ``dev`` that names the physical IOMMU. Return the backend's state of the vIOMMU (its
    VMID and what the guest's commands are checked against); raise
    :class:`~iommu_uapi.errors.UAPIError` EOPNOTSUPP for a type the backend does not model. A
    backend without this hook has no vIOMMU (the core refuses with EOPNOTSUPP).
    """


@hookspec(firstresult=True)
def iommu_viommu_invalidate(parent: Domain, viommu: object, vdevs: dict[int, Device],
                            entries: Sequence[CRecord]) -> tuple[int, UAPIError | None]:
    """Execute guest invalidation commands through a vIOMMU (``IOMMU_HWPT_INVALIDATE`` on a
    vIOMMU id; SMMUv3: raw 16-byte CMDQ commands,
    :class:`~iommu_uapi.iommufd.IommuViommuArmSmmuv3Invalidate`).

    ``vdevs`` maps the guest's virtual IDs (StreamIDs) to the devices of the vIOMMU's vDEVICEs:
    a command naming a SID is executed for the physical device behind it. Only the opcodes the
    kernel allows are executed (SMMUv3: TLBI_NSNH_ALL, TLBI_NH_VA, TLBI_NH_VAA, TLBI_NH_ALL,
    TLBI_NH_ASID, ATC_INV, CFGI_CD, CFGI_CD_ALL; anything else, or an unknown virtual SID, is
    EIO). Stop at the first refused entry and return ``(handled, refusal)`` as
    :func:`iommu_hwpt_invalidate` does.
    """


def hook_names() -> list[str]:
    """Every hook name declared here, in declaration order."""
    return [name for name, obj in globals().items()
            if name.startswith("iommu_") and callable(obj) and hasattr(obj, f"{PROJECT}_spec")]


def instance_hook_names() -> list[str]:
    """The hooks implemented by backend instances (every hook but the discovery ones)."""
    return [n for n in hook_names() if n != "iommu_register_backends"]



def render_markdown() -> str:
    """docs/hooks.md: every hook with its signature and documentation, from this module."""
    import inspect

    module_doc = inspect.getdoc(inspect.getmodule(render_markdown)) or ""
    out = ["# Hook reference", "",
           "Generated from `iommu_uapi/hookspecs.py` by `python -m iommu_uapi.hookspecs "
           "docs/hooks.md`; a test fails when they differ.", "", module_doc, ""]
    for name in hook_names():
        func = globals()[name]
        opts = getattr(func, f"{PROJECT}_spec", {}) or {}
        sig = inspect.signature(func)
        params = ", ".join(str(p).replace("'", "") for p in sig.parameters.values())
        ret = str(sig.return_annotation).replace("'", "")
        kind = "firstresult" if opts.get("firstresult") else "all results"
        out += [f"## `{name}`", "", "```python", f"def {name}({params}) -> {ret}", "```", "",
                f"*{kind}*", "", inspect.getdoc(func) or "", ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":  # pragma: no cover
    import sys
    from pathlib import Path

    text = render_markdown()
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)
    else:
        sys.stdout.write(text)

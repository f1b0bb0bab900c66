"""The model's own refusals: the rule ids that are not checks of the kernel's UAPI layer.

:mod:`iommu_uapi.rules` tabulates what the kernel (or the documented contract) checks before a
request reaches the IOMMU driver, per profile. Everything else the core refuses is tabulated
here, the same in every profile: the façade's topology and dispatch (an unknown device, an
operation the backend lacks), the VFIO container, the PASID space, fault reporting, memory,
and the page-table formats (their configurations and the builders' ``map``/``unmap``). Each
refusal raises :class:`~iommu_uapi.errors.UAPIError` with one of these rule ids and the errno
listed, and ``docs/rules.md`` lists them after the UAPI rules.
"""

from __future__ import annotations

import errno as _errno

from .ruletable import ModelRule, Rule, RuleTable, register_table

__all__ = ["MODEL_RULES", "MODEL_RULES_BY_ID", "MODEL_TABLE", "ModelRule"]


def _rules(where: str, *rows: tuple[str, int | None, str]) -> tuple[Rule, ...]:
    """Rules of one part of the model, the same in every profile; each names the operation
    its id starts with."""
    return tuple(Rule(rid, rid.split(".")[0], err, text, section=where)
                 for rid, err, text in rows)


MODEL_RULES: tuple[Rule, ...] = (
    *_rules(
        "IOMMU façade",
        ("backend.unknown", _errno.ENODEV, "no installed backend has that name"),
        ("plugin.broken", _errno.ELIBBAD,
         "IOMMU_UAPI_STRICT_PLUGINS: a plugin failed to load (else it is logged and skipped)"),
        ("op.missing", _errno.ENODEV,
         "the backend does not implement the operation, or does not declare the feature it "
         "needs; refused before the user buffer is read"),
        ("device.unknown", _errno.ENODEV, "the device was not added to this IOMMU"),
        ("device.sid", _errno.EINVAL, "add_device: the requester ID is not a u16"),
        ("device.exists", _errno.EEXIST, "add_device: the requester ID is taken"),
        ("domain.unknown", _errno.EINVAL, "the domain was not allocated by this IOMMU"),
        ("domain.busy", _errno.EBUSY, "a domain is freed while devices are attached to it"),
        ("attach.busy", _errno.EBUSY, "the device is already attached to a domain"),
        ("detach.not_attached", _errno.EINVAL, "the device is not attached to that domain"),
        ("map.u64", _errno.EINVAL, "host map: iova, paddr, size or prot is not a u64"),
        ("unmap.u64", _errno.EINVAL, "host unmap: iova or size is not a u64"),
        ("map.align", _errno.EINVAL,
         "host map: iova, paddr or size is not aligned to the smallest page size, or size is 0"),
        ("unmap.align", _errno.EINVAL,
         "host unmap: iova or size is not aligned to the smallest page size, or size is 0"),
        ("map.pages", _errno.EINVAL,
         "host map_pages: pgsize is not a declared page size, the addresses are not aligned "
         "to it, or pgcount is 0"),
        ("unmap.pages", _errno.EINVAL,
         "host unmap_pages: pgsize is not a declared page size, iova is not aligned to it, or "
         "pgcount is 0"),
        ("iova_to_phys.u64", _errno.EINVAL, "iova_to_phys: the iova is not a u64"),
        ("translate.pasid", _errno.EINVAL, "translate: the PASID is not a 20-bit PASID"),
        ("translate.iova", _errno.EINVAL, "translate: the iova is not a u64"),
        ("translate.access", _errno.EINVAL,
         "translate: the access names none of READ, WRITE, EXEC, or bits beyond them and PRIV"),
        ("unbind.ioasid", _errno.EINVAL, "in-kernel unbind: the PASID is not an ioasid"),
        ("bind.shared_pasid", _errno.EBUSY,
         "profile strict: the host PASID is bound in the domain on another device to a "
         "different guest table (the IOTLB is tagged by domain and PASID, so the two would "
         "share entries; linux-5.10 binds it)"),
        ("page_request.input", _errno.EINVAL,
         "a device's page request with a bad address, access or group index"),
        ("page_response.no_domain", _errno.ENODEV,
         "a page response for a device that is attached to no domain"),
        ("page_response.no_handler", _errno.EINVAL,
         "a page response while no fault consumer is registered for the device"),
        ("negotiate", _errno.EOPNOTSUPP,
         "negotiation asks for features or cache cells the backend does not declare (all of "
         "them are named)"),
        ("injected", None, "a failure injected by a FaultInjector observer, with its errno"),
    ),
    *_rules(
        "VFIO container",
        ("vfio.no_nesting", _errno.ENOENT,
         "a container over a domain whose nesting info is absent or reports format 0"),
        ("vfio.feature", _errno.EOPNOTSUPP,
         "NESTING_OP bind or cache invalidation without the feature in the nesting info"),
    ),
    *_rules(
        "fault reporting",
        ("fault.handler_busy", _errno.EBUSY, "the device already has a fault consumer"),
        ("fault.no_handler", _errno.EINVAL, "unregistering a consumer that was never registered"),
        ("fault.pending_on_unregister", _errno.EBUSY,
         "unregistering a consumer while page requests are pending"),
        ("page_response.none_pending", _errno.EINVAL, "a page response with nothing pending"),
        ("page_response.no_match", _errno.EINVAL,
         "a page response whose grpid (and PASID, when the request had one) matches no pending "
         "request"),
    ),
    *_rules(
        "PASID space",
        ("pasid.bits", _errno.EINVAL, "a PASID space of other than 1..20 bits"),
        ("pasid.set_quota", _errno.EINVAL, "a PASID set's quota outside 1..2^bits-1"),
        ("pasid.set_exists", _errno.EEXIST, "a PASID set name already in use"),
        ("pasid.set_unknown", _errno.EINVAL, "allocating from a set of another PASID space"),
        ("pasid.alloc_range", _errno.EINVAL, "an allocation range outside 1..2^bits-1"),
        ("pasid.range", _errno.EINVAL, "the PASID lies outside 1..2^bits-1"),
        ("pasid.allocated", _errno.ENOENT, "the PASID is not allocated"),
        ("pasid.quota", _errno.EDQUOT, "the PASID set reached its quota"),
        ("pasid.exhausted", _errno.ENOSPC, "no free PASID in the range asked for"),
        ("pasid.owner", _errno.EPERM, "freeing a PASID of another set"),
    ),
    *_rules(
        "memory",
        ("memory.range", _errno.EFAULT, "an access outside the physical or guest address space"),
        ("memory.value", _errno.EINVAL, "write64/write32 of a value wider than 64/32 bits"),
        ("memory.alloc_size", _errno.EINVAL,
         "table memory asked in a size or alignment that is not a power of two >= 4 KiB"),
        ("memory.exhausted", _errno.ENOMEM, "the table-memory region is used up"),
        ("memory.free", _errno.EINVAL, "freeing an address alloc did not hand out"),
        ("guest.map", _errno.EINVAL, "guest RAM mapped unaligned or empty"),
        ("guest.exhausted", _errno.ENOMEM, "no guest RAM left for a guest allocation"),
    ),
    *_rules(
        "backend scaffold",
        ("new_backend.name", _errno.EINVAL, "new-backend: the name is not a lower-case identifier"),
        ("new_backend.exists", _errno.EEXIST, "new-backend: the directory exists and is not empty"),
        ("new_backend.not_dir", _errno.ENOTDIR,
         "new-backend: the path given for the skeleton is a file"),
        ("new_backend.write", None,
         "new-backend: the files cannot be written there (the system's errno: EACCES, ENOENT, "
         "ENOTDIR, ...); what was created is removed"),
    ),
    *(Rule("rules.exists", "rules", _errno.EEXIST,
          "a rule table, and each rule or quirk id, is registered once",
          "table {table} clashes with table {owner} over {ids}", section="rule tables"),),
    *_rules(
        "page tables",
        ("pgtable.access", _errno.EINVAL,
         "a walk's access is not a combination of READ, WRITE, EXEC and PRIV"),
        ("pgtable.size", _errno.EINVAL, "map/unmap size is not a page or block size of the format"),
        ("pgtable.align", _errno.EINVAL,
         "iova or paddr not aligned to the size (map_range: to the smallest page), or empty"),
        ("pgtable.prot", _errno.EINVAL, "map with neither READ nor WRITE"),
        ("pgtable.oa_range", _errno.ERANGE, "paddr beyond the format's output address range"),
        ("pgtable.ia_range", _errno.ERANGE,
         "iova beyond the input range (not canonical for x86, beyond AW or T0SZ)"),
        ("pgtable.overlap", _errno.EEXIST,
         "map over an existing mapping or inside an existing block; nothing is changed"),
        ("pgtable.start", _errno.EINVAL,
         "a partial walk starting at a level the format does not have, or from an unaligned table"),
        ("x86.levels", _errno.EINVAL, "first level: FLPM gives neither 4 nor 5 levels"),
        ("x86.haw", _errno.EINVAL, "first level: host address width outside 32..52"),
        ("vtd_sl.aw", _errno.EINVAL, "second level: AW is not 1, 2 or 3 (39/48/57-bit)"),
        ("vtd_sl.haw", _errno.EINVAL, "second level: host address width outside 32..52"),
        ("vtd_sl.sllps", _errno.EINVAL, "second level: SLLPS has bits beyond 2 MiB and 1 GiB"),
        ("vtd_sl.nested", _errno.EINVAL, "second-level tables given a stage-2 translate function"),
        ("lpae.granule", _errno.EINVAL, "LPAE: granule other than 4, 16 or 64 KiB"),
        ("lpae.stage", _errno.EINVAL, "LPAE: stage other than 1 or 2 (or stage2() of stage 1)"),
        ("lpae.oas", _errno.EINVAL,
         "LPAE: OAS not one of 32/36/40/42/44/48, or 52 without the 64 KiB granule"),
        ("lpae.t0sz", _errno.EINVAL, "LPAE: T0SZ outside what the granule (and STT) allow"),
        ("lpae.sl0", _errno.EINVAL,
         "LPAE: SL0 given at stage 1, missing or reserved at stage 2"),
        ("lpae.sl0_t0sz", _errno.EINVAL,
         "LPAE stage 2: SL0's starting level cannot resolve the input size (at most 16 "
         "concatenated tables)"),
        ("lpae.httu", _errno.EINVAL,
         "LPAE: hardware dirty state (HD) without the hardware access flag (HA)"),
        ("lpae.nested", _errno.EINVAL, "LPAE stage-2 tables given a stage-2 translate function"),
    ),
    *_rules(
        "PASID tables",
        ("pasid_table.field-width", _errno.EINVAL,
         "a PASID-table entry field (SMMUv3 CD, L1 CD descriptor) value that does not fit"),
        ("pasid_table.size", _errno.EINVAL,
         "a PASID-table entry decoded from the wrong number of bytes"),
    ),
)

MODEL_TABLE = register_table(RuleTable(
    "model", MODEL_RULES, title="Refusals of the model",
    intro="Not checks of the kernel's UAPI layer but of the model itself, the same in every "
          "profile (`iommu_uapi.model_rules`): the façade, the VFIO container, fault reporting, "
          "the PASID space, memory and the page-table formats. Backends add their own (VT-d: "
          "`vtd.*`).",
))
MODEL_RULES_BY_ID: dict[str, Rule] = MODEL_TABLE.by_id

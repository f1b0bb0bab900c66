"""The ``iommufd.*`` rule table: every refusal of the iommufd layer with its errno.

iommufd has one set of rules (no profiles): the conventions of reference kernel-uapi.md f (a
larger ``size`` needs a zero tail, else E2BIG; an unknown value in a known field EOPNOTSUPP; a
bad value EINVAL; an unknown object ENOENT) and each command's own checks. The table
(:data:`IOMMUFD_TABLE`, named ``iommufd``) is registered when this module is imported, so
:func:`iommu_uapi.rules.fail` raises its rules like any other.
"""

from __future__ import annotations

import errno as _errno

from ..ruletable import Rule, RuleTable, register_table

__all__ = ["IOMMUFD_RULES", "IOMMUFD_TABLE", "render_markdown"]

_BOTH = None  # one set of rules: every profile applies them
_SRC = "f"
E = _errno


def _sized(op: str, minsz: int) -> tuple[Rule, ...]:
    """The ioctl copy rules of a size-first struct (``iommufd_fops_ioctl``)."""
    o = f"iommufd.{op}"
    return (
        Rule(f"{o}.copy_minsz", o, E.EFAULT, f"the first {minsz} bytes must be readable",
             "cannot read minsz {minsz} bytes: only {have} readable", source=_SRC),
        Rule(f"{o}.argsz_minsz", o, E.EINVAL, f"size must be at least {minsz}",
             "size {argsz} is below the minimum {minsz}", source=_SRC),
        Rule(f"{o}.copy_rest", o, E.EFAULT, "all the size bytes must be readable",
             "cannot read {need} bytes for size {argsz}: only {have} readable", source=_SRC),
        Rule(f"{o}.tail_nonzero", o, E.E2BIG,
             "bytes past the kernel's struct must be zero (copy_struct_from_user)",
             "size {argsz} exceeds the known size {size} and tail byte {index} is non-zero",
             source=_SRC),
    )


def _data(op: str, minsz: int) -> tuple[Rule, ...]:
    """The copy rules of a record whose length travels beside its pointer."""
    o = f"iommufd.{op}"
    return (
        Rule(f"{o}.len_min", o, E.EINVAL, f"the length must be at least {minsz}",
             "length {len} is below the minimum {minsz}", source=_SRC),
        Rule(f"{o}.tail_nonzero", o, E.E2BIG,
             "bytes past the kernel's struct must be zero (copy_struct_from_user)",
             "length {len} exceeds the known size {size} and tail byte {index} is non-zero",
             source=_SRC),
    )


def _r(rid: str, err: int, text: str, message: str) -> Rule:
    return Rule(f"iommufd.{rid}", "iommufd." + rid.rsplit(".", 1)[0], err, text, message,
                _BOTH, _SRC)


IOMMUFD_RULES: tuple[Rule, ...] = (
    *_sized("destroy", 8), *_sized("ioas_alloc", 12), *_sized("ioas_map", 40),
    *_sized("ioas_unmap", 24), *_sized("hw_info", 32), *_sized("hwpt_alloc", 24),
    *_sized("hwpt_invalidate", 32), *_sized("viommu_alloc", 24), *_sized("vdevice_alloc", 24),
    *_sized("fault_alloc", 16),
    *_data("hw_info_vtd", 24), *_data("hw_info_arm_smmuv3", 40), *_data("hwpt_vtd_s1", 24),
    *_data("hwpt_arm_smmuv3", 16), *_data("hwpt_vtd_s1_invalidate", 24),
    *_data("viommu_arm_smmuv3_invalidate", 16), *_data("hwpt_pgfault", 40),
    *_data("hwpt_page_response", 8),
    _r("ioctl.unknown", E.ENOTTY, "the command code is an iommufd command",
       "command {code:#x} is not an iommufd command"),
    _r("ioctl.buffer", E.EFAULT, "the command struct is readable and writable user memory",
       "the command buffer is a {kind}, not writable bytes"),
    _r("object.unknown", E.ENOENT, "an id names a live object of the type the command takes",
       "no {kind} has id {id}"),
    _r("object.busy", E.EBUSY, "an object is destroyed only when nothing refers to it",
       "object {id} is in use by {users}"),
    _r("user.write", E.EFAULT, "output written back to user memory must be writable",
       "cannot write {n} bytes at {addr:#x}"),
    _r("user.read", E.EFAULT, "a *_uptr range must be readable user memory",
       "cannot read {n} bytes at {addr:#x}"),
    _r("ioas_alloc.flags", E.EOPNOTSUPP, "IOAS_ALLOC flags must be 0",
       "flags {flags:#x} must be 0"),
    _r("ioas_map.flags", E.EOPNOTSUPP,
       "IOAS_MAP flags may only hold FIXED_IOVA | WRITEABLE | READABLE, __reserved is 0",
       "flags {flags:#x} / __reserved {reserved:#x} not supported"),
    _r("ioas_map.range", E.EINVAL,
       "IOAS_MAP: length non-zero, user_va, iova and length 4 KiB aligned, no u64 overflow",
       "user_va {user_va:#x} iova {iova:#x} length {length:#x} is not a page-aligned range"),
    _r("ioas_map.exists", E.EEXIST, "IOAS_MAP: the IOVA range must be free",
       "[{iova:#x}, +{length:#x}) overlaps a mapping"),
    _r("ioas_map.space", E.ENOSPC, "IOAS_MAP without FIXED_IOVA: a free IOVA range exists",
       "no free IOVA range of {length:#x} bytes"),
    _r("ioas_map.unbacked", E.EFAULT,
       "IOAS_MAP: every page of the user range is backed by host memory (pinned)",
       "user page {va:#x} has no host page to pin"),
    _r("ioas_unmap.none", E.ENOENT, "IOAS_UNMAP: the range must hold at least one mapping",
       "no mapping inside [{iova:#x}, +{length:#x})"),
    _r("ioas_unmap.split", E.EINVAL, "IOAS_UNMAP: a mapping is unmapped whole or not at all",
       "the range cuts the mapping at {start:#x}"),
    _r("hw_info.flags", E.EOPNOTSUPP, "GET_HW_INFO flags and __reserved must be 0",
       "flags {flags:#x} / __reserved {reserved} not supported"),
    _r("bind.busy", E.EBUSY, "a device is bound to an iommufd once",
       "{dev} is already bound as {id}"),
    _r("hwpt_alloc.paging_data", E.EOPNOTSUPP,
       "HWPT_ALLOC over an IOAS (a paging HWPT) takes no vendor data",
       "a paging HWPT takes no data_type {data_type}"),
    _r("hwpt_alloc.flags", E.EOPNOTSUPP,
       "HWPT_ALLOC flags may only hold NEST_PARENT | FAULT_ID_VALID | PASID (dirty tracking "
       "is not modelled); __reserved and __reserved2 are 0",
       "flags {flags:#x} not supported"),
    _r("hwpt_alloc.data_type", E.EOPNOTSUPP, "HWPT_ALLOC data_type is NONE, VTD_S1 or ARM_SMMUV3",
       "data_type {data_type} is not known"),
    _r("hwpt_alloc.data", E.EINVAL,
       "HWPT_ALLOC: a paging HWPT carries no data (data_len 0); nested data needs data_len "
       "and data_uptr; a nested HWPT has no NEST_PARENT flag",
       "data_type {data_type} with data_len {data_len} and flags {flags:#x}"),
    _r("hwpt_alloc.parent", E.EINVAL,
       "HWPT_ALLOC: a nested HWPT's pt_id is a paging HWPT allocated with NEST_PARENT",
       "object {pt_id} is not a nesting parent"),
    _r("hwpt_alloc.fault_paging", E.EOPNOTSUPP,
       "HWPT_ALLOC: FAULT_ID_VALID only on a nested HWPT (page requests come from stage 1)",
       "a paging HWPT takes no fault object"),
    _r("hwpt_alloc.nested_type", E.EOPNOTSUPP,
       "HWPT_ALLOC: the backend builds nested HWPTs of this data_type",
       "backend {backend} has no nested HWPT of data_type {data_type}"),
    _r("hwpt_alloc.vtd_s1_flags", E.EOPNOTSUPP,
       "VTD_S1 data: flags only SRE | EAFE | WPE, __reserved 0",
       "flags {flags:#x} / __reserved {reserved:#x} not supported"),
    _r("attach.busy", E.EBUSY,
       "a device (or PASID) attaches to one HWPT at a time; detach first",
       "device {dev_id} pasid {pasid} is attached to {pt_id}"),
    _r("attach.pasid_flag", E.EINVAL,
       "a PASID attach needs a HWPT allocated with IOMMU_HWPT_ALLOC_PASID",
       "HWPT {pt_id} was not allocated with the PASID flag"),
    _r("attach.parent", E.EINVAL,
       "a nested HWPT is attached at a PASID only when the device's RID is attached to its "
       "parent", "device {dev_id} is not attached to the parent {parent}"),
    _r("attach.not_attached", E.EINVAL, "detach: the device (or PASID) is attached",
       "device {dev_id} pasid {pasid} is not attached"),
    _r("hwpt_invalidate.reserved", E.EOPNOTSUPP, "HWPT_INVALIDATE __reserved must be 0",
       "__reserved {reserved:#x} must be 0"),
    _r("hwpt_invalidate.array", E.EINVAL,
       "HWPT_INVALIDATE: entry_num > 0 needs data_uptr and entry_len",
       "entry_num {entry_num} with data_uptr {data_uptr:#x} and entry_len {entry_len}"),
    _r("hwpt_invalidate.object", E.EINVAL,
       "HWPT_INVALIDATE: hwpt_id names a nested HWPT or a vIOMMU (a paging HWPT is refused)",
       "object {id} is a {kind}"),
    _r("hwpt_invalidate.data_type", E.EINVAL,
       "HWPT_INVALIDATE: data_type matches the object's vendor (VTD_S1 for a VT-d nested "
       "HWPT, VIOMMU_ARM_SMMUV3 for an SMMUv3 vIOMMU)",
       "data_type {data_type} is not {want}"),
    _r("hwpt_invalidate.entry_len", E.EINVAL,
       "per-entry helper (VT-d): entry_len between the struct's minimum and its size",
       "entry_len {entry_len} outside {minsz}..{size}"),
    _r("hwpt_invalidate.entry_num", E.EINVAL,
       "full-array helper (SMMUv3 vIOMMU): entry_num must be non-zero",
       "entry_num 0 is not a request"),
    _r("vtd_s1_invalidate.flags", E.EOPNOTSUPP,
       "VT-d entry: flags only LEAF, __reserved 0",
       "entry {index}: flags {flags:#x} / __reserved {reserved:#x} not supported"),
    _r("vtd_s1_invalidate.addr", E.EINVAL,
       "VT-d entry: addr 4 KiB aligned; npages U64_MAX only with addr 0",
       "entry {index}: addr {addr:#x} npages {npages:#x}"),
    _r("hwpt_alloc.arm_ste", E.EIO,
       "ARM_SMMUV3 data: a valid guest STE holds only V, Config (abort, bypass, S1), S1Fmt, "
       "S1ContextPtr, S1CDMax, S1DSS, S1CIR, S1COR, S1CSH, S1STALLD and EATS (abort or full)",
       "guest STE {ste}: {why}"),
    _r("viommu_arm_smmuv3_invalidate.opcode", E.EIO,
       "SMMUv3 vIOMMU command: only TLBI_NSNH_ALL, TLBI_NH_VA, TLBI_NH_VAA, TLBI_NH_ALL, "
       "TLBI_NH_ASID, ATC_INV, CFGI_CD, CFGI_CD_ALL",
       "entry {index}: opcode {opcode:#x} is not allowed"),
    _r("viommu_arm_smmuv3_invalidate.sid", E.EIO,
       "SMMUv3 vIOMMU command: the SID of ATC_INV / CFGI_CD / CFGI_CD_ALL is a vDEVICE's "
       "virtual ID", "entry {index}: virtual SID {vsid:#x} has no vDEVICE"),
    _r("viommu_alloc.flags", E.EOPNOTSUPP, "VIOMMU_ALLOC flags must be 0",
       "flags {flags:#x} must be 0"),
    _r("viommu_alloc.type", E.EOPNOTSUPP, "VIOMMU_ALLOC type is one the backend provides",
       "type {type} is not provided by backend {backend}"),
    _r("vdevice_alloc.virt_id", E.EEXIST,
       "VDEVICE_ALLOC: a virtual ID names one device per vIOMMU, a device has one vDEVICE",
       "virt_id {virt_id:#x} or device {dev_id} already has a vDEVICE"),
    _r("fault_alloc.flags", E.EOPNOTSUPP, "FAULT_QUEUE_ALLOC flags must be 0",
       "flags {flags:#x} must be 0"),
    _r("fault.count", E.ESPIPE,
       "fault read/write: the length is a multiple of the record size, at offset 0",
       "length {count} is not a multiple of {size}"),
    _r("fault.fd", E.EBADF, "read/write name an open fault object file",
       "file {fd} is not an open fault object"),
    _r("attach.pasid_paging", E.EOPNOTSUPP,
       "a PASID attaches to a nested HWPT only (a paging HWPT at a PASID is not modelled)",
       "HWPT {pt_id} is a paging HWPT"),
    _r("fault.code", E.EINVAL, "page response code is SUCCESS or INVALID",
       "code {code} is neither SUCCESS nor INVALID"),
    _r("fault.cookie", E.EINVAL, "page response cookie names a pending group",
       "cookie {cookie} names no pending group"),
)

#: The iommufd rules as a registered table
IOMMUFD_TABLE: RuleTable = register_table(RuleTable(
    "iommufd", IOMMUFD_RULES, title="iommufd",
    intro="The successor API's refusals (reference kernel-uapi.md f); every profile."))


def render_markdown() -> str:
    """The ``iommufd.*`` rules as a markdown table (for ``docs/iommufd.md``)."""
    from ..errors import errno_name

    lines = ["| id | errno | rule |", "|---|---|---|"]
    lines += [f"| `{r.id}` | {errno_name(r.errno or 0)} | {r.text.replace('|', chr(92) + '|')} |"
              for r in IOMMUFD_RULES]
    return "\n".join(lines) + "\n"

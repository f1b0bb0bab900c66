"""The nested UAPI on the SMMU: ``attach_pasid_table`` checks and the guest's invalidations as
SMMU commands (reference kernel-uapi.md d.5, Auger v15), per profile.

``linux-5.10`` is v15 exactly: a single CD (pasid_bits 0; s1fmt and s1dss ignored), S1->S1
replacement refused, PASID-cache and device-TLB invalidations ENOENT, the PASID flag ENOENT, an
address invalidation without ARCHID falling back to the global stage-1 invalidation. ``strict``
does what the header promises: CD tables of 2^pasid_bits CDs in every S1Fmt the SMMU has,
S1DSS honoured, a new table replacing the old one, the PASID flag resolved to the ASIDs the SMMU
holds for that SubstreamID, PASID-cache invalidations as CFGI_CD / CFGI_CD_ALL and device-TLB
ones as ATC_INV.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from iommu_uapi import profiles
from iommu_uapi.errors import UAPIError
from iommu_uapi.iommufd.arm_smmuv3 import atc_span
from iommu_uapi.pasid_tables.smmuv3 import CD_SIZE, L1CD_SIZE, L2_SHIFT, S1Fmt
from iommu_uapi.uapi import CacheInvalidateInfo, PasidTableConfig
from iommu_uapi.uapi.consts import (
    IOMMU_PASID_FORMAT_SMMUV3,
    CacheType,
    InvAddrFlags,
    InvGranularity,
    InvPasidFlags,
    PasidConfig,
)

from .cmds import (
    AtcInv,
    CfgiCd,
    CfgiCdAll,
    Command,
    TlbiNhAll,
    TlbiNhAsid,
    TlbiNhVa,
    TlbiNsnhAll,
)
from .domain import SmmuDomain
from .idr import SmmuCaps
from .ste import S1Dss

__all__ = ["STRICT", "GuestScope", "GuestStage1", "check_attach", "guest_invalidation",
           "nh_va_range", "pasid_of"]

STRICT = "strict"
#: the UAPI's bits as plain ints (flag arithmetic on IntFlag members costs microseconds)
_IOTLB, _DEV_IOTLB, _PASID_CACHE = (int(CacheType.IOTLB), int(CacheType.DEV_IOTLB),
                                    int(CacheType.PASID))
_G_DOMAIN, _G_PASID, _G_ADDR = (int(InvGranularity.DOMAIN), int(InvGranularity.PASID),
                                int(InvGranularity.ADDR))
_P_PASID, _P_ARCHID = int(InvPasidFlags.PASID), int(InvPasidFlags.ARCHID)
_A_PASID, _A_ARCHID, _A_LEAF = (int(InvAddrFlags.PASID), int(InvAddrFlags.ARCHID),
                                int(InvAddrFlags.LEAF))
_S1CTXPTR_MASK = ((1 << 56) - 1) & ~(CD_SIZE - 1)
_TG = {4096: 1, 16384: 2, 65536: 3}
_RANGE_NUM = 32
_PAGE = 4096
#: ATC_INV.Size: 4 KiB * 2^Size; 52 and above is the whole ATC
_ATC_ALL = 52


# -- attach_pasid_table ----------------------------------------------------------------------


GuestStage1 = tuple[int, int, int, int]


def check_attach(domain: SmmuDomain, cfg: PasidTableConfig, caps: SmmuCaps,
                 profile: str) -> tuple[GuestStage1 | None, bool]:
    """``arm_smmu_attach_pasid_table``'s checks in its order: the guest stage 1 to install
    (``(base, S1CDMax, S1Fmt, S1DSS)``, None for BYPASS and ABORT) and whether to abort."""
    v3 = cfg.vendor_data.smmuv3
    if cfg.format != IOMMU_PASID_FORMAT_SMMUV3:
        raise UAPIError(errno.EINVAL, f"attach_pasid_table: format {cfg.format} is not SMMUV3",
                        rule="smmu.attach_table.format")
    if cfg.version != 1 or v3.version != 1:
        raise UAPIError(errno.EINVAL, f"attach_pasid_table: version {cfg.version}, "
                        f"smmuv3.version {v3.version}: "
                        "both must be 1", rule="smmu.attach_table.version")
    if not domain.finalised:
        raise UAPIError(errno.EINVAL, "attach_pasid_table: no device attached yet (the SMMU is "
                        "not bound)",
                        rule="smmu.attach_table.not_finalised")
    if not domain.nesting:
        raise UAPIError(errno.EINVAL, "attach_pasid_table: the domain's stage is not NESTED",
                        rule="smmu.attach_table.not_nested")
    if cfg.config == PasidConfig.ABORT:
        return None, True
    if cfg.config == PasidConfig.BYPASS:
        return None, False
    if cfg.config != PasidConfig.TRANSLATE:
        raise UAPIError(errno.EINVAL, f"attach_pasid_table: config {cfg.config} is not "
                        "TRANSLATE, BYPASS or ABORT",
                        rule="smmu.attach_table.config")
    quirk = profiles.get(profile).quirk
    if domain.s1 is not None and quirk("smmu.quirk.s1_replace_refused"):
        raise UAPIError(errno.EINVAL, "attach_pasid_table: stage 1 is already set (S1->S1 "
                        "replacement)",
                        rule="smmu.attach_table.s1_replace")
    if quirk("smmu.quirk.single_cd"):
        if cfg.pasid_bits:
            raise UAPIError(errno.EINVAL, f"attach_pasid_table: pasid_bits {cfg.pasid_bits}: "
                            "only a single CD "
                            "is supported", rule="smmu.attach_table.pasid_bits")
        # the driver puts base_ptr into STE.S1ContextPtr through its field mask (bits 55:6)
        return (cfg.base_ptr & _S1CTXPTR_MASK, 0, 0, 0), False
    return _strict_stage1(cfg, caps), False


def _strict_stage1(cfg: PasidTableConfig, caps: SmmuCaps) -> GuestStage1:
    """What the header promises: pasid_bits up to SSIDSIZE, s1fmt and s1dss as the STE takes
    them, and a table pointer the STE can hold (aligned to what the format reads)."""
    v3 = cfg.vendor_data.smmuv3
    if cfg.pasid_bits > caps.ssidsize:
        raise UAPIError(errno.EINVAL, f"attach_pasid_table: pasid_bits {cfg.pasid_bits} "
                        "beyond SSIDSIZE "
                        f"{caps.ssidsize}", rule="smmu.attach_table.pasid_bits")
    fmt = v3.s1fmt
    if fmt not in S1Fmt._value2member_map_ or (fmt != S1Fmt.LINEAR and not caps.cd2l):
        raise UAPIError(errno.EINVAL, f"attach_pasid_table: s1fmt {fmt} is reserved or needs "
                        "IDR0.CD2L",
                        rule="smmu.attach_table.s1fmt")
    if v3.s1dss not in S1Dss._value2member_map_:
        raise UAPIError(errno.EINVAL, f"attach_pasid_table: s1dss {v3.s1dss} is reserved",
                        rule="smmu.attach_table.s1dss")
    align = L1CD_SIZE if fmt != S1Fmt.LINEAR and cfg.pasid_bits > L2_SHIFT.get(
        S1Fmt(fmt), 64) else CD_SIZE
    if cfg.base_ptr & (align - 1) or cfg.base_ptr >> 52:
        raise UAPIError(errno.EINVAL, f"attach_pasid_table: base_ptr {cfg.base_ptr:#x} "
                        f"is not a {align}-byte "
                        "aligned 52-bit address", rule="smmu.attach_table.base_ptr")
    return cfg.base_ptr, cfg.pasid_bits, fmt, v3.s1dss


# -- cache_invalidate ------------------------------------------------------------------------


class _Quirks(NamedTuple):
    """What a profile decides of the invalidation quirks."""

    iotlb_only: bool
    pasid_refused: bool
    global_all_vmids: bool


#: profile name -> (the registered profile asked, its decisions): asked again when the name
#: resolves to another profile object (a profile registered anew, a rule table added)
_DECIDED: dict[str, tuple[profiles.Profile, _Quirks]] = {}


def _quirks(profile: str) -> _Quirks:
    """The invalidation quirks of ``profile``."""
    p = profiles.get(profile)
    found = _DECIDED.get(p.name)
    if found is None or found[0] is not p:
        quirk = p.quirk
        found = _DECIDED[p.name] = (p, _Quirks(
            bool(quirk("smmu.quirk.iotlb_only")), bool(quirk("smmu.quirk.pasid_flag_refused")),
            bool(quirk("smmu.quirk.global_all_vmids"))))
    return found[1]


class GuestScope:
    """What an invalidation reaches: the domain's VMID, the streams using its CD table
    (``sids``, read only by the PASID-cache cells), the requesting device's ATS StreamID (None
    without ATS), the SMMU's range invalidation and, in ``held``, the ASIDs the SMMU used per
    (VMID, SubstreamID) (:meth:`asids`)."""

    __slots__ = ("atc_sid", "held", "ril", "streams", "vmid")

    def __init__(self, vmid: int, streams: Iterable[int], atc_sid: int | None, ril: bool,
                 held: Mapping[tuple[int, int], Iterable[int]]) -> None:
        self.vmid = vmid
        self.streams = streams
        self.atc_sid = atc_sid
        self.ril = ril
        self.held = held

    @property
    def sids(self) -> tuple[int, ...]:
        """The StreamIDs of the streams using the domain's CD table."""
        return tuple(self.streams)

    def asids(self, ssid: int) -> Iterable[int]:
        """The ASIDs the SMMU used for SubstreamID ``ssid`` of the domain."""
        return self.held.get((self.vmid, ssid), ())


def _global(scope: GuestScope, quirks: _Quirks) -> list[Command]:
    """The global stage-1 invalidation: v15 issues TLBI_NSNH_ALL (every VMID); strict keeps to
    the domain's stage-1 entries (TLBI_NH_ALL of its VMID)."""
    if quirks.global_all_vmids:
        return [TlbiNsnhAll()]
    return [TlbiNhAll(VMID=scope.vmid)]


def nh_va_range(vmid: int, asid: int, addr: int, size: int, leaf: bool,
                ril: bool) -> list[Command]:
    """TLBI_NH_VA commands covering ``[addr, addr + size)`` in 4 KiB pages: with range
    invalidation (IDR3.RIL) (NUM+1)*2^SCALE pages per command, else one per page."""
    pages = max(1, (size + (addr & (_PAGE - 1)) + _PAGE - 1) // _PAGE)
    addr &= -_PAGE
    out: list[Command] = []
    if not ril or pages == 1:
        return [TlbiNhVa(VMID=vmid, ASID=asid, Addr=addr + i * _PAGE, Leaf=leaf)
                for i in range(pages)]
    while pages:
        scale = (pages & -pages).bit_length() - 1
        num = (pages >> scale) & (_RANGE_NUM - 1)
        if num == 0:
            num = _RANGE_NUM
        if num == 1 and scale == 0:
            out.append(TlbiNhVa(VMID=vmid, ASID=asid, Addr=addr, Leaf=leaf))
        else:
            out.append(TlbiNhVa(VMID=vmid, ASID=asid, Addr=addr, Leaf=leaf, TG=_TG[_PAGE],
                                NUM=num - 1, SCALE=scale))
        addr += (num << scale) * _PAGE
        pages -= num << scale
    return out


def _atc_inv(sid: int, ssid: int | None, addr: int | None, size: int) -> AtcInv:
    if addr is None:
        return AtcInv(SID=sid, SSV=ssid is not None, SSID=ssid or 0, Size=_ATC_ALL)
    start, order = atc_span(addr, size)
    return AtcInv(SID=sid, SSV=ssid is not None, SSID=ssid or 0, Addr=start, Size=order)


def guest_invalidation(info: CacheInvalidateInfo, scope: GuestScope,
                       profile: str) -> list[Command]:
    """``arm_smmu_cache_invalidate`` (d.5 steps 1-4) as the commands it issues (a CMD_SYNC
    follows them); raises the driver's refusals."""
    if info.version != 1:
        raise UAPIError(errno.EINVAL, f"cache_invalidate: version {info.version} is not 1",
                        rule="smmu.inv.version")
    quirks = _quirks(profile)
    iotlb_only = quirks.iotlb_only
    extra = info.cache & (_PASID_CACHE | _DEV_IOTLB)
    if extra and iotlb_only:
        raise UAPIError(errno.ENOENT, f"cache_invalidate: cache {info.cache:#x} "
                        "names the PASID cache or the "
                        "device TLB", rule="smmu.inv.cache")
    granu = info.granularity
    out: list[Command] = []
    if info.cache & _PASID_CACHE:
        out += _pasid_cache(info, scope)
    if info.cache & _IOTLB:
        out += _iotlb(info, scope, quirks)
    elif iotlb_only:
        raise UAPIError(errno.EINVAL, "cache_invalidate: the IOTLB bit is not set",
                        rule="smmu.inv.no_iotlb")
    if info.cache & _DEV_IOTLB and scope.atc_sid is not None:
        out += _dev_iotlb(info, scope)
    if granu not in (_G_DOMAIN, _G_PASID, _G_ADDR):  # pragma: no cover - the core refuses
        raise UAPIError(errno.EINVAL, f"cache_invalidate: granularity {granu} is unknown",
                        rule="smmu.inv.granularity")
    return out


def pasid_of(info: CacheInvalidateInfo) -> int | None:
    """The PASID an invalidation names with its PASID flag (None: none)."""
    if info.granularity == _G_PASID:
        p = info.granu.pasid_info
        return p.pasid if p.flags & _P_PASID else None
    if info.granularity == _G_ADDR:
        a = info.granu.addr_info
        return a.pasid if a.flags & _A_PASID else None
    return None


def _pasid_cache(info: CacheInvalidateInfo, scope: GuestScope) -> list[Command]:
    """strict: CFGI_CD of the PASID in every stream of the table, CFGI_CD_ALL otherwise."""
    ssid = pasid_of(info)
    if ssid is None:
        return [CfgiCdAll(SID=sid) for sid in scope.sids]
    return [CfgiCd(SID=sid, SSID=ssid, Leaf=False) for sid in scope.sids]


def _iotlb(info: CacheInvalidateInfo, scope: GuestScope, quirks: _Quirks) -> list[Command]:
    pasid_refused = quirks.pasid_refused
    granu = info.granularity
    if granu == _G_PASID:
        p = info.granu.pasid_info
        if p.flags & _P_PASID:
            if pasid_refused:
                raise UAPIError(errno.ENOENT, "cache_invalidate: PASID-selective invalidation "
                                "(PASID flag)",
                                rule="smmu.inv.pasid_flag")
            asids = sorted(set(scope.asids(p.pasid)))
            if p.flags & _P_ARCHID:
                asids = sorted({*asids, p.archid})
            return [TlbiNhAsid(VMID=scope.vmid, ASID=a) for a in asids]
        if not p.flags & _P_ARCHID:
            raise UAPIError(errno.EINVAL, "cache_invalidate: PASID granularity without ARCHID",
                            rule="smmu.inv.archid")
        return [TlbiNhAsid(VMID=scope.vmid, ASID=p.archid)]
    if granu == _G_ADDR:
        a = info.granu.addr_info
        targets: list[int]
        if a.flags & _A_PASID:
            if pasid_refused:
                raise UAPIError(errno.ENOENT, "cache_invalidate: address invalidation with the "
                                "PASID flag",
                                rule="smmu.inv.pasid_flag")
            targets = sorted(set(scope.asids(a.pasid)) | (
                {a.archid} if a.flags & _A_ARCHID else set()))
        elif not a.flags & _A_ARCHID:
            return _global(scope, quirks)
        else:
            targets = [a.archid]
        gsize = a.granule_size
        if not gsize or gsize & (gsize - 1):
            raise UAPIError(errno.EINVAL, f"cache_invalidate: granule_size {gsize:#x} is not a "
                            "power of two",
                            rule="smmu.inv.granule")
        size = a.nb_granules * gsize
        leaf = bool(a.flags & _A_LEAF)
        out: list[Command] = []
        for asid in targets:
            out += nh_va_range(scope.vmid, asid, a.addr, size, leaf, scope.ril)
        return out
    return _global(scope, quirks)


def _dev_iotlb(info: CacheInvalidateInfo, scope: GuestScope) -> list[Command]:
    """strict: ATC_INV of the requesting ATS device (the PASID's entries, or every one)."""
    assert scope.atc_sid is not None
    ssid = pasid_of(info)
    if info.granularity == _G_ADDR:
        a = info.granu.addr_info
        size = a.nb_granules * a.granule_size if a.granule_size else _PAGE
        return [_atc_inv(scope.atc_sid, ssid, a.addr, size)]
    return [_atc_inv(scope.atc_sid, ssid, None, 0)]

"""The SMMUv3 side of iommufd (reference kernel-uapi.md f), as functions of the model's
structures: ``iommu_hw_info_arm_smmuv3`` from the ID registers, the guest STE of a nested HWPT
(``iommu_hwpt_arm_smmuv3``) checked and normalised as ``arm_smmu_validate_vste`` does, and the
guest's raw commands (``iommu_viommu_arm_smmuv3_invalidate``) turned into host commands as
``arm_vsmmu_convert_user_cmd`` does: TLBIs tagged with the vIOMMU's VMID, SIDs translated from
the vDEVICEs' virtual IDs, anything else EIO.

Every field is named in :mod:`.ste` and :mod:`.cmd_layout`. The hooks (:class:`SmmuIommufd`, a
base class of the backend) reuse the 2020 paths where the hardware does the same: a nested HWPT
attached to a stream is the nested STE a guest PASID-table attach installs (``check_attach``,
then the backend's STE write, CFGI_STE and the guest's TLB flush); the guest's commands go
through the backend's command queue. Each stream attached to a nested HWPT has its own guest
STE (:attr:`~.domain.SmmuDomain.streams`), as the kernel keeps one vSTE per device: several
nested HWPTs share one nesting parent (its stage 2 and VMID) and each device translates
through its own CD table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from iommu_uapi.abi import CRecord
from iommu_uapi.device import Device, Domain
from iommu_uapi.errors import UAPIError
from iommu_uapi.hookspecs import hookimpl
from iommu_uapi.iommufd import (
    HwInfoType,
    HwptDataType,
    IommuHwInfoArmSmmuv3,
    IommuHwptArmSmmuv3,
    IommuViommuArmSmmuv3Invalidate,
    ViommuType,
)
from iommu_uapi.iommufd.arm_smmuv3 import VSTE_FIELDS, VcmdOpcode
from iommu_uapi.rules import fail
from iommu_uapi.uapi import PasidSmmuv3, PasidTableConfig, PasidTableVendor
from iommu_uapi.uapi.consts import IOMMU_PASID_FORMAT_SMMUV3, PasidConfig

from .cmd_layout import F_SID, F_VMID, OPCODE, Opcode
from .cmds import AtcInv, Command, TlbiS12Vmall, decode_command
from .idr import SmmuCaps, id_registers
from .nested import STRICT, check_attach
from .ste import Eats, SteConfig

if TYPE_CHECKING:
    from iommu_uapi.iommu import IOMMU

    from .domain import SmmuDomain

__all__ = ["ALLOWED_OPCODES", "ALLOWED_STE_FIELDS", "SmmuIommufd", "SmmuNested", "SmmuViommu",
           "guest_commands", "hw_info", "nested_ste"]

#: The guest STE fields a nested HWPT may carry (words 0 and 1): the uAPI's list
ALLOWED_STE_FIELDS = tuple(VSTE_FIELDS)
_ALLOWED_MASK = sum(f.mask for f in VSTE_FIELDS.values())
_V = VSTE_FIELDS["V"]
_CONFIG = VSTE_FIELDS["Config"]
_EATS = VSTE_FIELDS["EATS"]
_S1CTX = VSTE_FIELDS["S1ContextPtr"]
_S1CDMAX = VSTE_FIELDS["S1CDMax"]
_S1FMT = VSTE_FIELDS["S1Fmt"]
_S1DSS = VSTE_FIELDS["S1DSS"]
_ATC_ALL = 52
_MEMO_LIMIT = 4096
_CONFIGS = frozenset({int(SteConfig.ABORT), int(SteConfig.BYPASS), int(SteConfig.S1_TRANS)})
_EATS_OK = frozenset({int(Eats.ABORT), int(Eats.FULL)})
_W = (1 << 64) - 1

#: The guest commands a vIOMMU passes on
ALLOWED_OPCODES = frozenset(Opcode[op.name] for op in VcmdOpcode)
_TAGGED = frozenset({int(Opcode.TLBI_NH_VA), int(Opcode.TLBI_NH_VAA), int(Opcode.TLBI_NH_ALL),
                     int(Opcode.TLBI_NH_ASID)})
_BY_SID = frozenset({int(Opcode.ATC_INV), int(Opcode.CFGI_CD), int(Opcode.CFGI_CD_ALL)})
_NSNH_ALL = int(Opcode.TLBI_NSNH_ALL)
_NH_ALL = int(Opcode.TLBI_NH_ALL)


def hw_info(caps: SmmuCaps) -> IommuHwInfoArmSmmuv3:
    """``iommu_hw_info_arm_smmuv3``: IDR0..5, IIDR and AIDR as the SMMU reports them."""
    regs = id_registers(caps)
    return IommuHwInfoArmSmmuv3(idr=(regs.idr0, regs.idr1, regs.idr2, regs.idr3, regs.idr4,
                                     regs.idr5), iidr=regs.iidr, aidr=regs.aidr)


def nested_ste(data: IommuHwptArmSmmuv3) -> tuple[int, int]:
    """The guest STE words 0 and 1 a nested HWPT keeps: all zero when V is clear; EIO for a
    field outside :data:`ALLOWED_STE_FIELDS`, a Config other than abort/bypass/S1, or EATS
    other than abort/full; EATS itself cleared (the host sets it from the device's ATS)."""
    words = data.ste[0] | data.ste[1] << 64
    if not words & _V.mask:
        return 0, 0
    ste = f"{data.ste[0]:#x}:{data.ste[1]:#x}"
    extra = words & ~_ALLOWED_MASK
    if extra:
        raise fail("iommufd.hwpt_alloc.arm_ste", ste=ste,
                   why=f"bits {extra:#x} are outside the fields a guest may set")
    if _CONFIG.get(words) not in _CONFIGS:
        raise fail("iommufd.hwpt_alloc.arm_ste", ste=ste,
                   why=f"Config {_CONFIG.get(words):#05b} is not abort, bypass or S1")
    if _EATS.get(words) not in _EATS_OK:
        raise fail("iommufd.hwpt_alloc.arm_ste", ste=ste,
                   why=f"EATS {_EATS.get(words)} is not abort or full")
    words &= ~_EATS.mask
    return words & _W, words >> 64


def guest_commands(entries: Sequence[CRecord], vmid: int, vsids: Mapping[int, int]
                   ) -> tuple[list[tuple[int, int]], UAPIError | None]:
    """The host commands for the guest's ``entries``, in order, up to the first refused one
    (returned with its EIO): TLBI_NSNH_ALL becomes TLBI_NH_ALL of ``vmid``, the other TLBIs get
    ``vmid``, ATC_INV / CFGI_CD / CFGI_CD_ALL get the physical SID ``vsids`` maps their virtual
    SID to."""
    out: list[tuple[int, int]] = []
    for index, entry in enumerate(entries):
        assert isinstance(entry, IommuViommuArmSmmuv3Invalidate)
        w0, w1 = entry.cmd
        op = OPCODE.get(w0)
        if op == _NSNH_ALL:
            w0, w1 = _NH_ALL | vmid << F_VMID.shift, 0
        elif op in _TAGGED:
            w0 = w0 & ~F_VMID.mask | vmid << F_VMID.shift
        elif op in _BY_SID:
            vsid = F_SID.get(w0)
            sid = vsids.get(vsid)
            if sid is None:
                return out, fail("iommufd.viommu_arm_smmuv3_invalidate.sid", index=index,
                                 vsid=vsid)
            w0 = w0 & ~F_SID.mask | sid << F_SID.shift
        else:
            return out, fail("iommufd.viommu_arm_smmuv3_invalidate.opcode", index=index,
                             opcode=op)
        out.append((w0, w1))
    return out, None


class SmmuNested:
    """A nested HWPT of the SMMU: the guest STE words (normalised by :func:`nested_ste`)."""

    __slots__ = ("words",)

    def __init__(self, words: tuple[int, int]) -> None:
        self.words = words

    def table_config(self) -> PasidTableConfig:
        """The ``iommu_pasid_table_config`` that installs the same stage 1: the 2020 attach of
        a guest PASID table is the same nested STE."""
        raw = self.words[0] | self.words[1] << 64
        if not raw & _V.mask or _CONFIG.get(raw) == SteConfig.ABORT:
            config = PasidConfig.ABORT
        elif _CONFIG.get(raw) == SteConfig.BYPASS:
            config = PasidConfig.BYPASS
        else:
            config = PasidConfig.TRANSLATE
        return PasidTableConfig(
            argsz=PasidTableConfig.SIZE, version=1, format=IOMMU_PASID_FORMAT_SMMUV3,
            base_ptr=_S1CTX.get(raw), pasid_bits=_S1CDMAX.get(raw), config=int(config),
            vendor_data=PasidTableVendor(smmuv3=PasidSmmuv3(
                version=1, s1fmt=_S1FMT.get(raw), s1dss=_S1DSS.get(raw))))


class SmmuViommu:
    """A vIOMMU of the SMMU: the VMID its guest's TLBIs are tagged with, and the host
    commands of the words seen before (commands are immutable records)."""

    __slots__ = ("decoded", "vmid")

    def __init__(self, vmid: int) -> None:
        self.vmid = vmid
        self.decoded: dict[tuple[int, int], Command] = {}

    def commands(self, words: Sequence[tuple[int, int]]) -> list[Command]:
        """The host commands of ``words`` (decoded once per distinct pair)."""
        memo = self.decoded
        out: list[Command] = []
        for pair in words:
            cmd = memo.get(pair)
            if cmd is None:
                if len(memo) >= _MEMO_LIMIT:
                    memo.clear()
                cmd = memo[pair] = decode_command(pair[0] | pair[1] << 64)
            out.append(cmd)
        return out


class SmmuIommufd:
    """The iommufd hooks of the ``smmuv3`` backend (a base class of it)."""

    caps: SmmuCaps
    iommu: IOMMU | None
    profile: str

    if TYPE_CHECKING:
        asids: dict[tuple[int, int], frozenset[int]]

        def issue(self, cmds: Iterable[Command]) -> bool: ...
        def _install(self, domain: Domain, devices: Iterable[Device]) -> None: ...

    @hookimpl
    def iommu_hw_info(self, dev: Device) -> tuple[int, CRecord]:
        del dev
        return int(HwInfoType.ARM_SMMUV3), hw_info(self.caps)

    @hookimpl
    def iommu_hwpt_nested_alloc(self, parent: Domain, dev: Device, data_type: int,
                                data: CRecord) -> SmmuNested:
        del dev
        if data_type != HwptDataType.ARM_SMMUV3 or not isinstance(data, IommuHwptArmSmmuv3):
            raise fail("iommufd.hwpt_alloc.nested_type", backend="smmuv3", data_type=data_type)
        if not parent.data.nesting:
            raise fail("iommufd.hwpt_alloc.parent", pt_id=f"domain {parent.id}")
        return SmmuNested(nested_ste(data))

    @hookimpl
    def iommu_hwpt_nested_attach(self, parent: Domain, dev: Device, pasid: int | None,
                                 nested: SmmuNested) -> None:
        """Install the nested HWPT's guest STE for ``dev``'s stream alone: stage 1 from its CD
        table over the parent's stage 2, the other streams of the parent untouched."""
        if pasid is not None:
            raise fail("iommufd.attach.pasid_paging", pt_id="a nested SMMUv3 HWPT (its "
                       "PASIDs are the guest's CD table)")
        data: SmmuDomain = parent.data
        data.streams[dev.sid] = check_attach(data, nested.table_config(), self.caps, STRICT)
        self._install(parent, [dev])
        self._flush_stream(data, dev)

    @hookimpl
    def iommu_hwpt_nested_detach(self, parent: Domain, dev: Device, pasid: int | None,
                                 nested: SmmuNested) -> None:
        """Give ``dev``'s stream back the parent's configuration (stage 2 only)."""
        del pasid, nested
        data: SmmuDomain = parent.data
        data.streams.pop(dev.sid, None)
        self._install(parent, [dev])
        self._flush_stream(data, dev)

    def _flush_stream(self, data: SmmuDomain, dev: Device) -> None:
        """The translations a stream's old guest STE gave go with it: the VMID's stage-1
        entries (tagged by ASID, which CD table gave them is not recorded) and the stream's
        ATC."""
        cmds: list[Command] = [TlbiS12Vmall(VMID=data.vmid)]
        if dev.ats and self.caps.ats:
            cmds.append(AtcInv(SID=dev.sid, Size=_ATC_ALL))
        self.issue(cmds)
        for key in [k for k in self.asids if k[0] == data.vmid]:
            del self.asids[key]

    @hookimpl
    def iommu_viommu_alloc(self, parent: Domain, dev: Device, viommu_type: int) -> SmmuViommu:
        del dev
        if viommu_type != ViommuType.ARM_SMMUV3:
            raise fail("iommufd.viommu_alloc.type", type=viommu_type, backend="smmuv3")
        if not parent.data.nesting:
            raise fail("iommufd.hwpt_alloc.parent", pt_id=f"domain {parent.id}")
        return SmmuViommu(parent.data.vmid)

    @hookimpl
    def iommu_viommu_invalidate(self, parent: Domain, viommu: SmmuViommu,
                                vdevs: Mapping[int, Device], entries: Sequence[CRecord]
                                ) -> tuple[int, UAPIError | None]:
        del parent
        words, error = guest_commands(entries, viommu.vmid,
                                      {v: d.sid for v, d in vdevs.items()})
        if words:
            self.issue(viommu.commands(words))
        return len(words), error

"""Command images from templates (:mod:`iommu_uapi_smmu.cmd_codec`): the driver's encoder and
the SMMU's decoder give exactly what the record codec and ``check_command`` give, for legal and
illegal images alike, and a guest's invalidations leave the same queue memory, registers and
caches whichever way the images were made and read."""

from __future__ import annotations

from typing import Any

import pytest
from backend_rig import VA, Rig, addr_inv, pasid_inv
from hypothesis import given
from hypothesis import strategies as st

from iommu_uapi.errors import UAPIError
from iommu_uapi.uapi.consts import CacheType
from iommu_uapi_smmu.cmd_check import check_command
from iommu_uapi_smmu.cmd_codec import (
    ADDRESS_FIELDS,
    CommandDecoder,
    CommandEncoder,
    address_is_free,
)
from iommu_uapi_smmu.cmds import Command, CommandError, TlbiNhVa, TlbiS2Ipa
from iommu_uapi_smmu.idr import SmmuCaps
from iommu_uapi_smmu.registers import Reg

#: capability sets that change which bits of an address-bearing command are RES0
CAPS = [SmmuCaps(), SmmuCaps(ril=False), SmmuCaps(s2p=False), SmmuCaps(asid16=False),
        SmmuCaps(vmid16=False), SmmuCaps(ssidsize=0), SmmuCaps(hyp=False), SmmuCaps(ats=False)]
CLASSES = sorted(ADDRESS_FIELDS, key=lambda c: int(c.OPCODE))


def _outcome(call: Any, *args: Any) -> object:
    try:
        return call(*args)
    except CommandError as exc:
        return ("ILL", exc.cerror, str(exc))


@pytest.mark.parametrize("caps", CAPS, ids=repr)
def test_every_address_field_is_free_under_every_capability_set(caps: SmmuCaps) -> None:
    assert all(address_is_free(cls, caps) for cls in CLASSES)


@given(cls=st.sampled_from(CLASSES), value=st.integers(0, (1 << 128) - 1))
def test_the_template_encoding_is_the_record_encoding(cls: type[Command], value: int) -> None:
    cmd = cls.from_int(value)   # every field fits
    encoder = CommandEncoder()
    assert encoder.encode(cmd) == cmd.to_bytes()
    assert encoder.image(cmd) == encoder.image(cmd) == cmd.to_bytes()   # memo and template


def test_an_address_that_does_not_fit_is_refused_as_by_the_record() -> None:
    encoder = CommandEncoder()
    for cmd in (TlbiNhVa(VMID=1, ASID=2, Addr=0x1001), TlbiS2Ipa(VMID=1, IPA=1 << 52),
                TlbiNhVa(Addr=-4096)):
        with pytest.raises(UAPIError) as info:
            encoder.image(cmd)
        assert info.value.rule == "smmu.field-width"
        with pytest.raises(UAPIError) as expected:
            cmd.to_bytes()
        assert str(info.value) == str(expected.value)


@given(caps=st.sampled_from(CAPS), cls=st.sampled_from(CLASSES),
       value=st.integers(0, (1 << 120) - 1), res0=st.booleans(), addrs=st.lists(
           st.integers(0, (1 << 64) - 1), min_size=1, max_size=3))
def test_the_template_decoding_is_the_checked_decoding(caps: SmmuCaps, cls: type[Command],
                                                       value: int, res0: bool,
                                                       addrs: list[int]) -> None:
    decoder = CommandDecoder(caps)
    field = cls.LAYOUT[ADDRESS_FIELDS[cls]]
    # the opcode, random other bits (RES0 ones among them when asked), then several addresses
    base = (value << 8 | int(cls.OPCODE)) & ~field.mask
    if not res0:
        base &= cls.defined_mask()
    for addr in addrs:
        raw = (base | ((addr << field.shift) & field.mask)).to_bytes(16, "little")
        assert _outcome(decoder.decode, raw) == _outcome(check_command, raw, caps)


@given(caps=st.sampled_from(CAPS), value=st.integers(0, (1 << 128) - 1))
def test_other_opcodes_decode_as_checked(caps: SmmuCaps, value: int) -> None:
    raw = value.to_bytes(16, "little")
    assert _outcome(CommandDecoder(caps).decode, raw) == _outcome(check_command, raw, caps)


# -- the whole path: the same memory, registers and caches either way ---------------------------


class _RecordEncoder(CommandEncoder):
    """Every image by the record codec."""

    def encode(self, cmd: Command) -> bytes:
        return cmd.to_bytes()


class _RecordDecoder(CommandDecoder):
    """Every image by ``check_command``."""

    def decode(self, raw: bytes) -> Command:
        return check_command(raw, self.caps)


def _rig(generic: bool) -> Rig:
    rig = Rig("strict")
    for i in range(8):
        rig.gmap(VA + i * 0x1000)
    rig.enter(3)
    if generic:
        rig.backend.host.encoder = _RecordEncoder()
        rig.backend.smmu.decoder = _RecordDecoder(rig.backend.caps)
    return rig


def _state(rig: Rig) -> tuple[object, ...]:
    host, smmu = rig.backend.host, rig.backend.smmu
    return (rig.memory.read(host.cmdq, 16 << 8), smmu.regs.read(Reg.CMDQ_PROD),
            smmu.regs.read(Reg.CMDQ_CONS), sorted(rig.iommu.iotlb.entries.items()),
            len(smmu.walks), host.errors, list(host.history))


def test_template_and_record_paths_leave_the_same_queue_and_caches() -> None:
    rigs = [_rig(False), _rig(True)]
    steps: list[Any] = [
        addr_inv(VA + 0x2000, pasid=3), addr_inv(VA + 0x3000, pasid=3, leaf=True),
        addr_inv(VA + 0x4000, pasid=3, pages=3), addr_inv(VA + 0x1000, archid=1),
        pasid_inv(CacheType.IOTLB | CacheType.DEV_IOTLB, pasid=3),
        addr_inv(VA, cache=CacheType.IOTLB | CacheType.DEV_IOTLB, pasid=3),
    ]
    for step in steps:
        states = []
        for rig in rigs:
            for i in range(8):
                rig.iommu.translate(rig.dev, VA + i * 0x1000, pasid=3)
            rig.invalidate(step)
            states.append(_state(rig))
        assert states[0] == states[1]
        assert len(states[0][3]) < 8   # something was dropped

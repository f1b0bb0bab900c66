"""Command images without a whole-record encode or decode per address (hw-formats 2.6.2).

An invalidation by address (TLBI_NH_VA, TLBI_S2_IPA, ATC_INV, ...) is issued again and again
with new addresses and the same other fields: the same VMID, ASID, Leaf, range. Both sides keep
what does not depend on the address:

* :class:`CommandEncoder` (the driver's side) encodes such a command from its *template*, the
  command with its address field 0 encoded once by the record codec, by placing the address in
  its field: one OR per command. Other commands, and an address that does not fit its field
  (refused by the record codec as before), take the record codec.
* :class:`CommandDecoder` (the SMMU's side) decodes and checks the 16 bytes it fetched from the
  queue. Of an address-bearing opcode it decodes the image with the address field cleared once
  (the template) and places the address read from the image in it. An address field's value
  never makes a command illegal (every one of its bits is defined under every capability set
  and no layout's ``illegal`` reads it: :func:`address_is_free` says so per capability set), so
  the template's check is the image's, and every RES0 bit, the opcode and the other fields are
  still read from memory. The result is the command :func:`~.cmd_check.check_command` gives.

Both memos are bounded and keyed by what the image holds, so they never answer for another
image.
"""

from __future__ import annotations

import msgspec

from iommu_uapi.hw.bits import Field

from .cmd_check import allowed_mask, check_command
from .cmd_layout import CMD_SIZE, Command
from .cmds import AtcInv, PrefetchAddr, TlbiEl2Va, TlbiEl2Vaa, TlbiNhVa, TlbiNhVaa, TlbiS2Ipa
from .idr import SmmuCaps

__all__ = ["ADDRESS_FIELDS", "CommandDecoder", "CommandEncoder", "address_is_free"]

_MEMO_LIMIT = 4096
_replace = msgspec.structs.replace

#: The address-bearing commands and the name of their address field.
ADDRESS_FIELDS: dict[type[Command], str] = {
    TlbiNhVa: "Addr", TlbiNhVaa: "Addr", TlbiEl2Va: "Addr", TlbiEl2Vaa: "Addr",
    TlbiS2Ipa: "IPA", AtcInv: "Addr", PrefetchAddr: "Addr",
}
_FIELD: dict[type[Command], tuple[str, Field]] = {
    cls: (name, cls.LAYOUT[name]) for cls, name in ADDRESS_FIELDS.items()}


def address_is_free(cls: type[Command], caps: SmmuCaps) -> bool:
    """Whether every bit of ``cls``'s address field may be set under ``caps`` (what lets the
    decoder check a template in place of the image)."""
    field = _FIELD[cls][1]
    return field.mask & allowed_mask(cls, caps) == field.mask


class CommandEncoder:
    """The driver's images of the commands it issues: address-bearing ones from their
    templates, the others memoised per command."""

    __slots__ = ("_images", "_templates")

    def __init__(self) -> None:
        self._images: dict[Command, bytes] = {}
        self._templates: dict[Command, int] = {}

    def image(self, cmd: Command) -> bytes:
        """The 16 bytes of ``cmd`` (the record's field refusal when a value does not fit); an
        address-bearing command straight from its template (its addresses seldom repeat)."""
        if type(cmd) in _FIELD:
            return self.encode(cmd)
        image = self._images.get(cmd)
        if image is None:
            image = self.encode(cmd)
            if len(self._images) >= _MEMO_LIMIT:
                self._images.clear()
            self._images[cmd] = image
        return image

    def encode(self, cmd: Command) -> bytes:
        """``cmd.to_bytes()``, an address-bearing command from its template."""
        spec = _FIELD.get(type(cmd))
        if spec is None:
            return cmd.to_bytes()
        name, field = spec
        addr = getattr(cmd, name)
        if type(addr) is not int or addr < 0 or addr & ((1 << field.unit) - 1) or \
                addr >> (field.unit + field.width):
            return cmd.to_bytes()  # the record codec refuses it, or converts it, as ever
        template = _replace(cmd, **{name: 0})
        word = self._templates.get(template)
        if word is None:
            word = template.to_int()
            if len(self._templates) >= _MEMO_LIMIT:
                self._templates.clear()
            self._templates[template] = word
        return (word | ((addr >> field.unit) << field.shift)).to_bytes(CMD_SIZE, "little")


class CommandDecoder:
    """An SMMU's decoding of the images it fetches, under its fixed capability set."""

    __slots__ = ("_by_opcode", "_templates", "caps")

    def __init__(self, caps: SmmuCaps) -> None:
        self.caps = caps
        self._templates: dict[int, Command] = {}
        #: opcode -> the address field decoded apart (every address-bearing command whose
        #: address bits are all defined under ``caps``: all of them, as the layouts stand)
        self._by_opcode: dict[int, tuple[str, Field]] = {
            int(cls.OPCODE): spec for cls, spec in _FIELD.items() if address_is_free(cls, caps)}

    def decode(self, raw: bytes) -> Command:
        """The command ``raw`` holds if the SMMU executes it, else
        :class:`~.cmd_layout.CommandError` (CERROR_ILL) as :func:`~.cmd_check.check_command`
        raises it."""
        spec = self._by_opcode.get(raw[0])
        if spec is None:
            return check_command(raw, self.caps)
        name, field = spec
        value = int.from_bytes(raw, "little")
        key = value & ~field.mask
        template = self._templates.get(key)
        if template is None:
            template = check_command(key, self.caps)  # an illegal one raises, never kept
            if len(self._templates) >= _MEMO_LIMIT:
                self._templates.clear()
            self._templates[key] = template
        return _replace(template, **{name: field.get(value)})

"""Errors raised across the IOMMU UAPI.

Every public entry point that takes untrusted bytes or records raises :class:`UAPIError` on bad
input, with ``.errno`` set to the value the Linux kernel would have returned (positive, as in the
``errno`` module) and a message naming the operation, the rule and the offending values. A
rejected call changes no state.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Iterable

#: Linux's kernel-internal ENOTSUPP (524). It is not in the ``errno`` module because user space
#: never sees it from a syscall, but the Intel driver returns it for a non-PCI device.
ENOTSUPP = 524


#: Values with two names in the ``errno`` module, by the name the kernel's sources use (the
#: module's ``errorcode`` keeps the libc alias: ``ENOTSUP`` for ``EOPNOTSUPP``).
_KERNEL_NAMES = {ENOTSUPP: "ENOTSUPP", _errno.EOPNOTSUPP: "EOPNOTSUPP"}


def errno_name(code: int) -> str:
    """The symbolic name of an errno value (``EINVAL``), or its number as text if unknown."""
    name = _KERNEL_NAMES.get(code)
    if name is not None:
        return name
    return _errno.errorcode.get(code, str(code))


class UAPIError(Exception):
    """A call was refused, as the kernel would refuse it: ``errno`` plus the rule that failed.

    ``rule`` is the short identifier of the rule in the rule table (``docs/rules.md``) when the
    refusal comes from one of the tabulated rules, else ``None``.
    """

    errno: int
    message: str
    rule: str | None

    def __init__(self, errno: int, message: str, *, rule: str | None = None) -> None:
        super().__init__(errno, message)
        self.errno = errno
        self.message = message
        self.rule = rule

    def __str__(self) -> str:
        return f"[{errno_name(self.errno)}] {self.message}"

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.errno, self.message, self.rule))


def _rebuild(cls: type[UAPIError], errno: int, message: str, rule: str | None) -> UAPIError:
    err = cls.__new__(cls)
    UAPIError.__init__(err, errno, message, rule=rule)
    return err


class MemoryAccessError(UAPIError):
    """A read or write touched an address outside the modelled physical address space.

    For user buffers this is the model of an unreadable user page (``EFAULT``); for an IOMMU walk
    it is the external abort the walker turns into a ``WALK_EABT``/access-error fault.
    """

    addr: int

    def __init__(self, addr: int, message: str) -> None:
        super().__init__(_errno.EFAULT, message, rule="memory.range")
        self.addr = addr


class FeatureError(UAPIError):
    """Feature negotiation refused: the backend lacks what the user requires.

    ``missing`` lists every missing feature flag name and every missing
    ``cache-type x granularity`` cell, so a VMM can print one complete reason and refuse to start.
    """

    missing: tuple[str, ...]

    def __init__(self, missing: Iterable[str], message: str | None = None) -> None:
        self.missing = tuple(missing)
        text = message or ("negotiation refused: missing " + ", ".join(self.missing))
        super().__init__(_errno.EOPNOTSUPP, text, rule="negotiate")

"""The two size disciplines: how the kernel copies an argsz-first record from user memory.

:func:`copy_from_user` reproduces their order of checks and errnos (reference kernel-uapi.md
c.1, c.3, c.7 and ``copy_struct_from_user``).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .rules import fail

if TYPE_CHECKING:
    from .abi import CRecord

__all__ = ["HeadCheck", "SizeDiscipline", "copy_from_user", "user_bytes"]

R = TypeVar("R", bound="CRecord")

class SizeDiscipline(enum.Enum):
    """How an argsz-first record is copied from user memory.

    ``ARGSZ`` is the 2020 kernel: copy minsz, require argsz >= minsz, apply the per-variant
    minimum, copy ``min(argsz, SIZE)`` into a zeroed copy and never read the tail.
    ``IOMMUFD`` is ``copy_struct_from_user``: the same minimum, a shorter struct zero-extended,
    a longer one accepted only if every byte past ``SIZE`` is zero (else E2BIG).
    """

    ARGSZ = "argsz"
    IOMMUFD = "iommufd"


_ARGSZ_WORD = struct.Struct("<I").unpack_from

#: Called with the record decoded from the bytes copied so far (only fields below minsz are
#: meaningful), the user's argsz and the caller's context (a profile); raises to refuse before
#: the rest is copied.
HeadCheck = Callable[[Any, int, Any], None]


def user_bytes(
    buf: object, op: str, label: str | None = None, minsz: int = 0
) -> bytes | bytearray | memoryview:
    """``buf`` as flat bytes, the way every user-bytes entry point reads it.

    ``bytes`` and ``bytearray`` pass as they are; any other C-contiguous buffer becomes a byte
    view. Anything else (``None``, ``str``, a number, a list, a strided view) is not readable
    user memory: EFAULT by ``op.copy_minsz``, whatever the profile, before any rule looks at
    the content.
    """
    if type(buf) is bytes or type(buf) is bytearray:
        return buf
    try:
        return memoryview(buf).cast("B")  # type: ignore[arg-type]
    except (TypeError, ValueError, BufferError):
        raise fail(f"{op}.copy_minsz", label, minsz=minsz, have=0) from None


def copy_from_user(
    cls: type[R],
    buf: bytes | bytearray | memoryview,
    op: str,
    discipline: SizeDiscipline = SizeDiscipline.ARGSZ,
    head_check: HeadCheck | None = None,
    ctx: Any = None,
    label: str | None = None,
) -> R:
    """Copy an argsz-first record from the user buffer ``buf`` as the kernel does.

    ``len(buf)`` models how much user memory is readable. In order: fewer than ``MINSZ``
    readable bytes -> EFAULT (``op.copy_minsz``); argsz < ``MINSZ`` -> EINVAL
    (``op.argsz_minsz``); ``head_check`` (the per-variant minimum and anything the kernel checks
    before the second copy); then the rest: under ARGSZ EFAULT if fewer than
    ``min(argsz, SIZE)`` bytes are readable (the tail past ``SIZE`` is never read); under
    IOMMUFD, when argsz > ``SIZE``, EFAULT if fewer than argsz bytes are readable and E2BIG if a
    tail byte is non-zero, else EFAULT if fewer than argsz bytes are readable. The result is the
    kernel copy: bytes past argsz are zero, ``argsz`` is the user's. ``label`` renames the
    operation in messages (``unbind`` copies bind data under the ``bind.*`` rules).
    """
    if type(buf) is not bytes and type(buf) is not bytearray:
        buf = user_bytes(buf, op, label, cls.MINSZ)
    size = cls.SIZE
    minsz = cls.MINSZ
    have = len(buf)
    if have < minsz:
        raise fail(f"{op}.copy_minsz", label, minsz=minsz, have=have)
    argsz: int = _ARGSZ_WORD(buf, 0)[0]
    if argsz < minsz:
        raise fail(f"{op}.argsz_minsz", label, argsz=argsz, minsz=minsz)
    if argsz >= size and have >= size:
        rec: R = cls._cdecode(buf, 0)
    else:
        take = min(argsz, size, have)
        rec = cls._cdecode(bytes(buf[:take]) + bytes(size - take), 0)
    if head_check is not None:
        head_check(rec, argsz, ctx)
    if discipline is SizeDiscipline.IOMMUFD and argsz > size:
        if have < argsz:
            raise fail(f"{op}.copy_rest", label, need=argsz, argsz=argsz, have=have)
        tail = bytes(buf[size:argsz])
        if tail.count(0) != len(tail):
            index = size + next(i for i, byte in enumerate(tail) if byte)
            raise fail(f"{op}.tail_nonzero", label, argsz=argsz, size=size, index=index)
    else:
        need = min(argsz, size)
        if have < need:
            raise fail(f"{op}.copy_rest", label, need=need, argsz=argsz, have=have)
    return rec

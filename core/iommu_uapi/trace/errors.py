"""The rules a trace file must follow, each with its errno; a refusal names the byte offset.

A trace is untrusted input like a UAPI buffer: a reader that meets a short frame, bytes that do
not decode as the event they announce, or a header of another format version raises
:class:`~iommu_uapi.errors.UAPIError` with the rule's errno and id and the offset (in the
uncompressed stream) of the frame at fault, and yields nothing more.
"""

from __future__ import annotations

import errno as _errno
from typing import NamedTuple

from ..errors import UAPIError

__all__ = ["TRACE_RULES", "TraceRule", "trace_error"]


class TraceRule(NamedTuple):
    """One check of the trace reader (``id``, ``errno``, what it requires)."""

    id: str
    errno: int
    text: str


TRACE_RULES: dict[str, TraceRule] = {r.id: r for r in (
    TraceRule("trace.magic", _errno.EINVAL,
              "a trace starts with the 8 bytes b'IOMMUTRC' (or is gzip of such a stream)"),
    TraceRule("trace.version", _errno.EPROTONOSUPPORT,
              "the header's format version is one this reader knows"),
    TraceRule("trace.truncated", _errno.ENODATA,
              "every frame holds the length its 4-byte prefix announces"),
    TraceRule("trace.corrupt", _errno.EBADMSG,
              "every frame decodes as the header or as a list of events"),
    TraceRule("trace.preset", _errno.EINVAL, "a cache preset is one of the known names"),
    TraceRule("trace.capability", _errno.EOPNOTSUPP,
              "the replay backend has every feature the trace's events need"),
)}


def trace_error(rule_id: str, offset: int | None, detail: str) -> UAPIError:
    """The :class:`UAPIError` of ``rule_id`` at byte ``offset`` (None: not about a byte)."""
    rule = TRACE_RULES[rule_id]
    where = f"at byte offset {offset}: " if offset is not None else ""
    return UAPIError(rule.errno, f"trace: {where}{detail}", rule=rule.id)

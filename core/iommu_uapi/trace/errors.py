"""The rules a trace file must follow, each with its errno; a refusal names the byte offset.

A trace is untrusted input like a UAPI buffer: a reader that meets a short frame, bytes that do
not decode as the event they announce, or a header of another format version raises
:class:`~iommu_uapi.errors.UAPIError` with the rule's errno and id and the offset (in the
uncompressed stream) of the frame at fault, and yields nothing more.
"""

from __future__ import annotations

import errno as _errno

from ..errors import UAPIError
from ..ruletable import Rule, RuleTable, register_table

__all__ = ["TRACE_RULES", "TRACE_TABLE", "trace_error"]


def _rule(rule_id: str, errno: int, text: str) -> Rule:
    return Rule(rule_id, "trace", errno, text, section="trace reader and replay")


#: The trace reader's and the replay's refusals, registered with the core's tables.
TRACE_TABLE = register_table(RuleTable(
    "trace", (
        _rule("trace.magic", _errno.EINVAL,
              "a trace starts with the 8 bytes b'IOMMUTRC' (or is gzip of such a stream)"),
        _rule("trace.version", _errno.EPROTONOSUPPORT,
              "the header's format version is one this reader knows"),
        _rule("trace.truncated", _errno.ENODATA,
              "every frame holds the length its 4-byte prefix announces"),
        _rule("trace.corrupt", _errno.EBADMSG,
              "every frame decodes as the header or as a list of events"),
        _rule("trace.preset", _errno.EINVAL, "a cache preset is one of the known names"),
        _rule("trace.capability", _errno.EOPNOTSUPP,
              "the replay backend has every feature the trace's events need"),
    ),
    title="Trace files",
    intro="What a trace file and its replay must satisfy (`iommu_uapi.trace`); a refusal "
          "names the byte offset of the frame at fault.",
))
TRACE_RULES: dict[str, Rule] = TRACE_TABLE.by_id


def trace_error(rule_id: str, offset: int | None, detail: str) -> UAPIError:
    """The :class:`UAPIError` of ``rule_id`` at byte ``offset`` (None: not about a byte)."""
    rule = TRACE_RULES[rule_id]
    where = f"at byte offset {offset}: " if offset is not None else ""
    return UAPIError(rule.errno or _errno.EINVAL, f"trace: {where}{detail}", rule=rule.id)

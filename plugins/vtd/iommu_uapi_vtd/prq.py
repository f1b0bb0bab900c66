"""Page requests (VT-d 3.x 7.5): the page request queue in memory, its descriptor, and the
conversions the Linux driver makes between it and the generic UAPI records.

The hardware writes a 256-bit page request descriptor at PQT (:meth:`PageRequestQueue.post`);
software reads from PQH to PQT (:meth:`PageRequestQueue.take`). When the queue is full PRS.PRO
is set and the request is not queued; a request that ends its group (LPIG) is answered by the
hardware itself. :func:`to_uapi_fault` is what ``intel_svm_prq_report`` reports for a descriptor,
:func:`page_group_response` what ``intel_svm_page_response`` sends back (type 9 descriptor).
Both take ``mode``, a profile (by name or as an object): its quirks ``vtd.prq.addr_page_number``
and ``vtd.page_response.raw_code`` (on in ``linux-5.10``) keep the driver's behaviour, and a
profile without them (``strict``) corrects it.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from iommu_uapi import profiles
from iommu_uapi.errors import MemoryAccessError, UAPIError
from iommu_uapi.hw.ring import Ring
from iommu_uapi.memory import PAGE_SIZE, PhysicalMemory
from iommu_uapi.uapi.consts import FaultPerm, FaultType, PageRequestFlags, PageResponseCode
from iommu_uapi.uapi.fault import Fault, FaultPageRequest

from .bits import Field, Record, bit
from .qi import TYPE_LO, PageGroupResponse, ResponseCode
from .rules import fail
from .status import EventControl

__all__ = [
    "PAGE_REQUEST_TYPE",
    "Mode",
    "PageRequestDesc",
    "PageRequestQueue",
    "Pqa",
    "Prs",
    "page_group_response",
    "to_uapi_fault",
]

#: The descriptor type hardware writes in QW0[7:0]. UNCERTAIN in the sources (believed 0x01;
#: Linux never checks it); the model writes 1 and does not check it either.
PAGE_REQUEST_TYPE = 1

#: What ``mode`` takes: a profile, by name or as an object.
Mode = profiles.ProfileLike


class PageRequestDesc(Record, frozen=True, gc=False):
    """A page request descriptor (256 bits)."""

    BITS = 256
    LAYOUT = {
        "TYPE": Field(0, 8),          # descriptor type (PAGE_REQUEST_TYPE)
        "PP": bit(8),                 # PASID present
        "PDP": bit(9),                # private data present
        "RID": Field(16, 16),         # requester id
        "PASID": Field(32, 20),
        "EXE": bit(52),               # execute access requested
        "PRIV": bit(53),              # privileged-mode access requested
        "RD": bit(64),                # read access requested
        "WR": bit(65),                # write access requested
        "LPIG": bit(66),              # last page in group
        "PRGI": Field(67, 9),         # page request group index
        "ADDR": Field(76, 52, 12),    # page address
        "PRIV0": Field(128, 64),      # private data, echoed in the response
        "PRIV1": Field(192, 64),
    }
    TYPE: int = PAGE_REQUEST_TYPE
    PP: bool = False
    PDP: bool = False
    RID: int = 0
    PASID: int = 0
    EXE: bool = False
    PRIV: bool = False
    RD: bool = False
    WR: bool = False
    LPIG: bool = False
    PRGI: int = 0
    ADDR: int = 0
    PRIV0: int = 0
    PRIV1: int = 0


class Pqa(Record, frozen=True, gc=False):
    """PQA, the page request queue address register."""

    LAYOUT = {"PQS": Field(0, 3), "PQA": Field(12, 52, 12)}
    PQS: int = 0
    PQA: int = 0


class Prs(Record, frozen=True, gc=False):
    """PRS, page request status (RW1C bits)."""

    BITS = 32
    LAYOUT = {"PPR": bit(0), "PRO": bit(1)}
    PPR: bool = False
    PRO: bool = False


#: PQH / PQT: byte offset of a descriptor, bits 18:5.
PQ_OFFSET = Field(5, 14, 5)
_DESC_SIZE = PageRequestDesc.BITS // 8
_PERM_BITS = {"RD": FaultPerm.READ, "WR": FaultPerm.WRITE, "EXE": FaultPerm.EXEC,
              "PRIV": FaultPerm.PRIV}
_PPR, _PRO = Prs.LAYOUT["PPR"], Prs.LAYOUT["PRO"]
_IM, _IP = EventControl.LAYOUT["IM"], EventControl.LAYOUT["IP"]


def _ring_geometry(pqa: int) -> tuple[int, int, int]:
    """(base, log2 of the descriptor count, descriptor size) of the queue PQA describes:
    2^PQS pages of 32-byte descriptors."""
    entries = (PAGE_SIZE << Pqa.LAYOUT["PQS"].get(pqa)) // _DESC_SIZE
    return Pqa.LAYOUT["PQA"].get(pqa), entries.bit_length() - 1, _DESC_SIZE


class PageRequestQueue:
    """The page request queue of one IOMMU: a :class:`~iommu_uapi.hw.ring.Ring` of the core
    (slot-gap style) placed by PQA, whose producer is PQT (the hardware's) and consumer PQH
    (software's); PRS.PRO is the ring's overflow condition.

    ``auto_response`` receives the response the hardware itself gives to a last-in-group request
    it could not queue (code SUCCESS - UNCERTAIN in the sources - so that the device retries).
    ``events`` counts page-request interrupts (PECTL.IM = 0); with IM set PECTL.IP is set.
    """

    mem: PhysicalMemory
    ring: Ring
    pectl: int
    events: int
    auto_response: Callable[[PageGroupResponse], None] | None
    _ppr: bool
    _pqa: int

    def __init__(self, mem: PhysicalMemory, *, pqs: int = 0,
                 auto_response: Callable[[PageGroupResponse], None] | None = None) -> None:
        if not 0 <= pqs <= 7:
            raise UAPIError(errno.EINVAL, f"page request queue: PQS {pqs} not in 0..7",
                            rule="vtd.prq-size")
        self.mem = mem
        self._pqa = Pqa(PQS=pqs, PQA=mem.alloc(PAGE_SIZE << pqs)).to_int()
        self.ring = Ring(mem, *_ring_geometry(self._pqa))
        self.pectl = self.events = 0
        self._ppr = False
        self.auto_response = auto_response

    @property
    def pqa(self) -> int:
        """PQA, the queue's address and size."""
        return self._pqa

    @pqa.setter
    def pqa(self, value: int) -> None:
        """A write of PQA places the ring (PQH and PQT return to 0 when its size changes)."""
        self._pqa = value
        self.ring.configure(*_ring_geometry(value))

    @property
    def base(self) -> int:
        """The queue's address."""
        return self.ring.base

    @property
    def size(self) -> int:
        """Queue size in bytes."""
        return self.ring.entries * _DESC_SIZE

    @property
    def pqh(self) -> int:
        """PQH: the byte offset of the next descriptor software reads."""
        return PQ_OFFSET.put(self.ring.offset(self.ring.cons))

    @property
    def pqt(self) -> int:
        """PQT: the byte offset where the hardware writes the next descriptor."""
        return PQ_OFFSET.put(self.ring.offset(self.ring.prod))

    @property
    def head(self) -> int:
        """PQH as a byte offset."""
        return self.ring.offset(self.ring.cons)

    @property
    def tail(self) -> int:
        """PQT as a byte offset."""
        return self.ring.offset(self.ring.prod)

    @property
    def prs(self) -> int:
        """PRS: PPR (a request was queued) and PRO (the queue overflowed)."""
        return _PPR.put(self._ppr) | _PRO.put(self.ring.overflowed)

    @property
    def overflows(self) -> int:
        """Requests lost because the queue was full."""
        return self.ring.lost

    def full(self) -> bool:
        """Whether one more descriptor would make PQT catch up with PQH."""
        return self.ring.full()

    # -- hardware side ----------------------------------------------------------------------

    def post(self, desc: PageRequestDesc) -> bool:
        """Queue a page request as the hardware does; False when the queue was full (PRS.PRO
        set; a last-in-group request is answered automatically)."""
        if not self.ring.produce_or_overflow(desc.to_bytes()):
            if desc.LPIG and self.auto_response is not None:
                self.auto_response(PageGroupResponse(
                    PP=desc.PP, RID=desc.RID, PASID=desc.PASID, LPIG=True, PRGI=desc.PRGI,
                    RC=ResponseCode.SUCCESS))
            return False
        self._ppr = True
        if _IM.get(self.pectl):
            self.pectl |= _IP.mask
        else:
            self.events += 1
        return True

    # -- software side ----------------------------------------------------------------------

    def take(self) -> list[PageRequestDesc]:
        """Read every queued descriptor from PQH to PQT and advance PQH past them (up to a
        slot the memory cannot give)."""
        out = []
        while True:
            try:
                raw = self.ring.consume()
            except MemoryAccessError:
                break
            if raw is None:
                break
            out.append(PageRequestDesc.from_bytes(raw))
        return out

    def write_prs(self, value: int) -> None:
        """Software write: 1 clears PPR / acknowledges PRO."""
        if _PPR.get(value):
            self._ppr = False
        if _PRO.get(value):
            self.ring.acknowledge_overflow()

    def write_pectl(self, value: int) -> None:
        """Software write of PECTL.IM; clearing IM sends a pending interrupt."""
        masked = bool(_IM.get(value))
        self.pectl = (self.pectl & ~_IM.mask) | (_IM.mask if masked else 0)
        if not masked and _IP.get(self.pectl):
            self.pectl &= ~_IP.mask
            self.events += 1

    @property
    def overflowed(self) -> bool:
        """PRS.PRO."""
        return self.ring.overflowed

    @property
    def pending(self) -> bool:
        """PRS.PPR."""
        return self._ppr


def to_uapi_fault(desc: PageRequestDesc, *, mode: Mode = profiles.DEFAULT) -> Fault:
    """The page-request fault the Linux driver reports for ``desc``.

    LPIG sets LAST_PAGE; a present PASID sets PASID_VALID and RESPONSE_NEEDS_PASID; private data
    sets PRIV_DATA and LAST_PAGE (so the core keeps the request pending) and is copied. ``addr``
    is the page *number* under the ``vtd.prq.addr_page_number`` quirk (``linux-5.10``: the
    driver forgot the shift) and the page's byte address otherwise (``strict``).
    """
    page_number = profiles.get(mode).quirk("vtd.prq.addr_page_number")
    flags = PageRequestFlags(0)
    if desc.LPIG:
        flags |= PageRequestFlags.LAST_PAGE
    if desc.PP:
        flags |= PageRequestFlags.PASID_VALID | PageRequestFlags.RESPONSE_NEEDS_PASID
    private = (0, 0)
    if desc.PDP:
        flags |= PageRequestFlags.PRIV_DATA | PageRequestFlags.LAST_PAGE
        private = (desc.PRIV0, desc.PRIV1)
    perm = FaultPerm(0)
    for name, p in _PERM_BITS.items():
        if getattr(desc, name):
            perm |= p
    addr = desc.ADDR >> 12 if page_number else desc.ADDR
    prm = FaultPageRequest(flags=int(flags), pasid=desc.PASID, grpid=desc.PRGI, perm=int(perm),
                           addr=addr, private_data=private)
    return Fault(type=FaultType.PAGE_REQ, prm=prm)


#: The strict encoding of each UAPI response code.
_STRICT_CODE = {
    PageResponseCode.SUCCESS: ResponseCode.SUCCESS,
    PageResponseCode.INVALID: ResponseCode.INVALID_REQUEST,
    PageResponseCode.FAILURE: ResponseCode.FAILURE,
}


def page_group_response(prm: FaultPageRequest, rid: int, code: int, *,
                        mode: Mode = profiles.DEFAULT) -> PageGroupResponse | None:
    """The type-9 descriptor the driver sends for a response ``code`` to request ``prm``
    (the reported record) from requester ``rid``; None when nothing is sent (the request was
    neither last in its group nor carried private data).

    Under the ``vtd.page_response.raw_code`` quirk (``linux-5.10``) ``code`` goes into the
    descriptor unchanged and unmasked, as the driver does: UAPI FAILURE (2) goes out as the
    reserved code 2, and a code above 0xF spills into the RID and PASID fields. Without it
    (``strict``) SUCCESS/INVALID/FAILURE are encoded as 0/1/0xF and any other code is refused
    with EINVAL.
    """
    raw_code = profiles.get(mode).quirk("vtd.page_response.raw_code")
    if not isinstance(rid, int) or not 0 <= rid <= 0xFFFF:
        raise UAPIError(errno.EINVAL, f"page response: requester id {rid!r} is not 16-bit",
                        rule="vtd.prq-rid")
    if not isinstance(code, int) or not 0 <= code <= 0xFFFF_FFFF:
        raise UAPIError(errno.EINVAL, f"page response: code {code!r} is not a u32",
                        rule="vtd.prq-code")
    flags = PageRequestFlags(prm.flags)
    last = PageRequestFlags.LAST_PAGE in flags
    private = PageRequestFlags.PRIV_DATA in flags
    if not last and not private:
        return None
    if raw_code:
        encoded = code
    else:
        if code not in _STRICT_CODE:
            raise fail("vtd.prq-code", code=code)
        encoded = int(_STRICT_CODE[PageResponseCode(code)])
    layout = PageGroupResponse.LAYOUT
    qw0 = (layout["PASID"].put(prm.pasid & 0xFFFFF) | layout["RID"].put(rid)
           | layout["PP"].put(PageRequestFlags.PASID_VALID in flags)
           | layout["PDP"].put(private) | encoded << layout["RC"].shift
           | TYPE_LO.put(PageGroupResponse.TYPE))
    rest = (layout["PRGI"].put(prm.grpid & 0x1FF) | layout["LPIG"].put(last))
    if private:
        rest |= layout["PRIV0"].put(prm.private_data[0]) | layout["PRIV1"].put(
            prm.private_data[1])
    return PageGroupResponse.from_int((qw0 & ((1 << 64) - 1)) | rest)

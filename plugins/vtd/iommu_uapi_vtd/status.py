"""Status and event-control registers shared by fault recording and the invalidation queue.

FSTS (0x34) holds both the primary-fault bits (PFO, PPF, FRI) and the invalidation-queue errors
(IQE, ICE, ITE); FECTL (0x38) gates the fault event; ICS (0x9C) and IECTL (0xA0) report wait-
descriptor completion; IQERCD (0xB0) says why the queue stopped. Event-control registers share
one layout (IM bit 31, IP bit 30; PECTL for page requests too).
"""

from __future__ import annotations

from .bits import Field, Record, bit

__all__ = ["EventControl", "Fsts", "Ics", "Iqercd", "StatusRegisters"]


class Fsts(Record, frozen=True, gc=False):
    """FSTS, the fault status register (32 bits)."""

    BITS = 32
    LAYOUT = {
        "PFO": bit(0),          # primary fault overflow (RW1C)
        "PPF": bit(1),          # primary pending fault: some FRCD has F = 1
        "AFO": bit(2),          # advanced fault overflow
        "APF": bit(3),          # advanced pending fault
        "IQE": bit(4),          # invalidation queue error (RW1C)
        "ICE": bit(5),          # invalidation completion error (RW1C)
        "ITE": bit(6),          # invalidation time-out error (RW1C)
        "FRI": Field(8, 8),     # FRCD index of the first pending fault
    }
    PFO: bool = False
    PPF: bool = False
    AFO: bool = False
    APF: bool = False
    IQE: bool = False
    ICE: bool = False
    ITE: bool = False
    FRI: int = 0


#: FSTS bits software clears by writing 1.
FSTS_RW1C = ("PFO", "AFO", "IQE", "ICE", "ITE")


class EventControl(Record, frozen=True, gc=False):
    """FECTL / IECTL / PECTL: interrupt mask and pending."""

    BITS = 32
    LAYOUT = {"IP": bit(30), "IM": bit(31)}
    IP: bool = False
    IM: bool = False


class Ics(Record, frozen=True, gc=False):
    """ICS, invalidation completion status."""

    BITS = 32
    LAYOUT = {"IWC": bit(0)}    # a wait descriptor with IF completed (RW1C)
    IWC: bool = False


class Iqercd(Record, frozen=True, gc=False):
    """IQERCD, the invalidation queue error record."""

    LAYOUT = {"IQEI": Field(0, 4), "ITESID": Field(32, 16), "ICESID": Field(48, 16)}
    IQEI: int = 0
    ITESID: int = 0
    ICESID: int = 0


class StatusRegisters:
    """FSTS, FECTL, ICS, IECTL and IQERCD of one IOMMU, as register values.

    An event whose control register has IM = 0 is sent at once (counted in ``fault_events`` /
    ``invalidation_events``); with IM = 1 it sets IP and is sent when software clears IM.
    """

    fsts: int
    fectl: int
    ics: int
    iectl: int
    iqercd: int
    fault_events: int
    invalidation_events: int

    def __init__(self) -> None:
        self.fsts = self.fectl = self.ics = self.iectl = self.iqercd = 0
        self.fault_events = self.invalidation_events = 0

    # -- FSTS -------------------------------------------------------------------------------

    def fsts_get(self, name: str) -> int:
        """The value of FSTS field ``name``."""
        return Fsts.LAYOUT[name].get(self.fsts)

    def fsts_set(self, name: str, value: int = 1) -> None:
        """Set FSTS field ``name`` to ``value`` (hardware side)."""
        field = Fsts.LAYOUT[name]
        self.fsts = (self.fsts & ~field.mask) | field.put(value)

    def write_fsts(self, value: int) -> None:
        """Software write: 1 clears each RW1C bit; other bits are read-only."""
        for name in FSTS_RW1C:
            if Fsts.LAYOUT[name].get(value):
                self.fsts_set(name, 0)

    # -- events -----------------------------------------------------------------------------

    def raise_fault_event(self) -> None:
        """Signal a fault event (new fault record, IQE, ICE or ITE) through FECTL."""
        self.fectl, sent = _signal(self.fectl)
        self.fault_events += sent

    def raise_invalidation_event(self) -> None:
        """Signal wait-descriptor completion through IECTL."""
        self.iectl, sent = _signal(self.iectl)
        self.invalidation_events += sent

    def write_fectl(self, value: int) -> None:
        """Software write of FECTL.IM; clearing IM sends a pending event."""
        self.fectl, sent = _write_control(self.fectl, value)
        self.fault_events += sent

    def write_iectl(self, value: int) -> None:
        """Software write of IECTL.IM; clearing IM sends a pending event."""
        self.iectl, sent = _write_control(self.iectl, value)
        self.invalidation_events += sent

    def write_ics(self, value: int) -> None:
        """Software write: 1 clears ICS.IWC."""
        if Ics.LAYOUT["IWC"].get(value):
            self.ics &= ~Ics.LAYOUT["IWC"].mask

    def set_iwc(self) -> None:
        """A wait descriptor with IF completed."""
        self.ics |= Ics.LAYOUT["IWC"].mask

    def set_iqei(self, iqei: int) -> None:
        """Record why the queue stopped in IQERCD.IQEI."""
        field = Iqercd.LAYOUT["IQEI"]
        self.iqercd = (self.iqercd & ~field.mask) | field.put(iqei)

    @property
    def iqei(self) -> int:
        """IQERCD.IQEI."""
        return Iqercd.LAYOUT["IQEI"].get(self.iqercd)


_IM = EventControl.LAYOUT["IM"]
_IP = EventControl.LAYOUT["IP"]


def _signal(control: int) -> tuple[int, int]:
    if _IM.get(control):
        return control | _IP.mask, 0
    return control, 1


def _write_control(control: int, value: int) -> tuple[int, int]:
    masked = bool(_IM.get(value))
    control = (control & ~_IM.mask) | (_IM.mask if masked else 0)
    if not masked and _IP.get(control):
        return control & ~_IP.mask, 1
    return control, 0

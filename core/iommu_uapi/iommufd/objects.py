"""The objects an :class:`~.fd.IommuFd` holds under numbered ids, as the kernel's iommufd
context does: bound devices, I/O address spaces, HWPTs, fault objects, vIOMMUs, vDEVICEs."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..device import Device, Domain
    from .faultq import FaultQueue

__all__ = ["BoundDevice", "Hwpt", "Ioas", "IoasArea", "Obj", "Vdevice", "Viommu"]


class Obj:
    """Base of every object: its id and the kind named in messages."""

    kind = "object"
    __slots__ = ("id",)

    def __init__(self, obj_id: int) -> None:
        self.id = obj_id


class BoundDevice(Obj):
    """A device bound to the iommufd (``VFIO_DEVICE_BIND_IOMMUFD``): its ``dev_id``."""

    kind = "device"
    __slots__ = ("dev",)

    def __init__(self, obj_id: int, dev: Device) -> None:
        super().__init__(obj_id)
        self.dev = dev


class IoasArea:
    """One ``IOMMU_IOAS_MAP``: ``length`` bytes at ``iova``, the pinned host pages, the prot."""

    __slots__ = ("iova", "length", "pages", "prot", "user_va")

    def __init__(self, iova: int, length: int, user_va: int, pages: tuple[int, ...],
                 prot: int) -> None:
        self.iova = iova
        self.length = length
        self.user_va = user_va
        self.pages = pages
        self.prot = prot


class Ioas(Obj):
    """An I/O address space: the areas mapped into it, and the paging HWPTs that mirror it."""

    kind = "IOAS"
    __slots__ = ("areas", "auto_hwpt", "hwpts")

    def __init__(self, obj_id: int) -> None:
        super().__init__(obj_id)
        self.areas: dict[int, IoasArea] = {}
        self.hwpts: list[Hwpt] = []
        #: the paging HWPT made when a device attaches to the IOAS itself
        self.auto_hwpt: Hwpt | None = None


class Hwpt(Obj):
    """A hardware page table: paging (a host domain over an IOAS, the nesting parent when
    ``nest_parent``) or nested (``parent`` is the paging HWPT, ``state`` the backend's)."""

    kind = "HWPT"
    __slots__ = ("data_type", "domain", "fault", "ioas", "nest_parent", "parent", "pasid_ok",
                 "state", "users")

    def __init__(self, obj_id: int, domain: Domain, *, ioas: Ioas | None = None,
                 parent: Hwpt | None = None, nest_parent: bool = False, pasid_ok: bool = False,
                 data_type: int = 0, state: object = None,
                 fault: FaultQueue | None = None) -> None:
        super().__init__(obj_id)
        self.domain = domain
        self.ioas = ioas
        self.parent = parent
        self.nest_parent = nest_parent
        self.pasid_ok = pasid_ok
        self.data_type = data_type
        self.state = state
        self.fault = fault
        #: (device, PASID or None) attached to this HWPT, in attach order
        self.users: list[tuple[Device, int | None]] = []

    @property
    def nested(self) -> bool:
        """Whether this is a nested (stage-1) HWPT."""
        return self.parent is not None


class Viommu(Obj):
    """A virtual IOMMU of ``type`` over the nesting parent ``parent``; ``vdevs`` its virtual
    IDs to vDEVICEs."""

    kind = "vIOMMU"
    __slots__ = ("parent", "state", "type", "vdevs")

    def __init__(self, obj_id: int, vtype: int, parent: Hwpt, state: object) -> None:
        super().__init__(obj_id)
        self.type = vtype
        self.parent = parent
        self.state = state
        self.vdevs: dict[int, Vdevice] = {}


class Vdevice(Obj):
    """A device as the guest sees it through a vIOMMU: ``virt_id`` (a virtual StreamID)."""

    kind = "vDEVICE"
    __slots__ = ("dev", "viommu", "virt_id")

    def __init__(self, obj_id: int, viommu: Viommu, dev: Device, virt_id: int) -> None:
        super().__init__(obj_id)
        self.viommu = viommu
        self.dev = dev
        self.virt_id = virt_id

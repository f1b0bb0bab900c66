"""The numbered objects of an iommufd context: ids from 1, the lowest free first, looked up
by type (another type is ENOENT, as ``iommufd_get_object`` answers), and who refers to whom."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..rules import fail
from .objects import Hwpt, Ioas, Obj, Vdevice, Viommu

if TYPE_CHECKING:
    from ..iommu import IOMMU
    from .faultq import FaultQueue

__all__ = ["ObjectStore"]

_FIRST_FD = 3


class ObjectStore:
    """The object table of an :class:`~.fd.IommuFd`."""

    iommu: IOMMU
    objects: dict[int, Obj]
    files: dict[int, FaultQueue]
    #: (dev_id, PASID or None) -> the HWPT attached there
    attached: dict[tuple[int, int | None], Hwpt]

    def _new_id(self) -> int:
        obj_id = 1
        while obj_id in self.objects:
            obj_id += 1
        return obj_id

    def _add(self, make: Callable[[int], Any]) -> Any:
        obj = make(self._new_id())
        self.objects[obj.id] = obj
        return obj

    def get(self, obj_id: int, *kinds: type[Obj]) -> Any:
        """The object ``obj_id`` if it is one of ``kinds``; ENOENT otherwise (also for an
        object of another type, as ``iommufd_get_object`` does)."""
        obj = self.objects.get(obj_id)
        if obj is None or not isinstance(obj, kinds):
            names = "/".join(k.kind for k in kinds)
            raise fail("iommufd.object.unknown", kind=names, id=obj_id)
        return obj

    def users_of(self, obj: Obj) -> list[str]:
        """What refers to ``obj`` (it cannot be destroyed while this is non-empty)."""
        out: list[str] = []
        for other in self.objects.values():
            if isinstance(other, Hwpt) and (other.parent is obj or other.ioas is obj
                                            or other.fault is obj):
                out.append(f"HWPT {other.id}")
            elif isinstance(other, Viommu) and other.parent is obj:
                out.append(f"vIOMMU {other.id}")
            elif isinstance(other, Vdevice) and (other.viommu is obj or other.dev is getattr(
                    obj, "dev", None)):
                out.append(f"vDEVICE {other.id}")
        for (dev_id, pasid), hwpt in self.attached.items():
            if hwpt is obj or dev_id == obj.id or (isinstance(obj, Ioas) and hwpt.ioas is obj
                                                    and hwpt is obj.auto_hwpt):
                out.append(f"device {dev_id} pasid {pasid}")
        return out

    def _new_fd(self) -> int:
        fd = _FIRST_FD
        while fd in self.files:
            fd += 1
        return fd

"""``IOMMU_IOAS_MAP`` and ``IOMMU_IOAS_UNMAP``: the IOVA space every paging HWPT mirrors.

Mapping pins the host pages behind the user range (:class:`~.usermem.UserMemory`) and maps them
page by page into the domain of every paging HWPT over the IOAS (the nesting parent's stage 2);
unmapping takes whole areas out of all of them. A refused call changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..memory import PAGE_SIZE
from ..pgtable.common import Prot
from ..rules import fail
from .consts import IoasMapFlags
from .objects import Hwpt, Ioas, IoasArea

if TYPE_CHECKING:
    from ..iommu import IOMMU
    from .usermem import UserMemory

__all__ = ["ioas_map", "ioas_unmap", "mirror"]

_MASK = PAGE_SIZE - 1
_U64 = (1 << 64) - 1
_MAP_FLAGS = int(IoasMapFlags.FIXED_IOVA | IoasMapFlags.WRITEABLE | IoasMapFlags.READABLE)
#: The lowest IOVA the IOAS hands out when the caller lets it choose.
_IOVA_BASE = 0x1_0000_0000


def _prot(flags: int) -> int:
    prot = 0
    if flags & IoasMapFlags.READABLE:
        prot |= Prot.READ
    if flags & IoasMapFlags.WRITEABLE:
        prot |= Prot.WRITE
    return int(prot)


def _overlaps(ioas: Ioas, iova: int, length: int) -> bool:
    end = iova + length
    return any(a.iova < end and iova < a.iova + a.length for a in ioas.areas.values())


def ioas_map(iommu: IOMMU, user: UserMemory, ioas: Ioas, flags: int, reserved: int,
             user_va: int, length: int, iova: int) -> int:
    """Map ``length`` bytes of ``user_va`` at ``iova`` (chosen when not FIXED_IOVA); returns
    the IOVA used."""
    fixed = bool(flags & IoasMapFlags.FIXED_IOVA)
    if (not length or length & _MASK or user_va & _MASK or (fixed and iova & _MASK)
            or user_va + length - 1 > _U64 or (fixed and iova + length - 1 > _U64)):
        raise fail("iommufd.ioas_map.range", user_va=user_va, iova=iova, length=length)
    if fixed:
        if _overlaps(ioas, iova, length):
            raise fail("iommufd.ioas_map.exists", iova=iova, length=length)
    else:
        iova = max([_IOVA_BASE] + [a.iova + a.length for a in ioas.areas.values()])
        if iova + length - 1 > _U64:
            raise fail("iommufd.ioas_map.space", length=length)
    pages = []
    for off in range(0, length, PAGE_SIZE):
        page = user.host_page(user_va + off)
        if page is None:
            raise fail("iommufd.ioas_map.unbacked", va=user_va + off)
        pages.append(page)
    area = IoasArea(iova, length, user_va, tuple(pages), _prot(flags))
    done: list[Hwpt] = []
    try:
        for hwpt in ioas.hwpts:
            _map_area(iommu, hwpt, area)
            done.append(hwpt)
    except BaseException:
        for hwpt in done:
            _unmap_area(iommu, hwpt, area)
        raise
    ioas.areas[iova] = area
    return iova


def ioas_unmap(iommu: IOMMU, ioas: Ioas, iova: int, length: int) -> int:
    """Unmap every area inside ``[iova, iova + length)`` (0 and U64_MAX: all); returns the
    bytes unmapped. An area the range cuts is EINVAL, none at all ENOENT."""
    everything = iova == 0 and length == _U64
    end = iova + length
    hit = []
    for area in ioas.areas.values():
        a_end = area.iova + area.length
        if everything or (iova <= area.iova and a_end <= end):
            hit.append(area)
        elif area.iova < end and iova < a_end:
            raise fail("iommufd.ioas_unmap.split", start=area.iova)
    if not hit:
        raise fail("iommufd.ioas_unmap.none", iova=iova, length=length)
    for area in hit:
        for hwpt in ioas.hwpts:
            _unmap_area(iommu, hwpt, area)
        del ioas.areas[area.iova]
    return sum(a.length for a in hit)


def mirror(iommu: IOMMU, hwpt: Hwpt, ioas: Ioas) -> None:
    """Map every area of ``ioas`` into a new paging HWPT (it then follows the IOAS)."""
    for area in ioas.areas.values():
        _map_area(iommu, hwpt, area)
    ioas.hwpts.append(hwpt)


def _map_area(iommu: IOMMU, hwpt: Hwpt, area: IoasArea) -> None:
    for i, page in enumerate(area.pages):
        try:
            iommu.map(hwpt.domain, area.iova + i * PAGE_SIZE, page, PAGE_SIZE, area.prot)
        except BaseException:
            for j in range(i):
                iommu.unmap(hwpt.domain, area.iova + j * PAGE_SIZE, PAGE_SIZE)
            raise


def _unmap_area(iommu: IOMMU, hwpt: Hwpt, area: IoasArea) -> None:
    for i in range(len(area.pages)):
        iommu.unmap(hwpt.domain, area.iova + i * PAGE_SIZE, PAGE_SIZE)

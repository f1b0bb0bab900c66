"""A VFIO type1 container in nesting mode: the ioctls through which a VMM reaches the IOMMU UAPI.

Two unmerged series carried the UAPI records to user space (reference kernel-uapi.md b.2): Yi
Liu's v8 (``VFIO_IOMMU_NESTING_OP``: bind, unbind, cache invalidation) and Eric Auger's v13
(``VFIO_IOMMU_SET_PASID_TABLE``, ``VFIO_IOMMU_CACHE_INVALIDATE``). Each ioctl is a ``{argsz;
flags; data}`` wrapper: VFIO checks its own header, then hands ``data`` (the user bytes after
the 8-byte header, never compared with VFIO's argsz) to the IOMMU core's ``uapi_*`` entry point
for every device of the container's group. Where the two series let a failure go unreported
(the v8 cache invalidation ignores every device's result) or undo more than the call did (a
failed v8 bind unbinds the PASID on every device of the group, a binding made earlier
included), profile ``linux-5.10`` does what the series did and ``strict`` reports the first
failure and undoes only what the call itself did.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from . import profiles
from .abi import SizeDiscipline
from .errors import UAPIError
from .uapi import (
    NestingInfo,
    VfioInfoCapNesting,
    VfioIommuType1CacheInvalidate,
    VfioIommuType1NestingOp,
    VfioIommuType1SetPasidTable,
)
from .uapi.consts import NestingFeature, NestingOp

if TYPE_CHECKING:
    from .device import Device, Domain
    from .iommu import IOMMU

__all__ = ["VfioContainer"]

_SET, _UNSET = 1, 2  # VFIO_PASID_TABLE_FLAG_SET / _UNSET


class VfioContainer:
    """One type1 container in nesting mode over ``domain`` of ``iommu``; its one group is the
    devices attached to the domain.

    Made as VFIO attaches the group: it reads the domain's nesting info (argsz 64), and a
    domain without nesting (format 0, or a backend that refuses the query) is refused with
    ENOENT (``vfio.no_nesting``). ``profile`` and ``discipline`` default to the IOMMU's.
    """

    iommu: IOMMU
    domain: Domain
    info: NestingInfo

    def __init__(self, iommu: IOMMU, domain: Domain) -> None:
        self.iommu = iommu
        self.domain = domain
        try:
            info = iommu.nesting_info(domain)
        except UAPIError as err:
            raise UAPIError(errno.ENOENT, f"vfio: domain has no nesting info ({err.message})",
                            rule="vfio.no_nesting") from None
        if info is None or info.format == 0:
            raise UAPIError(errno.ENOENT, "vfio: nesting info reports format 0",
                            rule="vfio.no_nesting")
        self.info = info

    @property
    def devices(self) -> list[Device]:
        """The group: every device attached to the domain, in attach order."""
        return list(self.domain.devices)

    def info_cap(self) -> bytes:
        """The ``VFIO_IOMMU_TYPE1_INFO_CAP_NESTING`` capability ``VFIO_IOMMU_GET_INFO``
        returns (header, then the nesting info)."""
        return VfioInfoCapNesting.for_info(self.info).to_bytes()

    def _need(self, feature: NestingFeature, op: str) -> None:
        if not int(self.info.features) & int(feature):
            raise UAPIError(errno.EOPNOTSUPP, f"{op}: the domain's nesting info lacks "
                            f"{feature.name}", rule="vfio.feature")

    # -- VFIO_IOMMU_NESTING_OP (Yi Liu v8) -----------------------------------------------------

    def nesting_op(self, ubuf: bytes | bytearray | memoryview, *, profile: str | None = None,
                   discipline: SizeDiscipline | None = None) -> None:
        """``VFIO_IOMMU_NESTING_OP``: BIND_PGTBL / UNBIND_PGTBL with ``iommu_gpasid_bind_data``,
        CACHE_INVLD with ``iommu_cache_invalidate_info``, after the header checks
        (``nesting_op.*``). Bind and cache invalidation need their ``IOMMU_NESTING_FEAT_*`` in
        the nesting info read at attach (EOPNOTSUPP). Unbind never fails once the header passed."""
        header, inner = VfioIommuType1NestingOp.from_user(ubuf)
        prof = self.iommu.uapi.profile_of(profile)
        data = bytes(inner)
        if header.op == NestingOp.BIND_PGTBL:
            self._need(NestingFeature.BIND_PGTBL, "nesting_op")
            self._bind(data, prof, discipline)
        elif header.op == NestingOp.UNBIND_PGTBL:
            for dev in self.devices:
                self._quietly(partial(self.iommu.uapi_sva_unbind_gpasid, self.domain, dev, data,
                                      profile=prof, discipline=discipline))
        else:
            self._need(NestingFeature.CACHE_INVLD, "nesting_op")
            first: UAPIError | None = None
            for dev in self.devices:
                err = self._quietly(partial(self.iommu.uapi_cache_invalidate, self.domain, dev,
                                            data, profile=prof, discipline=discipline))
                first = first or err
            if first is not None and not profiles.get(prof).quirk(
                    "vfio.cache_invalidate_ignores_errors"):
                raise first

    def _bind(self, data: bytes, prof: str, discipline: SizeDiscipline | None) -> None:
        done: list[Device] = []
        for dev in self.devices:
            try:
                self.iommu.uapi_sva_bind_gpasid(self.domain, dev, data, profile=prof,
                                                discipline=discipline)
            except UAPIError:
                unwind_group = profiles.get(prof).quirk("vfio.bind_unwind_group")
                undo = self.devices if unwind_group else done
                for other in undo:
                    self._quietly(partial(self.iommu.uapi_sva_unbind_gpasid, self.domain, other,
                                          data, profile=prof, discipline=discipline))
                raise
            done.append(dev)

    @staticmethod
    def _quietly(call: Callable[[], object]) -> UAPIError | None:
        """Run ``call``; its refusal is returned instead of raised (VFIO ignores it)."""
        try:
            call()
        except UAPIError as err:
            return err
        return None

    # -- VFIO_IOMMU_SET_PASID_TABLE and VFIO_IOMMU_CACHE_INVALIDATE (Eric Auger v13) -----------

    def set_pasid_table(self, ubuf: bytes | bytearray | memoryview, *,
                        profile: str | None = None,
                        discipline: SizeDiscipline | None = None) -> None:
        """``VFIO_IOMMU_SET_PASID_TABLE``: flags exactly SET (attach the
        ``iommu_pasid_table_config`` that follows) or exactly UNSET (detach; never fails once
        the header passed)."""
        header, inner = VfioIommuType1SetPasidTable.from_user(ubuf)
        if header.flags == _SET:
            self.iommu.uapi_attach_pasid_table(self.domain, bytes(inner), profile=profile,
                                               discipline=discipline)
        elif header.flags == _UNSET:
            self._quietly(partial(self.iommu.detach_pasid_table, self.domain))

    def cache_invalidate(self, ubuf: bytes | bytearray | memoryview, *,
                         profile: str | None = None,
                         discipline: SizeDiscipline | None = None) -> None:
        """``VFIO_IOMMU_CACHE_INVALIDATE``: flags 0, then the ``iommu_cache_invalidate_info``
        that follows for every device of the group, stopping at the first error, which is
        returned."""
        _, inner = VfioIommuType1CacheInvalidate.from_user(ubuf)
        data = bytes(inner)
        for dev in self.devices:
            self.iommu.uapi_cache_invalidate(self.domain, dev, data, profile=profile,
                                             discipline=discipline)

"""``struct iommu_page_response``: the answer to a page request group (reference a.3, c.6)."""

from __future__ import annotations

from .. import checks as _checks
from ..abi import U32, CRecord, SizeDiscipline, copy_from_user, cstruct
from ..argsz import user_bytes
from ..profiles import ProfileLike
from ..rules import fail

__all__ = ["PageResponse"]


@cstruct(cname="iommu_page_response")
class PageResponse(CRecord, frozen=True, gc=False):
    """Respond ``code`` (``PageResponseCode``) to page request group ``grpid``; ``flags``
    (``PageResponseFlags``) say whether ``pasid`` is valid."""

    argsz: U32 = 0
    version: U32 = 0
    flags: U32 = 0
    pasid: U32 = 0
    grpid: U32 = 0
    code: U32 = 0

    @classmethod
    def from_user(
        cls,
        buf: bytes | bytearray | memoryview,
        profile: ProfileLike = "linux-5.10",
        discipline: SizeDiscipline = SizeDiscipline.ARGSZ,
    ) -> PageResponse:
        """Copy and check a page response as the profile does before matching pending faults.

        ``linux-5.10`` never looks at argsz: the 24-byte struct is read whole (EFAULT if fewer
        bytes are readable). ``strict`` copies it under the size discipline (argsz >= 24).
        Either way a ``buf`` that is not a bytes-like buffer is EFAULT
        (``page_response.copy_minsz``).
        """
        prof = _checks.profile_of(profile)
        if "page_response.argsz_minsz" in prof.rules:
            msg = copy_from_user(cls, buf, "page_response", discipline)
        else:
            if type(buf) is not bytes and type(buf) is not bytearray:
                buf = user_bytes(buf, "page_response", None, cls.SIZE)
            if len(buf) < cls.SIZE:
                raise fail("page_response.copy_minsz", minsz=cls.SIZE, have=len(buf))
            msg = cls._cdecode(buf, 0)
        _checks.page_response_content(msg, prof)
        return msg

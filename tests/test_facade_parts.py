"""The façade is composed of parts with narrow interfaces: the kernel-named entry points of
DESIGN.md section 4 stay on IOMMU with their signatures, forwarded to its ``uapi`` part, which
reaches the façade only through the public Facade protocol."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import iommu_uapi.operations as operations
from iommu_uapi.iommu import IOMMU

KERNEL_NAMED = {
    "uapi_cache_invalidate": ["domain", "dev", "ubuf", "profile", "discipline"],
    "uapi_sva_bind_gpasid": ["domain", "dev", "ubuf", "profile", "discipline"],
    "uapi_sva_unbind_gpasid": ["domain", "dev", "ubuf", "profile", "discipline"],
    "uapi_attach_pasid_table": ["domain", "ubuf", "profile", "discipline"],
    "detach_pasid_table": ["domain"],
    "page_response": ["dev", "msg", "profile"],
    "uapi_page_response": ["dev", "ubuf", "profile", "discipline"],
    "nesting_info": ["domain", "ubuf"],
    "cache_invalidate": ["domain", "dev", "info", "profile"],
    "sva_bind_gpasid": ["domain", "dev", "data", "profile"],
    "sva_unbind_gpasid": ["domain", "dev", "pasid"],
    "attach_pasid_table": ["domain", "cfg", "profile"],
    "translate": ["dev", "iova", "pasid", "access"],
}


@pytest.mark.parametrize("name", sorted(KERNEL_NAMED))
def test_kernel_named_entry_points_keep_their_signatures(name: str) -> None:
    params = list(inspect.signature(getattr(IOMMU, name)).parameters)
    assert params == ["self", *KERNEL_NAMED[name]]


def test_the_operations_touch_no_private_member_of_the_facade() -> None:
    tree = ast.parse(Path(operations.__file__).read_text())
    reached = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
               and isinstance(node.value, ast.Attribute) and node.value.attr == "facade"}
    assert reached and not any(a.startswith("_") for a in reached), reached
    assert reached <= {"profile", "discipline", "devices", "domains", "dispatch",
                       "forget_contexts"}

"""The façade's range calls on a backend without the page hooks (the test backend): ``map``
takes any aligned size, ``map_pages``/``unmap_pages`` fall back to ``iommu_map``/``iommu_unmap``
with the whole range (the backend's own rules apply to it), and the façade refuses page calls
the declared page sizes do not allow."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import minibackend
import pytest

from iommu_uapi import plugins
from iommu_uapi.errors import UAPIError
from iommu_uapi.iommu import IOMMU
from iommu_uapi.translation import TranslationFault

IOVA, PA, RW, M2 = 0x4000_0000, 0x2_0000_0000, 3, 0x20_0000


@pytest.fixture
def iommu() -> Iterator[IOMMU]:
    plugins.register_plugin("mini", minibackend)
    yield IOMMU("mini")
    plugins.unregister_plugin("mini")


def test_map_pages_and_unmap_pages_without_page_hooks(iommu: IOMMU) -> None:
    assert "iommu_map_pages" not in iommu.dispatch.ops
    domain = iommu.domain_alloc()
    dev = iommu.add_device(0x10)
    iommu.attach_device(domain, dev)
    assert iommu.map_pages(domain, IOVA, PA, 0x1000, 3, RW) == 0x3000
    assert [iommu.translate(dev, IOVA + o).paddr for o in (0, 0x1000, 0x2fff)] == [
        PA, PA + 0x1000, PA + 0x2fff]
    assert iommu.unmap_pages(domain, IOVA, 0x1000, 2) == 0x2000
    with pytest.raises(TranslationFault):
        iommu.translate(dev, IOVA + 0x1000)
    assert iommu.translate(dev, IOVA + 0x2000).paddr == PA + 0x2000


def test_map_of_any_aligned_size_uses_the_largest_pages(iommu: IOMMU) -> None:
    domain = iommu.domain_alloc()
    dev = iommu.add_device(0x10)
    iommu.attach_device(domain, dev)
    iommu.map(domain, IOVA, PA, M2 + 0x1000, RW)
    assert iommu.translate(dev, IOVA + 0x1234).page_size == M2
    assert iommu.translate(dev, IOVA + M2).page_size == 0x1000
    assert iommu.unmap(domain, IOVA, M2 + 0x1000) == M2 + 0x1000


@pytest.mark.parametrize(("args", "rule"), [
    (("map_pages", IOVA, PA, 0x2000, 2, RW), "map.pages"),
    (("unmap_pages", IOVA, 0x1000, 0), "unmap.pages"),
    (("unmap_pages", -1, 0x1000, 1), "unmap.u64"),
])
def test_refusals(iommu: IOMMU, args: tuple[object, ...], rule: str) -> None:
    domain = iommu.domain_alloc()
    with pytest.raises(UAPIError) as err:
        getattr(iommu, str(args[0]))(domain, *args[1:])
    assert (err.value.errno, err.value.rule) == (errno.EINVAL, rule)


def test_without_page_hooks_the_backend_judges_the_alignment(iommu: IOMMU) -> None:
    domain = iommu.domain_alloc()
    with pytest.raises(UAPIError) as err:
        iommu.map(domain, IOVA + 0x10, PA, 0x1000, RW)
    assert err.value.errno == errno.EINVAL and err.value.rule != "map.align"

"""The context and PASID caches in front of the tables: a missing invalidation is visible as a
stale entry, a correct one never leaves one; run in caching mode off and on (CM=0/1)."""

from __future__ import annotations

import msgspec
import pytest

from iommu_uapi.memory import PhysicalMemory
from iommu_uapi_vtd.caches import PagingStructureCache, VtdCaches
from iommu_uapi_vtd.iq import InvalidationQueue
from iommu_uapi_vtd.pasid_entry import pass_through_entry
from iommu_uapi_vtd.qi import ContextCacheInv, PasidCacheInv
from iommu_uapi_vtd.reasons import SmFaultReason, VtdFault
from iommu_uapi_vtd.registers import VtdConfig, modern_server
from iommu_uapi_vtd.tables import ScalableTables

SID, PASID = 0x310, 0x42


def _setup(cfg: VtdConfig) -> tuple[ScalableTables, VtdCaches, InvalidationQueue]:
    mem = PhysicalMemory()
    t = ScalableTables(mem, cfg)
    t.setup_device(SID)
    c = VtdCaches()
    return t, c, InvalidationQueue(mem, cfg, c)


@pytest.mark.parametrize("cm", [False, True])
def test_changed_pasid_entry_is_stale_until_pasid_cache_invalidation(cm: bool) -> None:
    cfg = modern_server(caching_mode=cm)
    t, c, q = _setup(cfg)
    t.set_pasid(SID, PASID, pass_through_entry(cfg, did=5, aw=2))
    first = t.resolve(SID, PASID, caches=c)
    assert first.entry.DID == 5 and first.config_reads == 4
    again = t.resolve(SID, PASID, caches=c)
    assert again.config_reads == 0 and c.pasid.hits == 1 and c.context.hits == 1
    t.set_pasid(SID, PASID, pass_through_entry(cfg, did=6, aw=2))
    assert t.resolve(SID, PASID, caches=c).entry.DID == 5          # stale: not invalidated
    q.run([PasidCacheInv(G=1, DID=6, PASID=PASID)])                  # wrong DID: no effect
    assert t.resolve(SID, PASID, caches=c).entry.DID == 5
    q.run([PasidCacheInv(G=1, DID=5, PASID=PASID)])
    fresh = t.resolve(SID, PASID, caches=c)
    assert fresh.entry.DID == 6 and fresh.config_reads == 2


@pytest.mark.parametrize("cm", [False, True])
def test_not_present_entries_are_cached_only_in_caching_mode(cm: bool) -> None:
    cfg = modern_server(caching_mode=cm)
    t, c, q = _setup(cfg)
    t.set_pasid(SID, PASID + 1, pass_through_entry(cfg, did=5, aw=2))   # creates the table
    with pytest.raises(VtdFault) as exc:
        t.resolve(SID, PASID, caches=c)
    assert exc.value.reason == SmFaultReason.PASID_NOT_PRESENT
    t.set_pasid(SID, PASID, pass_through_entry(cfg, did=5, aw=2))
    if cm:
        with pytest.raises(VtdFault):
            t.resolve(SID, PASID, caches=c)    # the not-present result is still cached
        q.run([PasidCacheInv(G=1, DID=5, PASID=PASID)])
    assert t.resolve(SID, PASID, caches=c).entry.DID == 5


@pytest.mark.parametrize("cm", [False, True])
def test_context_entry_changes_need_context_cache_invalidation(cm: bool) -> None:
    cfg = modern_server(caching_mode=cm)
    mem = PhysicalMemory()
    t, c = ScalableTables(mem, cfg), VtdCaches()
    q = InvalidationQueue(mem, cfg, c)
    other = SID + 1
    t.setup_device(other)          # creates the context table; SID's entry stays not present
    with pytest.raises(VtdFault):
        t.resolve(SID, caches=c)
    t.setup_device(SID)
    t.set_pasid(SID, 0, pass_through_entry(cfg, did=3, aw=2))
    if cm:
        with pytest.raises(VtdFault) as exc:
            t.resolve(SID, caches=c)
        assert exc.value.reason == SmFaultReason.CONTEXT_NOT_PRESENT
        q.run([ContextCacheInv(G=3, SID=SID)])
    assert t.resolve(SID, caches=c).entry.DID == 3
    t.clear_context(SID)
    assert t.resolve(SID, caches=c).entry.DID == 3                    # stale
    q.run([ContextCacheInv(G=2, DID=3)])                                # the DID it was used with
    with pytest.raises(VtdFault):
        t.resolve(SID, caches=c)


def test_counters_on_every_cache() -> None:
    c = VtdCaches()
    assert set(c.counters()) == {"context", "pasid", "fl_psc", "sl_psc", "iotlb", "devtlb"}
    psc = PagingStructureCache()
    psc.fill((5, 1), 2, 0x1000, 0xA000)
    assert psc.lookup((5, 1), 2, 0x1FFFFF) == 0xA000 and psc.lookup((5, 1), 2, 0x200000) is None
    assert (psc.hits, psc.misses) == (1, 1)
    psc.reset_counters()
    assert (psc.hits, psc.misses) == (0, 0)
    c.devtlb.enable(SID).lookup((SID, None), 0)
    assert c.counters()["devtlb"] == (0, 1)


def test_psc_range_invalidation_matches_covered_ranges() -> None:
    psc = PagingStructureCache()
    psc.fill((5,), 3, 0x4000_0000, 1)     # covers [1 GiB, 2 GiB)
    psc.fill((5,), 2, 0x4000_0000, 2)     # covers [1 GiB, 1 GiB + 2 MiB)
    assert psc.invalidate((5,), 0x4020_0000, 0x1000) == 1
    assert list(psc) == [((5,), 2, 0x4000_0000 >> 21)]


def test_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        VtdConfig().cm = True  # type: ignore[misc]
    assert msgspec.structs.replace(VtdConfig(), cm=True).cm

"""The configuration cache: counted lookups, drops by key, label and predicate, and every entry
that leaves (invalidated or evicted) reported to ``on_drop`` so the core forgets the translation
contexts built from it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from iommu_uapi.caches import ConfigCache, Geometry


def test_lookups_are_counted_and_fills_replace() -> None:
    cc: ConfigCache[int, str] = ConfigCache()
    assert cc.lookup(1) is None
    cc.fill(1, "ste-a", ["vmid:3"])
    cc.fill(1, "ste-b")                      # a refill replaces value and labels
    assert cc.lookup(1) == "ste-b" and (cc.hits, cc.misses, cc.fills) == (1, 1, 2)
    assert cc.drop_label("vmid:3") == 0 and 1 in cc


def test_drops_by_key_label_and_predicate_report_the_keys() -> None:
    heard: list[list[int]] = []
    cc: ConfigCache[int, str] = ConfigCache(on_drop=heard.append)
    for sid in range(6):
        cc.fill(sid, f"cd{sid}", [("vmid", sid % 2), ("asid", sid)])
    assert cc.drop(0, 9) == 1
    assert cc.drop_label(("vmid", 1)) == 3
    cc.label(2, ("shared",))
    assert cc.labelled(("shared",)) == [2]
    assert cc.drop_where(lambda sid, value: value == "cd4") == 1
    assert heard == [[0], [1, 3, 5], [4]] and sorted(cc) == [2]
    assert cc.flush() == 1 and heard[-1] == [2]
    assert cc.dropped == {"key": 1, "tag": 3, "predicate": 1, "global": 1}


def test_an_eviction_is_a_drop_the_core_hears() -> None:
    heard: list[list[int]] = []
    cc: ConfigCache[int, int] = ConfigCache(Geometry(2, None, "lru"), on_drop=heard.append)
    cc.fill(1, 1)
    cc.fill(2, 2)
    cc.lookup(1)                                 # 2 is now the least recently used
    cc.fill(3, 3)
    assert heard == [[2]] and sorted(cc) == [1, 3] and cc.evictions == 1
    cc.update(1, 10)
    assert cc.entries[1] == 10 and cc.fills == 3


@given(st.lists(st.tuples(st.sampled_from(["fill", "label", "drop_label", "drop"]),
                          st.integers(0, 7), st.integers(0, 3)), max_size=50))
def test_labels_index_matches_a_scan(steps: list[tuple[str, int, int]]) -> None:
    cc: ConfigCache[int, int] = ConfigCache()
    labels: dict[int, set[int]] = {}
    for op, key, label in steps:
        if op == "fill":
            cc.fill(key, key, [label])
            labels[key] = {label}
        elif op == "label" and key in labels:
            cc.label(key, label)
            labels[key].add(label)
        elif op == "drop_label":
            gone = [k for k, ls in labels.items() if label in ls]
            assert cc.drop_label(label) == len(gone)
            for k in gone:
                del labels[k]
        elif op == "drop":
            assert cc.drop(key) == (key in labels)
            labels.pop(key, None)
        assert sorted(cc) == sorted(labels)
        for lab in range(4):
            assert sorted(cc.labelled(lab)) == sorted(k for k, ls in labels.items() if lab in ls)


def test_a_flush_is_heard_once_when_on_flush_is_given() -> None:
    heard: list[object] = []
    cc: ConfigCache[int, int] = ConfigCache(on_drop=heard.append,
                                            on_flush=lambda: heard.append("all"))
    for key in range(5):
        cc.fill(key, key)
    assert cc.drop(4) == 1 and cc.flush() == 4 and heard == [[4], "all"]
    assert cc.flush() == 0 and heard == [[4], "all"]      # nothing left: nothing to hear

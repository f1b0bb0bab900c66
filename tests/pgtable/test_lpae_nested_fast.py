"""The LPAE walker's nested fast path and its last-level step agree with the full walk.

Stage-1 tables in guest RAM over LPAE stage 2, with a descriptor of either stage corrupted or a
page lost at stage 2: walked through the fast path (a walker over the page view) and through a
memory that hides it (the full walk only). Results, faults in every field, the table path a walk
cache would be filled from, and the stage-2 translations made (each once, in the same order)
must be equal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iommu_uapi.errors import UAPIError
from iommu_uapi.memory import GuestMemory, PhysicalMemory
from iommu_uapi.pgtable import lpae
from iommu_uapi.pgtable.common import Prot, WalkResult, bind_stage2
from iommu_uapi.pgtable.lpae.fast import walk_into
from iommu_uapi.testing.walks import PlainMemory, lpae_path, walk_outcome

from .test_fast_path import lpae_flags

RW = Prot.READ | Prot.WRITE
S1 = lpae.LPAEConfig(stage=1, granule=4096, t0sz=16, oas=48)
S2 = lpae.LPAEConfig(stage=2, granule=4096, t0sz=24, sl0=1, oas=48)  # 2 concatenated roots
DATA_IPA = 0x1000


def recording(s2: Any, calls: list[tuple[int, int]]) -> Any:
    """``s2`` (a stage-2 translate) that appends each call's ``(ipa, access)`` to ``calls``."""
    def translate(ipa: int, access: int) -> WalkResult:
        calls.append((ipa, access))
        return s2(ipa, access)  # type: ignore[no-any-return]
    return translate


#: Where :func:`assert_nested_walks_agree` resumes partial walks: given the full stage-1
#: walker and its stage 2, ``(level, table, walk_partial keyword arguments)`` for each start.
Starts = Callable[[lpae.LPAEWalker, Any], Iterable[tuple[int, int, dict[str, int]]]]


def assert_nested_walks_agree(host: PhysicalMemory, s1_cfg: lpae.LPAEConfig, root: int,
                              s2: lpae.LPAEPageTable, s2_cfg: lpae.LPAEConfig, iova: int,
                              access: int, starts: Starts) -> None:
    """The fast and the full nested walk of ``iova`` from ``root`` agree (result or fault,
    and the stage-2 calls made, in order), and so do their partial walks from each start
    (paths included)."""
    fast = lpae.LPAEWalker(host, s1_cfg)
    full = lpae.LPAEWalker(PlainMemory(host), s1_cfg)
    s2_fast = s2.stage2()
    s2_full = bind_stage2(lpae.LPAEWalker(PlainMemory(host), s2_cfg), s2.root)
    got_calls: list[tuple[int, int]] = []
    want_calls: list[tuple[int, int]] = []
    assert walk_outcome(lambda: fast.walk(root, iova, access, recording(s2_fast, got_calls))) \
        == walk_outcome(lambda: full.walk(root, iova, access, recording(s2_full, want_calls)))
    assert got_calls == want_calls
    for level, table, kw in starts(full, s2_full):
        got_path: list[tuple[int, int, int]] = []
        want_path: list[tuple[int, int, int]] = []
        got_calls.clear()
        want_calls.clear()
        got = walk_outcome(partial(fast.walk_partial, table, level, iova, access,
                              recording(s2_fast, got_calls), path=got_path, **kw))
        want = walk_outcome(partial(full.walk_partial, table, level, iova, access,
                               recording(s2_full, want_calls), path=want_path, **kw))
        assert (got, got_path, got_calls) == (want, want_path, want_calls)


def assert_walk_into_agrees(fast: lpae.LPAEWalker, full: lpae.LPAEWalker,
                            starts: Iterable[tuple[int, int]], ipa: int, access: int,
                            keys: dict[int, tuple[int, int]]) -> None:
    """From each ``(level, table)`` of ``starts``, ``walk_into`` returns the full walk's result
    and last table and stores its path under ``keys``; where it leaves (None) it has stored a
    part of that path only."""
    for level, table in starts:
        want_path: list[tuple[int, int, int]] = []
        want = walk_outcome(partial(full.walk_partial, table, level, ipa, access, path=want_path))
        stored = {(4 - lv, ipa >> keys[lv][1]): t for lv, t, _ in want_path}
        out: dict[tuple[int, int], int] = {}
        got = walk_into(fast, table, level, ipa, access, keys, out)
        if got is None:
            assert out.items() <= stored.items()
            continue
        assert (got[0], out) == (want, stored)
        assert got[1] == (want_path[-1][1] if want_path else table)


def _nest(data: st.DataObject) -> tuple[PhysicalMemory, lpae.LPAEPageTable,
                                        lpae.LPAEPageTable, int]:
    host = PhysicalMemory()
    guest = GuestMemory(host)
    ram = guest.add_ram(0x10_0000, 0x8_0000)
    s2 = lpae.LPAEPageTable(S2, host)
    for off in range(0, 0x8_0000, 4096):
        s2.map(0x10_0000 + off, ram + off, 4096, RW)
    s2.map(DATA_IPA, 0x7_0000_0000, 4096, RW)
    s1 = lpae.LPAEPageTable(S1, guest)
    iova = data.draw(st.integers(0, (1 << 48) - 1)) & ~0xFFF
    s1.map(iova, DATA_IPA, 4096, data.draw(st.sampled_from([RW, Prot.READ, RW | Prot.PRIV])))
    for ptr, desc in lpae_path(guest, S1, s1.root, iova):  # corrupt one on the path, or none
        if data.draw(st.booleans()):
            guest.write64(ptr, desc ^ data.draw(lpae_flags))
            break
    if data.draw(st.booleans()):  # lose a stage-2 page, or its write permission
        gpa = data.draw(st.sampled_from([DATA_IPA, s1.root & ~0xFFF]))
        s2.unmap(gpa, 4096)
        if data.draw(st.booleans()):
            s2.map(gpa, 0x7_0000_0000 if gpa == DATA_IPA else guest.gpa_to_hpa(gpa), 4096,
                   Prot.READ)
    return host, s1, s2, iova | data.draw(st.integers(0, 0xFFF))


@settings(max_examples=300)
@given(data=st.data(), access=st.integers(0, 15))
def test_lpae_nested_fast_and_full_walks_agree(data: st.DataObject, access: int) -> None:
    host, s1, s2, iova = _nest(data)

    def starts(full: lpae.LPAEWalker, s2_full: Any) -> list[tuple[int, int, dict[str, int]]]:
        # from the root and from every table the full walk went through
        path: list[tuple[int, int, int]] = []
        walk_outcome(lambda: full.walk_partial(s1.root, 0, iova, access, s2_full, path=path))
        return [(0, s1.root, {}), *((lv + 1, t, {}) for lv, t, _ in path)]

    assert_nested_walks_agree(host, S1, s1.root, s2, S2, iova, access, starts)


@settings(max_examples=200)
@given(data=st.data(), access=st.integers(0, 15), above=st.integers(0, 3))
def test_walk_leaf_is_the_last_level_of_walk_partial(data: st.DataObject, access: int,
                                                     above: int) -> None:
    host, _, s2, ipa = _nest(data)
    ipa = data.draw(st.sampled_from([ipa, DATA_IPA, 0x10_0000, 0x10_0000 | 0x123,
                                     0x1_0000_0000_0000]))
    walker = lpae.LPAEWalker(host, S2)
    path: list[tuple[int, int, int]] = []
    walk_outcome(lambda: walker.walk_partial(s2.root, 1, ipa, access, path=path))
    if not path or path[-1][0] != 2:
        return  # no last-level table on the way
    table = path[-1][1]
    want = walk_outcome(lambda: walker.walk_partial(table, 3, ipa, access))
    if isinstance(want, WalkResult):
        want = WalkResult(want.oa, want.page_size, want.perm, want.level, want.reads + above,
                          want.s2_reads, want.global_)
    else:
        want = (*want[:8], want[8] + above, *want[9:])  # walk_outcome's reads
    assert walk_outcome(lambda: walker.walk_leaf(table, ipa, access, above)) == want
    # and from a table no walk may start at
    with pytest.raises(UAPIError) as leaf_err:
        walker.walk_leaf(table | 8, ipa, access)
    assert leaf_err.value.rule == "pgtable.start"


@settings(max_examples=200)
@given(data=st.data(), access=st.integers(0, 15))
def test_walk_into_is_walk_partial_with_its_path_stored(data: st.DataObject,
                                                        access: int) -> None:
    """From the root and from every table a stage-2 walk goes through: the result of
    ``walk_into`` is the full walk's, the descriptors it stores are its path's (keyed by level
    and prefix); where it leaves the walk (None) it has stored part of that path only."""
    host, _, s2, ipa = _nest(data)
    ipa = data.draw(st.sampled_from([ipa, DATA_IPA, 0x10_0000 | 0x123, 0x1_0000_0000_0000]))
    fast = lpae.LPAEWalker(host, S2)
    full = lpae.LPAEWalker(PlainMemory(host), S2)
    keys = {lv: (4 - lv, 12 + 9 * (3 - lv)) for lv in range(0, 3)}
    path: list[tuple[int, int, int]] = []
    walk_outcome(lambda: full.walk_partial(s2.root, 1, ipa, access, path=path))
    assert_walk_into_agrees(fast, full, [(1, s2.root), *((lv + 1, t) for lv, t, _ in path)],
                            ipa, access, keys)
    with pytest.raises(UAPIError):  # from a table no walk may start at: left to walk_partial
        full.walk_partial(s2.root | 8, 1, ipa, access)
    assert walk_into(fast, s2.root | 8, 1, ipa, access, keys, {}) is None

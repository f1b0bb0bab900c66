"""Random request bytes (a status or no reply, never an exception, nothing changed on a
refusal), the interval map against a plain model, and the rule table itself."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from virtio_rig import attach, device, map_, ok, state

from iommu_uapi_virtio_iommu import RULES, RULES_BY_ID, HostTables, Mapping, MappingTable, Status
from iommu_uapi_virtio_iommu import layouts as L
from iommu_uapi_virtio_iommu.layouts import status_errno
from iommu_uapi_virtio_iommu.rules import VIRTIO_QUIRKS, render_markdown

PACKAGE = Path(__file__).parents[1] / "iommu_uapi_virtio_iommu"
TESTS = Path(__file__).parent

_u32 = st.integers(0, 9)
_addr = st.sampled_from([0, 0xFFF, 0x1000, 0x1FFF, 0x2000, 0x3FFF, (1 << 64) - 1])
_request = st.one_of(
    st.binary(max_size=80),
    st.builds(L.encode_attach, _u32, _u32, st.integers(0, 3)),
    st.builds(L.encode_detach, _u32, _u32),
    st.builds(L.encode_map, _u32, _addr, _addr, _addr, st.integers(0, 9)),
    st.builds(L.encode_unmap, _u32, _addr, _addr),
    st.builds(L.encode_probe, _u32),
).map(lambda b: b)


@given(profile=st.sampled_from(["spec", "qemu"]),
       reqs=st.lists(st.tuples(_request, st.integers(0, 600),
                               st.integers(0, 255).map(lambda c: bytes([c]))), max_size=12),
       fail=st.sampled_from([None, "map", "unmap"]))
def test_random_requests_answer_with_a_status_or_nothing(
        profile: str, reqs: list[tuple[bytes, int, bytes]], fail: str | None) -> None:
    host = HostTables()
    dev = device(profile, host=host, endpoints=(1, 2, 3), reserved_regions=())
    ok(attach(dev, 1, 1))
    ok(map_(dev, 1, 0x1000, 0x1FFF, 0x10000))
    if fail:
        host.fail(fail, after=1)
    for raw, writable, head_type in reqs:
        # half of the random blobs get a known type so the handlers see them
        readable = head_type + raw[1:] if raw and head_type[0] % 2 == 0 else raw
        before = state(dev)
        reply = dev.handle(readable, writable)
        if reply.status is None:
            assert reply.written == b"" and reply.rule is not None
        else:
            assert reply.status in Status
            assert L.encode_tail(reply.status) in (reply.written[:4], reply.written[-4:])
            assert reply.written[1:4] == b"\0\0\0" or reply.written[-3:] == b"\0\0\0"
        if reply.status not in (None, Status.OK):
            assert reply.rule in RULES_BY_ID
            after = state(dev)
            partial = reply.rule in ("virtio.unmap.split", "virtio.attach.kind") \
                and profile == "qemu"
            assert after == before or partial, reply
        for ep in (1, 2, 3):
            domain = dev.attached.get(ep)
            expect = [] if domain is None or domain.bypass else list(domain.mappings)
            assert host.mappings(ep) == expect


@given(ops=st.lists(st.tuples(st.booleans(), st.integers(0, 40), st.integers(0, 8)),
                    max_size=40))
def test_interval_map_matches_a_plain_model(ops: list[tuple[bool, int, int]]) -> None:
    table = MappingTable()
    model: dict[int, Mapping] = {}
    for add, start, length in ops:
        end = start + length
        meets = [m for m in model.values() if m.virt_start <= end and start <= m.virt_end]
        assert table.overlapping(start, end) == sorted(meets)
        if add and not meets:
            m = Mapping(start, end, start * 2, 1)
            table.insert(m)
            model[start] = m
        elif not add and meets:
            table.remove(meets[0])
            del model[meets[0].virt_start]
        for addr in (start, end, end + 1):
            found = [m for m in model.values() if m.virt_start <= addr <= m.virt_end]
            assert table.find(addr) == (found[0] if found else None)
    assert list(table) == sorted(model.values())


def test_every_rule_is_used_by_the_code_and_named_by_a_test() -> None:
    code = "\n".join(p.read_text() for p in PACKAGE.glob("*.py") if p.name != "rules.py")
    tests = "\n".join(p.read_text() for p in TESTS.glob("test_*.py"))
    used = set(re.findall(r'"(virtio\.[a-z_]+\.[a-z_]+)"', code))
    quirks = {q.id for q in VIRTIO_QUIRKS}
    assert used <= set(RULES_BY_ID) | quirks, used - set(RULES_BY_ID) - quirks
    assert sorted(quirks - used) == []  # every declared quirk is asked for by the code
    assert [r.id for r in RULES if r.id not in used] == []
    assert [r.id for r in RULES if f'"{r.id}"' not in tests] == []
    assert len(RULES_BY_ID) == len(RULES)


def test_statuses_carry_the_linux_errnos() -> None:
    import errno
    assert [status_errno(s) for s in Status] == [0, errno.EIO, errno.ENOSYS, errno.EIO,
                                                 errno.EINVAL, errno.ERANGE, errno.ENOENT,
                                                 errno.EFAULT, errno.ENOMEM]
    assert status_errno(None) == errno.EIO and status_errno(200) == errno.EIO
    for rule in RULES:
        if rule.status is not None:
            assert rule.errno == status_errno(rule.status), rule.id
        assert set(rule.profiles) <= {"spec", "qemu", "rfc2021"} and rule.profiles


def test_rules_md_is_the_table() -> None:
    assert (TESTS.parent / "RULES.md").read_text(encoding="utf-8") == render_markdown()


def test_readme_example_runs() -> None:
    text = (TESTS.parent / "README.md").read_text(encoding="utf-8")
    block = [line[4:] for line in text.splitlines()
             if line.startswith("    ") and not line.startswith("    pip")
             and not line.startswith("    pytest")]
    scope: dict[str, object] = {}
    exec("\n".join(block[:-1]), scope)
    assert eval(block[-1].split("#")[0], scope) == b"\0\0\0\0"

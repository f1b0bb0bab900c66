"""The device against a plain reference of the spec's request semantics (profile ``spec``), and
its invariants under random request sequences in both profiles, with a host that fails now and
then: domains never empty, every endpoint in one domain, the host holding exactly each
endpoint's mappings, translations agreeing with the mappings."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from virtio_rig import EPS, G

from iommu_uapi.translation import TranslationFault
from iommu_uapi_virtio_iommu import HostTables, Status, VirtioIommuDevice
from iommu_uapi_virtio_iommu import layouts as L

DOMAINS = st.sampled_from([0, 0, 0, 1, 2])
ENDPOINTS = st.sampled_from([1, 1, 2, 3, 4])  # 4 does not exist
ADDRS = st.sampled_from([0, G, 2 * G, 3 * G, 0x800])
LENGTHS = st.sampled_from([G, 2 * G, 0x800])
S = Status


class Reference:
    """The spec's semantics for a device with every feature negotiated, 4 KiB granule, no
    limits, no reserved region: domain -> (bypass, endpoints, {start: (end, phys, flags)})."""

    def __init__(self) -> None:
        self.domains: dict[int, tuple[bool, set[int], dict[int, tuple[int, int, int]]]] = {}
        self.of: dict[int, int] = {}

    def _leave(self, ep: int) -> None:
        old = self.of.pop(ep, None)
        if old is not None:
            self.domains[old][1].discard(ep)
            if not self.domains[old][1]:
                del self.domains[old]

    def attach(self, d: int, ep: int, flags: int) -> Status:
        if flags & ~1:
            return S.INVAL
        if ep not in EPS:
            return S.NOENT
        if d in self.domains:
            if self.of.get(ep) == d:
                return S.OK
            if self.domains[d][0] != bool(flags):
                return S.INVAL
        self._leave(ep)
        self.domains.setdefault(d, (bool(flags), set(), {}))[1].add(ep)
        self.of[ep] = d
        return S.OK

    def detach(self, d: int, ep: int) -> Status:
        if ep not in EPS:
            return S.NOENT
        if self.of.get(ep) != d:
            return S.INVAL
        self._leave(ep)
        return S.OK

    def map(self, d: int, start: int, end: int, phys: int, flags: int) -> Status:
        if flags & ~7:
            return S.INVAL
        if d not in self.domains:
            return S.NOENT
        bypass, _, maps = self.domains[d]
        if bypass or end < start:
            return S.INVAL
        if start % G or phys % G or (end + 1) % G:
            return S.RANGE
        if any(s <= end and start <= e for s, (e, _, _) in maps.items()):
            return S.INVAL
        maps[start] = (end, phys, flags)
        return S.OK

    def unmap(self, d: int, start: int, end: int) -> Status:
        if d not in self.domains:
            return S.NOENT
        bypass, _, maps = self.domains[d]
        if bypass:
            return S.INVAL
        hit = [s for s, (e, _, _) in maps.items() if s <= end and start <= e]
        if any(s < start or maps[s][0] > end for s in hit):
            return S.RANGE
        for s in hit:
            del maps[s]
        return S.OK


class DeviceMachine(RuleBasedStateMachine):
    profile = "spec"
    failing_host = False

    @initialize()
    def setup(self) -> None:
        self.host = HostTables()
        self.dev = VirtioIommuDevice(EPS, profile=self.profile, host=self.host)
        self.dev.negotiate_features(self.dev.offered)
        self.ref = Reference()

    def _send(self, readable: bytes) -> Status | None:
        return self.dev.handle(readable, 4).status

    def _check(self, got: Status | None, expect: Status) -> None:
        if self.profile == "spec" and not self.failing_host:
            assert got == expect, (got, expect)

    @rule(d=DOMAINS, ep=ENDPOINTS, flags=st.sampled_from([0, 0, 0, 0, 0, 1, 2]))
    def attach(self, d: int, ep: int, flags: int) -> None:
        self._check(self._send(L.encode_attach(d, ep, flags)), self.ref.attach(d, ep, flags))

    @rule(d=DOMAINS, ep=ENDPOINTS)
    def detach(self, d: int, ep: int) -> None:
        self._check(self._send(L.encode_detach(d, ep)), self.ref.detach(d, ep))

    def _domain(self, data: st.DataObject) -> int:
        """Mostly a domain that exists, sometimes any id."""
        existing = sorted(self.dev.domains)
        return data.draw(st.sampled_from(existing) if existing else DOMAINS) \
            if data.draw(st.integers(0, 4)) else data.draw(DOMAINS)

    @rule(data=st.data(), start=ADDRS, length=LENGTHS,
          flags=st.sampled_from([3, 3, 3, 1, 2, 8]))
    def map_in_a_domain(self, data: st.DataObject, start: int, length: int, flags: int) -> None:
        self.map(self._domain(data), start, length, flags)

    @rule(data=st.data(), start=ADDRS, length=LENGTHS)
    def unmap_in_a_domain(self, data: st.DataObject, start: int, length: int) -> None:
        self.unmap(self._domain(data), start, length)

    def map(self, d: int, start: int, length: int, flags: int) -> None:
        end, phys = start + length - 1, 0x100000 + start
        self._check(self._send(L.encode_map(d, start, end, phys, flags)),
                    self.ref.map(d, start, end, phys, flags))

    def unmap(self, d: int, start: int, length: int) -> None:
        end = start + length - 1
        self._check(self._send(L.encode_unmap(d, start, end)), self.ref.unmap(d, start, end))

    def _existing(self, data: st.DataObject) -> tuple[int, int, int] | None:
        found = sorted((d, m.virt_start, m.virt_end) for d, dom in self.dev.domains.items()
                       for m in dom.mappings)
        return data.draw(st.sampled_from(found)) if found else None

    @rule(data=st.data(), length=LENGTHS)
    def map_next_to_a_mapping(self, data: st.DataObject, length: int) -> None:
        picked = self._existing(data)
        if picked is not None:
            d, _, end = picked
            self.map(d, end + 1, length, 3)

    @rule(data=st.data(), before=st.sampled_from([0, G]),
          after=st.sampled_from([0, G, 2 * G, -G // 2]))
    def unmap_from_a_mapping(self, data: st.DataObject, before: int, after: int) -> None:
        picked = self._existing(data)
        if picked is not None:
            d, start, end = picked
            start, end = max(start - before, 0), max(end + after, 0)
            self._check(self._send(L.encode_unmap(d, start, end)), self.ref.unmap(d, start, end))

    @rule()
    def reset(self) -> None:
        self.dev.reset()
        self.dev.negotiate_features(self.dev.offered)
        self.ref = Reference()

    @rule(op=st.sampled_from(["map", "unmap"]), after=st.integers(0, 3))
    def host_fails(self, op: str, after: int) -> None:
        if self.failing_host:
            self.host.fail(op, after=after)

    @invariant()
    def matches_the_reference(self) -> None:
        if self.profile != "spec" or self.failing_host:
            return
        dev, ref = self.dev, self.ref
        assert {d: (dom.bypass, dom.endpoints,
                    {m.virt_start: (m.virt_end, m.phys_start, m.flags) for m in dom.mappings})
                for d, dom in dev.domains.items()} == ref.domains
        assert {ep: dom.id for ep, dom in dev.attached.items()} == ref.of

    @invariant()
    def consistent(self) -> None:
        dev = self.dev
        assert all(dom.endpoints for dom in dev.domains.values())
        for ep, dom in dev.attached.items():
            assert ep in dom.endpoints and dev.domains[dom.id] is dom
        assert dev.mapping_count == sum(len(dom.mappings) for dom in dev.domains.values())
        if dev.broken is not None:  # a refused undo: the host differs until the reset
            return
        for ep in EPS:
            dom = dev.attached.get(ep)
            maps = [] if dom is None or dom.bypass else list(dom.mappings)
            assert self.host.mappings(ep) == maps
            for addr in (0, G + 8, 2 * G, 3 * G + 16):
                found = next((m for m in maps if m.virt_start <= addr <= m.virt_end), None)
                try:
                    t = dev.translate(ep, addr, 1)
                except TranslationFault:
                    assert dom is not None and not dom.bypass
                    assert found is None or not found.flags & 1
                else:
                    if found is not None:
                        assert t.paddr == found.phys_start + addr - found.virt_start
                    else:
                        assert t.paddr == addr  # bypass


class QemuMachine(DeviceMachine):
    profile = "qemu"


class FailingHostMachine(DeviceMachine):
    failing_host = True


class QemuFailingHostMachine(DeviceMachine):
    profile = "qemu"
    failing_host = True


_SETTINGS = settings(stateful_step_count=40)
TestSpec = DeviceMachine.TestCase
TestQemu = QemuMachine.TestCase
TestFailingHost = FailingHostMachine.TestCase
TestQemuFailingHost = QemuFailingHostMachine.TestCase
TestSpec.settings = TestQemu.settings = TestFailingHost.settings = \
    TestQemuFailingHost.settings = _SETTINGS

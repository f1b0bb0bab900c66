"""Page requests of a table-sharing domain and the Jan 2021 RFC's PAGE_RESP: the event record,
the façade's page_response sent as PAGE_RESP bytes, and PAGE_RESP's refusals."""

from __future__ import annotations

import errno

import pytest

from iommu_uapi.errors import UAPIError
from iommu_uapi.iommu import IOMMU
from iommu_uapi.testing.harness import Harness
from iommu_uapi.uapi.consts import PageRequestFlags
from iommu_uapi_virtio_iommu import FaultFlags, FaultRecord, Feature, Status, layouts
from iommu_uapi_virtio_iommu.device import VirtioIommuDevice
from iommu_uapi_virtio_iommu.layouts import RequestType
from iommu_uapi_virtio_iommu.pri import PageResponse, encode_page_resp
from iommu_uapi_virtio_iommu.tables import SharedTable, encode_attach_table

VA = 0x7F12_3450_0000


def test_page_request_round_trip_through_page_resp() -> None:
    h = Harness("virtio-iommu")
    device = h.iommu.backend.device  # type: ignore[attr-defined]
    device.events.post(24)
    pasid = h.vm.alloc()
    h.enter(pasid)
    fault = h.iommu.page_request(h.dev, VA, pasid=pasid, access=2, grpid=5)
    assert fault.prm.flags & PageRequestFlags.RESPONSE_NEEDS_PASID
    record = FaultRecord.from_bytes(device.events.take()[0].written)
    assert record == FaultRecord(2, FaultFlags.WRITE | FaultFlags.ADDRESS | FaultFlags.PASID,
                                 h.dev.sid, VA, pasid)
    sent = h.iommu.backend.queue.sent[RequestType.PAGE_RESP]  # type: ignore[attr-defined]
    h.iommu.uapi_page_response(h.dev, h.response(5, pasid, code=1))
    assert h.iommu.backend.queue.sent[RequestType.PAGE_RESP] == sent + 1  # type: ignore[attr-defined]
    assert device.page_requests.responses == [PageResponse(h.dev.sid, pasid, 5, 1)]
    assert device.page_requests.pending == {}


def test_page_requests_need_pri_and_a_table() -> None:
    iommu = IOMMU("virtio-iommu")
    dev = iommu.add_device(0x10, pri=True)
    dom = iommu.domain_alloc(nesting=True)
    iommu.attach_device(dom, dev)
    with pytest.raises(UAPIError) as err:
        iommu.page_request(dev, VA, pasid=1)
    assert (err.value.errno, err.value.rule) == (errno.EOPNOTSUPP, "virtio.backend.no_pri")


def _device() -> VirtioIommuDevice:
    dev = VirtioIommuDevice([8, 9], profile="rfc2021",
                            features=Feature.MAP_UNMAP | Feature.ATTACH_TABLE)
    dev.negotiate_wire(dev.wire_offered)
    for readable in (layouts.encode_attach(1, 8), layouts.encode_attach(2, 9),
                     encode_attach_table(1, 8, SharedTable(0, 1, 0x1000, 4))):
        assert dev.handle(readable, 4).status == Status.OK
    dev.page_requests.request(dev, 8, 3, 0x5000, 1, 7, True)
    return dev


@pytest.mark.parametrize(("readable", "status", "rule"), [
    (encode_page_resp(1, 8, 3, 7, 3), Status.INVAL, "virtio.page_resp.fields"),
    (encode_page_resp(1, 8, 3, 7, 0, reserved=b"\1" + bytes(8)), Status.INVAL,
     "virtio.page_resp.fields"),
    (encode_page_resp(1, 6, 3, 7, 0), Status.NOENT, "virtio.page_resp.endpoint"),
    (encode_page_resp(2, 8, 3, 7, 0), Status.INVAL, "virtio.page_resp.not_attached"),
    (encode_page_resp(1, 8, 4, 7, 0), Status.NOENT, "virtio.page_resp.no_request"),
    (encode_page_resp(1, 8, None, 7, 0), Status.NOENT, "virtio.page_resp.no_request"),
])
def test_page_resp_refused(readable: bytes, status: Status, rule: str) -> None:
    dev = _device()
    reply = dev.handle(readable, 4)
    assert (reply.status, reply.rule) == (status, rule)
    assert dev.page_requests.pending and dev.page_requests.responses == []
    assert dev.handle(encode_page_resp(1, 8, 3, 7, 0), 4).status == Status.OK
    assert dev.page_requests.responses == [PageResponse(8, 3, 7, 0)]


def test_page_resp_needs_the_draft_feature() -> None:
    dev = VirtioIommuDevice([8], profile="rfc2021",
                            features=Feature.MAP_UNMAP | Feature.ATTACH_TABLE)
    dev.negotiate_wire(1 << 2)
    reply = dev.handle(encode_page_resp(1, 8, 3, 7, 0), 4)
    assert (reply.status, reply.rule) == (Status.UNSUPP, "virtio.page_resp.not_negotiated")


def test_detach_drops_pending_requests() -> None:
    dev = _device()
    assert dev.handle(layouts.encode_detach(1, 8), 4).status == Status.OK
    assert dev.page_requests.pending == {}

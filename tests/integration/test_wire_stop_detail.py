"""STOP's detail byte (SPEC §5.6, issue 15): the fluoroscopic guard names the rule that tripped.

The byte was a reserved-zero pad: a host that sends 0 gets the old behaviour, a device that ignores it
still stops. A device that knows it keeps a detail only for source FLUORO_IMAGE and only the image
details (3..6); anything else is recorded as 0, so a host can never make the device claim a detector
signature it did not see. Only decoded frames are looked at, as an independent host would.
"""

from __future__ import annotations

import struct

import pytest

from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from protocol import PROTOCOL_VERSION, Ack, MsgType, State, StopDetail, StopReason, StopSource
from protocol.codec import HEADER
from protocol.framing import encode as frame
from protocol.messages import Stop

IMAGE_DETAILS = [
    StopDetail.POSTERIOR_QUARTER,
    StopDetail.EXTRAVASATION,
    StopDetail.VENOUS_FILLING,
    StopDetail.IMAGE_LOST,
]


def _injecting() -> VirtualRig:
    rig = VirtualRig(PlantConfig())
    rig.connect()
    assert isinstance(rig.arm(), Ack)
    assert isinstance(rig.start(), Ack)
    rig.run(0.2)
    return rig


def _send_raw_stop(rig: VirtualRig, cmd_id: int, source: int, detail: int) -> Ack:
    payload = HEADER.pack(PROTOCOL_VERSION, MsgType.STOP, 100) + struct.pack("<HBB", cmd_id, source, detail)
    rig.link.to_device(frame(payload))
    for _ in range(20):
        rig.step()
        for reply in rig.replies:
            if isinstance(reply, Ack) and reply.cmd_id == cmd_id:
                return reply
    raise AssertionError("no ACK for the STOP")


@pytest.mark.parametrize("detail", IMAGE_DETAILS, ids=lambda d: d.name)
def test_an_image_stop_is_a_fluoro_stop_whose_event_names_the_rule(detail: StopDetail) -> None:
    rig = _injecting()
    answer = rig.command(lambda i: Stop(cmd_id=i, source=StopSource.FLUORO_IMAGE, detail=detail))
    assert isinstance(answer, Ack)
    assert answer.state == State.STOPPED
    (stop,) = rig.stop_events()
    assert (stop.reason, stop.source) == (StopReason.FLUORO_STOP, StopSource.FLUORO_IMAGE)
    assert stop.detail == detail


def test_the_detail_byte_is_the_former_pad_byte() -> None:
    body = Stop(cmd_id=0x1234, source=StopSource.FLUORO_IMAGE, detail=StopDetail.VENOUS_FILLING).pack_body()
    assert body == bytes([0x34, 0x12, 7, 5])
    assert Stop.body_size() == 4, "the layout did not grow"
    assert Stop(cmd_id=1).pack_body()[3] == 0, "a host that names no rule sends the old zero pad"


@pytest.mark.parametrize(
    ("source", "detail"),
    [
        (StopSource.FLUORO_IMAGE, 0),  # an old-layout image stop: no rule named
        (StopSource.FLUORO_IMAGE, 2),  # a controller-only detail: never claimed by a host
        (StopSource.FLUORO_IMAGE, 0xEE),  # undefined
        (StopSource.OPERATOR, int(StopDetail.POSTERIOR_QUARTER)),  # image details belong to the image
        (StopSource.FLUORO_REMOTE, int(StopDetail.VENOUS_FILLING)),
    ],
)
def test_a_detail_the_source_cannot_carry_still_stops_and_is_recorded_as_none(
    source: int, detail: int
) -> None:
    rig = _injecting()
    ack = _send_raw_stop(rig, 0x4343, source, detail)
    assert ack.state == State.STOPPED
    (stop,) = rig.stop_events()
    assert stop.source == source
    assert stop.detail == 0

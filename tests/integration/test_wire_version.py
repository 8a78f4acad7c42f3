"""A host of protocol version 1 meets this version-2 device (SPEC §10.9, §11.4), on the wire.

The old host speaks only what it knows: version-1 frames, the frozen header, HELLO and NAK layouts.
It must get a NAK VERSION_MISMATCH it can read, naming the device's version, and the device must do
nothing else for it (no session, no state change, not even a STOP). The other direction (this host
meeting a version-1 or version-3 device) is tests/host/test_link_fake_device.py.
"""

from __future__ import annotations

from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from protocol import (
    PROTOCOL_VERSION,
    Ack,
    Hello,
    MessageStream,
    MsgType,
    Nak,
    NakCode,
    Rejected,
    RejectReason,
    State,
)
from protocol.codec import encode_frame
from protocol.messages import Stop

OLD = 1


def _old_host_exchange(rig: VirtualRig, frame: bytes) -> list[Nak]:
    """Send one frame as a version-1 host and read the answers as it would: every frame of another
    version is a VERSION_MISMATCH reject, and only the frozen NAK layout may be read from its body."""
    old_host = MessageStream(version=OLD)
    rig.link.to_device(frame)
    naks: list[Nak] = []
    for _ in range(50):
        rig.runtime.step()
        for item in old_host.feed(rig.link.take_from_device()):
            assert isinstance(item, Rejected), "a v1 host can decode nothing a v2 device sends"
            assert item.reason == RejectReason.VERSION_MISMATCH
            assert item.header.version == PROTOCOL_VERSION
            if item.header.msg_type == MsgType.NAK:
                naks.append(Nak.unpack_body(item.body))  # frozen layout, SPEC §5.14
    return naks


def test_an_old_host_hello_gets_a_version_mismatch_it_can_read_naming_version_2() -> None:
    rig = VirtualRig(PlantConfig())
    hello = encode_frame(Hello(cmd_id=7, protocol_version=OLD), 0, version=OLD)
    (nak,) = _old_host_exchange(rig, hello)
    assert (nak.cmd_id, nak.cmd_type, nak.code) == (7, MsgType.HELLO, NakCode.VERSION_MISMATCH)
    assert nak.detail == PROTOCOL_VERSION == 2
    assert nak.state == State.IDLE
    assert not rig.controller.session_open


def test_an_old_host_stop_is_answered_and_not_applied() -> None:
    """§7.9: a frame of another version cannot be trusted to be a STOP at all."""
    rig = VirtualRig(PlantConfig())
    rig.connect()
    assert isinstance(rig.arm(), Ack)
    stop = encode_frame(Stop(cmd_id=9), 0, version=OLD)
    (nak,) = _old_host_exchange(rig, stop)
    assert (nak.cmd_id, nak.code, nak.detail) == (9, NakCode.VERSION_MISMATCH, PROTOCOL_VERSION)
    assert rig.controller.state == State.ARMED

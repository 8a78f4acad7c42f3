"""Three SPEC contradictions of issue 11, settled on the wire (SPEC §5.6, §5.11, §5.12).

- STOP.source: one rule. 1-4 and 7 are kept; every other value (0 NONE, 5 FLUORO_LINE, 6 CONTROLLER, which
  decode, and 8-255, which the codec rejects as bad_value) stops as OPERATOR / OPERATOR_STOP and is
  ACKed, exactly as the golden vectors `stop_*` and `undefined_stop_source` say.
- The STOP event of a SENSOR_FAULT carries flags SENSOR_FAULT, so its stale pressure is marked invalid.
- The telemetry index after a session closes: only the discarded partial batch is skipped.

Only decoded frames are looked at, as an independent host would.
"""

from __future__ import annotations

import itertools
import struct

import pytest

from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from protocol import (
    PROTOCOL_VERSION,
    Ack,
    EventKind,
    Flags,
    GetStatus,
    MsgType,
    State,
    Status,
    StopReason,
    StopSource,
)
from protocol.codec import HEADER
from protocol.framing import encode as frame
from protocol.messages import Stop, TelemetryBatch


def _armed() -> VirtualRig:
    rig = VirtualRig(PlantConfig())
    rig.connect()
    assert isinstance(rig.arm(), Ack)
    return rig


def _status(rig: VirtualRig) -> Status:
    answer = rig.command(GetStatus)
    assert isinstance(answer, Ack)
    return next(m for m in reversed(rig.replies) if isinstance(m, Status) and m.cmd_id == answer.cmd_id)


def _send_raw_stop(rig: VirtualRig, cmd_id: int, source_byte: int) -> Ack:
    payload = HEADER.pack(PROTOCOL_VERSION, MsgType.STOP, 100) + struct.pack("<HBx", cmd_id, source_byte)
    rig.link.to_device(frame(payload))
    for _ in range(20):
        rig.step()
        for reply in rig.replies:
            if isinstance(reply, Ack) and reply.cmd_id == cmd_id:
                return reply
    raise AssertionError(f"no ACK for the STOP with source byte {source_byte}")


@pytest.mark.parametrize("source", list(StopSource), ids=lambda s: s.name)
def test_every_defined_stop_source_stops_and_only_host_sources_are_kept(source: StopSource) -> None:
    rig = _armed()
    answer = rig.command(lambda i: Stop(cmd_id=i, source=source))
    assert isinstance(answer, Ack)
    assert answer.state == State.STOPPED
    status = _status(rig)
    host_sources = {
        StopSource.OPERATOR,
        StopSource.FLUORO_OPERATOR,
        StopSource.FLUORO_REMOTE,
        StopSource.REMOTE,
        StopSource.FLUORO_IMAGE,
    }
    expected = source if source in host_sources else StopSource.OPERATOR
    fluoro = expected in (StopSource.FLUORO_OPERATOR, StopSource.FLUORO_REMOTE, StopSource.FLUORO_IMAGE)
    assert status.stop_source == expected
    assert status.stop_reason == (StopReason.FLUORO_STOP if fluoro else StopReason.OPERATOR_STOP)
    (stop,) = rig.stop_events()
    assert (stop.source, stop.reason) == (status.stop_source, status.stop_reason)


@pytest.mark.parametrize("source_byte", [8, 0x20, 0xFF])
def test_an_undefined_stop_source_still_stops_as_operator_and_is_acked(source_byte: int) -> None:
    rig = _armed()
    ack = _send_raw_stop(rig, 0x4242, source_byte)
    assert (ack.cmd_type, ack.state) == (MsgType.STOP, State.STOPPED)
    status = _status(rig)
    assert (status.stop_source, status.stop_reason) == (StopSource.OPERATOR, StopReason.OPERATOR_STOP)


def test_the_stop_event_of_a_sensor_fault_marks_its_pressure_invalid() -> None:
    rig = VirtualRig(PlantConfig.model_validate({"events": [{"kind": "sensor_open", "at_volume_ml": 0.05}]}))
    rig.connect()
    assert isinstance(rig.arm(), Ack)
    assert isinstance(rig.start(), Ack)
    assert rig.run(10.0, until=lambda r: bool(r.stop_events()))
    (stop,) = rig.stop_events()
    assert stop.reason == StopReason.SENSOR_FAULT
    assert stop.flags & Flags.SENSOR_FAULT, "the event says its pressure is not a reading"
    # the events before the fault carried valid pressures
    before = [e for e in rig.events if e.event_index < stop.event_index and e.kind != EventKind.POWER_UP]
    assert before
    assert all(not e.flags & Flags.SENSOR_FAULT for e in before)


def test_the_telemetry_index_after_a_session_closes_skips_only_the_discarded_partial_batch() -> None:
    """SPEC §5.11: no samples are taken without a session; the partly filled batch discarded when
    the session closed still counts, so the next session's first batch starts at most
    batch_samples - 1 past where the last one ended."""
    rig = VirtualRig(PlantConfig())
    seen: list[tuple[int, int, int]] = []  # (first_index, count, t_us of the first sample)
    keep = rig._receive

    def receive(message: object) -> None:
        if isinstance(message, TelemetryBatch):
            seen.append((message.first_index, len(message.samples), int(message.samples["t_us"][0])))
        keep(message)  # type: ignore[arg-type]

    rig._receive = receive  # type: ignore[method-assign]
    rig.connect()
    rig.heartbeats = False  # a silent host: the watchdog (500 ms) closes the session
    assert rig.run(2.0, until=lambda r: not r.controller.session_open)
    closed_us = rig.now_us
    rig.run(0.3)
    rig.heartbeats = True
    rig.connect()
    hello_us = rig.now_us
    rig.run(0.1)
    old = [b for b in seen if b[2] < closed_us]
    new = [b for b in seen if b[2] >= closed_us]
    assert old
    assert new
    assert new[0][2] >= hello_us - 5_000, "no samples were taken while no session was open"
    for (a, n, _t), (b, _m, _u) in itertools.pairwise(old):
        assert b == a + n
    end = old[-1][0] + old[-1][1]
    assert 0 <= new[0][0] - end < 20, (end, new[0])  # the discarded partial batch, and only it

"""Full stack: a client built on protocol/ alone drives `cementguard sim --pty` over a real pty."""

from __future__ import annotations

import numpy as np
import pytest
import serial

from protocol import (
    PROTOCOL_VERSION,
    Ack,
    Arm,
    Clear,
    DeviceInfo,
    Event,
    EventKind,
    Hello,
    Mode,
    Nak,
    PlanFlags,
    ResetCause,
    Resume,
    Start,
    State,
    Status,
    Stop,
    StopReason,
    StopSource,
)
from tests.support.wire_client import WireClient, simulator

INCREMENT_NL = 50_000  # 0.05 mL
FLOW_NL_S = 100_000  # 6 mL/min: one increment takes about half a second


def _arm(cmd_id: int) -> Arm:
    return Arm(
        cmd_id=cmd_id,
        mode=Mode.INCREMENTAL,
        plan_flags=PlanFlags.RELIEF,
        flow_nl_s=FLOW_NL_S,
        increment_nl=INCREMENT_NL,
        volume_limit_nl=1_000_000,
        soft_limit_pa=2_500_000,
        hard_limit_pa=4_000_000,
        relief_pa=200_000,
        mixed_ago_ms=300_000,
        working_time_ms=1_200_000,
        viscosity_min_pas=1.0,
        viscosity_max_pas=100_000.0,
        cannula_length_um=125_000,
        cannula_id_um=2388,
        syringe_bore_um=7290,
    )


@pytest.fixture
def client():
    with simulator("--pty", "--serial", "SMOKE-1") as (_proc, address):
        port = serial.Serial(address, timeout=0.05)
        try:
            yield WireClient(port)
        finally:
            port.close()


def _accepted(reply: Ack | Nak, state: State) -> None:
    assert isinstance(reply, Ack), reply
    assert reply.state == state, reply


def _stop_event(c: WireClient, reason: StopReason) -> Event:
    msg = c.wait_for(lambda m: isinstance(m, Event) and m.kind == EventKind.STOP, reads=200)
    assert isinstance(msg, Event)
    assert msg.reason == reason, msg
    return msg


def test_arm_start_increment_resume_stop_clear_over_a_pty(client: WireClient) -> None:
    c = client
    reply, extra = c.command(lambda i: Hello(i, PROTOCOL_VERSION))
    assert isinstance(reply, Ack), reply
    info = extra[0]
    assert isinstance(info, DeviceInfo)
    assert (info.protocol_version, info.serial) == (PROTOCOL_VERSION, "SMOKE-1")

    power_up = c.wait_for(lambda m: isinstance(m, Event) and m.kind == EventKind.POWER_UP)
    assert isinstance(power_up, Event)
    assert (power_up.event_index, power_up.detail) == (0, ResetCause.POWER_ON)

    reply, extra = c.command(_arm)
    _accepted(reply, State.ARMED)
    assert isinstance(extra[0], Status)
    assert extra[0].increment_nl == INCREMENT_NL

    reply, _ = c.command(Start)
    _accepted(reply, State.INJECTING)

    done = _stop_event(c, StopReason.INCREMENT_DONE)
    assert done.state == State.PAUSED
    assert INCREMENT_NL * 0.9 <= done.delivered_nl <= INCREMENT_NL * 1.2
    assert done.pressure_pa > 50_000, "cement through a cannula needs pressure"

    reply, _ = c.command(Resume)
    _accepted(reply, State.INJECTING)

    reply, _ = c.command(lambda i: Stop(i, StopSource.OPERATOR))
    assert isinstance(reply, Ack), reply
    stopped = _stop_event(c, StopReason.OPERATOR_STOP)
    assert (stopped.state, stopped.source) == (State.STOPPED, StopSource.OPERATOR)

    reply, _ = c.command(Start)
    assert isinstance(reply, Nak), "a latched stop must refuse START until CLEAR"

    c.wait_for(lambda m: isinstance(m, Event) and m.kind == EventKind.RELIEF_DONE)
    reply, _ = c.command(Clear)
    _accepted(reply, State.IDLE)

    samples = np.concatenate([b.samples for b in c.batches])
    firsts = [b.first_index for b in c.batches]
    counts = [len(b.samples) for b in c.batches]
    assert all(a + n == b for a, n, b in zip(firsts, counts, firsts[1:], strict=False)), "lost samples"
    assert np.all(np.diff(samples["t_us"].astype(np.int64)) > 0)
    assert samples["pressure_pa"].max() > 50_000
    assert State.INJECTING in set(samples["state"].tolist())

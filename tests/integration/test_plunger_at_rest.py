"""The plunger moves forward only in INJECTING, checked on the physical (plant) plunger through the
codec (issue 11 items 1 and 4).

After any stop the plunger may only decelerate, for at most the brake time (SPEC §9.1); CLEAR and
ARM are refused with NAK BUSY (detail PLUNGER_MOVING) until it is at rest, so commands queued in
one write behind a STOP cannot arm a plan over a plunger that is still running. A HELLO while
INJECTING or PAUSED stops (HOST_LOST, SESSION_TAKEN) before the new session is answered.
"""

from __future__ import annotations

from typing import Any

import pytest

from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from protocol import (
    PROTOCOL_VERSION,
    Ack,
    BusyDetail,
    Clear,
    DeviceInfo,
    Event,
    EventKind,
    Hello,
    Nak,
    NakCode,
    Pause,
    PlanFlags,
    Start,
    State,
    Stop,
    StopDetail,
    StopReason,
    StopSource,
)
from protocol.messages import Arm

BRAKE_TIME_S = 0.080
"""SPEC §9.1: top step rate / step generator deceleration on the reference rig (16 kHz / 200 kHz/s)."""


def _rig(**plant: Any) -> VirtualRig:
    rig = VirtualRig(PlantConfig.model_validate(plant))
    rig.connect()
    return rig


class Motion:
    """Per-tick record of the plant plunger's velocity with the controller's state."""

    def __init__(self) -> None:
        self.ticks: list[tuple[int, State, float]] = []

    def __call__(self, rig: VirtualRig) -> bool:
        self.ticks.append((rig.now_us, rig.controller.state, rig.plant.plunger_velocity_m_s))
        return False

    def check_only_braking_outside_injecting(self, since_us: int) -> None:
        """Outside INJECTING a forward velocity only falls, and is 0 within the brake time."""
        prev = None
        for t, state, v in self.ticks:
            if t < since_us or state == State.INJECTING:
                prev = None
                continue
            if v > 0.0:
                assert prev is None or v <= prev + 1e-12, f"forward speed rose in {state.name} at {t} us"
                assert t - since_us <= BRAKE_TIME_S * 1e6 + 1000, f"still moving forward at {t} us"
            prev = v


def _plan(rig: VirtualRig, **over: Any) -> dict[str, Any]:
    return {**rig.plan_for_plant(), "plan_flags": PlanFlags.NONE, **over}


@pytest.mark.parametrize("flow_nl_s", [50_000, 150_000])
def test_stop_clear_arm_start_in_one_write_cannot_arm_a_moving_plunger(flow_nl_s: int) -> None:
    rig = _rig()
    plan = _plan(rig, flow_nl_s=flow_nl_s)
    assert isinstance(rig.command(lambda i: Arm(cmd_id=i, **plan)), Ack)
    assert isinstance(rig.start(), Ack)
    rig.run(1.0)
    assert rig.plant.plunger_velocity_m_s > 0.0
    motion = Motion()
    stop_us = rig.now_us
    ids = rig.send_together(
        lambda i: Stop(i, StopSource.OPERATOR), Clear, lambda i: Arm(cmd_id=i, **plan), Start
    )
    rig.run(0.3, until=motion)
    stop, clear, arm, start = (rig.answer(i) for i in ids)
    assert isinstance(stop, Ack)
    assert isinstance(clear, Nak)
    assert (clear.code, clear.detail) == (NakCode.BUSY, BusyDetail.PLUNGER_MOVING)
    assert isinstance(arm, Nak)
    assert arm.code == NakCode.STOP_LATCHED
    assert isinstance(start, Nak)
    assert start.code == NakCode.STOP_LATCHED
    assert rig.controller.state == State.STOPPED
    motion.check_only_braking_outside_injecting(stop_us)
    # at rest: the same sequence now goes through, and ARMED holds a still plunger
    assert isinstance(rig.command(Clear), Ack)
    assert isinstance(rig.command(lambda i: Arm(cmd_id=i, **plan)), Ack)
    position = rig.plant.plunger_position_m
    rig.run(0.2)
    assert rig.plant.plunger_position_m == position


def test_arm_in_done_is_busy_while_the_plunger_still_brakes() -> None:
    rig = _rig()
    plan = _plan(rig, flow_nl_s=150_000, volume_limit_nl=100_000)
    assert isinstance(rig.command(lambda i: Arm(cmd_id=i, **plan)), Ack)
    assert isinstance(rig.start(), Ack)
    assert rig.run(5.0, until=rig.state_is(State.DONE))
    assert rig.plant.plunger_velocity_m_s > 0.0, "the volume stop is anticipated: it brakes in DONE"
    ids = rig.send_together(lambda i: Arm(cmd_id=i, **plan), Start)
    motion = Motion()
    rig.run(0.2, until=motion)
    arm, start = (rig.answer(i) for i in ids)
    assert isinstance(arm, Nak)
    assert (arm.code, arm.detail) == (NakCode.BUSY, BusyDetail.PLUNGER_MOVING)
    assert isinstance(start, Nak)
    assert start.code == NakCode.BAD_STATE
    assert all(state == State.DONE for _, state, _ in motion.ticks)
    motion.check_only_braking_outside_injecting(motion.ticks[0][0])


def test_busy_detail_says_relief_while_the_relief_backs_off() -> None:
    rig = _rig()
    assert isinstance(rig.arm(plan_flags=PlanFlags.RELIEF), Ack)
    assert isinstance(rig.start(), Ack)
    rig.run(2.0)
    assert isinstance(rig.command(lambda i: Stop(i, StopSource.OPERATOR)), Ack)
    rig.run(0.15)
    assert rig.controller.relief_active
    answer = rig.command(Clear)
    assert isinstance(answer, Nak)
    assert (answer.code, answer.detail) == (NakCode.BUSY, BusyDetail.RELIEF_ACTIVE)


@pytest.mark.parametrize("pause", [False, True])
def test_hello_while_injecting_or_paused_stops_before_the_new_session_is_answered(pause: bool) -> None:
    rig = _rig()
    assert isinstance(rig.arm(), Ack)
    assert isinstance(rig.start(), Ack)
    rig.run(1.0)
    if pause:
        assert isinstance(rig.command(Pause), Ack)
        rig.run(0.2)
    before = len(rig.events)
    replies = len(rig.replies)
    motion = Motion()
    hello_us = rig.now_us
    answer = rig.command(lambda i: Hello(i, PROTOCOL_VERSION))
    rig.run(0.3, until=motion)
    assert isinstance(answer, Ack)
    assert answer.state == State.STOPPED
    stop = next(e for e in rig.events[before:] if e.kind == EventKind.STOP)
    assert (stop.reason, stop.source, stop.detail) == (
        StopReason.HOST_LOST,
        StopSource.CONTROLLER,
        StopDetail.SESSION_TAKEN,
    )
    info = next(m for m in rig.replies[replies:] if isinstance(m, DeviceInfo))
    assert stop.t_us <= hello_us + 2000
    assert rig.controller.state == State.STOPPED
    assert rig.controller.session_open
    assert info.cmd_id == answer.cmd_id
    motion.check_only_braking_outside_injecting(hello_us)


def test_the_stop_event_of_a_taken_session_precedes_its_device_info_on_the_wire() -> None:
    rig = _rig()
    assert isinstance(rig.arm(), Ack)
    assert isinstance(rig.start(), Ack)
    rig.run(0.5)
    order: list[object] = []
    (hello_id,) = rig.send_together(lambda i: Hello(i, PROTOCOL_VERSION))
    data = b""
    while rig.answer(hello_id) is None:
        rig.runtime.step()
        data += rig.link.take_from_device()
        for item in rig.stream.feed(data):
            msg = getattr(item, "message", None)
            if isinstance(msg, Event | DeviceInfo | Ack):
                order.append(msg)
                if isinstance(msg, Ack):
                    rig.replies.append(msg)
        data = b""
    kinds = [type(m).__name__ if not isinstance(m, Event) else m.kind.name for m in order]
    assert kinds.index("STOP") < kinds.index("DeviceInfo") < kinds.index("Ack")


@pytest.mark.parametrize("state", [State.IDLE, State.ARMED, State.DONE, State.STOPPED])
def test_hello_outside_an_injection_changes_nothing(state: State) -> None:
    rig = _rig()
    if state != State.IDLE:
        assert isinstance(rig.arm(volume_limit_nl=20_000), Ack)
    if state in (State.DONE, State.STOPPED):
        assert isinstance(rig.start(), Ack)
        if state == State.STOPPED:
            rig.run(0.2)
            assert isinstance(rig.command(lambda i: Stop(i, StopSource.OPERATOR)), Ack)
        assert rig.run(5.0, until=rig.state_is(state))
        rig.run(2.0)
    reason = rig.controller.stop_reason
    before = len(rig.events)
    answer = rig.command(lambda i: Hello(i, PROTOCOL_VERSION))
    assert isinstance(answer, Ack)
    assert answer.state == state
    assert rig.controller.state == state
    assert rig.controller.stop_reason == reason
    assert not [e for e in rig.events[before:] if e.kind in (EventKind.STOP, EventKind.STATE_CHANGE)]

"""The movements (PRIME, JOG, WITHDRAW, HOME; protocol/SPEC.md §5.16, §8.6) on the in-process rig.

Every command in every state of the state table, new commands in the old states and old commands in
the new ones; each movement's normal end; the jog's grant on the injected clock; the limits of a
prime and of a withdraw, judged on the fake plant's plunger.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from firmware_sim.controller.config import ControllerConfig, FirmwareIdentity
from firmware_sim.hal import REFERENCE_RIG
from protocol import (
    PROTOCOL_VERSION,
    Ack,
    Capabilities,
    Clear,
    Command,
    EventKind,
    Flags,
    GetStatus,
    Hello,
    Nak,
    NakCode,
    Pause,
    Resume,
    SetLimits,
    SetTelemetry,
    Start,
    State,
    Status,
    Stop,
    StopDetail,
    StopReason,
    StopSource,
)
from protocol.enums import BusyDetail
from protocol.messages import GetMotion, Home, Jog, MotionStatus, Prime, Withdraw
from tests.controller.fakeplant import AREA_M2, FakePlant
from tests.controller.harness import Rig, arm_msg
from tests.controller.test_state_machine import rig_in as core_rig_in

IDLE, ARMED, INJECTING, PAUSED, STOPPED, DONE, FAULT = tuple(State)[:7]
PRIMING, JOGGING, WITHDRAWING, HOMING = State.PRIMING, State.JOGGING, State.WITHDRAWING, State.HOMING
MOVING = (PRIMING, JOGGING, WITHDRAWING, HOMING)
BORE_UM = round(2 * math.sqrt(AREA_M2 / math.pi) * 1e6)
"""The fake plant's syringe bore."""
FL_PER_UM = round(math.pi * (BORE_UM / 2) ** 2)
"""Bore volume per um of travel, fL (SPEC §8.5's A)."""
WATCHDOG_MS = ControllerConfig().watchdog_ms


def prime(volume_nl: int = 50_000, flow_nl_s: int = 20_000) -> Callable[[int], Command]:
    return lambda i: Prime(i, BORE_UM, flow_nl_s, volume_nl)


def withdraw(volume_nl: int = 50_000, flow_nl_s: int = 20_000) -> Callable[[int], Command]:
    return lambda i: Withdraw(i, BORE_UM, flow_nl_s, volume_nl)


def jog(speed_um_s: int = 200, hold_ms: int = 200) -> Callable[[int], Command]:
    return lambda i: Jog(i, hold_ms, speed_um_s)


def home(speed_um_s: int = 2_000) -> Callable[[int], Command]:
    return lambda i: Home(i, speed_um_s)


MOVES: dict[State, Callable[[int], Command]] = {
    PRIMING: prime(volume_nl=1_000_000),
    JOGGING: jog(hold_ms=WATCHDOG_MS),
    WITHDRAWING: withdraw(volume_nl=1_000_000),
    HOMING: home(speed_um_s=100),
}


def rig_in(state: State) -> Rig:
    """A rig with a session in `state`; a movement 50 ms after its command (running, not ending)."""
    if state not in MOVES:
        return core_rig_in(state)
    rig = Rig(plant=FakePlant(position_m=0.030))
    rig.hello()
    rig.ok(MOVES[state])
    rig.run(0.05)
    assert rig.c.state == state
    return rig


ACK = "ACK"
COMMANDS: dict[str, Callable[[int], Command]] = {
    "ARM": lambda i: arm_msg(i),
    "START": Start,
    "PAUSE": Pause,
    "RESUME": Resume,
    "STOP": lambda i: Stop(i, StopSource.OPERATOR),
    "CLEAR": Clear,
    "SET_LIMITS": lambda i: SetLimits(i, soft_limit_pa=2_000_000),
    "GET_STATUS": GetStatus,
    "SET_TELEMETRY": lambda i: SetTelemetry(i, 1, 20),
    "GET_MOTION": GetMotion,
    "PRIME": prime(),
    "JOG_FORWARD": jog(200),
    "JOG_BACKWARD": jog(-200),
    "WITHDRAW": withdraw(),
    "HOME": home(),
}
NOT_IDLE = (ARMED, INJECTING, PAUSED, DONE)
LATCHED = (STOPPED, FAULT)


def _row(
    idle: State, jogging: tuple[str | NakCode, State] | None = None
) -> dict[State, tuple[str | NakCode, State]]:
    row: dict[State, tuple[str | NakCode, State]] = {IDLE: (ACK, idle)}
    row.update({s: (NakCode.BAD_STATE, s) for s in (*NOT_IDLE, *MOVING)})
    row.update({s: (NakCode.STOP_LATCHED, s) for s in LATCHED})
    if jogging is not None:
        row[JOGGING] = jogging
    return row


# protocol/SPEC.md §8.6: (answer, state after). Old commands in the new states, new ones everywhere.
TABLE: dict[str, dict[State, tuple[str | NakCode, State]]] = {
    **{
        cmd: {s: (NakCode.BAD_STATE, s) for s in MOVING}
        for cmd in ("ARM", "START", "PAUSE", "RESUME", "CLEAR")
    },
    "STOP": dict.fromkeys(MOVING, (ACK, STOPPED)),
    **{cmd: {s: (ACK, s) for s in MOVING} for cmd in ("SET_LIMITS", "GET_STATUS", "SET_TELEMETRY")},
    "GET_MOTION": {s: (ACK, s) for s in State},
    "PRIME": _row(PRIMING),
    "JOG_FORWARD": _row(JOGGING, jogging=(ACK, JOGGING)),
    "JOG_BACKWARD": _row(JOGGING, jogging=(NakCode.BUSY, JOGGING)),
    "WITHDRAW": _row(WITHDRAWING),
    "HOME": _row(HOMING),
}
CELLS = [(cmd, state) for cmd, row in TABLE.items() for state in row]


@pytest.mark.parametrize(("command", "state"), CELLS, ids=[f"{c}-{s.name}" for c, s in CELLS])
def test_commands_by_state(command: str, state: State) -> None:
    rig = rig_in(state)
    position = rig.plant.position_m
    expected, after = TABLE[command][state]
    before = len(rig.events)
    answer, outgoing = rig.command(COMMANDS[command])
    if expected == ACK:
        assert isinstance(answer, Ack), answer
    else:
        assert isinstance(answer, Nak), answer
        assert answer.code == expected
        if expected == NakCode.BUSY:
            assert answer.detail == BusyDetail.PLUNGER_MOVING
    assert rig.c.state == after
    new_events = rig.events[before:]
    transitions = [e for e in new_events if e.kind in (EventKind.STATE_CHANGE, EventKind.STOP)]
    if after == state:
        assert transitions == [], "no EVENT for a command that changes nothing"
        if state not in MOVES and state != INJECTING:
            assert rig.plant.position_m == position, "a refused command moved the plunger"
    else:
        assert [(e.prev_state, e.state) for e in transitions] == [(state, after)]
    if command in ("PRIME", "WITHDRAW", "HOME", "GET_MOTION") and isinstance(answer, Ack):
        i = outgoing.index(answer)
        reply = outgoing[i - 1]
        assert isinstance(reply, MotionStatus), "MOTION_STATUS comes immediately before its ACK"
        assert (reply.cmd_id, reply.state) == (answer.cmd_id, rig.c.state)


@pytest.mark.parametrize("state", MOVING, ids=lambda s: s.name)
def test_hello_in_a_movement_stops_first(state: State) -> None:
    rig = rig_in(state)
    rig.ok(lambda i: Hello(i, PROTOCOL_VERSION))
    stop = rig.stops()[-1]
    assert (stop.prev_state, stop.reason, stop.detail) == (
        state,
        StopReason.HOST_LOST,
        StopDetail.SESSION_TAKEN,
    )
    assert rig.c.state == STOPPED


@pytest.mark.parametrize("state", MOVING, ids=lambda s: s.name)
def test_a_stop_in_a_movement_latches_and_clear_waits_for_rest(state: State) -> None:
    rig = rig_in(state)
    rig.ok(lambda i: Stop(i, StopSource.OPERATOR))
    assert (rig.c.state, rig.c.stop_reason) == (STOPPED, StopReason.OPERATOR_STOP)
    forward = state in (PRIMING, JOGGING)  # rig_in jogs forward
    answer, _ = rig.command(Clear)
    if isinstance(answer, Nak):  # still braking, or backing off: a stopped forward movement relieves
        busy = BusyDetail.RELIEF_ACTIVE if forward else BusyDetail.PLUNGER_MOVING
        assert (answer.code, answer.detail) == (NakCode.BUSY, busy)
        assert rig.c.relief_active == forward
        rig.run(0.1 if not forward else 3.5)
        answer, _ = rig.command(Clear)
    assert isinstance(answer, Ack)
    rig.run(0.5)
    assert rig.c.state == IDLE, "nothing resumes by itself"
    assert rig.c.step_rate_hz == 0.0


def test_without_the_motion_capability_every_movement_command_is_unknown() -> None:
    identity = FirmwareIdentity("NO-MOTION", 0, 1, 0, Capabilities.RELIEF_BACKOFF)
    rig = Rig(identity=identity)
    rig.hello()
    for make in (prime(), jog(), withdraw(), home(), GetMotion):
        answer, _ = rig.command(make)
        assert isinstance(answer, Nak)
        assert answer.code == NakCode.UNKNOWN_COMMAND


# -- normal ends ---------------------------------------------------------------------------------------
def test_prime_ends_at_its_volume_at_rest_and_does_not_count_as_injected() -> None:
    rig = Rig(plant=FakePlant(position_m=0.010))
    rig.hello()
    rig.ok(prime(volume_nl=100_000, flow_nl_s=50_000))
    rig.run_until_state(IDLE, seconds=5.0)
    done = rig.kinds(EventKind.MOTION_DONE)
    assert len(done) == 1
    assert (done[0].prev_state, done[0].state) == (PRIMING, IDLE)
    assert rig.c.step_rate_hz == 0.0, "IDLE means a still plunger"
    primed = (rig.plant.max_position_m - 0.010) * 1e6 * FL_PER_UM / 1e6
    assert 100_000 <= done[0].detail <= 100_000 + max(1_000, 2_000), done[0].detail
    assert abs(primed - done[0].detail) <= 2 * FL_PER_UM / 1e6 + 1
    assert rig.c.delivered_nl == 0, "a prime is not an injection"
    rig.arm(volume_limit_nl=20_000)
    assert rig.c.delivered_nl == 0
    rig.ok(Start)
    rig.run_until_state(DONE)
    rig.run(0.1)
    assert 20_000 <= rig.c.delivered_nl <= 22_000, "the injection counts from its own ARM only"


def test_withdraw_ends_at_its_volume_and_home_ends_at_home_never_behind_it() -> None:
    rig = Rig(plant=FakePlant(position_m=0.005))
    rig.hello()
    rig.ok(withdraw(volume_nl=100_000, flow_nl_s=100_000))
    rig.run_until_state(IDLE, seconds=5.0)
    (done,) = rig.kinds(EventKind.MOTION_DONE)
    assert done.prev_state == WITHDRAWING
    assert -100_000 - 2_000 <= done.detail <= -100_000
    rig.ok(home(speed_um_s=5_000))
    rig.run_until_state(IDLE, seconds=5.0)
    assert rig.c.step_rate_hz == 0.0
    home_um = 200
    assert rig.plant.min_position_m * 1e6 >= home_um, "the plunger went behind home"
    assert rig.c.plunger_um - home_um <= 20
    assert rig.c.flags & Flags.AT_HOME
    for make in (home(), withdraw(), jog(-100)):
        answer, _ = rig.command(make)
        assert isinstance(answer, Nak)
        assert answer.code == NakCode.AT_HOME


def test_withdraw_refuses_a_volume_beyond_home_with_the_room_left() -> None:
    rig = Rig(plant=FakePlant(position_m=0.001))  # 800 um in front of home
    rig.hello()
    answer, _ = rig.command(withdraw(volume_nl=10_000_000))
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field) == (NakCode.BAD_PARAM, 3)
    assert answer.detail == 800 * FL_PER_UM // 1_000_000
    rig.ok(withdraw(volume_nl=answer.detail, flow_nl_s=166_667))
    rig.run_until_state(IDLE)
    assert rig.plant.min_position_m * 1e6 >= 200


# -- jog ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("speed", [250, -5_000, -300], ids=["forward-max", "backward-top", "backward"])
def test_jog_is_at_rest_within_one_watchdog_period_of_the_last_jog(speed: int) -> None:
    """Hold-to-move on the injected clock: JOG every 100 ms for 1 s, then silence."""
    rig = Rig(plant=FakePlant(position_m=0.030))
    rig.hello()
    last_us = 0
    for _ in range(10):
        last_us = rig.now_us
        rig.ok(jog(speed, hold_ms=WATCHDOG_MS))
        rig.run(0.099)
        assert rig.c.state == JOGGING, "a held jog keeps moving"
        assert rig.c.step_rate_hz != 0.0
    assert rig.run(1.0, lambda r: r.c.step_rate_hz == 0.0)
    rest_us = rig.now_us
    assert rest_us - last_us <= WATCHDOG_MS * 1000, rest_us - last_us
    rig.run(0.002)
    assert rig.c.state == IDLE
    (done,) = rig.kinds(EventKind.MOTION_DONE)
    assert done.prev_state == JOGGING
    moved_um = (rig.plant.position_m - 0.030) * 1e6
    assert math.copysign(1, moved_um) == math.copysign(1, speed)
    assert abs(done.detail - moved_um) <= 1.5


def test_a_short_hold_stops_sooner_and_a_jog_never_outlives_its_grant() -> None:
    rig = Rig(plant=FakePlant(position_m=0.030))
    rig.hello()
    rig.ok(jog(-5_000, hold_ms=30))
    start = rig.now_us
    assert rig.run(0.2, lambda r: r.c.state == IDLE)
    assert rig.now_us - start <= 31_000


def test_forward_jog_into_an_occluded_line_is_held_below_the_hard_limit() -> None:
    """A held forward jog into a blocked line: the pressure loop throttles it at the soft limit
    (flag THROTTLING), the pressure never reaches the hard limit, and it stops when released."""
    rig = Rig(plant=FakePlant(position_m=0.030, occluded=True))
    rig.hello()
    rig.ok(lambda i: SetLimits(i, soft_limit_pa=300_000, hard_limit_pa=400_000, relief_pa=100_000))
    peak = 0.0
    throttled = False
    for _ in range(40):
        rig.ok(jog(250, hold_ms=WATCHDOG_MS))
        for _ in range(99):
            rig.tick()
            peak = max(peak, rig.plant.pressure_pa)
            throttled |= bool(rig.c.flags & Flags.THROTTLING)
    assert throttled
    assert peak < 400_000
    assert rig.c.state in (JOGGING, STOPPED)
    rig.run(WATCHDOG_MS / 1000)
    assert rig.c.step_rate_hz == 0.0


def test_forward_jog_stops_on_overpressure() -> None:
    """A pressure above the hard limit (the line pressurised from elsewhere) stops a jog."""
    rig = Rig(plant=FakePlant(position_m=0.030, occluded=True))
    rig.hello()
    rig.ok(jog(250, hold_ms=WATCHDOG_MS))
    rig.plant.pressure_pa = ControllerConfig().default_hard_limit_pa * 1.1
    rig.run(0.05)
    assert (rig.c.state, rig.c.stop_reason) == (STOPPED, StopReason.OVERPRESSURE)


def test_jog_parameters_refused_with_field_and_bound() -> None:
    rig = Rig()
    rig.hello()
    cases = [
        (jog(200, hold_ms=0), 1, 1),
        (jog(200, hold_ms=WATCHDOG_MS + 1), 1, WATCHDOG_MS),
        (jog(0), 2, 1),
        (jog(251), 2, 250),
        (jog(-5_001), 2, -5_000),
        (home(0), 1, 1),
        (home(5_001), 1, 5_000),
        (prime(volume_nl=0), 3, 1),
        (prime(flow_nl_s=0), 2, 1),
        (lambda i: Prime(i, 1_999, 1_000, 1_000), 1, 2_000),
    ]
    for make, field, detail in cases:
        answer, _ = rig.command(make)
        assert isinstance(answer, Nak), make(1)
        assert (answer.code, answer.field, answer.detail) == (NakCode.BAD_PARAM, field, detail), make(1)
        assert rig.c.state == IDLE


# -- prime's limits ---------------------------------------------------------------------------------------
def test_prime_stops_on_overpressure_into_an_occluded_line() -> None:
    rig = Rig(plant=FakePlant(position_m=0.010, occluded=True))
    rig.hello()
    rig.ok(lambda i: SetLimits(i, soft_limit_pa=2_000_000, hard_limit_pa=2_500_000, relief_pa=100_000))
    rig.ok(prime(volume_nl=2_000_000, flow_nl_s=100_000))
    rig.run_until_state(STOPPED, seconds=5.0)
    stop = rig.stops()[-1]
    assert stop.prev_state == PRIMING
    assert stop.reason in (StopReason.PRESSURE_RISE, StopReason.OVERPRESSURE)
    assert rig.plant.pressure_pa < 2_500_000 * 1.2


def test_prime_refused_at_the_end_of_travel_and_past_the_stroke_left() -> None:
    rig = Rig(plant=FakePlant(position_m=REFERENCE_RIG.travel_m - 0.6e-3))
    rig.hello()
    answer, _ = rig.command(prime(volume_nl=10_000_000))
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field, answer.detail) == (NakCode.BAD_PARAM, 3, 100 * FL_PER_UM // 1_000_000)
    rig.plant.end_switch_stuck = True
    rig.run(0.01)
    answer, _ = rig.command(prime())
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.END_OF_TRAVEL


def test_motion_status_reports_the_prime() -> None:
    rig = Rig(plant=FakePlant(position_m=0.010))
    rig.hello()
    rig.ok(prime(volume_nl=30_000, flow_nl_s=30_000))
    rig.run_until_state(IDLE, seconds=5.0)
    outgoing = rig.ok(GetMotion)
    (status,) = [m for m in outgoing if isinstance(m, MotionStatus)]
    (done,) = rig.kinds(EventKind.MOTION_DONE)
    assert status.last_motion == PRIMING
    assert status.primed_nl == done.detail
    assert status.syringe_bore_um == BORE_UM
    assert status.withdrawn_nl == 0
    assert status.home_um == 200
    assert abs(status.moved_um - (rig.plant.position_m - 0.010) * 1e6) <= 1.5
    (st,) = [m for m in rig.ok(GetStatus) if isinstance(m, Status)]
    assert st.delivered_nl == 0

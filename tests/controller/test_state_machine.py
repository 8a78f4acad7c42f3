"""docs/state-machine.md, row by row: commands by state, stops by state, and the rules."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from firmware_sim.controller import Controller, ControllerConfig
from firmware_sim.hal import REFERENCE_RIG
from protocol import (
    PROTOCOL_VERSION,
    Ack,
    Clear,
    Command,
    EventKind,
    Flags,
    GetStatus,
    Hello,
    Mode,
    MsgType,
    Nak,
    NakCode,
    Pause,
    PlanFlags,
    ResetCause,
    Resume,
    SetLimits,
    SetTelemetry,
    Start,
    State,
    Status,
    Stop,
    StopReason,
    StopSource,
)
from tests.controller.fakeplant import AREA_M2, FakePlant
from tests.controller.harness import Rig, arm_msg, with_config

CORE_STATES = (IDLE, ARMED, INJECTING, PAUSED, STOPPED, DONE, FAULT) = tuple(State)[:7]
"""The injection's states; the movement states (PRIMING .. HOMING): test_motion_states.py."""


def rig_in(state: State, **arm: object) -> Rig:
    """A rig with a session, brought to `state` the way an operator would, plunger at rest (no
    relief plan, so nothing is BUSY)."""
    rig = Rig()
    rig.hello()
    if state == FAULT:
        rig.plant.open_loop = True
        rig.run_until_state(FAULT)
        rig.plant.open_loop = False
        rig.run(0.2)  # the fault condition is gone, the state stays FAULT
        return rig
    if state == IDLE:
        return rig
    if state == DONE:
        rig.arm(volume_limit_nl=20_000, **arm)
        rig.ok(Start)
        rig.run_until_state(DONE)
    else:
        rig.arm(**arm)
        if state != ARMED:
            rig.ok(Start)
            rig.run(0.3)
            if state == PAUSED:
                rig.ok(Pause)
            elif state == STOPPED:
                rig.ok(lambda i: Stop(i, StopSource.OPERATOR))
    rig.run(0.1)  # plunger braked to rest
    assert rig.c.state == state
    assert rig.c.step_rate_hz == 0.0 or state == INJECTING
    return rig


COMMANDS: dict[str, Callable[[int], Command]] = {
    "ARM": lambda i: arm_msg(i),
    "START": Start,
    "PAUSE": Pause,
    "RESUME": Resume,
    "STOP": lambda i: Stop(i, StopSource.OPERATOR),
    "CLEAR": Clear,
    "SET_LIMITS": lambda i: SetLimits(i, soft_limit_pa=2_000_000),
}

ACK = "ACK"
# docs/state-machine.md "Commands by state": (answer, state after)
TABLE: dict[str, dict[State, tuple[str | NakCode, State]]] = {
    "ARM": {
        IDLE: (ACK, ARMED),
        ARMED: (ACK, ARMED),
        INJECTING: (NakCode.BAD_STATE, INJECTING),
        PAUSED: (NakCode.BAD_STATE, PAUSED),
        STOPPED: (NakCode.STOP_LATCHED, STOPPED),
        DONE: (ACK, ARMED),
        FAULT: (NakCode.STOP_LATCHED, FAULT),
    },
    "START": {
        IDLE: (NakCode.BAD_STATE, IDLE),
        ARMED: (ACK, INJECTING),
        INJECTING: (NakCode.BAD_STATE, INJECTING),
        PAUSED: (NakCode.BAD_STATE, PAUSED),
        STOPPED: (NakCode.STOP_LATCHED, STOPPED),
        DONE: (NakCode.BAD_STATE, DONE),
        FAULT: (NakCode.STOP_LATCHED, FAULT),
    },
    "PAUSE": {
        IDLE: (NakCode.BAD_STATE, IDLE),
        ARMED: (NakCode.BAD_STATE, ARMED),
        INJECTING: (ACK, PAUSED),
        PAUSED: (ACK, PAUSED),
        STOPPED: (NakCode.STOP_LATCHED, STOPPED),
        DONE: (NakCode.BAD_STATE, DONE),
        FAULT: (NakCode.STOP_LATCHED, FAULT),
    },
    "RESUME": {
        IDLE: (NakCode.BAD_STATE, IDLE),
        ARMED: (NakCode.BAD_STATE, ARMED),
        INJECTING: (ACK, INJECTING),
        PAUSED: (ACK, INJECTING),
        STOPPED: (NakCode.STOP_LATCHED, STOPPED),
        DONE: (NakCode.BAD_STATE, DONE),
        FAULT: (NakCode.STOP_LATCHED, FAULT),
    },
    "STOP": {
        IDLE: (ACK, IDLE),
        ARMED: (ACK, STOPPED),
        INJECTING: (ACK, STOPPED),
        PAUSED: (ACK, STOPPED),
        STOPPED: (ACK, STOPPED),
        DONE: (ACK, DONE),
        FAULT: (ACK, FAULT),
    },
    "CLEAR": {
        IDLE: (ACK, IDLE),
        ARMED: (ACK, IDLE),
        INJECTING: (NakCode.BAD_STATE, INJECTING),
        PAUSED: (NakCode.BAD_STATE, PAUSED),
        STOPPED: (ACK, IDLE),
        DONE: (ACK, IDLE),
        FAULT: (ACK, IDLE),
    },
    "SET_LIMITS": {state: (ACK, state) for state in CORE_STATES},
}
CELLS = [(cmd, state) for cmd, row in TABLE.items() for state in row]


@pytest.mark.parametrize(("command", "state"), CELLS, ids=[f"{c}-{s.name}" for c, s in CELLS])
def test_commands_by_state(command: str, state: State) -> None:
    rig = rig_in(state)
    expected, after = TABLE[command][state]
    before_events = len(rig.transitions())
    answer, outgoing = rig.command(COMMANDS[command])
    if expected == ACK:
        assert isinstance(answer, Ack), answer
    else:
        assert isinstance(answer, Nak), answer
        assert answer.code == expected
    assert answer.state == after
    assert rig.c.state == after
    transitions = rig.transitions()[before_events:]
    if after == state:
        assert transitions == [], "no EVENT for a command that changes nothing"
    else:
        assert len(transitions) == 1, "exactly one EVENT per transition"
        (event,) = transitions
        assert (event.prev_state, event.state) == (state, after)
        stop_caused = command == "STOP"
        assert event.kind == (EventKind.STOP if stop_caused else EventKind.STATE_CHANGE)
        if stop_caused:
            assert (event.reason, event.source) == (StopReason.OPERATOR_STOP, StopSource.OPERATOR)
    if command in ("ARM", "SET_LIMITS") and isinstance(answer, Ack):
        i = outgoing.index(answer)
        assert isinstance(outgoing[i - 1], Status), "the reply comes immediately before its ACK"
        assert outgoing[i - 1].cmd_id == answer.cmd_id


@pytest.mark.parametrize("state", CORE_STATES, ids=[s.name for s in CORE_STATES])
@pytest.mark.parametrize(
    "make",
    [lambda i: Hello(i, PROTOCOL_VERSION), GetStatus, lambda i: SetTelemetry(i, 1, 20)],
    ids=["HELLO", "GET_STATUS", "SET_TELEMETRY"],
)
def test_always_accepted_commands_change_nothing(state: State, make: Callable[[int], Command]) -> None:
    rig = rig_in(state)
    before = len(rig.transitions())
    answer, _ = rig.command(make)
    assert isinstance(answer, Ack)
    if make(1).TYPE == MsgType.HELLO and state in (State.INJECTING, State.PAUSED):
        # a new session never inherits a moving or resumable plunger (SPEC §7.6)
        assert rig.c.state == State.STOPPED
        assert rig.c.stop_reason == StopReason.HOST_LOST
        assert len(rig.transitions()) == before + 1
        return
    assert rig.c.state == state
    assert len(rig.transitions()) == before


# -- START / RESUME checks -------------------------------------------------------------------------
def test_arm_refused_without_travel_left_and_start_refused_once_the_plunger_is_there() -> None:
    plant = FakePlant(position_m=REFERENCE_RIG.travel_m - 0.6e-3)  # 100 um before the usable end
    rig = Rig(plant=plant)
    rig.hello()
    answer, _ = rig.command(lambda i: arm_msg(i, volume_limit_nl=10_000))
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field) == (NakCode.BAD_PARAM, 5)
    assert answer.detail == 100 * round(AREA_M2 * 1e12) // 1_000_000  # 100 um of the 7.29 mm bore
    rig.arm(volume_limit_nl=answer.detail)
    plant.position_m += 0.1e-3  # pushed on by hand after ARM: no stroke left
    rig.run(0.02)
    assert rig.c.flags & Flags.END_OF_TRAVEL
    answer, _ = rig.command(Start)
    assert isinstance(answer, Nak)
    assert (answer.code, rig.c.state) == (NakCode.END_OF_TRAVEL, ARMED)


def test_start_refused_with_the_end_switch_closed() -> None:
    rig = Rig(plant=FakePlant(end_switch_stuck=True))
    rig.hello()
    rig.arm()
    answer, _ = rig.command(Start)
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.END_OF_TRAVEL


def test_start_refused_once_the_cement_is_too_old() -> None:
    """The WORKING_TIME stop runs once per 10 ms block; a START between the expiry and that block
    is refused by the START check itself."""
    rig = Rig()
    rig.hello()
    while rig.c.sample_index % 10:
        rig.tick()
    rig.arm(mixed_ago_ms=1_200_000 - 3, working_time_ms=1_200_000)
    rig.run(0.003)
    answer, _ = rig.command(Start)
    assert isinstance(answer, Nak)
    assert (answer.code, answer.state) == (NakCode.WORKING_TIME_EXCEEDED, ARMED)
    rig.run(0.01)
    assert (rig.c.state, rig.c.stop_reason) == (STOPPED, StopReason.WORKING_TIME)


def test_resume_refused_when_the_last_viscosity_estimate_is_outside_the_window() -> None:
    config = with_config(viscosity_out_ms=60_000)  # no VISCOSITY_WINDOW stop meanwhile
    rig = Rig(config, FakePlant(viscosity_pas=110.0))
    rig.hello()
    rig.arm(viscosity_max_pas=90.0)
    rig.ok(Start)
    assert rig.run(3.0, lambda r: r.c.viscosity_pas > 90.0)
    rig.ok(Pause)
    rig.run(0.1)
    answer, _ = rig.command(Resume)
    assert isinstance(answer, Nak)
    assert (answer.code, rig.c.state) == (NakCode.VISCOSITY_OUT_OF_WINDOW, PAUSED)


def test_start_refused_while_the_fluoro_line_is_asserted() -> None:
    rig = Rig()
    rig.hello()
    rig.plant.fluoro = True
    rig.run(0.01)
    assert rig.c.state == IDLE, "the line changes nothing in IDLE"
    rig.arm()
    answer, _ = rig.command(Start)
    assert isinstance(answer, Nak)
    assert (answer.code, rig.c.state) == (NakCode.BAD_STATE, ARMED)


def test_start_after_a_sensor_fault_is_already_latched() -> None:
    """A sensor fault in ARMED latches STOPPED before any START can be read: the START check
    SENSOR_FAULT is the backstop, the answer is STOP_LATCHED."""
    rig = rig_in(ARMED)
    rig.plant.open_loop = True
    rig.run(0.005)
    answer, _ = rig.command(Start)
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.STOP_LATCHED
    assert rig.c.stop_reason == StopReason.SENSOR_FAULT


# -- CLEAR refusals ------------------------------------------------------------------------------------
def test_clear_busy_while_relief_runs_then_accepted() -> None:
    rig = rig_in(INJECTING, plan_flags=PlanFlags.RELIEF)
    rig.run(2.0)
    rig.ok(lambda i: Stop(i, StopSource.OPERATOR))
    answer, _ = rig.command(Clear)
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.BUSY
    assert rig.run(3.0, lambda r: not r.c.relief_active)
    answer, _ = rig.command(Clear)
    assert isinstance(answer, Ack)
    assert rig.c.state == IDLE


def test_clear_busy_in_done_while_relief_runs() -> None:
    rig = Rig()
    rig.hello()
    rig.arm(volume_limit_nl=150_000, plan_flags=PlanFlags.RELIEF)
    rig.ok(Start)
    rig.run_until_state(DONE)
    assert rig.c.relief_active
    answer, _ = rig.command(Clear)
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.BUSY
    answer, _ = rig.command(lambda i: arm_msg(i))
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.BUSY, "ARMED means a still plunger"
    assert rig.run(3.0, lambda r: not r.c.relief_active)
    assert isinstance(rig.command(Clear)[0], Ack)


def test_clear_refused_in_stopped_while_the_sensor_is_faulty() -> None:
    rig = rig_in(INJECTING)
    rig.plant.open_loop = True
    rig.run_until_state(STOPPED)
    rig.run(0.2)
    answer, _ = rig.command(Clear)
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.SENSOR_FAULT
    rig.plant.open_loop = False
    rig.run(0.2)
    assert isinstance(rig.command(Clear)[0], Ack)


def test_clear_refused_in_fault_while_the_fault_persists() -> None:
    rig = Rig()
    rig.hello()
    rig.plant.open_loop = True
    rig.run_until_state(FAULT)
    answer, _ = rig.command(Clear)
    assert isinstance(answer, Nak)
    assert (answer.code, rig.c.state) == (NakCode.SENSOR_FAULT, FAULT)


# -- stops by state ---------------------------------------------------------------------------------
def cause_stop_command(rig: Rig) -> None:
    rig.ok(lambda i: Stop(i, StopSource.REMOTE))


def cause_fluoro_line(rig: Rig) -> None:
    rig.plant.fluoro = True
    rig.run(0.01)


def cause_watchdog(rig: Rig) -> None:
    rig.heartbeats = False
    rig.run(0.6)


def cause_link_down(rig: Rig) -> None:
    rig.connected = False
    rig.tick()


def cause_sensor_fault(rig: Rig) -> None:
    rig.plant.open_loop = True
    rig.run(0.01)


def cause_overpressure(rig: Rig) -> None:
    rig.plant.occluded = True
    rig.plant.pressure_pa = 4.5e6
    rig.run(0.05)


CAUSES: dict[str, tuple[Callable[[Rig], None], StopReason, StopSource]] = {
    "STOP": (cause_stop_command, StopReason.OPERATOR_STOP, StopSource.REMOTE),
    "fluoro line": (cause_fluoro_line, StopReason.FLUORO_STOP, StopSource.FLUORO_LINE),
    "watchdog": (cause_watchdog, StopReason.HOST_LOST, StopSource.CONTROLLER),
    "link down": (cause_link_down, StopReason.HOST_LOST, StopSource.CONTROLLER),
    "sensor fault": (cause_sensor_fault, StopReason.SENSOR_FAULT, StopSource.CONTROLLER),
    "overpressure": (cause_overpressure, StopReason.OVERPRESSURE, StopSource.CONTROLLER),
}
# docs/state-machine.md "Stops by state": None = no change
STOPS: dict[str, dict[State, State | None]] = {
    "STOP": {ARMED: STOPPED, INJECTING: STOPPED, PAUSED: STOPPED, IDLE: None, DONE: None, FAULT: None},
    "fluoro line": {ARMED: STOPPED, INJECTING: STOPPED, PAUSED: STOPPED, IDLE: None, DONE: None, FAULT: None},
    "watchdog": {ARMED: STOPPED, INJECTING: STOPPED, PAUSED: STOPPED, IDLE: None, DONE: None},
    "link down": {ARMED: STOPPED, INJECTING: STOPPED, PAUSED: STOPPED, IDLE: None, DONE: None},
    "sensor fault": {ARMED: STOPPED, INJECTING: STOPPED, PAUSED: STOPPED, IDLE: FAULT, DONE: FAULT},
    "overpressure": {ARMED: None, INJECTING: STOPPED, PAUSED: STOPPED, IDLE: None},
}
STOP_CELLS = [(cause, state) for cause, row in STOPS.items() for state in row]


@pytest.mark.parametrize(("cause", "state"), STOP_CELLS, ids=[f"{c}-{s.name}" for c, s in STOP_CELLS])
def test_stops_by_state(cause: str, state: State) -> None:
    rig = rig_in(state)
    make, reason, source = CAUSES[cause]
    before = len(rig.transitions())
    make(rig)
    expected = STOPS[cause][state]
    transitions = rig.transitions()[before:]
    if expected is None:
        assert rig.c.state == state
        assert transitions == []
    else:
        assert rig.c.state == expected
        assert len(transitions) == 1
        (event,) = transitions
        assert (event.kind, event.reason, event.source) == (EventKind.STOP, reason, source)
        assert (event.prev_state, event.state) == (state, expected)
        assert (rig.c.stop_reason, rig.c.stop_source) == (reason, source)
    if cause in ("watchdog", "link down"):
        assert not rig.c.session_open, "the session closes in every state"


def test_stop_in_stopped_keeps_the_first_reason() -> None:
    rig = rig_in(INJECTING)
    rig.plant.fluoro = True
    rig.run(0.01)
    assert rig.c.stop_reason == StopReason.FLUORO_STOP
    before = len(rig.events)
    rig.ok(lambda i: Stop(i, StopSource.OPERATOR))
    rig.plant.open_loop = True
    rig.run(0.05)
    rig.heartbeats = False
    rig.run(0.6)
    assert (rig.c.state, rig.c.stop_reason, rig.c.stop_source) == (
        STOPPED,
        StopReason.FLUORO_STOP,
        StopSource.FLUORO_LINE,
    )
    assert not [e for e in rig.events[before:] if e.kind in (EventKind.STOP, EventKind.STATE_CHANGE)]


@pytest.mark.parametrize(
    ("source", "reason", "recorded"),
    [
        (StopSource.OPERATOR, StopReason.OPERATOR_STOP, StopSource.OPERATOR),
        (StopSource.REMOTE, StopReason.OPERATOR_STOP, StopSource.REMOTE),
        (StopSource.FLUORO_OPERATOR, StopReason.FLUORO_STOP, StopSource.FLUORO_OPERATOR),
        (StopSource.FLUORO_REMOTE, StopReason.FLUORO_STOP, StopSource.FLUORO_REMOTE),
        (StopSource.NONE, StopReason.OPERATOR_STOP, StopSource.OPERATOR),
        (StopSource.CONTROLLER, StopReason.OPERATOR_STOP, StopSource.OPERATOR),
        (StopSource.FLUORO_LINE, StopReason.OPERATOR_STOP, StopSource.OPERATOR),
    ],
)
def test_stop_reason_by_source(source: StopSource, reason: StopReason, recorded: StopSource) -> None:
    rig = rig_in(INJECTING)
    rig.ok(lambda i: Stop(i, source))
    assert (rig.c.stop_reason, rig.c.stop_source) == (reason, recorded)


def test_increment_done_pauses_and_the_last_increment_ends_in_done() -> None:
    rig = Rig()
    rig.hello()
    rig.arm(mode=Mode.INCREMENTAL, increment_nl=50_000, volume_limit_nl=100_000)
    rig.ok(Start)
    rig.run_until_state(PAUSED)
    assert (rig.c.stop_reason, rig.c.stop_source) == (StopReason.INCREMENT_DONE, StopSource.CONTROLLER)
    rig.run(0.1)
    rig.ok(Resume)
    rig.run_until_state(DONE)
    assert rig.c.stop_reason == StopReason.VOLUME_LIMIT, "VOLUME_LIMIT wins over INCREMENT_DONE"
    reasons = [(e.reason, e.prev_state, e.state) for e in rig.stops()]
    assert reasons == [
        (StopReason.INCREMENT_DONE, INJECTING, PAUSED),
        (StopReason.VOLUME_LIMIT, INJECTING, DONE),
    ]


@pytest.mark.parametrize("state", [IDLE, ARMED, PAUSED, STOPPED, DONE], ids=lambda s: s.name)
def test_working_time_acts_in_running_states_only(state: State) -> None:
    rig = rig_in(state, mixed_ago_ms=0, working_time_ms=2_000)
    rig.run(2.5)
    if state in (ARMED, PAUSED):
        assert (rig.c.state, rig.c.stop_reason) == (STOPPED, StopReason.WORKING_TIME)
    else:
        assert rig.c.state == state


def test_working_time_in_injecting() -> None:
    rig = rig_in(INJECTING, mixed_ago_ms=0, working_time_ms=1_500, volume_limit_nl=2_000_000)
    rig.run_until_state(STOPPED)
    assert rig.c.stop_reason == StopReason.WORKING_TIME
    assert rig.now_us / 1e3 == pytest.approx(1_500, abs=20)


def test_arm_accepts_cement_past_its_working_time_and_then_stops() -> None:
    rig = Rig()
    rig.hello()
    rig.arm(mixed_ago_ms=2_000_000, working_time_ms=1_200_000)
    assert rig.c.state == ARMED
    rig.run(0.02)
    assert (rig.c.state, rig.c.stop_reason) == (STOPPED, StopReason.WORKING_TIME)


# -- rules ------------------------------------------------------------------------------------------
def test_nothing_resumes_by_itself() -> None:
    rig = rig_in(INJECTING)
    rig.plant.fluoro = True
    rig.run(0.01)
    rig.plant.fluoro = False
    rig.run(0.2)
    assert rig.c.state == STOPPED, "releasing the line does not resume"
    rig.connected = False
    rig.run(0.01)
    rig.connected = True
    rig.hello()
    rig.run(1.0)
    assert rig.c.state == STOPPED, "a reconnect and a new HELLO do not resume"
    assert rig.c.step_rate_hz == 0.0


def test_power_up_starts_idle_and_announces_the_reset() -> None:
    c = Controller(ControllerConfig(), REFERENCE_RIG, reset_cause=ResetCause.BROWNOUT)
    out = c.tick(0, FakePlant().sense(), [], True)
    events = [m for m in out.outgoing if getattr(m, "kind", None) == EventKind.POWER_UP]
    assert len(events) == 1
    assert (events[0].event_index, events[0].detail, events[0].state) == (0, ResetCause.BROWNOUT, IDLE)
    assert c.state == IDLE


def test_a_retried_command_id_is_not_applied_twice() -> None:
    rig = rig_in(INJECTING)
    pause = Pause(4242)
    first, _ = rig.command(pause)
    rig.ok(Resume)
    assert rig.c.state == INJECTING
    before = len(rig.transitions())
    again, _ = rig.command(pause)
    assert again == first, "the cached answer, same body"
    assert rig.c.state == INJECTING, "not applied again"
    assert len(rig.transitions()) == before


def test_fault_from_done_cuts_the_relief_short_and_its_stop_event_says_so() -> None:
    """DONE with relief still backing off, then a sensor fault: FAULT keeps the plunger still, so the
    relief ends with the transition, and the STOP event's flags (those once the transition has taken
    effect, SPEC §5.12) carry no RELIEF_ACTIVE; RELIEF_DONE follows it."""
    rig = Rig()
    rig.hello()
    rig.arm(volume_limit_nl=20_000, plan_flags=PlanFlags.RELIEF)
    rig.ok(Start)
    rig.run_until_state(DONE)
    assert rig.c.flags & Flags.RELIEF_ACTIVE, "DONE starts the relief back-off"
    before = len(rig.events)
    cause_sensor_fault(rig)
    assert rig.c.state == FAULT
    (stop,) = [e for e in rig.events[before:] if e.kind == EventKind.STOP]
    assert (stop.prev_state, stop.state, stop.reason) == (DONE, FAULT, StopReason.SENSOR_FAULT)
    assert not stop.flags & Flags.RELIEF_ACTIVE, "the event said relief was still running"
    kinds = [e.kind for e in rig.events[before:]]
    assert kinds.index(EventKind.STOP) < kinds.index(EventKind.RELIEF_DONE)
    assert not rig.c.flags & Flags.RELIEF_ACTIVE

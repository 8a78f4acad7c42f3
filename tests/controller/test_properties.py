"""Safety properties over random command sequences, sensor and mechanical faults, fluoroscopy line
and link events (hypothesis stateful testing). Checked on every tick:

- the step rate is ramped (never jumps), and outside INJECTING it only brakes or backs off: the
  plunger never moves forward outside INJECTING except to come to rest;
- the plunger never passes its end of travel or home;
- a latched stop (STOPPED, FAULT) is left only by an accepted CLEAR, and keeps its first reason;
- every command gets exactly one ACK or NAK, and a retried command id is answered from the cache
  (same answer) without being applied again;
and at any point (and at the end of every example) the controller can be brought back to IDLE:
STOP, wait for the relief, CLEAR.
"""

from __future__ import annotations

import struct
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from firmware_sim.hal import REFERENCE_RIG
from protocol import (
    PROTOCOL_VERSION,
    Ack,
    AlarmCode,
    Clear,
    Command,
    EventKind,
    GetStatus,
    Hello,
    Mode,
    MsgType,
    Nak,
    NakCode,
    Pause,
    PlanFlags,
    Rejected,
    Resume,
    SetLimits,
    SetTelemetry,
    Start,
    State,
    Stop,
    StopSource,
)
from protocol.messages import Message
from tests.controller.fakeplant import FakePlant
from tests.controller.harness import DV, Rig, arm_msg, frame, rejected

LATCHED = (State.STOPPED, State.FAULT)
HOST_SOURCES = {StopSource.OPERATOR, StopSource.FLUORO_OPERATOR, StopSource.FLUORO_REMOTE, StopSource.REMOTE}

valid_arms = st.builds(
    lambda mode, relief, flow, volume, increment, mixed: arm_msg(
        0,
        mode=mode,
        plan_flags=PlanFlags.RELIEF if relief else PlanFlags.NONE,
        flow_nl_s=flow,
        volume_limit_nl=volume,
        increment_nl=increment if mode == Mode.INCREMENTAL else 0,
        mixed_ago_ms=mixed,
    ),
    st.sampled_from(Mode),
    st.booleans(),
    st.sampled_from([20_000, 100_000, 166_667]),
    st.sampled_from([30_000, 300_000, 2_000_000]),
    st.sampled_from([10_000, 50_000]),
    st.sampled_from([300_000, 1_199_000]),
)
odd_arms = st.builds(
    lambda mode, relief, flow, volume, increment, soft, mixed: arm_msg(
        0,
        mode=mode,
        plan_flags=PlanFlags.RELIEF if relief else PlanFlags.NONE,
        flow_nl_s=flow,
        volume_limit_nl=volume,
        increment_nl=increment if mode == Mode.INCREMENTAL else 0,
        soft_limit_pa=soft,
        mixed_ago_ms=mixed,
    ),
    st.sampled_from(Mode),
    st.booleans(),
    st.sampled_from([0, 20_000, 100_000, 166_667, 400_000]),
    st.sampled_from([0, 30_000, 300_000, 2_400_000, 9_000_000]),
    st.sampled_from([0, 10_000, 50_000]),
    st.sampled_from([1_000_000, 2_500_000, 5_000_000]),
    st.sampled_from([0, 300_000, 1_199_000]),
)
simple = st.sampled_from([Start, Pause, Resume, Clear, GetStatus])
commands = st.one_of(
    odd_arms,
    simple.map(lambda make: make(0)),
    st.sampled_from(StopSource).map(lambda s: Stop(0, s)),
    st.builds(
        SetLimits,
        st.just(0),
        st.sampled_from([0, 1_500_000, 3_000_000, 9_000_000]),
        st.sampled_from([0, 2_000_000, 4_000_000, 9_000_000]),
        st.sampled_from([0, 100_000, 2_600_000]),
        st.sampled_from([0, 50_000, 500_000]),
    ),
    st.builds(SetTelemetry, st.just(0), st.sampled_from([0, 1, 7, 66]), st.sampled_from([0, 1, 20, 31])),
    st.just(Hello(0, PROTOCOL_VERSION)),
)
malformed = st.sampled_from(["unknown", "bad_length", "bad_source_stop", "bad_mode_arm", "other_version"])


class ControllerMachine(RuleBasedStateMachine):
    @initialize(
        position_mm=st.one_of(st.floats(0.3, 2.0), st.floats(2.0, 57.0), st.floats(57.0, 59.7)),
        seed=st.integers(0, 2**16),
        hello=st.booleans(),
    )
    def setup(self, position_mm: float, seed: int, hello: bool) -> None:
        self.rig = Rig(plant=FakePlant(seed=seed, position_m=position_mm * 1e-3))
        self.next_id = 0
        self.recent: list[tuple[int, int]] = []
        self.cache: list[tuple[tuple[int, int], Message]] = []
        """Model of the device's cache: cacheable answers in the order they were stored."""
        self.step()
        if hello:
            self.send(Hello(0, PROTOCOL_VERSION), repeat=False)

    # -- one tick, with every per-tick property --------------------------------------------------
    def step(self, received: list[Any] | None = None) -> list[Message]:
        rig = self.rig
        c = rig.c
        prev_state, prev_rate, prev_reason = c.state, c.step_rate_hz, c.stop_reason
        outgoing = rig.tick(received or [])
        rate, state = c.step_rate_hz, c.state
        assert abs(rate - prev_rate) <= DV + 1e-6, "the step rate is ramped"
        if state != State.INJECTING:
            assert rate <= max(prev_rate - DV, 0.0) + 1e-6, (
                "outside INJECTING the plunger only brakes or backs"
            )
        assert 0.0 <= rig.plant.position_m <= REFERENCE_RIG.travel_m, "never past home or the end"
        if prev_state in LATCHED and state != prev_state:
            cleared = [m for m in outgoing if isinstance(m, Ack) and m.cmd_type == MsgType.CLEAR]
            assert cleared, f"{prev_state.name} left without CLEAR"
            assert state == State.IDLE
        if prev_state == State.STOPPED and state == State.STOPPED:
            assert c.stop_reason == prev_reason, "the first reason is kept"
        if not c.session_open:
            self.cache.clear()
        return outgoing

    def cached(self, key: tuple[int, int]) -> Message | None:
        for k, answer in self.cache[-16:]:
            if k == key:
                return answer
        return None

    def send(self, message: Command, repeat: bool) -> None:
        if repeat and self.recent:
            cmd_id, msg_type = self.recent[-1]
            if msg_type != message.TYPE:
                cmd_id = self.new_id()
        else:
            cmd_id = self.new_id()
        message = type(message)(**{**{f: getattr(message, f) for f in message._names}, "cmd_id": cmd_id})
        key = (cmd_id, int(message.TYPE))
        # HELLO starts a new cache; STOP is never cached, executed again on a retry (core._command)
        uncached = message.TYPE in (MsgType.HELLO, MsgType.STOP)
        expected = None if uncached else self.cached(key)
        events_before = len(self.rig.events)
        outgoing = self.step([frame(message)])
        answers = [m for m in outgoing if isinstance(m, Ack | Nak)]
        assert len(answers) == 1, outgoing
        (answer,) = answers
        assert (answer.cmd_id, answer.cmd_type) == key
        if expected is not None:
            assert answer == expected, "a retried command id gets the cached answer"
            new_events = self.rig.events[events_before:]
            assert not [e for e in new_events if e.kind == EventKind.STATE_CHANGE]
            assert not [e for e in new_events if e.kind == EventKind.STOP and e.source in HOST_SOURCES]
        elif not uncached and not (isinstance(answer, Nak) and answer.code == NakCode.VERSION_MISMATCH):
            self.cache.append((key, answer))
        if (message.TYPE == MsgType.HELLO and isinstance(answer, Ack)) or not self.rig.c.session_open:
            # HELLO starts a new cache; a session that closed in this very tick (link down after
            # the frame arrived) takes its cache with it, so the answer just stored is gone too.
            self.cache.clear()
        self.recent.append(key)

    def new_id(self) -> int:
        self.next_id = self.next_id % 0xFFFF + 1
        return self.next_id

    # -- rules ----------------------------------------------------------------------------------
    @rule(plan=valid_arms, start=st.booleans())
    def arm(self, plan: Command, start: bool) -> None:
        self.send(plan, repeat=False)
        if start:
            self.send(Start(0), repeat=False)

    @rule(message=commands, repeat=st.booleans())
    def command(self, message: Command, repeat: bool) -> None:
        self.send(message, repeat)

    @rule(kind=malformed)
    def malformed_command(self, kind: str) -> None:
        cmd_id = self.new_id()
        version = PROTOCOL_VERSION
        if kind == "unknown":
            msg_type, body = 0x3E, struct.pack("<H", cmd_id)
        elif kind == "bad_length":
            msg_type, body = MsgType.PAUSE, struct.pack("<HB", cmd_id, 0)
        elif kind == "bad_source_stop":
            msg_type, body = MsgType.STOP, struct.pack("<HBx", cmd_id, 200)
        elif kind == "bad_mode_arm":
            raw = bytearray(arm_msg(cmd_id).pack_body())
            raw[2] = 9
            msg_type, body = MsgType.ARM, bytes(raw)
        else:
            msg_type, body, version = MsgType.START, struct.pack("<H2x", cmd_id), PROTOCOL_VERSION + 1
        rej: Rejected = rejected(body, msg_type, version)
        outgoing = self.step([rej])
        answers = [m for m in outgoing if isinstance(m, Ack | Nak)]
        assert len(answers) == 1, outgoing
        assert answers[0].cmd_id == cmd_id
        if kind == "bad_source_stop":
            assert isinstance(answers[0], Ack), "STOP is honoured whatever its source byte"
            assert self.rig.c.state not in (State.ARMED, State.INJECTING, State.PAUSED)
        else:
            assert isinstance(answers[0], Nak)
        if answers[0].cmd_id and not (
            isinstance(answers[0], Nak) and answers[0].code == NakCode.VERSION_MISMATCH
        ):
            self.cache.append(((cmd_id, int(msg_type)), answers[0]))

    @rule(ticks=st.integers(1, 400))
    def advance(self, ticks: int) -> None:
        for _ in range(ticks):
            self.step()

    @rule(fault=st.sampled_from(["none", "open_loop", "shorted_loop", "stuck", "noise"]))
    def sensor(self, fault: str) -> None:
        plant = self.rig.plant
        plant.open_loop = fault == "open_loop"
        plant.shorted_loop = fault == "shorted_loop"
        plant.stuck_adc = plant.sense().pressure_adc if fault == "stuck" else None
        plant.extra_noise_pa = 300_000.0 if fault == "noise" else 0.0

    @rule(stalled=st.booleans(), occluded=st.booleans(), leak=st.sampled_from([1.0, 1.0, 500.0]))
    def mechanics(self, stalled: bool, occluded: bool, leak: float) -> None:
        plant = self.rig.plant
        plant.stalled, plant.occluded, plant.leak_factor = stalled, occluded, leak

    @rule(asserted=st.booleans())
    def fluoro(self, asserted: bool) -> None:
        self.rig.plant.fluoro = asserted

    @rule(heartbeats=st.booleans(), connected=st.booleans())
    def link(self, heartbeats: bool, connected: bool) -> None:
        self.rig.heartbeats, self.rig.connected = heartbeats, connected

    @rule()
    def back_to_idle(self) -> None:
        self.recover()

    # -- recovery -------------------------------------------------------------------------------
    def recover(self) -> None:
        """Whatever happened: a healthy plant and link, HELLO, STOP, relief, CLEAR -> IDLE."""
        rig = self.rig
        plant = rig.plant
        plant.open_loop = plant.shorted_loop = plant.fluoro = plant.stalled = plant.occluded = False
        plant.stuck_adc = None
        plant.extra_noise_pa = 0.0
        plant.leak_factor = 1.0
        rig.heartbeats = rig.connected = True
        self.send(Hello(0, PROTOCOL_VERSION), repeat=False)
        self.send(Stop(0, StopSource.OPERATOR), repeat=False)
        for _ in range(5000):
            self.step()
            quiet = not rig.c.sensor_faulty and AlarmCode.SENSOR_SUSPECT not in rig.c.active_alarms
            if not rig.c.relief_active and rig.c.step_rate_hz == 0.0 and quiet:
                break  # a sensor still suspect may latch its fault yet: wait until it is quiet
        self.step()
        self.send(Clear(0), repeat=False)
        assert rig.c.state == State.IDLE, (rig.c.state, rig.c.stop_reason)

    @invariant()
    def stop_reason_matches_state(self) -> None:
        c = self.rig.c
        if c.state in (State.IDLE, State.ARMED, State.INJECTING):
            assert c.stop_reason == 0
        if c.state in LATCHED:
            assert c.stop_reason != 0

    def teardown(self) -> None:
        if hasattr(self, "rig"):
            self.recover()


ControllerMachine.TestCase.settings = settings(
    max_examples=250,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestControllerProperties = ControllerMachine.TestCase

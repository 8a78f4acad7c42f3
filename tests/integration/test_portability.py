"""The core ports to a microcontroller: single precision and a wrapping 32-bit microsecond timer
(issue 11, "Portability"). Both runs are compared with the reference (double precision, a clock
from 0) on the real plant, through the codec, and must make the same decisions.

- float32: `Controller(real=numpy.float32)` makes every real state variable, input and derived
  constant single precision (NumPy keeps an operation with a float32 operand in float32). The
  expected-position accumulator of the stall check, a float sum, drifted in float32 into a false
  MOTOR_STALL after ~160 s at 1 mL/min on a 3 mL syringe; it is an integer sum now.
- 32-bit timer: the core is handed the low 32 bits of the clock, starting 3 s before the wrap, as a
  hardware timer gives them; every deadline (watchdog, relief, heartbeat, throttle, working time)
  must survive the wrap.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from firmware_sim.controller import Controller, ControllerConfig, TickOutput
from firmware_sim.hal import SensorFrame
from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from protocol import (
    Ack,
    Clear,
    Event,
    Frame,
    Heartbeat,
    Mode,
    Nak,
    PlanFlags,
    Rejected,
    Resume,
    State,
)

MASK = 0xFFFF_FFFF
Decision = tuple[Any, ...]


class Timer32:
    """What the runtime hands the core on a microcontroller: the low 32 bits of the microsecond
    timer (the reference runtime passes the full 64-bit time)."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    def tick(
        self,
        now_us: int,
        sensors: SensorFrame,
        received: Sequence[Frame | Rejected],
        host_connected: bool = True,
    ) -> TickOutput:
        return self.controller.tick(now_us & MASK, sensors, received, host_connected)


def _rig(
    start_us: int,
    real: Callable[[float], float],
    wrap: bool,
    config: ControllerConfig | None = None,
    **plant: Any,
) -> VirtualRig:
    rig = VirtualRig(PlantConfig.model_validate(plant), config or ControllerConfig(), real=real)
    rig.runtime.now_us = start_us
    if wrap:
        rig.runtime.controller = Timer32(rig.controller)  # type: ignore[assignment]
    rig.connect()
    return rig


def _decisions(rig: VirtualRig, start_us: int) -> list[Decision]:
    """Every event and answer, with its time from the start on the (possibly wrapped) device clock."""
    seen: list[Decision] = [
        ("event", (e.t_us - start_us) & MASK, e.kind, e.state, e.prev_state, e.reason, e.source, e.alarm)
        for e in rig.events
        if isinstance(e, Event)
    ]
    for r in rig.replies:
        if isinstance(r, Ack):
            seen.append(("ack", r.cmd_id, r.cmd_type, r.state))
        elif isinstance(r, Nak):
            seen.append(("nak", r.cmd_id, r.cmd_type, r.code, r.field, r.detail))
    return seen


def _arm_mixed(rig: VirtualRig, start_us: int, **plan: Any) -> Ack | Nak:
    mixed_ms = round(rig.plant_config.mixed_ago_s * 1000) + (rig.now_us - start_us) // 1000
    return rig.arm(mixed_ago_ms=mixed_ms, **plan)


def _long_injection(
    real: Callable[[float], float], start_us: int = 0, wrap: bool = False
) -> tuple[list[Decision], VirtualRig]:
    rig = _rig(start_us, real, wrap, syringe_bore_mm=8.66, plunger_start_mm=8.0, mixed_ago_s=120)
    plan = {"flow_nl_s": 16_667, "volume_limit_nl": 2_900_000, "working_time_ms": 1_200_000}
    assert isinstance(_arm_mixed(rig, start_us, viscosity_min_pas=0.0, viscosity_max_pas=1e6, **plan), Ack)
    assert isinstance(rig.start(), Ack)
    rig.run(200.0, until=rig.state_is(State.DONE, State.STOPPED))
    rig.run(0.5)
    return _decisions(rig, start_us), rig


@functools.cache
def _reference_injection() -> tuple[list[Decision], VirtualRig]:
    return _long_injection(float)


def test_single_precision_core_decides_as_the_reference_through_a_3_minute_injection() -> None:
    reference, ref_rig = _reference_injection()
    single, rig = _long_injection(np.float32)
    assert isinstance(rig.controller.pressure_pa, np.float32), "the core really ran in float32"
    assert isinstance(rig.controller.step_rate_hz, np.float32)
    assert ref_rig.controller.state == State.DONE, "1 mL/min for 174 s on a 3 mL syringe, no stop"
    assert single == reference
    assert rig.controller.delivered_nl == ref_rig.controller.delivered_nl


def test_single_precision_and_a_32_bit_timer_wrapping_mid_injection_decide_as_the_reference() -> None:
    """Both at once, as on the microcontroller: the timer wraps 90 s into the 174 s injection."""
    reference, ref_rig = _reference_injection()
    ported, rig = _long_injection(np.float32, start_us=(1 << 32) - 90_000_000, wrap=True)
    assert ported == reference
    assert rig.controller.delivered_nl == ref_rig.controller.delivered_nl


def _wrap_session(start_us: int, wrap: bool) -> tuple[list[Decision], int, dict[str, int]]:
    """Increments with relief and resumes, a cement that runs out of working time, then a host that
    goes silent: every kind of deadline the core keeps. Returns the decisions, the number of device
    heartbeats and when (from the start) each deadline phase began."""
    # a relief that gives up after 40 ms, before the pressure is down: its deadline decides
    rig = _rig(start_us, float, wrap, replace(ControllerConfig(), relief_timeout_ms=40))
    phases: dict[str, int] = {}
    plan = {"mode": Mode.INCREMENTAL, "increment_nl": 60_000, "volume_limit_nl": 180_000}
    assert isinstance(_arm_mixed(rig, start_us, plan_flags=PlanFlags.RELIEF, **plan), Ack)
    assert isinstance(rig.start(), Ack)
    for _ in range(2):
        assert rig.run(10.0, until=rig.state_is(State.PAUSED))
        phases.setdefault("relief", rig.now_us - start_us)
        rig.run(1.5)  # the relief runs, then the imaging pause
        assert isinstance(rig.command(Resume), Ack)
    assert rig.run(10.0, until=rig.state_is(State.DONE))
    rig.run(2.0)
    # a cement 1.5 s from the end of its working time: WORKING_TIME in ARMED
    phases["working_time"] = rig.now_us - start_us
    mixed_ms = round(rig.plant_config.mixed_ago_s * 1000) + (rig.now_us - start_us) // 1000
    assert isinstance(rig.arm(mixed_ago_ms=mixed_ms, working_time_ms=mixed_ms + 1_500), Ack)
    rig.run(2.0)
    assert isinstance(rig.command(Clear), Ack)
    assert isinstance(_arm_mixed(rig, start_us), Ack)
    rig.heartbeats = False
    phases["watchdog"] = rig.now_us - start_us
    rig.run(1.5)  # HOST_LOST
    return _decisions(rig, start_us), sum(isinstance(m, Heartbeat) for m in rig.replies), phases


@functools.cache
def _reference_session() -> tuple[list[Decision], int, dict[str, int]]:
    return _wrap_session(0, wrap=False)


@pytest.mark.parametrize("phase", ["start", "relief", "working_time", "watchdog"])
def test_a_32_bit_timer_wrapping_mid_run_changes_no_decision(phase: str) -> None:
    """The timer wraps 20 ms into the phase: during the first relief back-off, while a cement ages
    towards its working time, while the watchdog waits for a silent host (and the device heartbeat,
    the throttle and the telemetry tick on throughout)."""
    reference, ref_beats, phases = _reference_session()
    reasons = [d[5].name for d in reference if d[0] == "event" and d[2].name == "STOP"]
    assert reasons == ["INCREMENT_DONE", "INCREMENT_DONE", "VOLUME_LIMIT", "WORKING_TIME", "HOST_LOST"]
    wrap_at = 3_000_000 if phase == "start" else phases[phase] + 20_000
    wrapped, beats, _ = _wrap_session((1 << 32) - wrap_at, wrap=True)
    assert wrapped == reference
    assert beats == ref_beats, "the device heartbeat kept its period across the wrap"

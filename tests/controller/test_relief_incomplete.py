"""The operator is told whenever a post-stop relief leaves the line pressurised (SPEC §6.7, §8.4).

On the real plant (firmware_sim.plant, in virtual time through the real codec): an injection into
an occluded line is stopped at 4 MPa, and its relief cannot bring the line below `relief_pa`:
- at its travel bound: ALARM RELIEF_AT_LIMIT (tests/integration/test_rig_motion.py);
- on its time limit (a slow back-off) or because the plunger cannot move back (the motor stalls):
  ALARM RELIEF_INCOMPLETE carrying the pressure left in the line, right after RELIEF_DONE.
A relief that empties the line is followed by neither.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from firmware_sim.controller import ControllerConfig
from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from protocol import Ack, AlarmCode, EventKind, PlanFlags, State, StopReason
from protocol.messages import Event

_NO_LIMITER = {"rise_enabled": False, "throttle_enabled": False}


def _stopped_injection(events: list[dict[str, Any]], **config: Any) -> tuple[VirtualRig, ControllerConfig]:
    cfg = replace(ControllerConfig(), **config)
    rig = VirtualRig(PlantConfig.model_validate({"events": events, "plunger_start_mm": 20.0}), cfg)
    rig.connect()
    assert isinstance(rig.arm(plan_flags=PlanFlags.RELIEF, volume_limit_nl=1_000_000), Ack)
    assert isinstance(rig.start(), Ack)
    assert rig.run(20.0, until=rig.state_is(State.STOPPED))
    return rig, cfg


def _after_relief(rig: VirtualRig) -> list[Event]:
    """The events from RELIEF_DONE on, once the plunger has rested a while after it."""
    assert rig.run(8.0, until=lambda r: any(e.kind == EventKind.RELIEF_DONE for e in r.events))
    rig.run(0.5)
    kinds = [e.kind for e in rig.events]
    return rig.events[kinds.index(EventKind.RELIEF_DONE) :]


def _notices(events: list[Event]) -> list[tuple[int, int]]:
    alarms = (EventKind.ALARM, EventKind.ALARM_CLEARED)
    return [(int(e.kind), int(e.alarm)) for e in events if e.kind in alarms]


def _assert_incomplete_notice(rig: VirtualRig, cfg: ControllerConfig) -> None:
    after = _after_relief(rig)
    assert rig.plant.syringe_pressure_pa > cfg.default_relief_pa, "the line must stay pressurised here"
    assert after[1].kind == EventKind.ALARM, [(e.kind, e.alarm) for e in after]
    assert after[1].alarm == AlarmCode.RELIEF_INCOMPLETE
    assert after[1].detail == pytest.approx(rig.plant.syringe_pressure_pa, rel=0.05, abs=20_000)
    assert after[1].t_us == after[0].t_us, "right after RELIEF_DONE, in the same tick"
    assert _notices(after) == [(EventKind.ALARM, AlarmCode.RELIEF_INCOMPLETE)], "one-shot, never cleared"


def test_a_relief_that_runs_out_of_time_with_pressure_left_says_so() -> None:
    """A back-off too slow to relieve 4 MPa within the relief's 3 s time bound."""
    rig, cfg = _stopped_injection([{"kind": "occlusion", "at_s": 0.5}], relief_speed_m_s=1e-4, **_NO_LIMITER)
    (stop,) = rig.stop_events()
    assert stop.reason == StopReason.OVERPRESSURE
    _assert_incomplete_notice(rig, cfg)
    done = next(e for e in rig.events if e.kind == EventKind.RELIEF_DONE)
    assert done.t_us - stop.t_us >= cfg.relief_timeout_ms * 1000, "it ended on its time bound"
    assert done.detail < cfg.relief_max_m * 1e6, "not on its travel bound"


def test_a_relief_that_cannot_move_the_plunger_back_says_so() -> None:
    """The drive jams while the line is pressurised: MOTOR_STALL stops the injection and the relief
    ends at once on the stall, the plunger where it was, the line still under pressure."""
    events = [{"kind": "occlusion", "at_s": 0.5}, {"kind": "motor_stall", "at_s": 1.0}]
    rig, cfg = _stopped_injection(events, **_NO_LIMITER)
    (stop,) = rig.stop_events()
    assert stop.reason == StopReason.MOTOR_STALL
    _assert_incomplete_notice(rig, cfg)


def test_a_relief_that_empties_the_line_sends_no_notice() -> None:
    """An occluded line relieved within its bounds (the default relief): RELIEF_DONE alone."""
    rig, cfg = _stopped_injection([{"kind": "occlusion", "at_s": 0.5}], **_NO_LIMITER)
    after = _after_relief(rig)
    assert rig.plant.syringe_pressure_pa < cfg.default_relief_pa
    assert _notices(after) == []

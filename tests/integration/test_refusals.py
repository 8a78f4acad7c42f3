"""The START / RESUME refusals SPEC §7.7 no longer lists could never happen: on the real plant,
through the codec, the same situations are answered STOP_LATCHED, because the condition latches a
stop first (issue 11, SPEC contradictions)."""

from __future__ import annotations

from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from protocol import Ack, Nak, NakCode, Pause, Resume, Start, State, StopReason


def _rig(*events: dict[str, object]) -> VirtualRig:
    rig = VirtualRig(PlantConfig.model_validate({"events": list(events)}))
    rig.connect()
    return rig


def test_a_faulty_sensor_in_armed_latches_so_start_is_answered_stop_latched() -> None:
    rig = _rig({"kind": "sensor_open", "at_s": 0.2})
    assert isinstance(rig.arm(), Ack)
    assert rig.run(1.0, until=rig.state_is(State.STOPPED))
    assert rig.controller.stop_reason == StopReason.SENSOR_FAULT
    answer = rig.command(Start)
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.STOP_LATCHED


def test_the_fluoroscopy_line_in_paused_latches_so_resume_is_answered_stop_latched() -> None:
    rig = _rig()
    assert isinstance(rig.arm(), Ack)
    assert isinstance(rig.start(), Ack)
    rig.run(0.5)
    assert isinstance(rig.command(Pause), Ack)
    rig.run(0.2)
    rig.plant.fluoro_stop_line = True
    assert rig.run(0.1, until=rig.state_is(State.STOPPED))
    assert rig.controller.stop_reason == StopReason.FLUORO_STOP
    answer = rig.command(Resume)
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.STOP_LATCHED


def test_arm_while_the_line_is_held_then_start_is_refused_bad_state() -> None:
    rig = _rig()
    rig.plant.fluoro_stop_line = True
    rig.run(0.1)
    assert isinstance(rig.arm(), Ack)
    answer = rig.command(Start)
    assert isinstance(answer, Nak)
    assert (answer.code, answer.state) == (NakCode.BAD_STATE, State.ARMED)

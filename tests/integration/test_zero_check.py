"""The zero check at ARM and ZERO against the real plant's slow transducer drift (plant event
`sensor_drift`), over the wire in virtual time: the drift that no detector sees during an injection
(docs/detector-thresholds.md) is caught before the first ARM of the line, the operator's ZERO removes
it, and a drift beyond the transducer's specification is refused as a sensor fault, not tared away."""

from __future__ import annotations

from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from protocol import Ack, CalibrationInfo, Nak, NakCode, State, Zero

UTC = 1_780_000_000


def _drifted(rate_kpa_s: float, seconds: float) -> VirtualRig:
    """A rig whose transducer zero drifted by rate x seconds before the session, line open, at rest."""
    events = [{"kind": "sensor_drift", "rate_kpa_s": rate_kpa_s, "at_s": 0.0, "duration_s": seconds}]
    rig = VirtualRig(PlantConfig.model_validate({"events": events}))
    rig.run(seconds + 0.5)
    rig.connect()
    return rig


def test_a_drifted_zero_is_refused_at_arm_and_zero_removes_it() -> None:
    rig = _drifted(20.0, 4.0)  # 80 kPa of offset: 1.6x the check's bound, inside ZERO's
    answer = rig.arm()
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.ZERO_DRIFT
    assert 70_000 < answer.detail < 90_000, "the NAK carries the reading"
    assert rig.controller.state == State.IDLE
    zero = rig.command(lambda i: Zero(i, UTC))
    assert isinstance(zero, Ack), zero
    (info,) = [m for m in rig.replies if isinstance(m, CalibrationInfo) and m.cmd_id == zero.cmd_id]
    assert 70_000 < info.zero_offset_pa < 90_000
    rig.run(0.2)
    assert abs(rig.controller.pressure_pa) < 10_000, "the open line reads zero again"
    assert isinstance(rig.arm(), Ack)
    assert isinstance(rig.start(), Ack)
    rig.run(60.0, until=rig.state_is(State.DONE, State.STOPPED))
    assert rig.controller.state == State.DONE


def test_a_drift_beyond_the_transducer_spec_is_a_sensor_fault_not_a_tare() -> None:
    rig = _drifted(40.0, 4.0)  # 160 kPa: beyond ZERO's 100 kPa bound
    zero = rig.command(lambda i: Zero(i, UTC))
    assert isinstance(zero, Nak)
    assert zero.code == NakCode.SENSOR_FAULT
    assert 150_000 < zero.detail < 170_000
    assert rig.controller.setup.calibration.zero_utc_s == 0, "nothing stored"
    answer = rig.arm()
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.ZERO_DRIFT

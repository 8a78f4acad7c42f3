"""The plant as the controller meets it: after-flow, occlusion, disconnection, leaks, motor limits."""

from __future__ import annotations

import math

import pytest

from firmware_sim.hal import MotorCommand
from firmware_sim.plant import Disconnection, LeakOpen, MotorStall, Occlusion, Plant, PlantConfig
from tests.plant._util import DT, ML_MIN, command_for, run

STOP = MotorCommand(0.0)


def _injecting(
    seconds: float = 10.0, flow_ml_min: float = 3.0, **config: object
) -> tuple[Plant, MotorCommand]:
    plant = Plant(PlantConfig.model_validate({"mixed_ago_s": 400.0, **config}))
    cmd = command_for(plant, flow_ml_min * ML_MIN)
    run(plant, cmd, seconds)
    return plant, cmd


def test_syringe_pressure_is_mpa_level_and_the_body_a_few_kpa() -> None:
    plant, _ = _injecting()
    assert 0.5e6 < plant.syringe_pressure_pa < 3.2e6
    assert 2e3 < plant.intravertebral_pressure_pa < 10e3
    assert plant.cannula_dp_pa / plant.syringe_pressure_pa > 0.9
    assert plant.tip_flow_m3_s == pytest.approx(3.0 * ML_MIN, rel=0.02)


def test_a_plain_stop_at_2_mpa_gives_about_0_1_ml_of_after_flow() -> None:
    plant = Plant(PlantConfig(mixed_ago_s=500.0))
    cmd = command_for(plant, 6.0 * ML_MIN)
    while plant.syringe_pressure_pa < 2e6:
        plant.step(cmd, DT)
        assert plant.t_s < 20.0
    stored = plant.stored_volume_m3
    at_stop = plant.delivered_volume_m3
    run(plant, STOP, 30.0)
    after_flow = plant.delivered_volume_m3 - at_stop
    assert 0.06e-6 < after_flow < 0.13e-6
    assert after_flow > 0.8 * stored
    assert plant.syringe_pressure_pa < 0.1e6
    assert plant.plunger_velocity_m_s == 0.0


def test_an_occlusion_raises_the_pressure_at_the_compliance_limited_rate() -> None:
    plant, cmd = _injecting()
    before = plant.syringe_pressure_pa
    plant.schedule(Occlusion(factor=1e6))
    run(plant, cmd, 0.5)
    rate = (plant.syringe_pressure_pa - before) / 0.5
    q_in = plant.bore_area_m2 * plant.plunger_velocity_m_s
    assert rate == pytest.approx(q_in / plant.compliance.linear_m3_pa, rel=0.05)
    assert plant.tip_flow_m3_s < 0.01 * q_in


def test_an_occlusion_with_a_duration_is_released() -> None:
    plant, cmd = _injecting()
    plant.schedule(Occlusion(factor=1e4, duration_s=0.5))
    run(plant, cmd, 0.5)
    peak = plant.syringe_pressure_pa
    assert plant.occlusion_factor == 1.0
    run(plant, cmd, 2.0)
    assert plant.syringe_pressure_pa < peak


def test_a_disconnection_collapses_the_pressure() -> None:
    plant, cmd = _injecting()
    before = plant.syringe_pressure_pa
    delivered = plant.delivered_volume_m3
    plant.schedule(Disconnection())
    run(plant, cmd, 0.3)
    assert plant.syringe_pressure_pa < 0.15 * before
    assert plant.vented_volume_m3 > 0.0
    assert plant.delivered_volume_m3 == delivered
    assert plant.intravertebral_pressure_pa == plant.vertebra.resting_pressure_pa
    assert plant.disconnected


def test_a_venous_leak_moves_the_syringe_pressure_by_a_few_kpa_only() -> None:
    leaking, cmd = _injecting()
    twin, _ = _injecting()
    leaking.schedule(LeakOpen(path="venous", diameter_mm=3.0))
    run(leaking, cmd, 2.0)
    run(twin, cmd, 2.0)
    drop = twin.syringe_pressure_pa - leaking.syringe_pressure_pa
    assert 0.0 < drop < 10e3
    assert leaking.leaked_volume_m3 > 0.005e-6
    assert leaking.intravertebral_pressure_pa < twin.intravertebral_pressure_pa
    assert twin.leaked_volume_m3 == 0.0


def test_a_large_cortical_defect_takes_most_of_the_flow() -> None:
    plant, cmd = _injecting()
    plant.schedule(LeakOpen(path="cortical", diameter_mm=4.0))
    run(plant, cmd, 1.0)
    assert plant.leak_flow_m3_s > 0.5 * plant.tip_flow_m3_s
    assert plant.leaked_volume_m3 + plant.bone_volume_m3 == pytest.approx(plant.delivered_volume_m3)


def test_end_of_travel_stops_the_plunger_and_closes_the_switch() -> None:
    hw = Plant().hardware
    plant = Plant(PlantConfig(plunger_start_mm=hw.travel_m * 1e3 - 0.5, mixed_ago_s=60.0))
    assert not plant.sense().end_of_travel
    run(plant, MotorCommand(hw.max_step_rate_hz), 1.0)
    frame = plant.sense()
    assert plant.plunger_position_m == hw.travel_m
    assert frame.end_of_travel
    assert plant.end_of_travel
    assert frame.encoder_counts == round(hw.travel_m / hw.encoder_m_per_count)
    run(plant, MotorCommand(-hw.max_step_rate_hz), 0.2)
    assert plant.plunger_position_m < hw.travel_m
    assert not plant.sense().end_of_travel


def test_the_plunger_cannot_go_behind_home() -> None:
    plant = Plant()
    run(plant, MotorCommand(-16_000.0), 0.5)
    assert plant.plunger_position_m == 0.0
    assert plant.sense().encoder_counts == 0


def test_overload_stalls_the_motor_steps_commanded_encoder_still() -> None:
    plant = Plant(PlantConfig(mixed_ago_s=400.0, syringe_bore_mm=20.0))
    cmd = command_for(plant, 6.0 * ML_MIN)
    plant.schedule(Occlusion(factor=1e6))
    while not plant.motor_stalled:
        plant.step(cmd, DT)
        assert plant.t_s < 10.0
    force = plant.syringe_pressure_pa * plant.bore_area_m2
    assert force == pytest.approx(plant.hardware.max_force_n, rel=0.02)
    counts = plant.sense().encoder_counts
    run(plant, cmd, 0.5)
    assert plant.motor.rate_hz == pytest.approx(cmd.step_rate_hz)
    assert plant.sense().encoder_counts == counts
    run(plant, MotorCommand(-2000.0), 0.2)
    assert not plant.motor_stalled
    assert plant.sense().encoder_counts < counts


def test_an_injected_stall_freezes_the_encoder_for_its_duration() -> None:
    plant, cmd = _injecting(2.0)
    plant.schedule(MotorStall(duration_s=0.5))
    counts = plant.sense().encoder_counts
    run(plant, cmd, 0.4)
    assert plant.motor_stalled
    assert plant.sense().encoder_counts == counts
    run(plant, cmd, 0.2)
    assert not plant.motor_stalled
    assert plant.sense().encoder_counts > counts


def test_the_step_rate_is_ramped_and_clamped() -> None:
    plant = Plant(PlantConfig(mixed_ago_s=60.0, syringe_bore_mm=4.65))
    hw = plant.hardware
    plant.step(MotorCommand(1e9), DT)
    assert plant.motor.rate_hz == pytest.approx(hw.max_step_accel_hz_s * DT)
    run(plant, MotorCommand(1e9), 0.2)
    assert plant.motor.rate_hz == hw.max_step_rate_hz
    assert plant.plunger_velocity_m_s == pytest.approx(hw.max_step_rate_hz * hw.plunger_m_per_step)


@pytest.mark.parametrize("cmd", [MotorCommand(5000.0, enabled=False), MotorCommand(math.nan)])
def test_a_disabled_or_nonsense_command_does_not_move_the_plunger(cmd: MotorCommand) -> None:
    plant = Plant()
    run(plant, cmd, 0.5)
    assert plant.plunger_position_m == 0.0


def test_backing_off_relieves_the_pressure_down_to_cavitation_not_below() -> None:
    plant, _ = _injecting()
    position = plant.plunger_position_m
    run(plant, MotorCommand(-16_000.0), 1.0)
    assert plant.plunger_position_m < position
    assert plant.syringe_pressure_pa == plant.compliance.cavitation_pa
    assert plant.tip_flow_m3_s < 0.0, "the vacuum draws cement back"


def test_volume_is_conserved() -> None:
    plant, cmd = _injecting(5.0)
    plant.schedule(LeakOpen(path="cortical", diameter_mm=3.0))
    run(plant, cmd, 2.0)
    run(plant, MotorCommand(-8000.0), 0.3)
    plant.schedule(Disconnection())
    run(plant, cmd, 1.0)
    run(plant, STOP, 1.0)
    accounted = plant.stored_volume_m3 + plant.delivered_volume_m3 + plant.vented_volume_m3
    assert accounted == pytest.approx(plant.displaced_volume_m3, rel=1e-9, abs=1e-15)


def test_shear_thinning_shows_in_the_viscosity_an_estimator_would_see() -> None:
    slow, _ = _injecting(10.0, flow_ml_min=1.5)
    fast, _ = _injecting(10.0, flow_ml_min=6.0)
    assert fast.viscosity.newtonian_viscosity_pa_s < 0.8 * slow.viscosity.newtonian_viscosity_pa_s
    assert fast.viscosity.apparent_viscosity_pa_s < slow.viscosity.apparent_viscosity_pa_s


def test_consistency_rises_during_a_run_and_faster_when_warm() -> None:
    cold = Plant(PlantConfig(temperature_c=18.0, mixed_ago_s=240.0))
    warm = Plant(PlantConfig(temperature_c=30.0, mixed_ago_s=240.0))
    k0 = cold.viscosity.consistency_k_pa_sn
    for plant in (cold, warm):
        run(plant, STOP, 60.0, dt=1e-2)
    assert cold.viscosity.consistency_k_pa_sn > k0
    assert warm.viscosity.consistency_k_pa_sn > cold.viscosity.consistency_k_pa_sn
    assert cold.viscosity.seconds_since_mixing == pytest.approx(300.0)


def test_13g_needs_the_power_law_pressure_ratio_over_11g() -> None:
    g11, _ = _injecting(cannula_gauge=11)
    g13, _ = _injecting(cannula_gauge="13G")
    n = g11.profile.flow_index_n
    expected = (g11.cannula.inner_radius_m / g13.cannula.inner_radius_m) ** (3 * n + 1)
    assert g13.cannula_dp_pa / g11.cannula_dp_pa == pytest.approx(expected, rel=0.02)


def test_step_refuses_a_non_positive_time_step() -> None:
    with pytest.raises(ValueError, match="dt_s"):
        Plant().step(STOP, 0.0)


def test_disabling_the_driver_stops_the_plunger_at_once() -> None:
    plant = Plant(PlantConfig(mixed_ago_s=60.0))
    run(plant, MotorCommand(8000.0), 0.2)
    assert plant.plunger_velocity_m_s > 0.0
    position = plant.plunger_position_m
    plant.step(MotorCommand(8000.0, enabled=False), DT)
    assert plant.plunger_position_m == position
    assert plant.motor.rate_hz == 0.0

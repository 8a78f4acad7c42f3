"""Same seed, same run; and no NaN or inf whatever the motor is told and whatever goes wrong."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.hal import MotorCommand, SensorFrame
from firmware_sim.plant import (
    Disconnection,
    LeakOpen,
    MotorStall,
    Occlusion,
    Plant,
    PlantConfig,
    PlantEvent,
    SensorNoiseBurst,
    SensorOpen,
    SensorStuck,
)
from firmware_sim.plant.hydraulics import vent_coefficient
from tests.plant._util import ML_MIN, command_for


def _script(seed: int) -> tuple[list[SensorFrame], list[float]]:
    plant = Plant(
        PlantConfig(
            seed=seed,
            events=(Occlusion(factor=50.0, at_s=1.0, duration_s=0.5), SensorNoiseBurst(at_s=0.5, factor=3.0)),
        )
    )
    cmd = command_for(plant, 4.0 * ML_MIN)
    frames, truth = [], []
    for i in range(3000):
        frames.append(plant.sense())
        plant.step(cmd if i < 2000 else MotorCommand(-3000.0), 1e-3)
        truth.append(plant.syringe_pressure_pa)
    return frames, truth


def test_the_same_seed_gives_the_same_run() -> None:
    assert _script(42) == _script(42)


def test_another_seed_gives_other_noise_but_the_same_physics() -> None:
    frames_a, truth_a = _script(1)
    frames_b, truth_b = _script(2)
    assert truth_a == truth_b
    assert [f.pressure_adc for f in frames_a] != [f.pressure_adc for f in frames_b]


at = st.floats(0.0, 1.5)
events = st.one_of(
    st.builds(Occlusion, factor=st.floats(1.0, 1e9), at_s=at, duration_s=st.none() | st.floats(0.01, 1.0)),
    st.builds(Disconnection, at_s=at),
    st.builds(
        LeakOpen, path=st.sampled_from(["venous", "cortical"]), diameter_mm=st.floats(0.1, 6.0), at_s=at
    ),
    st.builds(MotorStall, at_s=at, duration_s=st.none() | st.floats(0.01, 1.0)),
    st.builds(SensorOpen, at_s=at, duration_s=st.floats(0.01, 1.0)),
    st.builds(SensorStuck, at_s=at, duration_s=st.floats(0.01, 1.0)),
    st.builds(SensorNoiseBurst, at_s=at, factor=st.floats(1.0, 1000.0), duration_s=st.floats(0.01, 1.0)),
)


@settings(max_examples=60, deadline=None)
@given(
    commands=st.lists(
        st.tuples(st.floats(-40_000.0, 40_000.0, allow_nan=False), st.integers(1, 400), st.booleans()),
        min_size=1,
        max_size=10,
    ),
    scheduled=st.lists(events, max_size=4),
    dt=st.sampled_from([1e-3, 2e-3, 1e-2, 5e-2]),
    cement=st.sampled_from(["low_viscosity", "high_viscosity", "fast_setting"]),
    bone=st.sampled_from(["intact", "tumour", "void"]),
    mixed_ago_s=st.floats(0.0, 1500.0),
    bore_mm=st.floats(3.0, 30.0),
    air_ml=st.sampled_from([0.0, 0.1]),
    compliance=st.sampled_from([0.001, 0.05, 5.0]),
)
def test_no_nan_or_inf_under_random_commands_and_events(
    commands: list[tuple[float, int, bool]],
    scheduled: list[PlantEvent],
    dt: float,
    cement: str,
    bone: str,
    mixed_ago_s: float,
    bore_mm: float,
    air_ml: float,
    compliance: float,
) -> None:
    plant = Plant(
        PlantConfig.model_validate(
            {
                "cement": cement,
                "bone": bone,
                "mixed_ago_s": mixed_ago_s,
                "syringe_bore_mm": bore_mm,
                "entrained_air_ml": air_ml,
                "compliance_ml_per_mpa": compliance,
                "events": scheduled,
            }
        )
    )
    adc_max = plant.hardware.adc_max
    for rate, ticks, enabled in commands:
        cmd = MotorCommand(rate, enabled)
        for _ in range(ticks):
            frame = plant.sense()
            assert 0 <= frame.pressure_adc <= adc_max
            plant.step(cmd, dt)
            assert math.isfinite(plant.syringe_pressure_pa)
            assert plant.syringe_pressure_pa >= plant.compliance.cavitation_pa
    for value in (
        plant.tip_flow_m3_s,
        plant.intravertebral_pressure_pa,
        plant.tip_pressure_pa,
        plant.cannula_dp_pa,
        plant.delivered_volume_m3,
        plant.leaked_volume_m3,
        plant.vented_volume_m3,
        plant.stored_volume_m3,
    ):
        assert math.isfinite(value)
    assert 0.0 <= plant.plunger_position_m <= plant.hardware.travel_m
    accounted = plant.stored_volume_m3 + plant.delivered_volume_m3 + plant.vented_volume_m3
    assert math.isclose(accounted, plant.displaced_volume_m3, rel_tol=1e-7, abs_tol=1e-13)


def test_extremes_stay_finite_at_a_coarse_step() -> None:
    for event in (Occlusion(factor=1e9), Disconnection()):
        plant = Plant(PlantConfig(cement="fast_setting", mixed_ago_s=500.0, events=(event,)))
        for _ in range(200):
            plant.step(MotorCommand(1e12), 0.05)
            plant.sense()
        assert math.isfinite(plant.syringe_pressure_pa)
        assert plant.syringe_pressure_pa * plant.bore_area_m2 < 1.1 * plant.hardware.max_force_n


def test_a_stiff_vent_settles_on_its_equilibrium_without_ringing() -> None:
    """A stiff node (tiny compliance, open Luer, coarse step): the exact-decay update must not ring."""
    plant = Plant(
        PlantConfig(compliance_ml_per_mpa=0.001, mixed_ago_s=0.0, cannula_gauge=10, events=(Disconnection(),))
    )
    cmd = command_for(plant, 20.0 * ML_MIN)
    pressures = []
    for _ in range(300):
        plant.step(cmd, 1e-2)
        pressures.append(plant.syringe_pressure_pa)
    q_in = plant.bore_area_m2 * plant.plunger_velocity_m_s
    k = plant.viscosity.consistency_k_pa_sn
    n = plant.profile.flow_index_n
    equilibrium = k * vent_coefficient(n) * q_in**n
    assert min(pressures) >= 0.0
    assert pressures[-1] == pytest.approx(equilibrium, rel=0.01)
    tail = pressures[50:]
    assert max(tail) - min(tail) < 0.05 * equilibrium, "no oscillation once settled"

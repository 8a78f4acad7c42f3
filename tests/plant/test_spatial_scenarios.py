"""The ground truth the spatial HIL scenarios claim in their descriptions, checked on the plant.

The HIL runner judges what the device does; what the cement does in the body (front depth, leak
volumes, heat) is simulator truth the controller never sees. These tests run each scenario's plant
at its plan's flow and check the claims the scenario's description makes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim.hal import MotorCommand
from firmware_sim.plant import Plant, PlantConfig
from firmware_sim.plant.spatial import POSTERIOR_QUARTER
from hil.outcome import judge_truth
from hil.scenario import load_scenario

from ._util import ML_MIN

SCENARIOS = Path(__file__).resolve().parents[2] / "hil" / "scenarios"
DT = 0.01


def config_of(name: str, **changes: object) -> tuple[PlantConfig, float]:
    """The scenario's plant (no events, no noise) and its plan's volume in mL."""
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    plant = scenario.plant.model_copy(update={"sensor_noise_kpa": 0.0, **changes})
    return PlantConfig.model_validate(plant.model_dump()), scenario.plan.volume_limit_ml


def with_spatial(config: PlantConfig, **spatial: object) -> PlantConfig:
    return config.model_copy(update={"spatial": config.spatial.model_copy(update=spatial)})


def inject(
    config: PlantConfig, volume_ml: float, wait_s: float = 0.0
) -> tuple[Plant, list[tuple[float, float]]]:
    """3 mL/min to `volume_ml`, recording (delivered mL, front depth) every second; then rest."""
    plant = Plant(config)
    cmd = MotorCommand(3.0 * ML_MIN / (plant.bore_area_m2 * plant.hardware.plunger_m_per_step))
    track: list[tuple[float, float]] = []
    spatial = plant.spatial
    assert spatial is not None
    steps = round(volume_ml / 3.0 * 60.0 / DT)
    for k in range(steps):
        plant.step(cmd, DT)
        if k % 100 == 0:
            track.append((plant.delivered_volume_m3 * 1e6, spatial.front_ap_fraction()))
    for _ in range(round(wait_s / 0.5)):
        plant.step(MotorCommand(0.0), 0.5)
    return plant, track


def test_posterior_quarter_is_reached_before_the_volume_limit() -> None:
    config, volume = config_of("spatial-posterior-quarter")
    plant, track = inject(config, volume)
    first = next(ml for ml, depth in track if depth >= POSTERIOR_QUARTER)
    assert 0.7 <= first <= 1.3
    assert plant.spatial is not None
    assert plant.spatial.front_ap_fraction() >= POSTERIOR_QUARTER


def test_the_runny_venous_leak_is_real_and_invisible_in_the_pressure() -> None:
    config, volume = config_of("spatial-venous-leak-runny")
    leaky, _ = inject(config, volume)
    twin, _ = inject(with_spatial(config, vein_opening_pressure_kpa=50.0), volume)
    assert leaky.spatial is not None
    assert leaky.spatial.leak_volumes_m3["segmental_left"] > 0.01e-6
    assert twin.leaked_volume_m3 == 0.0
    assert abs(leaky.syringe_pressure_pa - twin.syringe_pressure_pa) < 1e3


def test_the_cortical_defect_leaks_about_a_tenth_of_a_ml_and_moves_the_pressure_by_kpa() -> None:
    config, volume = config_of("spatial-cortical-defect")
    leaky, _ = inject(config, volume)
    intact, _ = inject(
        config.model_copy(update={"spatial": config.spatial.model_copy(update={"cortical_defect": None})}),
        volume,
    )
    assert leaky.spatial is not None
    assert 0.05e-6 < leaky.spatial.leak_volumes_m3["cortical_anterior"] < 0.2e-6
    assert abs(leaky.syringe_pressure_pa - intact.syringe_pressure_pa) < 5e3


def test_the_prechilled_cement_is_runnier_than_at_room_temperature_but_not_below_the_plan_minimum() -> None:
    config, volume = config_of("spatial-prechilled-cement")
    chilled = Plant(config)
    room = Plant(config.model_copy(update={"storage_temperature_c": None}))
    assert chilled.cement_temperature_c == pytest.approx(10.0, abs=0.5)
    assert chilled.viscosity.consistency_k_pa_sn < room.viscosity.consistency_k_pa_sn
    assert chilled.viscosity.apparent_viscosity_pa_s > 50.0
    a, _ = inject(config, volume)
    b, _ = inject(config.model_copy(update={"storage_temperature_c": None}), volume)
    assert a.syringe_pressure_pa < b.syringe_pressure_pa


def test_the_bench_phantom_cures_slower_and_its_exotherm_peaks_lower() -> None:
    config, volume = config_of("spatial-bench-phantom")
    bath, _ = inject(config, volume, wait_s=900.0)
    body, _ = inject(with_spatial(config, body_temperature_c=37.0), volume, wait_s=900.0)
    assert bath.spatial is not None
    assert body.spatial is not None
    assert bath.spatial.peak_temperature_c.max() < body.spatial.peak_temperature_c.max()
    cement = bath.spatial.cement_fraction > 0.5
    assert bath.spatial.heat.theta_s[cement].mean() < body.spatial.heat.theta_s[cement].mean()


@pytest.mark.parametrize(
    "name",
    [
        "spatial-posterior-quarter",
        "spatial-venous-leak-runny",
        "spatial-cortical-defect",
        "spatial-prechilled-cement",
        "spatial-bench-phantom",
    ],
)
def test_each_spatial_scenario_states_ground_truth_its_plant_meets(name: str) -> None:
    """`[expect.truth]` of each spatial scenario, judged on its plant driven at the plan's flow (the
    HIL run judges the same table from the simulator's trace)."""
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    assert scenario.expect.truth is not None
    config, volume = config_of(name)
    plant, _ = inject(config, volume, wait_s=3.0)
    assert plant.spatial is not None
    assert judge_truth(scenario, plant.spatial.truth()) == []

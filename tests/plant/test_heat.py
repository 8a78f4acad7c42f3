"""Heat: the cure clock against temperature, cement warming from storage, the exotherm in the body."""

from __future__ import annotations

import numpy as np
import pytest

from firmware_sim.hal import MotorCommand
from firmware_sim.plant import Plant, PlantConfig
from firmware_sim.plant.body import build_body
from firmware_sim.plant.cement import LOW_VISCOSITY
from firmware_sim.plant.heat import HeatField, rate_factors
from firmware_sim.plant.spatial_config import SpatialConfig


def test_a_10_degC_rise_speeds_the_cure_1_5_to_2_times() -> None:
    t = np.arange(15.0, 28.0, 1.0)
    ratio = rate_factors(t + 10.0) / rate_factors(t)
    assert np.all((ratio >= 1.5) & (ratio <= 2.0))


def reduced_time_after(config: PlantConfig, seconds: float) -> float:
    plant = Plant(config)
    for _ in range(round(seconds / 0.05)):
        plant.step(MotorCommand(0.0), 0.05)
    return plant.viscosity.reduced_time_s


def test_a_stored_cement_relaxes_to_the_room_and_its_cure_clock_follows() -> None:
    room = PlantConfig(temperature_c=23.0, mixed_ago_s=0.0, sensor_noise_kpa=0.0)
    chilled = room.model_copy(update={"storage_temperature_c": 4.0})
    plant = Plant(chilled)
    assert plant.cement_temperature_c == pytest.approx(4.0)
    run_s = 600.0
    # after one time constant the cement is 63 % of the way to the room
    for _ in range(round(run_s / 0.05)):
        plant.step(MotorCommand(0.0), 0.05)
    assert plant.cement_temperature_c == pytest.approx(23.0 - 19.0 * np.exp(-1.0), abs=0.05)
    # the chilled clock lags, but by less than a cement held at 4 degC throughout
    held = room.model_copy(update={"temperature_c": 4.0})
    assert reduced_time_after(held, run_s) < plant.viscosity.reduced_time_s < reduced_time_after(room, run_s)


def test_no_storage_temperature_keeps_the_constant_temperature_clock_exactly() -> None:
    config = PlantConfig(temperature_c=30.0, mixed_ago_s=100.0)
    from firmware_sim.plant.cement import rate_factor

    assert Plant(config).viscosity.reduced_time_s == 100.0 * rate_factor(30.0)


def ball_of_cement(body_temperature_c: float, volume_ml: float = 3.0) -> HeatField:
    body = build_body(SpatialConfig(), 667.0)
    heat = HeatField(body, body_temperature_c, LOW_VISCOSITY.cure_time_25c_s)
    x, y, z = body.centres()
    xx, yy, zz = np.meshgrid(x, y, z, indexing="ij")
    r = (3.0 * volume_ml * 1e-6 / (4.0 * np.pi * body.config.porosity)) ** (1.0 / 3.0)
    inside = (
        xx**2 + (yy - 0.45 * body.config.depth_mm * 1e-3) ** 2 + (zz - body.config.height_mm * 5e-4) ** 2
    ) <= r * r
    s = (inside & body.inside).astype(float)
    heat.receive(np.zeros(body.shape), s, LOW_VISCOSITY.cure_time_25c_s - 400.0, 22.0)
    for _ in range(900):
        heat.advance(1.0, s)
    return heat


def test_the_exotherm_peaks_where_belkoff_and_molloy_measured_and_lower_in_a_cool_bath() -> None:
    body = ball_of_cement(37.0)
    bath = ball_of_cement(22.0)
    assert 49.0 <= body.peak_c.max() <= 112.0
    assert bath.peak_c.max() < body.peak_c.max()
    # after 15 min the heat has gone into the surroundings
    assert body.temperature_c.max() < 45.0


def test_cement_near_the_posterior_wall_heats_the_canal_behind_it() -> None:
    """The canal is tissue with its own heat capacity, not a 37 degC sink at the wall: cement that
    reaches the posterior wall heats the canal's face well above the body temperature, cement far
    from it barely."""

    def canal_peak(ball_centre_fraction: float) -> float:
        body = build_body(SpatialConfig(), 667.0)
        heat = HeatField(body, 37.0, LOW_VISCOSITY.cure_time_25c_s)
        x, y, z = body.centres()
        xx, yy, zz = np.meshgrid(x, y, z, indexing="ij")
        depth = body.shape[1] * body.h_m
        d2 = xx**2 + (yy - ball_centre_fraction * depth) ** 2 + (zz - body.config.height_mm * 5e-4) ** 2
        s = ((d2 <= 0.008**2) & body.inside).astype(float)
        heat.receive(np.zeros(body.shape), s, LOW_VISCOSITY.cure_time_25c_s - 200.0, 22.0)
        for _ in range(600):
            heat.advance(1.0, s)
        return heat.canal_peak_c

    near, far = canal_peak(0.75), canal_peak(0.3)
    assert near > 45.0
    assert 37.0 <= far < 39.0

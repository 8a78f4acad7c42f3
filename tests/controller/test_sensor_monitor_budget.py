"""The stuck check on the real plant's transducer model (firmware_sim/plant/sensor.py): no false stuck
fault at any noise level once the sigma estimate has followed the sensor, a frozen reading caught
within the budget's run at the specified noise and at twice it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from firmware_sim.controller import Controller, ControllerConfig
from firmware_sim.controller.detectors import (
    SENSOR_STUCK,
    SensorMonitor,
    glr_threshold,
    noise_suspect_sigma_pa,
    pa_per_count,
)
from firmware_sim.hal import REFERENCE_RIG
from firmware_sim.plant.sensor import PressureSensor

HW = REFERENCE_RIG
CFG = ControllerConfig()
BLOCK = CFG.block_samples


def monitor() -> SensorMonitor:
    """The controller's monitor at the defaults (core.Controller builds it the same way)."""
    nominal = CFG.sensor_noise_spec_pa * 2.0 / math.sqrt(math.pi)
    return SensorMonitor(
        HW,
        CFG.sensor_range_samples,
        CFG.sensor_stuck_samples,
        nominal * CFG.sensor_noise_fault_factor,
        noise_suspect_sigma_pa(CFG) * 2.0 / math.sqrt(math.pi),
        CFG.sensor_noise_alpha,
        CFG.sensor_noise_samples,
        CFG.sensor_clear_samples,
        CFG.sensor_noise_spec_pa / pa_per_count(HW),
        CFG.sensor_sigma_shift,
        CFG.sensor_false_alarms_per_h,
        CFG.sample_rate_hz,
    )


def feed(mon: SensorMonitor, sensor: PressureSensor, pressures: np.ndarray, moving: bool, k0: int) -> int:
    """Sample `pressures` (Pa, one per ms) through the sensor into the monitor, judging the stuck
    run once per block as the controller does; returns the sample index after the last."""
    for i, p in enumerate(pressures.tolist(), start=k0):
        mon.sample(sensor.read(p, i / 1000.0), moving)
        if i % BLOCK == 0:
            mon.judge_stuck()
        assert not mon.faulty, f"false fault (cause {mon.cause}) at sample {i}, {p:.0f} Pa"
    return k0 + len(pressures)


@pytest.mark.parametrize("noise_pa", [20_000.0, 10_000.0, 5_000.0, 500.0, 200.0, 100.0, 50.0])
def test_no_false_stuck_fault_at_any_noise_once_sigma_has_followed(noise_pa: float) -> None:
    """10 s at rest (the estimate forgets its prior, the specified noise), then 40 s of plunger
    motion at a held pressure, on a slow ramp and at the cement's cavitation pressure after a relief
    back-off's fall (100 ms). The fixed 200-reading run this replaced false-alarmed at 50 Pa of
    noise, a fifth of a count (a sudden step of a MPa in one sample lifts the estimate for ~1 s:
    docs/controller.md)."""
    mon = monitor()
    sensor = PressureSensor(HW, noise_pa, np.random.default_rng(int(noise_pa)))
    k = feed(mon, sensor, np.full(10_000, 1.0e6), False, 0)
    k = feed(mon, sensor, np.full(20_000, 1.0e6), True, k)
    k = feed(mon, sensor, np.linspace(1.0e6, 1.02e6, 10_000), True, k)
    k = feed(mon, sensor, np.linspace(1.02e6, -90_000.0, 100), True, k)  # the back-off's fall
    feed(mon, sensor, np.full(10_000, -90_000.0), True, k)


@pytest.mark.parametrize("noise_pa", [10_000.0, 20_000.0])
def test_frozen_reading_is_caught_within_the_budgets_run(noise_pa: float) -> None:
    """At 1x and 2x the specified noise the monitor judges the sensor as 21 counts (half the
    specified sigma at most): 7 identical readings, the first of them the last live one."""
    mon = monitor()
    sensor = PressureSensor(HW, noise_pa, np.random.default_rng(7))
    k = feed(mon, sensor, np.full(5000, 1.5e6), True, 0)
    assert mon.stuck_samples == 7
    sensor.stuck = True
    for n in range(1, 100):
        mon.sample(sensor.read(1.5e6, (k + n) / 1000.0), True)
        if mon.faulty:
            break
    assert mon.cause & SENSOR_STUCK
    assert n == 6


def test_noise_suspect_level_is_where_pressure_losss_floor_leaves_the_budget() -> None:
    """PRESSURE_LOSS's 100 kPa floor on a 50 ms difference of 10-sample block means (sd
    sigma sqrt(0.2)) holds one test per block (100 Hz) to the budget up to sigma = 38.4 kPa."""
    c_b = glr_threshold(1e-3, 100.0, 1)
    assert c_b == pytest.approx(5.83, abs=0.005)
    assert noise_suspect_sigma_pa(CFG) == pytest.approx(100_000.0 / (c_b * math.sqrt(0.2)))
    assert noise_suspect_sigma_pa(CFG) == pytest.approx(38_357.0, abs=1.0)
    assert noise_suspect_sigma_pa(ControllerConfig(loss_min_pa=200_000.0)) == pytest.approx(76_714.0, abs=2.0)


def test_noise_fault_below_the_suspect_level_is_refused() -> None:
    """A fault level at or below the budget's suspect level (3.84x) is refused, naming the field."""
    with pytest.raises(ValueError, match=r"sensor_noise_fault_factor 3\.8 .*\(38357 Pa sigma\)"):
        Controller(ControllerConfig(sensor_noise_fault_factor=3.8))
    Controller(ControllerConfig(sensor_noise_fault_factor=3.9))

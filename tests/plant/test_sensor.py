"""The 4-20 mA pressure transducer as the ADC reads it: scaling, quantisation, noise, faults."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.hal import REFERENCE_RIG as HW
from firmware_sim.hal import MotorCommand
from firmware_sim.plant import (
    Plant,
    PlantConfig,
    SensorDrift,
    SensorNoiseBurst,
    SensorOpen,
    SensorShort,
    SensorStuck,
)
from firmware_sim.plant.sensor import NAMUR_MEASURE_HIGH_MA, PressureSensor


def _sensor(sigma_pa: float = 0.0, seed: int = 1) -> PressureSensor:
    return PressureSensor(HW, sigma_pa, np.random.default_rng(seed))


def _pa(counts: int) -> float:
    return HW.pa_from_ma(HW.ma_from_adc(counts))


def _readings(sensor: PressureSensor, pressure: float, count: int, t0: float = 0.0) -> np.ndarray:
    return np.array([_pa(sensor.read(pressure, t0 + i * 1e-3)) for i in range(count)])


@given(st.floats(-100e3, 10.3e6))
def test_a_noise_free_reading_is_the_hal_scaling(pressure: float) -> None:
    assert _sensor().read(pressure, 0.0) == HW.adc_from_ma(HW.ma_from_pa(pressure))


def test_readings_are_quantised_to_one_adc_count() -> None:
    sensor = _sensor()
    step_pa = HW.pa_from_ma(HW.ma_from_adc(1)) - HW.pa_from_ma(0.0)
    sweep = np.arange(1e6, 1.01e6, 10.0)
    counts = {sensor.read(float(p), 0.0) for p in sweep}
    assert step_pa == pytest.approx(238.4, abs=0.1)
    assert abs(len(counts) - 10e3 / step_pa) <= 2


def test_noise_sigma_matches_the_parameter() -> None:
    sigma = 10e3
    values = _readings(_sensor(sigma, seed=7), 2e6, 20_000)
    assert values.std() == pytest.approx(sigma, rel=0.03)
    assert abs(values.mean() - 2e6) < 4 * sigma / np.sqrt(values.size)


def test_the_noise_is_the_seeded_generator_drawn_in_blocks() -> None:
    sigma = 5e3
    sensor = _sensor(sigma, seed=3)
    expected = np.random.default_rng(3).standard_normal(5000) * sigma
    got = np.array([sensor.read(5e6, 0.0) for _ in range(5000)])
    want = np.array([HW.adc_from_ma(HW.ma_from_pa(5e6 + e)) for e in expected])
    assert np.array_equal(got, want)


def test_an_open_loop_reads_below_the_fault_band_and_a_short_above() -> None:
    plant = Plant(PlantConfig(seed=2))
    plant.schedule(SensorOpen())
    assert all(HW.ma_from_adc(plant.sense().pressure_adc) < HW.loop_fault_low_ma for _ in range(1000))
    plant = Plant(PlantConfig(seed=2))
    plant.schedule(SensorShort())
    assert all(HW.ma_from_adc(plant.sense().pressure_adc) > HW.loop_fault_high_ma for _ in range(1000))


def test_over_range_saturates_inside_the_measurement_band_not_in_the_fault_band() -> None:
    ma = HW.ma_from_adc(_sensor(10e3).read(15e6, 0.0))
    assert ma == pytest.approx(NAMUR_MEASURE_HIGH_MA, abs=1e-3)
    assert ma < HW.loop_fault_high_ma


def test_a_stuck_sensor_freezes_while_the_pressure_moves() -> None:
    sensor = _sensor(10e3)
    sensor.read(1e6, 0.0)
    sensor.stuck = True
    frozen = {sensor.read(p, 0.0) for p in np.linspace(0.0, 5e6, 200)}
    assert len(frozen) == 1
    sensor.stuck = False
    assert len({sensor.read(p, 0.0) for p in np.linspace(0.0, 5e6, 200)}) > 100


def test_a_stuck_event_freezes_the_plant_reading_for_its_duration() -> None:
    plant = Plant(PlantConfig(seed=4))
    plant.schedule(SensorStuck(duration_s=0.2))
    readings = set()
    for _ in range(190):
        readings.add(plant.sense().pressure_adc)
        plant.step(MotorCommand(0.0), 1e-3)
    assert len(readings) == 1
    for _ in range(20):
        plant.step(MotorCommand(0.0), 1e-3)
    assert len({plant.sense().pressure_adc for _ in range(50)}) > 5


def test_a_noise_burst_multiplies_sigma_for_its_duration() -> None:
    plant = Plant(PlantConfig(seed=5, sensor_noise_kpa=5.0, mixed_ago_s=60.0))
    plant.schedule(SensorNoiseBurst(factor=8.0, duration_s=1.0))
    stop = MotorCommand(0.0)
    during = []
    for _ in range(900):
        during.append(_pa(plant.sense().pressure_adc))
        plant.step(stop, 1e-3)
    for _ in range(200):
        plant.step(stop, 1e-3)
    after = []
    for _ in range(900):
        after.append(_pa(plant.sense().pressure_adc))
        plant.step(stop, 1e-3)
    assert np.std(during) == pytest.approx(40e3, rel=0.1)
    assert np.std(after) == pytest.approx(5e3, rel=0.1)


def test_drift_adds_rate_times_time() -> None:
    sensor = _sensor(0.0)
    sensor.set_drift(2e3, 1.0)
    assert _pa(sensor.read(1e6, 11.0)) == pytest.approx(1e6 + 20e3, abs=300)
    sensor.set_drift(0.0, 11.0)
    assert _pa(sensor.read(1e6, 50.0)) == pytest.approx(1e6 + 20e3, abs=300)


def test_a_drift_event_moves_the_plant_reading() -> None:
    plant = Plant(PlantConfig(sensor_noise_kpa=0.0, mixed_ago_s=60.0))
    start = _pa(plant.sense().pressure_adc)
    plant.schedule(SensorDrift(rate_kpa_s=5.0))
    for _ in range(2000):
        plant.step(MotorCommand(0.0), 1e-3)
    assert _pa(plant.sense().pressure_adc) - start == pytest.approx(10e3, abs=500)


def test_negative_sigma_is_refused() -> None:
    with pytest.raises(ValueError, match="sigma"):
        _sensor(-1.0)

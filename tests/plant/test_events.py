"""Scheduled plant events: when they fire, what they do, how a bad scenario is reported."""

from __future__ import annotations

import tomllib

import pytest
from pydantic import ValidationError

from firmware_sim.hal import MotorCommand
from firmware_sim.plant import (
    FluoroStopLine,
    LeakOpen,
    Occlusion,
    Plant,
    PlantConfig,
    SensorOpen,
    parse_event,
)
from tests.plant._util import DT, ML_MIN, command_for, run

SCENARIO = """
[plant]
cement = "fast_setting"
cannula_gauge = "13G"
temperature_c = 24
seed = 11

[[plant.events]]
kind = "fluoro_stop_line"
at_s = 0.25
duration_s = 0.1

[[plant.events]]
kind = "leak_open"
path = "cortical"
diameter_mm = 2.5
at_volume_ml = 0.02
"""


def test_a_timed_event_fires_on_the_tick_that_reaches_its_time() -> None:
    plant = Plant(PlantConfig(events=(Occlusion(factor=100.0, at_s=0.25),)))
    run(plant, MotorCommand(0.0), 0.5)
    (fired,) = plant.fired_events
    assert 0.25 - 1e-9 <= fired.t_s < 0.25 + DT
    assert fired.phase == "start"
    assert plant.occlusion_factor == 100.0


def test_a_volume_event_fires_when_the_delivered_volume_reaches_it() -> None:
    plant = Plant(PlantConfig(mixed_ago_s=300.0, events=(LeakOpen(at_volume_ml=0.05),)))
    cmd = command_for(plant, 6.0 * ML_MIN)
    step_volume_ml = 6.0 * ML_MIN * DT * 1e6
    while not plant.fired_events:
        plant.step(cmd, DT)
        assert plant.t_s < 5.0
    fired = plant.fired_events[0]
    assert 0.05 <= fired.delivered_ml < 0.05 + 1.5 * step_volume_ml
    run(plant, cmd, 1.0)
    assert plant.leaked_volume_m3 > 0.0


def test_an_event_with_a_duration_undoes_itself() -> None:
    plant = Plant(PlantConfig(events=(FluoroStopLine(at_s=0.1, duration_s=0.2),)))
    states = []
    for _ in range(400):
        states.append(plant.sense().fluoro_stop_line)
        plant.step(MotorCommand(0.0), DT)
    assert not any(states[:100])
    assert all(states[101:300])
    assert not any(states[301:])
    assert [f.phase for f in plant.fired_events] == ["start", "end"]
    assert plant.fired_events[1].t_s == pytest.approx(0.3, abs=DT)


def test_an_event_scheduled_at_run_time_takes_effect_at_once() -> None:
    plant = Plant()
    plant.step(MotorCommand(0.0), DT)
    plant.schedule(SensorOpen())
    assert plant.hardware.ma_from_adc(plant.sense().pressure_adc) < 3.6
    assert plant.fired_events[0].t_s == pytest.approx(DT)


def test_the_fluoro_line_can_be_set_directly() -> None:
    plant = Plant()
    plant.fluoro_stop_line = True
    assert plant.sense().fluoro_stop_line
    plant.fluoro_stop_line = False
    assert not plant.sense().fluoro_stop_line


def test_a_scenario_file_loads_and_its_events_fire() -> None:
    config = PlantConfig.model_validate(tomllib.loads(SCENARIO)["plant"])
    assert config.cannula_gauge == 13
    plant = Plant(config)
    run(plant, command_for(plant, 6.0 * ML_MIN), 3.0)
    kinds = [(f.event.kind, f.phase) for f in plant.fired_events]
    assert kinds == [("fluoro_stop_line", "start"), ("fluoro_stop_line", "end"), ("leak_open", "start")]


def _message(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(exc.value)


def test_an_out_of_range_value_names_field_value_and_range() -> None:
    with pytest.raises(ValidationError) as exc:
        parse_event({"kind": "leak_open", "diameter_mm": 9.0, "at_s": 1.0})
    assert "diameter_mm = 9.0 mm is outside the allowed range 0.1..6 mm" in _message(exc)
    with pytest.raises(ValidationError) as exc:
        PlantConfig(temperature_c=60.0)
    assert "temperature_c = 60.0 degC is outside the allowed range 2..45 degC" in _message(exc)


def test_two_triggers_an_unknown_kind_and_nan_are_refused() -> None:
    with pytest.raises(ValidationError, match="not both"):
        parse_event({"kind": "occlusion", "at_s": 1.0, "at_volume_ml": 0.5})
    with pytest.raises(ValidationError, match="teleport"):
        parse_event({"kind": "teleport"})
    with pytest.raises(ValidationError, match="allowed range"):
        parse_event({"kind": "sensor_drift", "rate_kpa_s": float("nan")})


def test_bad_geometry_is_refused_with_the_allowed_range() -> None:
    with pytest.raises(ValidationError, match="cannula_gauge"):
        PlantConfig(cannula_gauge="12G")
    with pytest.raises(ValidationError, match="narrower than the 11G bore"):
        PlantConfig(cannula_proximal_id_mm=2.0)
    with pytest.raises(ValidationError, match=r"events\.0\.occlusion\.factor"):
        PlantConfig.model_validate({"events": [{"kind": "occlusion", "factor": 0.5}]})
    with pytest.raises(ValueError, match="outside the stroke"):
        Plant(PlantConfig(plunger_start_mm=100.0))

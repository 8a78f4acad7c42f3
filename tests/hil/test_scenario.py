"""Scenario files: the corpus loads, bad files fail with the field path, the value and what is allowed."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from firmware_sim.cli import load_plant_config
from hil.cli import SCENARIO_DIR, discover, load_all
from hil.scenario import PLANT_EVENT_KINDS, ScenarioError, load_scenario, parse_scenario
from hil.simulator import write_plant_file
from protocol import StopReason

PLAN = {
    "name": "p",
    "mode": "continuous",
    "flow_ml_min": 3.0,
    "volume_limit_ml": 2.0,
    "pressure": {"soft_limit_kpa": 2500, "hard_limit_kpa": 4000},
    "cement": {"profile": "x", "working_time_s": 600, "viscosity_min_pa_s": 50, "viscosity_max_pa_s": 400},
    "cannula": {"gauge": 11, "length_mm": 125},
    "syringe": {"size": "2.5ml"},
}


def scenario(**changes: object) -> dict[str, object]:
    data: dict[str, object] = {"name": "s", "plan": PLAN, "expect": {"state": "DONE"}}
    data.update(changes)
    return data


def problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(data, "bad.toml")
    return list(info.value.problems)


def test_every_corpus_scenario_is_valid_and_named_uniquely() -> None:
    loaded, bad = load_all(discover([]))
    assert bad == []
    assert len(loaded) >= 30
    assert len({s.name for _p, s in loaded}) == len(loaded)


def test_the_corpus_covers_every_stop_reason_and_fault_of_the_hazard_table() -> None:
    loaded, _ = load_all(discover([]))
    reasons = {s.expect.reason for _p, s in loaded}
    assert {r.name for r in StopReason if r != StopReason.NONE} <= reasons
    kinds = {e.kind for _p, s in loaded for e in s.events}
    assert {"sensor_stuck", "sensor_open", "sensor_noise_burst", "host_silence", "link_cut"} <= kinds
    sources = {s.expect.source for _p, s in loaded if s.expect.reason == "FLUORO_STOP"}
    assert {"FLUORO_LINE", "FLUORO_REMOTE", "FLUORO_OPERATOR"} <= sources
    assert any(s.expect.refused == "VISCOSITY_OUT_OF_WINDOW" for _p, s in loaded)


def test_an_out_of_range_plant_value_names_the_field_the_value_and_the_range() -> None:
    assert problems(scenario(plant={"cannula_length_mm": 5})) == [
        "bad.toml: plant.cannula_length_mm: 5 is outside the allowed range; allowed 30..300 (mm)"
    ]


def test_an_out_of_range_event_value_names_the_event_and_the_range() -> None:
    assert problems(scenario(events=[{"kind": "occlusion", "factor": 0.5}])) == [
        "bad.toml: events.0.occlusion.factor: 0.5 is outside the allowed range; allowed 1..1e+09 (x)"
    ]


def test_an_unknown_event_kind_lists_the_allowed_kinds() -> None:
    (line,) = problems(scenario(events=[{"kind": "earthquake"}]))
    assert line.startswith(
        "bad.toml: events.0.kind: 'earthquake' is not a known event kind; allowed leak_open,"
    )
    assert line.endswith("fluoro_key_stop (event kind)")


def test_an_event_with_two_triggers_is_refused() -> None:
    assert problems(scenario(events=[{"kind": "occlusion", "at_s": 1, "at_volume_ml": 0.5}])) == [
        "bad.toml: events.0.occlusion: at_s = 1.0 s and at_volume_ml = 0.5 mL are both given; "
        "allowed one of them: an event fires on one trigger (trigger)"
    ]


def test_a_plan_problem_is_reported_under_plan() -> None:
    plan = dict(PLAN, flow_ml_min=50.0)
    (line,) = problems(scenario(plan=plan))
    assert line == "bad.toml: plan.flow_ml_min: 50 is too large; allowed [0.01, 20] (mL/min)"


def test_expectations_are_checked_against_the_scenario() -> None:
    lines = problems(scenario(expect={"state": "DONE", "max_latency_ms": 100, "latency_from": "link_cut"}))
    assert any("expect.latency_from: 'link_cut' is not an event of this scenario" in x for x in lines)
    assert any("expect.max_latency_ms: 100 is set without any event to count from" in x for x in lines)
    (line,) = problems(scenario(expect={"state": "RUNNING"}))
    assert line.startswith("bad.toml: expect.state: 'RUNNING' is not one of the choices; allowed 'IDLE'")
    (line,) = problems(scenario(expect={"state": "DONE", "delivered_ml": [2.0, 1.0]}))
    assert "expect.delivered_ml" in line
    assert "0 <= low <= high" in line


def test_events_belong_at_the_top_level_not_in_the_plant_table() -> None:
    (line,) = problems(scenario(plant={"events": [{"kind": "disconnection"}]}))
    assert "plant.events" in line
    assert "[[events]] at the top level" in line


def test_plan_file_and_plan_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"plan_file: 'x.toml' is given together with \[plan\]"):
        parse_scenario(scenario(plan_file="x.toml"), "bad.toml", tmp_path)


def test_a_missing_plan_file_is_named(tmp_path: Path) -> None:
    data = scenario()
    del data["plan"]
    data["plan_file"] = "nowhere.toml"
    with pytest.raises(ScenarioError, match=r"plan_file: .*nowhere\.toml: file not found"):
        parse_scenario(data, "bad.toml", tmp_path)


def test_a_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\nseed = = 3\n')
    with pytest.raises(ScenarioError, match=r"broken\.toml: line 2, column 8: TOML syntax error"):
        load_scenario(path)


def test_the_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "my-case.toml"
    path.write_text('plan_file = "../plan.toml"\n[expect]\nstate = "DONE"\n')
    (tmp_path.parent / "plan.toml").write_text(
        (SCENARIO_DIR.parent.parent / "plans" / "continuous-2ml.toml").read_text()
    )
    assert load_scenario(path).name == "my-case"


@pytest.mark.parametrize("path", discover([]), ids=lambda p: p.stem)
def test_the_simulator_reads_back_the_plant_file_the_runner_writes(path: Path, tmp_path: Path) -> None:
    s = load_scenario(path)
    written = write_plant_file(s, tmp_path / "plant.toml")
    config = load_plant_config(written, None)
    assert config.model_dump(exclude={"events", "seed"}) == s.plant.model_dump(exclude={"events", "seed"})
    assert config.seed == s.seed
    assert [e.kind for e in config.events] == [e.kind for e in s.events if e.kind in PLANT_EVENT_KINDS]
    assert tomllib.loads(written.read_text())["plant"]["seed"] == s.seed

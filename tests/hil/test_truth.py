"""Ground truth of the spatial body in HIL: the simulator's trace line, `[expect.truth]`, the judge
and the report. The controller never sees any of it; the runner reads it from the simulator's log."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from firmware_sim.cli import _tracer
from firmware_sim.controller import TickOutput
from firmware_sim.hal import MotorCommand
from firmware_sim.plant import Plant, PlantConfig
from firmware_sim.plant.spatial_truth import LeakTruth, SpatialTraceError, SpatialTruth
from hil.cli import SCENARIO_DIR
from hil.outcome import Measured, Outcome, judge
from hil.report import measured_properties, write_index
from hil.scenario import ScenarioError, load_scenario
from hil.simulator import Trace

QUARTER = load_scenario(SCENARIO_DIR / "spatial-posterior-quarter.toml")
BASE = (
    (SCENARIO_DIR / "spatial-posterior-quarter.toml")
    .read_text()
    .split("\n[expect.truth]")[0]
    .replace('plan_file = "../../plans/', f'plan_file = "{SCENARIO_DIR.parents[1].as_posix()}/plans/')
)
"""The posterior-quarter scenario without its truth table, its plan file by absolute path."""


def truth(**changes: object) -> SpatialTruth:
    base: dict[str, object] = {
        "t_s": 45.0,
        "front_ap_fraction": 0.79,
        "posterior_quarter_t_s": 21.0,
        "peak_temperature_c": 37.4,
        "canal_peak_c": 37.0,
        "leaks": {"basivertebral": LeakTruth(0.0, None), "segmental_left": LeakTruth(0.031, 40.0)},
    }
    base.update(changes)
    return SpatialTruth(**base)  # type: ignore[arg-type]


def test_a_truth_line_reads_back_exactly_and_a_bad_one_is_named() -> None:
    t = truth()
    back = SpatialTruth.parse(t.trace_line())
    assert back == t
    assert back.leaked_ml == pytest.approx(0.031)
    none_yet = truth(posterior_quarter_t_s=None, leaks={}, canal_peak_c=math.nan)
    back = SpatialTruth.parse(none_yet.trace_line())
    assert back.posterior_quarter_t_s is None
    assert math.isnan(back.canal_peak_c)
    with pytest.raises(SpatialTraceError, match="bad TRACE spatial line"):
        SpatialTruth.parse(t.trace_line().replace("front 0.7900", "front x"))
    with pytest.raises(SpatialTraceError, match="unexpected token 'lake'"):
        SpatialTruth.parse(t.trace_line().replace("leak segmental_left", "lake segmental_left"))
    trace = Trace()
    trace.feed(t.trace_line())
    trace.feed("TRACE spatial 1.0 front")  # garbled: kept as other, never judged
    assert trace.spatial == [t]
    assert trace.other == ["TRACE spatial 1.0 front"]


def test_the_simulator_traces_the_spatial_truth_once_a_second(capsys: pytest.CaptureFixture[str]) -> None:
    plant = Plant(PlantConfig.model_validate({"vertebra": "spatial", "sensor_noise_kpa": 0.0}))
    trace = _tracer(plant)
    cmd = MotorCommand(3e-6 / 60.0 / (plant.bore_area_m2 * plant.hardware.plunger_m_per_step))
    for now_us in range(0, 2_500_000, 1000):
        out = TickOutput(cmd, [])
        trace(now_us, out)
        plant.step(cmd, 1e-3)
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("TRACE spatial")]
    assert [SpatialTruth.parse(x).t_s for x in lines] == pytest.approx([0.0, 1.0, 2.0], abs=0.011)
    last = SpatialTruth.parse(lines[-1])
    assert last.front_ap_fraction > 0.3  # cement left the tip (at 35 % of the depth)
    assert set(last.leaks) == {"basivertebral", "segmental_left", "segmental_right"}


def test_expect_truth_needs_the_spatial_body_and_real_ranges(tmp_path: Path) -> None:
    text = BASE
    lumped = text.replace('vertebra = "spatial"', 'vertebra = "lumped"').replace("[plant.spatial]\n", "[x]\n")
    lumped = lumped.replace("tip_depth_fraction = 0.5\n", "")
    path = tmp_path / "lumped.toml"
    path.write_text(lumped.replace("[x]\n", "") + "\n[expect.truth]\nposterior_quarter = true\n")
    with pytest.raises(ScenarioError, match=r'expect.truth: .* is set for plant.vertebra = "lumped"'):
        load_scenario(path)
    path.write_text(text + "\n[expect.truth]\nfront_ap_fraction = [0.9, 0.8]\n")
    with pytest.raises(ScenarioError, match=r"front_ap_fraction: \[0.9, 0.8\] is not a range"):
        load_scenario(path)
    path.write_text(text + "\n[expect.truth]\nleak_ml = { basivertebral = [0.0, -1.0] }\n")
    with pytest.raises(ScenarioError, match=r"leak_ml.basivertebral: \[0.0, -1.0\] is not a range"):
        load_scenario(path)


def test_the_judge_holds_the_truth_to_the_scenario_and_says_what_it_measured(tmp_path: Path) -> None:
    text = BASE
    path = tmp_path / "truth.toml"
    path.write_text(
        text
        + "\n[expect.truth]\nfront_ap_fraction = [0.75, 0.9]\nposterior_quarter = true\n"
        + "leak_ml = { segmental_left = [0.02, 0.05], cortical_anterior = [0.0, 1.0] }\n"
        + "total_leak_ml = [0.0, 0.1]\npeak_temperature_c = [37.0, 40.0]\ncanal_peak_c = [36.9, 37.5]\n"
    )
    scenario = load_scenario(path)
    m = Measured(final_state="DONE", final_reason="VOLUME_LIMIT", delivered_ml=2.0, truth=truth())
    assert judge(scenario, m, real_rig=False) == [
        "truth leak_ml.cortical_anterior: no such leak path; "
        "this body has ['basivertebral', 'segmental_left']"
    ]
    m.truth = truth(front_ap_fraction=0.7, posterior_quarter_t_s=None, peak_temperature_c=41.0)
    lines = judge(scenario, m, real_rig=False)
    assert "truth front_ap_fraction: expected 0.75..0.9, measured 0.7" in lines
    assert "truth posterior_quarter: expected crossed, measured never (front at 0.700)" in lines
    assert "truth peak_temperature_c: expected 37..40 degC, measured 41 degC" in lines
    m.truth = None
    assert judge(scenario, m, real_rig=False)[-1].startswith("ground truth: expected the simulator's")
    assert not any(x.startswith(("truth", "ground truth")) for x in judge(scenario, m, real_rig=True))


def test_the_report_carries_the_truth_per_path(tmp_path: Path) -> None:
    props = measured_properties(Measured(truth=truth()))
    assert props["truth.front_ap_fraction"] == "0.79"
    assert props["truth.posterior_quarter_t_s"] == "21"
    assert props["truth.leak_ml.segmental_left"] == "0.031"
    assert props["truth.leak_onset_s.segmental_left"] == "40"
    assert props["truth.leak_onset_s.basivertebral"] == "n/a"
    assert "truth.front_ap_fraction" not in measured_properties(Measured())
    assert QUARTER.expect.truth is not None
    page = write_index(
        [Outcome("q", "q.toml", "passed", measured=Measured(truth=truth()))], tmp_path, {}
    ).read_text()
    assert "ground truth (simulator, never telemetry):" in page
    assert "front_ap_fraction = 0.79" in page
    assert "leak_ml.segmental_left = 0.031" in page

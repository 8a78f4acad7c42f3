"""The runner's verdict: each expectation compared with what was measured, in words a reader follows."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.cli import SCENARIO_DIR
from hil.outcome import Measured, Outcome, harness_lag, judge
from hil.runner import RunOptions, skip_reason
from hil.scenario import load_scenario
from hil.simulator import Trace

OCCLUSION = load_scenario(SCENARIO_DIR / "occlusion-pressure-rise.toml")
OPERATOR = load_scenario(SCENARIO_DIR / "operator-stop.toml")


def good() -> Measured:
    return Measured(
        final_state="STOPPED",
        final_reason="PRESSURE_RISE",
        final_source="CONTROLLER",
        latency_ms=60.0,
        after_flow_ml=0.005,
        delivered_ml=0.55,
    )


def test_a_run_that_meets_every_expectation_has_no_failures() -> None:
    assert judge(OCCLUSION, good(), real_rig=False) == []


def test_each_broken_expectation_says_expected_and_measured() -> None:
    m = good()
    m.final_reason, m.latency_ms, m.after_flow_ml, m.delivered_ml, m.false_stops = (
        "OVERPRESSURE",
        250.0,
        0.05,
        0.9,
        1,
    )
    lines = judge(OCCLUSION, m, real_rig=False)
    assert "stop reason: expected PRESSURE_RISE, measured STOPPED (OVERPRESSURE, source CONTROLLER)" in lines
    assert "detection latency: expected <= 150 ms, measured 250.0 ms" in lines
    assert "after-flow: expected <= 0.02 mL, measured 0.0500 mL" in lines
    assert "delivered volume: expected 0.45..0.6 mL, measured 0.9000 mL" in lines
    assert any(x.startswith("false stop:") for x in lines)


def test_a_missing_measurement_fails_rather_than_passing_silently() -> None:
    m = good()
    m.latency_ms = None
    m.after_flow_ml = None
    lines = judge(OCCLUSION, m, real_rig=False)
    assert any(x.startswith("detection latency: expected <= 150 ms, measured none") for x in lines)
    assert "after-flow: expected <= 0.02 mL, measured none" in lines


def test_after_flow_needs_the_simulator_and_is_not_judged_on_a_real_rig() -> None:
    m = good()
    m.after_flow_ml = None
    assert judge(OCCLUSION, m, real_rig=True) == []


def test_an_unexpected_refusal_fails() -> None:
    m = good()
    m.refused = "SENSOR_FAULT"
    assert "START/RESUME refusal: expected none, measured SENSOR_FAULT" in judge(OCCLUSION, m, real_rig=False)


def test_plant_events_are_skipped_on_a_real_rig_with_the_reason() -> None:
    reason = skip_reason(OCCLUSION, "/dev/ttyUSB0")
    assert reason is not None
    assert "needs the simulator" in reason
    assert "occlusion" in reason
    assert "/dev/ttyUSB0" in reason
    assert skip_reason(OPERATOR, "/dev/ttyUSB0") is None
    assert skip_reason(OCCLUSION, None) is None


def test_harness_lag_is_judged_against_the_scaled_watchdog() -> None:
    m = Measured(host_max_lag_ms=30.0, sim_max_late_ms=10.0)
    assert harness_lag(m, 5.0) == ""  # budget 40 ms at 5x
    m.host_max_lag_ms = 45.0
    assert harness_lag(m, 5.0).startswith("host event loop 45 ms late")
    assert harness_lag(m, 1.0) == ""  # budget 200 ms at 1x
    m.sim_max_late_ms = 300.0
    assert "simulator tick 300 ms late" in harness_lag(m, 1.0)


def test_the_simulator_trace_is_parsed() -> None:
    trace = Trace()
    for line in (
        "TRACE plant 10.0130 0.500100 start occlusion",
        "TRACE stop 10.0700 2 6 0.501000 1076.00",
        "TRACE truth 10.1000 0.501500 900.00",
        "    10.500 s  host detached",
        "TRACE ticks 12000 overruns 3 max_late_ms 1.5",
        "something else",
    ):
        trace.feed(line)
    assert trace.plant == [(10.013, 0.5001, "start", "occlusion")]
    assert trace.stops == [(10.07, 2, 6, 0.501)]
    assert trace.truth == [(10.1, 0.5015, 900.0)]
    assert trace.detached_s == [10.5]
    assert trace.ticks == (12000, 3, 1.5)
    assert trace.other == ["something else"]
    assert trace.stop_seen.is_set()


async def test_only_a_failure_with_a_lagging_harness_is_rerun_at_time_scale_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from hil import runner

    calls: list[float] = []
    lagging = {5.0: Measured(host_max_lag_ms=120.0), 1.0: Measured(host_max_lag_ms=2.0)}

    async def attempt(scenario: object, path: Path, options: RunOptions, scale: float) -> Outcome:
        calls.append(scale)
        status = "failed" if scale > 1 else "passed"
        return Outcome("x", str(path), status, message="stop reason: HOST_LOST", measured=lagging[scale])

    monkeypatch.setattr(runner, "_attempt", attempt)
    options = RunOptions(time_scale=5.0, report_dir=tmp_path)
    outcome = await runner.run_scenario(OPERATOR, tmp_path / "x.toml", options)
    assert calls == [5.0, 1.0]
    assert outcome.status == "passed"
    assert outcome.rerun.startswith("rerun at time scale 1: at 5 host event loop 120 ms late")
    assert outcome.rerun.endswith("first attempt: stop reason: HOST_LOST")

    calls.clear()
    lagging[5.0] = Measured(host_max_lag_ms=3.0)  # a healthy harness: the failure stands
    outcome = await runner.run_scenario(OPERATOR, tmp_path / "x.toml", options)
    assert calls == [5.0]
    assert (outcome.status, outcome.rerun) == ("failed", "")


async def test_a_run_whose_own_session_the_device_closed_is_rerun_at_time_scale_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """NAK NO_SESSION to the runner itself means the device's watchdog closed the runner's session:
    its heartbeats did not arrive within the scaled watchdog, whatever its 5 ms lag probe saw (seen in
    the corpus at time scale 2 while a guard scenario rendered beside it). The harness did not keep
    its clock, so the run is repeated at time scale 1, whose verdict stands."""
    from hil import runner

    calls: list[float] = []

    async def attempt(scenario: object, path: Path, options: RunOptions, scale: float) -> Outcome:
        calls.append(scale)
        if scale > 1:
            return Outcome(
                "x",
                str(path),
                "error",
                message="CommandRefused: SET_TELEMETRY refused: NO_SESSION",
                measured=Measured(runner_session_closed=True),
            )
        return Outcome("x", str(path), "passed", measured=Measured(host_max_lag_ms=2.0))

    monkeypatch.setattr(runner, "_attempt", attempt)
    options = RunOptions(time_scale=2.0, report_dir=tmp_path)
    outcome = await runner.run_scenario(OPERATOR, tmp_path / "x.toml", options)
    assert calls == [2.0, 1.0]
    assert outcome.status == "passed"
    assert "closed the runner's session" in outcome.rerun
    assert outcome.rerun.endswith("first attempt: CommandRefused: SET_TELEMETRY refused: NO_SESSION")

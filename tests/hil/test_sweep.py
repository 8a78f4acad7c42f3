"""The detector sweep: runs classify events correctly, results do not depend on the worker count, and
the report directory gets its table, CSV, JSON and plot."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from hil._sweep_report import CSV_FIELDS
from hil._sweep_runs import (
    KIND_CYCLE,
    KINDS,
    OCCLUSION_REASONS,
    RunOutcome,
    RunSpec,
    controller_config,
    draw_conditions,
    draw_run,
    kind_of,
    parse_override,
    play,
)
from hil.sweep import main, read_outcomes, run_sweep, write_report
from host.cli import main as cementguard

SEED = 3


def reference_conditions(**changes: object) -> RunSpec:
    """An event run on the reference line: low-viscosity cement 4 min after mixing, 3 mL/min through
    11G x 125 mm, 2.5 mL syringe, intact bone, the specified sensor noise."""
    c = draw_conditions(np.random.default_rng(0), "occlusion")
    c = replace(
        c,
        cement="low_viscosity",
        temperature_c=22.0,
        gauge=11,
        cannula_length_mm=125.0,
        syringe_bore_mm=7.29,
        bone="intact",
        flow_ml_min=3.0,
        mixed_ago_s=240.0,
        noise_level=1.0,
        noise_kpa=10.0,
        plant_seed=11,
    )
    spec = RunSpec(
        index=0, kind="occlusion", conditions=c, size=1e4, sign=1.0, onset_delay_s=1.5, early=False
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


def test_a_total_occlusion_at_steady_flow_is_caught_by_the_rise_detector() -> None:
    out = play(reference_conditions(kind="occlusion", size=1e4))
    assert out.status == "detected", out
    assert out.stop_reason in OCCLUSION_REASONS
    assert out.stop_reason == "PRESSURE_RISE"
    assert 20.0 <= out.latency_ms <= 150.0  # two blocks at least; docs/controller.md: 37-47 ms
    assert out.steady
    assert out.rise_armed_at_onset


def test_a_disconnection_is_caught_by_pressure_loss_and_sized_by_the_pressure_then() -> None:
    out = play(reference_conditions(kind="disconnection", size=math.nan))
    assert out.status == "detected", out
    assert out.stop_reason == "PRESSURE_LOSS"
    assert out.size == out.pressure_at_onset_kpa > 200.0
    assert out.latency_ms < 100.0


@pytest.mark.parametrize(("pulse_ms", "status"), [(2.0, "missed"), (5.0, "detected")])
def test_the_fluoroscopy_debounce_rejects_a_2_ms_pulse_and_stops_on_a_5_ms_one(
    pulse_ms: float, status: str
) -> None:
    out = play(reference_conditions(kind="fluoro_pulse", size=pulse_ms))
    assert out.status == status, out
    if status == "detected":
        assert out.stop_reason == "FLUORO_STOP"
        assert out.latency_ms == pytest.approx(2.0)  # third asserted sample, 2 ms after the first
    else:
        assert math.isnan(out.latency_ms)


def test_host_silence_beyond_the_watchdog_is_timed_from_the_last_heartbeat() -> None:
    out = play(reference_conditions(kind="host_silence", size=800.0))
    assert out.status == "detected", out
    assert out.latency_ms == pytest.approx(501.0)  # watchdog_ms + one tick


def test_a_nominal_run_completes_without_a_false_stop() -> None:
    spec = draw_run(SEED, KIND_CYCLE.index("nominal"))
    out = play(spec)
    assert out.status == "completed", out
    assert not out.false_stop
    assert out.stops[-1][0] == "VOLUME_LIMIT"


def test_a_controller_override_reaches_the_run() -> None:
    # With PRESSURE_RISE off, the same total occlusion is left to the other detectors: no PRESSURE_RISE
    # within 100 ms, and the outcome is no longer the rise detector's.
    spec = reference_conditions(kind="occlusion", size=1e4)
    name, value = parse_override("rise_enabled=false")
    out = play(spec, controller_config((name, value)))
    assert out.stop_reason != "PRESSURE_RISE"
    with pytest.raises(ValueError, match="rise_min_pa_s"):
        parse_override("rise_min_pa_s=fast")


def test_kinds_follow_the_weighted_cycle_and_a_filter_keeps_only_the_chosen() -> None:
    n = len(KIND_CYCLE)
    assert {kind_of(i) for i in range(n)} == set(KINDS)
    assert sum(kind_of(i) == "nominal" for i in range(n)) == KINDS["nominal"].weight
    assert {kind_of(i, ["occlusion", "nominal"]) for i in range(50)} == {"occlusion", "nominal"}
    with pytest.raises(ValueError, match="not known"):
        kind_of(0, ["teleportation"])


def _records(outcomes: list[RunOutcome]) -> list[str]:
    return [json.dumps(asdict(o), sort_keys=True) for o in outcomes]  # NaN -> "NaN", comparable


def test_a_tiny_sweep_is_identical_on_one_and_two_processes_and_writes_its_report(tmp_path: Path) -> None:
    n = 20
    one = run_sweep(n, SEED, tmp_path / "one", jobs=1)
    two = run_sweep(n, SEED, tmp_path / "two", jobs=2)
    assert (one.backend, two.backend) == ("in-process", "local pool")
    runs_one, runs_two = read_outcomes(one.directory), read_outcomes(two.directory)
    assert [o.index for o in runs_two] == list(range(n))
    assert _records(runs_one) == _records(runs_two)
    assert {o.kind for o in runs_one} >= {"nominal", "occlusion", "disconnection", "sensor_open"}
    assert all(o.status for o in runs_one)
    assert not any(o.status == "refused" for o in runs_one)

    header = {"command": "test", "seed": SEED, "runs": n}
    paths, _ = write_report(two.directory, header)
    md = paths["md"].read_text()
    assert "## Detection per detector" in md
    assert "## False stops" in md
    assert "### False stops per detector" in md
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == CSV_FIELDS
    assert {r["noise"] for r in rows} >= {"all"}
    evaluated = [o for o in runs_two if o.kind != "nominal" and o.status != "stopped_before_onset"]
    assert sum(int(r["runs"]) for r in rows if r["noise"] == "all") == len(evaluated)
    doc = json.loads(paths["json"].read_text())
    assert len(doc["runs"]) == n
    assert doc["runs"][0]["conditions"]["plant_seed"] == runs_two[0].conditions.plant_seed
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_command_line_writes_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--n", "3", "--seed", "2", "--jobs", "1", "--quiet", "--no-plot", "--report-dir", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3 runs in" in out
    assert (tmp_path / "sweep.json").exists()
    assert not (tmp_path / "sweep.png").exists()
    assert json.loads((tmp_path / "sweep.json").read_text())["command"].startswith(
        "cementguard hil sweep --n 3 --seed 2 --report-dir"
    )


def test_cementguard_hil_sweep_is_registered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["hil", "sweep", "--n", "2", "--jobs", "1", "--kinds", "fluoro_pulse", "--quiet", "--no-plot"]
    assert cementguard([*argv, "--set", "fluoro_debounce_samples=20", "--report-dir", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "sweep.json").read_text())
    assert doc["controller_overrides"] == {"fluoro_debounce_samples": 20}
    assert [r["kind"] for r in doc["runs"]] == ["fluoro_pulse", "fluoro_pulse"]
    # pulses of at most 10 ms cannot pass a 20-sample debounce
    assert [r["status"] for r in doc["runs"]] == ["missed", "missed"]

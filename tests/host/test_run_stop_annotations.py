"""`cementguard run` records the controller's footswitch-line stop with the debounce time the
controller reports in the STOP event's detail (host.stops). Its own stops (Ctrl-C, SIGTERM, SIGHUP),
with their origin and latency: test_run_signals.py."""

from __future__ import annotations

from pathlib import Path

from host.recording import Recording
from protocol import EventKind, StopReason, StopSource
from tests.host.test_run_cli import FAST_PLAN, _cli
from tests.support.wire_client import simulator

LINE_SCENARIO = """
[plant]
seed = 7

[[plant.events]]
kind = "fluoro_stop_line"
at_volume_ml = 0.05
duration_s = 0.5
"""


def _stop_of(run_dir: Path):
    stops = [e for e in Recording.open(run_dir).events if e.record.kind == EventKind.STOP]
    assert len(stops) == 1, stops
    return stops[0]


def test_footswitch_line_stop_is_recorded_with_the_controllers_debounce(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(
        FAST_PLAN.replace('mode = "incremental"', 'mode = "continuous"').replace("increment_ml = 0.1\n", "")
    )
    scenario = tmp_path / "line.toml"
    scenario.write_text(LINE_SCENARIO)
    with simulator("--pty", "--scenario", str(scenario)) as (_proc, port):
        done = _cli(
            "run",
            "--port",
            port,
            "--plan",
            str(plan),
            "--mixed-ago",
            "240",
            "--record",
            str(tmp_path / "rec"),
            "--record-tail",
            "1",
        )
    assert done.returncode == 3, done.stdout + done.stderr
    (run_dir,) = (tmp_path / "rec").iterdir()
    stop = _stop_of(run_dir)
    assert (stop.record.reason, stop.record.source) == (StopReason.FLUORO_STOP, StopSource.FLUORO_LINE)
    assert stop.record.detail == 2000, "3 samples at 1 kHz: first asserted sample + 2 ms"
    assert stop.annotations["line_latency_ms"] == 2.0
    assert stop.annotations["stop_source"] == "fluoroscopy (footswitch line)"
    assert "stop_latency_ms" not in stop.annotations

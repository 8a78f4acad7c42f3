"""`cementguard run` records every stop with its source and latency (host.stops): a Ctrl-C stop with
its origin and the time to the STOPPED event, the controller's footswitch line with the debounce
time the controller reports in the STOP event's detail."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from host.recording import Recording
from protocol import EventKind, StopReason, StopSource
from tests.host.test_run_cli import FAST_PLAN, _cli
from tests.support.wire_client import REPO, simulator

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


def test_ctrl_c_stop_is_recorded_with_origin_and_latency(tmp_path: Path) -> None:
    slow = tmp_path / "slow.toml"
    slow.write_text(FAST_PLAN.replace("flow_ml_min = 6.0", "flow_ml_min = 1.0"))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    with simulator("--pty") as (_proc, port):
        run = subprocess.Popen(
            [sys.executable, "-m", "host.cli", "run", "--port", port, "--plan", str(slow),
             "--mixed-ago", "240", "--record", str(tmp_path / "rec")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
        )  # fmt: skip
        assert run.stdout is not None
        line = run.stdout.readline()  # printed once the Ctrl-C handler is in place
        assert line.startswith("recording to"), line
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=30)
    assert run.returncode == 3, out + err
    (run_dir,) = (tmp_path / "rec").iterdir()
    stop = _stop_of(run_dir)
    assert (stop.record.reason, stop.record.source) == (StopReason.OPERATOR_STOP, StopSource.OPERATOR)
    assert stop.annotations["stop_source"] == "operator"
    assert stop.annotations["stop_origin"] == "cementguard run ctrl-c"
    assert 0.0 < stop.annotations["stop_latency_ms"] < 2000.0


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
        )
    assert done.returncode == 3, done.stdout + done.stderr
    (run_dir,) = (tmp_path / "rec").iterdir()
    stop = _stop_of(run_dir)
    assert (stop.record.reason, stop.record.source) == (StopReason.FLUORO_STOP, StopSource.FLUORO_LINE)
    assert stop.record.detail == 2000, "3 samples at 1 kHz: first asserted sample + 2 ms"
    assert stop.annotations["line_latency_ms"] == 2.0
    assert stop.annotations["stop_source"] == "fluoroscopy (footswitch line)"
    assert "stop_latency_ms" not in stop.annotations

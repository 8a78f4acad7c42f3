"""`cementguard run` ends on Ctrl-C (SIGINT), SIGTERM (a shutdown, `kill`) and SIGHUP (its terminal
closed) alike: STOP first, acknowledged, the controller left latched by the operator's stop, and the
stop recorded with its origin and latency (host.stops). Without the handlers for the last two the
process died at once and the controller stopped only when its watchdog noticed the host gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from host.recording import Recording
from protocol import StopReason, StopSource
from tests.host.test_run_cli import FAST_PLAN, _cli
from tests.support.wire_client import REPO, simulator


@pytest.mark.parametrize(
    ("sig", "origin"),
    [(signal.SIGINT, "ctrl-c"), (signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP")],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_a_quit_signal_stops_first_and_records_it(tmp_path: Path, sig: signal.Signals, origin: str) -> None:
    slow = tmp_path / "slow.toml"
    slow.write_text(FAST_PLAN.replace("flow_ml_min = 6.0", "flow_ml_min = 1.0"))
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    with simulator("--pty") as (_proc, port):
        run = subprocess.Popen(
            [sys.executable, "-m", "host.cli", "run", "--port", port, "--plan", str(slow),
             "--mixed-ago", "240", "--record", str(tmp_path / "rec"), "--record-tail", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
        )  # fmt: skip
        assert run.stdout is not None
        line = run.stdout.readline()  # printed once the signal handlers are in place
        assert line.startswith("recording to"), line
        run.send_signal(sig)
        out, err = run.communicate(timeout=30)
        assert run.returncode == 3, out + err  # a stop, by the operator: not killed by the signal
        assert "stopped by the operator" in out
        status = _cli("status", "--port", port)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "STOPPED" in status.stdout
    assert "OPERATOR_STOP" in status.stdout
    (run_dir,) = (tmp_path / "rec").iterdir()
    recording = Recording.open(run_dir)
    assert recording.is_complete
    (stop,) = recording.stop_events()
    assert (stop.record.reason, stop.record.source) == (StopReason.OPERATOR_STOP, StopSource.OPERATOR)
    assert stop.annotations["stop_source"] == "operator"
    assert stop.annotations["stop_origin"] == f"cementguard run {origin}"
    assert 0.0 < stop.annotations["stop_latency_ms"] < 2000.0

"""The commands: `cementguard demo --headless` (the unattended run), and the dashboard commands'
usage errors (they must fail before the screen opens, naming the problem)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from host.recording import Recording
from tests.dashboard.conftest import write_plan
from tests.support.wire_client import REPO


def cementguard(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
        check=False,
    )


def test_demo_headless_runs_the_plan_records_and_plots(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        "tiny",
        flow_ml_min="flow_ml_min = 6.0",
        increment_ml="increment_ml = 0.05",
        volume_limit_ml="volume_limit_ml = 0.1",
    )
    record = tmp_path / "recordings"
    done = cementguard(
        "demo", "--headless", "--plan", str(plan), "--record", str(record), "--auto-resume", "0.2"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "plan completed" in done.stdout
    runs = sorted(record.iterdir())
    assert len(runs) == 1
    assert (runs[0] / "run.png").stat().st_size > 0
    recording = Recording.open(runs[0])
    assert recording.is_complete
    reasons = [e.record.reason.name for e in recording.stop_events()]
    assert reasons == ["INCREMENT_DONE", "VOLUME_LIMIT"]


def test_replay_of_a_missing_recording_is_a_usage_error(tmp_path: Path) -> None:
    done = cementguard("replay", str(tmp_path / "nothing"))
    assert done.returncode == 2
    assert "is not a recording" in done.stderr


def test_dashboard_with_a_bad_plan_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text((REPO / "plans" / "incremental-3x0.5ml.toml").read_text().replace("= 3.0", "= 30.0"))
    done = cementguard("dashboard", "--port", "/dev/null", "--plan", str(bad))
    assert done.returncode == 2
    assert "flow_ml_min: 30 is too large; allowed [0.01, 20] (mL/min)" in done.stderr


def test_dashboard_rig_without_mqtt_is_a_usage_error() -> None:
    done = cementguard("dashboard", "--port", "/dev/null", "--rig", "rig1")
    assert done.returncode == 2
    assert "--rig needs --mqtt URL" in done.stderr

"""`cementguard run`, `status` and `stop` end to end against `cementguard sim --pty`, with exit codes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from host.plan import load_plan
from host.recording import Recording
from host.run import run_plan
from protocol import StopReason
from tests.support.wire_client import REPO, simulator

FAST_PLAN = """
name = "fast-test"
mode = "incremental"
flow_ml_min = 6.0
increment_ml = 0.1
volume_limit_ml = 0.2

[pressure]
soft_limit_kpa = 2500
hard_limit_kpa = 4000

[relief]
enabled = true
relief_kpa = 200

[cement]
profile = "low_viscosity"
working_time_s = 900
viscosity_min_pa_s = 10
viscosity_max_pa_s = 2000

[cannula]
gauge = 11
length_mm = 125

[syringe]
size = "2.5ml"
"""


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=timeout,
    )


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text(FAST_PLAN)
    return path


def test_a_plan_runs_to_completion_with_its_recording(plan: Path, tmp_path: Path) -> None:
    with simulator("--pty") as (_proc, port):
        done = _cli(
            "run", "--port", port, "--plan", str(plan), "--mixed-ago", "240",
            "--auto-resume", "0.2", "--record", str(tmp_path / "rec"), "--record-tail", "1",
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "plan completed" in done.stdout
    (run_dir,) = (tmp_path / "rec").iterdir()
    rec = Recording.open(run_dir)
    reasons = [e.record.reason for e in rec.events]
    assert reasons.count(StopReason.INCREMENT_DONE) == 1
    assert StopReason.VOLUME_LIMIT in reasons
    assert len(rec.samples) > 1000
    assert rec.samples["delivered_nl"].max() >= 190_000


def test_a_safety_stop_exits_3_and_names_the_reason(plan: Path, tmp_path: Path) -> None:
    scenario = tmp_path / "occlusion.toml"
    scenario.write_text('[plant]\n[[plant.events]]\nkind = "occlusion"\nat_volume_ml = 0.06\n')
    with simulator("--pty", "--scenario", str(scenario)) as (_proc, port):
        done = _cli("run", "--port", port, "--plan", str(plan), "--mixed-ago", "240", "--auto-resume", "0.2")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "safety stop: PRESSURE_RISE" in done.stdout


def test_a_bad_plan_exits_2_naming_field_value_and_range(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(FAST_PLAN.replace("flow_ml_min = 6.0", "flow_ml_min = 600.0"))
    done = _cli("run", "--port", "/dev/null-no-such", "--plan", str(bad), "--mixed-ago", "240")
    assert done.returncode == 2
    assert "flow_ml_min" in done.stdout
    assert "600" in done.stdout


def test_a_port_that_does_not_exist_exits_4(plan: Path) -> None:
    done = _cli("run", "--port", "/dev/cementguard-no-such-port", "--plan", str(plan), "--mixed-ago", "240")
    assert done.returncode == 4
    assert "/dev/cementguard-no-such-port" in done.stdout


def test_stop_command_latches_a_stop(plan: Path) -> None:
    with simulator("--pty") as (_proc, port):
        done = _cli("stop", "--port", port)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "STOP acknowledged" in done.stdout


def test_status_of_a_missing_port_is_a_link_failure() -> None:
    done = _cli("status", "--port", "/dev/cementguard-no-such-port")
    assert done.returncode == 4
    assert "cementguard ports" in done.stdout


def test_ports_lists_or_says_there_are_none() -> None:
    done = _cli("ports")
    assert done.returncode == 0
    assert done.stdout.strip()


def test_a_link_cut_mid_run_exits_4_leaves_the_recording_intact_and_the_pump_stopped(
    plan: Path, tmp_path: Path, sim_tcp: tuple[subprocess.Popen[str], int], socat_bridge: Any
) -> None:
    _sim, tcp_port = sim_tcp
    link = tmp_path / "rig"
    bridge = socat_bridge(tcp_port, link)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    run = subprocess.Popen(
        [sys.executable, "-m", "host.cli", "run", "--port", str(link), "--plan", str(plan),
         "--mixed-ago", "240", "--auto-resume", "30", "--record", str(tmp_path / "rec")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
    )  # fmt: skip
    assert run.stdout is not None
    for line in run.stdout:  # waits for the first increment: data and an event are recorded by then
        if line.startswith("increment done"):
            break
    bridge.kill()  # the cable is cut
    out, err = run.communicate(timeout=30)
    assert run.returncode == 4, out + err
    assert "link lost" in out

    (run_dir,) = (tmp_path / "rec").iterdir()
    rec = Recording.open(run_dir)
    assert rec.is_complete, rec.problems
    assert len(rec.samples) > 500
    assert StopReason.INCREMENT_DONE in [e.record.reason for e in rec.events]

    socat_bridge(tcp_port, link)
    status = _cli("status", "--port", str(link))
    assert status.returncode == 0, status.stdout + status.stderr
    assert "STOPPED" in status.stdout
    assert "HOST_LOST" in status.stdout


@pytest.mark.parametrize(("answer", "expected"), [("", 0), ("s", 3)])
async def test_increment_pauses_are_answered_at_the_terminal(
    tmp_path: Path, answer: str, expected: int
) -> None:
    """Enter resumes, 's' stops: the operator's answer, read through the same path as input()."""
    prompts: list[str] = []

    def operator(prompt: str) -> str:
        prompts.append(prompt)
        return answer

    path = tmp_path / "fast.toml"
    path.write_text(FAST_PLAN)
    with simulator("--pty") as (_proc, port):
        code = await run_plan(
            port, load_plan(path), mixed_ago_s=240.0, record_root=None, auto_resume_s=None,
            console=Console(file=io.StringIO()), ask=operator,
        )  # fmt: skip
    assert code == expected
    assert len(prompts) == 1
    assert "resume?" in prompts[0]

"""Every file the programs read is a regular file of bounded size (issue 13 item 6).

`--plan /dev/zero`, a scenario's `plan_file = "/dev/zero"`, `CEMENTGUARD_CONFIG=/dev/zero` and a
recording whose files are devices used to be read until memory ran out (a FIFO blocked for ever).
Each is now refused at once with one line naming the file and what is allowed. (The old behaviour is
shown here with a FIFO and an oversized file, never with /dev/zero: that would exhaust the
machine's memory.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hil.scenario import ScenarioError, load_scenario
from host.cli import main
from host.file_limits import MAX_TOML_BYTES, FileRejectedError, read_regular
from host.plan import PlanError, load_plan
from host.recording import (
    COUNTERS_FILE,
    EVENTS_FILE,
    META_FILE,
    TELEMETRY_FILE,
    Recorder,
    Recording,
    RecordingError,
)
from host.settings import SettingsError, load_settings
from tests.host.test_run_cli import FAST_PLAN
from tests.support.wire_client import REPO


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "plan.fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def huge_plan(tmp_path: Path) -> Path:
    """A valid plan padded with comments past the bound: accepted before, refused now."""
    path = tmp_path / "huge.toml"
    path.write_text(FAST_PLAN + ("# padding\n" * (MAX_TOML_BYTES // 10 + 1)))
    return path


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_as_plan_is_refused_at_once(device: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--port", "/dev/null", "--plan", device, "--mixed-ago", "240"]) == 2
    out = capsys.readouterr().out
    assert f"{device}: is a character device; allowed a regular file" in out


def test_a_fifo_as_plan_is_refused_instead_of_waiting_for_a_writer(fifo: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "host.cli", "run", "--port", "/dev/null", "--plan", str(fifo),
         "--mixed-ago", "1"],
        capture_output=True, text=True, timeout=30, env=env, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2
    assert "is a pipe (FIFO); allowed a regular file" in " ".join(done.stdout.split())


def test_an_oversized_plan_is_refused_naming_the_bound(huge_plan: Path) -> None:
    with pytest.raises(
        PlanError, match=rf"huge.toml: \d+ bytes is too large; allowed at most {MAX_TOML_BYTES}"
    ):
        load_plan(huge_plan)


def test_a_directory_is_not_a_plan(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="is a directory; allowed a regular file"):
        load_plan(tmp_path)


def test_a_scenario_whose_plan_file_is_dev_zero_is_refused(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('name = "zero"\nplan_file = "/dev/zero"\n')
    with pytest.raises(ScenarioError, match="plan_file: /dev/zero: is a character device"):
        load_scenario(scenario)


def test_cementguard_config_naming_dev_zero_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CEMENTGUARD_CONFIG", "/dev/zero")
    with pytest.raises(SettingsError, match="/dev/zero: is a character device"):
        load_settings()


@pytest.mark.parametrize("name", [META_FILE, EVENTS_FILE, COUNTERS_FILE, TELEMETRY_FILE])
def test_a_recording_file_that_is_a_device_is_refused(tmp_path: Path, name: str) -> None:
    with Recorder.create(tmp_path / "run", {"name": "x"}, None):
        pass
    assert Recording.open(tmp_path / "run").is_complete
    (tmp_path / "run" / name).unlink()
    os.symlink("/dev/zero", tmp_path / "run" / name)
    with pytest.raises(RecordingError, match=r"character device|no meta\.json"):
        Recording.open(tmp_path / "run")


def test_read_regular_reads_a_small_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"abc")
    assert read_regular(path, 3) == b"abc"
    with pytest.raises(FileRejectedError, match="3 bytes is too large; allowed at most 2"):
        read_regular(path, 2)


def test_the_simulator_refuses_a_device_as_scenario() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-m", "host.cli", "sim", "--pty", "--scenario", "/dev/zero"],
        capture_output=True, text=True, timeout=30, env=env, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2
    assert "/dev/zero: is not a regular file" in done.stderr

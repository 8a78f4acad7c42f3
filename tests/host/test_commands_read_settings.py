"""`run` and `status` read the settings as `bridge` does (host.settings.command_settings): the port, the
baud rate and the link timing from --config, $CEMENTGUARD_CONFIG or ./cementguard.toml, `--port`
winning; a settings file with a bad value is refused naming the field (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.host.test_run_cli import FAST_PLAN
from tests.support.wire_client import REPO, simulator

MISSING = "/dev/cementguard-no-such-port-from-settings"


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.upper().startswith("CEMENTGUARD_")}
    environ.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", **env)
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environ,
        timeout=120,
    )


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text(FAST_PLAN)
    return path


def test_run_takes_its_port_from_cementguard_config(tmp_path: Path, plan: Path) -> None:
    config = tmp_path / "bench.toml"
    config.write_text(f'port = "{MISSING}"\n')
    done = _cli(
        "run", "--plan", str(plan), "--mixed-ago", "240", cwd=tmp_path, CEMENTGUARD_CONFIG=str(config)
    )
    assert done.returncode == 4, done.stdout + done.stderr
    assert MISSING in done.stdout


def test_status_takes_its_port_from_cementguard_toml_in_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "cementguard.toml").write_text(f'port = "{MISSING}"\n')
    done = _cli("status", cwd=tmp_path)
    assert done.returncode == 4, done.stdout + done.stderr
    assert MISSING in done.stdout


def test_status_reaches_the_device_the_settings_name(tmp_path: Path) -> None:
    with simulator("--pty") as (_proc, port):
        config = tmp_path / "bench.toml"
        config.write_text(f'port = "{port}"\nbaud = 115200\n[link]\ncommand_timeout_ms = 300\n')
        done = _cli("status", "--config", str(config), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "IDLE" in done.stdout


@pytest.mark.parametrize("command", ["run", "status"])
def test_a_bad_settings_value_exits_2_naming_the_field(tmp_path: Path, plan: Path, command: str) -> None:
    config = tmp_path / "bench.toml"
    config.write_text(f'port = "{MISSING}"\n[link]\nretries = 99\n')
    extra = ["--plan", str(plan), "--mixed-ago", "240"] if command == "run" else []
    done = _cli(command, "--config", str(config), *extra, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "link.retries" in done.stdout
    assert "99" in done.stdout


@pytest.mark.parametrize("command", ["run", "status"])
def test_no_port_anywhere_exits_2_saying_where_to_give_one(tmp_path: Path, plan: Path, command: str) -> None:
    extra = ["--plan", str(plan), "--mixed-ago", "240"] if command == "run" else []
    done = _cli(command, *extra, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--port" in done.stdout + done.stderr

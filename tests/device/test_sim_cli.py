"""`cementguard sim` as a bench engineer runs it: TCP, scenario files, time scale, validate, and a
host that vanishes mid-injection."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import serial

from protocol import (
    PROTOCOL_VERSION,
    Ack,
    DeviceInfo,
    Event,
    EventKind,
    GetStatus,
    Hello,
    Mode,
    Start,
    State,
    Status,
    StopReason,
)
from tests.device.test_sim_smoke import _arm
from tests.support.wire_client import REPO, WireClient, simulator


def _sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", "sim", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def _hello(c: WireClient) -> DeviceInfo:
    reply, extra = c.command(lambda i: Hello(i, PROTOCOL_VERSION))
    assert isinstance(reply, Ack), reply
    assert isinstance(extra[0], DeviceInfo)
    return extra[0]


def test_validate_through_the_cli_passes_every_published_target() -> None:
    done = _sim("validate")
    assert done.returncode == 0, done.stdout + done.stderr
    # Every row passes but those listed as known misses, each with its reason (docs/simulator.md).
    summary = re.search(
        r"(\d+)/(\d+) PASS(?: \(\d+ of them predictions\))?(?:, (\d+) known MISS)?", done.stdout
    )
    assert summary is not None, done.stdout
    passed, rows, known = int(summary[1]), int(summary[2]), int(summary[3] or 0)
    assert rows >= 16, "the published pressure and cure targets are all still there"
    assert passed + known == rows
    assert done.stdout.count("known miss, target") == known
    assert "FAIL" not in done.stdout.replace("PASS/FAIL", "")


def test_tcp_serves_a_pyserial_socket_url_on_a_picked_port() -> None:
    with simulator("--tcp", "127.0.0.1:0") as (_proc, address):
        assert address.startswith("socket://127.0.0.1:")
        assert not address.endswith(":0")
        port = serial.serial_for_url(address, timeout=0.05)
        try:
            info = _hello(WireClient(port))
            assert info.protocol_version == PROTOCOL_VERSION
        finally:
            port.close()


def test_a_scenario_file_schedules_plant_faults(tmp_path: Path) -> None:
    scenario = tmp_path / "occlusion.toml"
    scenario.write_text('[plant]\nseed = 3\n\n[[plant.events]]\nkind = "occlusion"\nat_volume_ml = 0.05\n')
    with simulator("--pty", "--scenario", str(scenario)) as (_proc, address):
        port = serial.Serial(address, timeout=0.05)
        try:
            c = WireClient(port)
            _hello(c)
            continuous = lambda i: replace(_arm(i), mode=Mode.CONTINUOUS, increment_nl=0)  # noqa: E731
            assert isinstance(c.command(continuous)[0], Ack)
            assert isinstance(c.command(Start)[0], Ack)
            stop = c.wait_for(lambda m: isinstance(m, Event) and m.kind == EventKind.STOP, reads=5000)
            assert isinstance(stop, Event)
            assert stop.reason == StopReason.PRESSURE_RISE, stop
        finally:
            port.close()


def test_a_bad_scenario_file_names_the_field_and_the_range(tmp_path: Path) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text("[plant]\ntemperature_c = 80.0\n")
    done = _sim("--pty", "--scenario", str(scenario))
    assert done.returncode == 2
    assert "temperature_c" in done.stderr
    assert "80" in done.stderr
    assert done.stdout == "", "no PORT line for a simulator that did not start"


@pytest.mark.parametrize("text", ["[plant\n", "not toml at all = = 1\n"])
def test_a_scenario_that_is_not_toml_is_a_clear_error(tmp_path: Path, text: str) -> None:
    scenario = tmp_path / "broken.toml"
    scenario.write_text(text)
    done = _sim("--pty", "--scenario", str(scenario))
    assert done.returncode == 2
    assert "not valid TOML" in done.stderr


def test_a_missing_scenario_file_is_named(tmp_path: Path) -> None:
    done = _sim("--pty", "--scenario", str(tmp_path / "nope.toml"))
    assert done.returncode == 2
    assert "nope.toml" in done.stderr


@pytest.mark.parametrize("scale", ["0.5", "101"])
def test_time_scale_outside_its_range_is_refused(scale: str) -> None:
    done = _sim("--pty", "--time-scale", scale)
    assert done.returncode == 2
    assert "1..100" in done.stderr


def test_closing_the_pty_mid_injection_trips_host_lost_and_nothing_resumes() -> None:
    with simulator("--pty") as (proc, address):
        port = serial.Serial(address, timeout=0.05)
        proc.log.wait_for("host attached")
        c = WireClient(port)
        _hello(c)
        assert isinstance(c.command(_arm)[0], Ack)
        assert isinstance(c.command(Start)[0], Ack)
        port.close()  # the cable is pulled
        proc.log.wait_for("host detached")

        port = serial.Serial(address, timeout=0.05)
        try:
            c = WireClient(port)
            _hello(c)
            reply, extra = c.command(GetStatus)
            assert isinstance(reply, Ack)
            status = extra[0]
            assert isinstance(status, Status)
            assert (status.state, status.stop_reason) == (State.STOPPED, StopReason.HOST_LOST)
            volume = status.delivered_nl
            reply, extra = c.command(GetStatus)
            assert isinstance(extra[0], Status)
            assert extra[0].state == State.STOPPED, "a reconnect never resumes"
            assert extra[0].delivered_nl <= volume + 1_000, "the plunger does not advance after the stop"
        finally:
            port.close()

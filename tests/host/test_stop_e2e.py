"""`cementguard stop`, `status` and `clear` from a second terminal while `cementguard run` holds the
port of a real `cementguard sim --pty`; and what `stop` loads.

Every wait is on a line a process prints (read by a thread, bounded by a timeout), never a sleep.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from host.port_lock import PortBusy, PortLock
from host.recording import Recording
from protocol import StopReason
from tests.support.wire_client import REPO, SimulatorLog, simulator

LONG_PLAN = """
name = "long-test"
mode = "continuous"
flow_ml_min = 3.0
volume_limit_ml = 2.0

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


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    """The environment of every process of a test: a runtime directory of its own."""
    base = tempfile.mkdtemp(prefix="cg-")
    yield dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", XDG_RUNTIME_DIR=base)
    shutil.rmtree(base, ignore_errors=True)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )


def test_stop_status_and_clear_from_another_terminal_while_run_holds_the_port(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = tmp_path / "long.toml"
    plan.write_text(LONG_PLAN)
    with simulator("--pty", "--serial", "E2E-1") as (_sim, port):
        run = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "host.cli",
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
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env=env,
        )
        try:
            assert run.stdout is not None
            out = SimulatorLog(run.stdout)
            out.wait_for("stop from any terminal", timeout_s=30)

            # a second opener is refused, naming the run
            monkeypatch.setenv("XDG_RUNTIME_DIR", env["XDG_RUNTIME_DIR"])
            with pytest.raises(PortBusy) as busy:
                PortLock(port).acquire()
            assert f"PID {run.pid}" in str(busy.value)
            assert "cementguard run" in str(busy.value)

            status = _cli(env, "status", "--port", port)
            assert status.returncode == 0, status.stdout
            assert f"cementguard run (PID {run.pid})" in status.stdout
            assert "E2E-1" in status.stdout

            clear = _cli(env, "clear", "--port", port)  # the device refuses CLEAR while it runs
            assert clear.returncode == 1, clear.stdout
            assert "CLEAR refused" in clear.stdout

            stop = _cli(env, "stop", "--port", port)
            assert stop.returncode == 0, stop.stdout
            assert f"STOP acknowledged through cementguard run (PID {run.pid})" in stop.stdout
            assert "state STOPPED" in stop.stdout
            assert "OPERATOR_STOP" in stop.stdout

            assert run.wait(timeout=30) == 3, out.text()  # the run ends with the safety stop ...
            assert "OPERATOR_STOP" in out.text()  # ... and says which
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        # the run's recording has the stop, with where it came from
        (run_dir,) = (tmp_path / "rec").iterdir()
        (stop_event,) = Recording.open(run_dir).stop_events()
        assert stop_event.record.reason == StopReason.OPERATOR_STOP
        assert stop_event.annotations["stop_origin"] == "cementguard stop (another terminal)"
        assert stop_event.annotations["stop_latency_ms"] > 0

        # nobody holds the port now: status opens it directly and shows the stop latched in the device
        after = _cli(env, "status", "--port", port)
        assert after.returncode == 0, after.stdout
        assert "STOPPED" in after.stdout
        assert "OPERATOR_STOP" in after.stdout


def test_stop_status_and_clear_from_another_terminal_while_the_bridge_holds_the_port(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The MQTT bridge is a session too: status, stop and clear reach the device through it."""
    from hil.mosquitto import Mosquitto

    with (
        Mosquitto.start(tmp_path / "broker") as broker,
        simulator("--pty", "--serial", "E2E-BRIDGE") as (_sim, port),
    ):
        bridge = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "host.cli",
                "bridge",
                "--port",
                port,
                "--mqtt",
                broker.url,
                "--rig",
                "e2e",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
            env=env,
        )
        try:
            assert bridge.stdout is not None
            out = SimulatorLog(bridge.stdout)
            out.wait_for("BRIDGE", timeout_s=30)

            status = _cli(env, "status", "--port", port)
            assert status.returncode == 0, status.stdout
            assert f"cementguard bridge (PID {bridge.pid})" in status.stdout
            assert "E2E-BRIDGE" in status.stdout

            # the bridge cannot arm (remote sources only stop): the pump is IDLE, the STOP is
            # acknowledged by the device and changes nothing, and the answer says so. Through a
            # session, stop loads no protocol, numpy or pyserial: its request goes out at once.
            probe = (
                "import sys\n"
                "from host.cli import main\n"
                f"code = main(['stop', '--port', {port!r}, '--source', 'fluoro'])\n"
                "print('MODULES', ' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
                "sys.exit(code)\n"
            )
            stop = subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=env, timeout=60
            )
            assert stop.returncode == 0, stop.stdout + stop.stderr
            assert f"STOP acknowledged through cementguard bridge (PID {bridge.pid})" in stop.stdout
            assert "state IDLE; nothing was moving" in stop.stdout
            loaded = set(stop.stdout.split("MODULES", 1)[1].split())
            assert loaded & {"protocol", "numpy", "serial", "serial_asyncio_fast", "pydantic"} == set()

            clear = _cli(env, "clear", "--port", port)  # CLEAR in IDLE: ACK, no change (state machine)
            assert clear.returncode == 0, clear.stdout
            assert (
                f"CLEAR acknowledged through cementguard bridge (PID {bridge.pid}): state IDLE"
                in clear.stdout
            )
            assert bridge.poll() is None, "the bridge goes on serving"
        finally:
            bridge.terminate()
            bridge.wait(timeout=10)


HIL_SCENARIO = """
description = "Stopped from another terminal through the HIL runner's control endpoint."
seed = 5
plan_file = "PLAN"

[expect]
state = "STOPPED"
reason = "OPERATOR_STOP"
source = "OPERATOR"
"""


async def _wait_for_session(port: str, program: str, state: str) -> dict[str, object]:
    """Ask the port's endpoint until `program` answers and reports `state` (bounded: 60 s). Only
    the endpoint is asked: opening the port directly would take it from the program starting up."""
    from host import control

    deadline = time.monotonic() + 60
    while True:
        try:
            answer = await control.request(port, "status")
            if program in str(answer.get("session")) and answer.get("state") == state:
                return answer
        except control.ControlError:
            pass  # not serving yet
        assert time.monotonic() < deadline, f"{program} never reported {state} on {port}"
        await asyncio.sleep(0.05)  # poll interval for another process's start-up, not a synchronisation


def test_stop_from_another_terminal_while_the_hil_runner_holds_a_rig(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cementguard hil run --port P` (a real rig's mode) holds the port and serves the endpoint: a
    scenario that expects an operator stop passes when the stop comes from another terminal."""
    scenario = tmp_path / "stopped-from-elsewhere.toml"
    scenario.write_text(HIL_SCENARIO.replace("PLAN", str(REPO / "plans" / "continuous-2ml.toml")))
    monkeypatch.setenv("XDG_RUNTIME_DIR", env["XDG_RUNTIME_DIR"])
    with simulator("--pty", "--serial", "E2E-HIL") as (_sim, port):
        runner = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "host.cli",
                "hil",
                "run",
                str(scenario),
                "--port",
                port,
                "--junit",
                str(tmp_path / "junit.xml"),
                "--report-dir",
                str(tmp_path / "report"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO,
            env=env,
        )
        try:
            asyncio.run(_wait_for_session(port, "cementguard hil", "INJECTING"))
            stop = _cli(env, "stop", "--port", port)
            assert stop.returncode == 0, stop.stdout
            assert "STOP acknowledged through cementguard hil" in stop.stdout
            out, _ = runner.communicate(timeout=120)
            assert runner.returncode == 0, out
            assert "1 passed" in out
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()


def test_stop_loads_neither_simulator_nor_harness_nor_ui(env: dict[str, str]) -> None:
    """Issue 12: `cementguard stop` imports what it uses. Run its whole path (to the port-not-found
    answer) in a fresh interpreter and look at what got imported."""
    probe = (
        "import sys\n"
        "from host.cli import main\n"
        "code = main(['stop', '--port', '/dev/cementguard-no-such-port'])\n"
        "assert code == 4, code\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=env, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    loaded = set(done.stdout.strip().splitlines()[-1].split())
    assert {"host", "serial"} <= loaded, "the probe did run the stop path"
    forbidden = {"firmware_sim", "hil", "textual", "matplotlib", "plotext", "aiomqtt", "rich", "pydantic"}
    forbidden |= {"pandas", "pyarrow"}  # issue 16: analysis and exports only
    assert loaded & forbidden == set()


def test_the_launcher_imports_no_subcommand_to_list_them(env: dict[str, str]) -> None:
    """`cementguard --help` lists every subcommand by name and help text alone."""
    probe = (
        "import sys\n"
        "from host.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "ours = {'host', 'hil', 'firmware_sim'}\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ours)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "clear a latched stop" in done.stdout, "the help lists the subcommands"
    ours = set(done.stdout.strip().splitlines()[-1].split())
    # host.safe_output (stdlib only) guards stdout for every command, --help included
    assert ours <= {"host", "host.cli", "host.logs", "host.safe_output"}, ours

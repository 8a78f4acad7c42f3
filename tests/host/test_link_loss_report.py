"""After a link loss the operator is told what the device did, and the recording has it (issue 13
item 3).

- A frozen host (SIGSTOP for longer than the watchdog): the device latches HOST_LOST and its EVENT
  waits in the host's input buffer. The host must read what was already received before judging the
  line silent; it used to declare the link lost, close the port and throw the event away (exit 4,
  "state INJECTING" on screen, no stop in the recording).
- A pulled cable that comes back: the HOST_LOST event is gone for good. After the reconnect `run`
  shows the device's state and last stop, read from STATUS, and records that stop.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from host.plan import load_plan
from host.recording import Recording
from host.run import EXIT_LINK, EXIT_SAFETY_STOP, run_plan
from protocol import StopReason
from tests.host.test_run_cli import FAST_PLAN
from tests.support.lossy_link import lossy_relay
from tests.support.wire_client import REPO, simulator

ONE_INCREMENT = FAST_PLAN.replace("increment_ml = 0.1", "increment_ml = 0.3").replace(
    "volume_limit_ml = 0.2", "volume_limit_ml = 0.3"
)
"""3 s of injection without a pause: a fault in the middle of it hits a moving plunger."""


def _host_lost(rec: Recording) -> list[dict[str, object]]:
    return [e.annotations for e in rec.stop_events() if e.record.reason == StopReason.HOST_LOST]


def test_a_frozen_host_records_the_host_lost_event_waiting_in_its_input(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(ONE_INCREMENT)
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    with simulator("--pty", "--trace") as (sim, port):
        run = subprocess.Popen(
            [sys.executable, "-m", "host.cli", "run", "--port", port, "--plan", str(plan),
             "--mixed-ago", "240", "--auto-resume", "0.2", "--record", str(tmp_path / "rec")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=env,
        )  # fmt: skip
        assert run.stdout is not None
        while float(sim.log.wait_for("TRACE truth").split()[3]) < 0.03:
            pass  # until the plunger has delivered 30 uL: it is moving
        os.kill(run.pid, signal.SIGSTOP)
        try:
            stop = sim.log.wait_for("TRACE stop").split()
            assert int(stop[3]) == StopReason.HOST_LOST  # the watchdog latched while the host was frozen
            time.sleep(0.5)  # the fault's duration: the host stays frozen a while longer
        finally:
            os.kill(run.pid, signal.SIGCONT)
        out, _ = run.communicate(timeout=30)
    assert run.returncode == EXIT_SAFETY_STOP, out
    assert "safety stop: HOST_LOST" in out
    (run_dir,) = (tmp_path / "rec").iterdir()
    (notes,) = _host_lost(Recording.open(run_dir))
    assert "read_from" not in notes  # the device's own event, read from the input buffer


async def test_after_a_cut_and_a_reconnect_run_says_what_the_device_did(tmp_path: Path) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(ONE_INCREMENT)
    out = io.StringIO()
    with simulator("--pty") as (_sim, device_port), lossy_relay(device_port) as relay:
        task = asyncio.create_task(
            run_plan(
                relay.port, load_plan(plan), mixed_ago_s=240.0, record_root=tmp_path / "rec",
                auto_resume_s=0.2, console=Console(file=out, width=200),
            )
        )  # fmt: skip
        assert await asyncio.to_thread(relay.truth.injecting.wait, 20)
        relay.cut()
        assert await asyncio.to_thread(relay.truth.stopped.wait, 20)  # HOST_LOST, never delivered
        relay.restore()
        code = await asyncio.wait_for(task, 30)
    text = out.getvalue()
    assert code == EXIT_LINK, text
    assert "link lost: no valid frame" in text
    assert "device: STOPPED, latched HOST_LOST (source CONTROLLER)" in text
    assert "mL delivered" in text
    assert "INJECTING" not in text.splitlines()[-5]  # the display does not leave "state INJECTING"
    (run_dir,) = (tmp_path / "rec").iterdir()
    (notes,) = _host_lost(Recording.open(run_dir))
    assert notes["read_from"] == "STATUS after reconnect"

"""A RESUME refused because a stop latched during the imaging pause names that stop (issue 13 item 3).

During the pause another terminal stops the pump (`cementguard stop --port P`, through the run's
control endpoint) and the STOP event frame is damaged on the line. The operator then answers the
prompt; RESUME is refused with STOP_LATCHED. `run` used to say only "RESUME refused: STOP_LATCHED",
and its recording had no stop. It now reads STATUS, says which stop is latched, records it (marked
read from STATUS) and exits 3.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from host.plan import load_plan
from host.recording import Recording
from host.run import EXIT_SAFETY_STOP, run_plan
from protocol import Event, EventKind, StopReason
from protocol.messages import Message
from tests.host.test_run_cli import FAST_PLAN
from tests.support.lossy_link import LossyRelay, lossy_relay
from tests.support.wire_client import REPO, simulator


def _operator_stop(msg: Message) -> bool:
    return isinstance(msg, Event) and msg.kind == EventKind.STOP and msg.reason == StopReason.OPERATOR_STOP


def _stop_from_another_terminal_then_resume(relay: LossyRelay) -> str:
    """The operator prompt (a worker thread): meanwhile someone stops the pump from another
    terminal, and its STOP event is damaged; then the operator presses Enter (resume)."""

    def ask(_prompt: str) -> str:
        relay.damage_next(_operator_stop)
        done = subprocess.run(
            [sys.executable, "-m", "host.cli", "stop", "--port", relay.port],
            capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return ""

    return ask  # type: ignore[return-value]


async def test_a_resume_refused_by_a_latched_stop_says_which_and_records_it(tmp_path: Path) -> None:
    path = tmp_path / "fast.toml"
    path.write_text(FAST_PLAN)
    out = io.StringIO()
    with simulator("--pty") as (_proc, device_port), lossy_relay(device_port) as relay:
        code = await asyncio.wait_for(
            run_plan(
                relay.port, load_plan(path), mixed_ago_s=240.0, record_root=tmp_path / "rec",
                auto_resume_s=None, ask=_stop_from_another_terminal_then_resume(relay),
                console=Console(file=out, width=200),
            ),
            60,
        )  # fmt: skip
        damaged = list(relay.damaged)
    text = out.getvalue()
    assert len(damaged) == 1, text  # the stop's event never reached the host
    assert code == EXIT_SAFETY_STOP, text
    assert "STOP_LATCHED" in text
    assert "safety stop: OPERATOR_STOP" in text
    (run_dir,) = (tmp_path / "rec").iterdir()
    stops = {e.record.reason: e for e in Recording.open(run_dir).stop_events()}
    assert stops[StopReason.OPERATOR_STOP].annotations["read_from"] == "STATUS"

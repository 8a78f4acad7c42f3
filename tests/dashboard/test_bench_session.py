"""A whole bench session in the real dashboard, in a real terminal, against the real simulator:
connect, choose the syringe, zero, prime, record, arm, inject in increments, stop, clear, withdraw,
quit, then `cementguard report` on the recording, whose figures are checked against the recording.

Everything is done by keys written to the pty as an operator types them, and every wait is on what
the program drew or wrote (never a sleep). The simulator and the dashboard run at TIME_SCALE: the
prime (3 s), the increments (2 s each) and the withdraw (3 s) take about 12 s of the test's ~25 s.
"""

from __future__ import annotations

import html
import re
import subprocess
from pathlib import Path

import numpy as np

from protocol import Flags, State, StopReason, StopSource
from tests.dashboard.conftest import write_plan
from tests.dashboard.test_real_terminal import (
    CEMENTGUARD,
    REC_ON,
    SPACE,
    Terminal,
    banner,
    check_the_terminal_is_restored,
    only_recording,
    terminal,
)
from tests.support.wire_client import simulator

terminals = terminal
"""The real-terminal tests' fixture: each test's terminals, their programs killed at the end."""

TIME_SCALE = 1.0
"""Real time. Showing the setup panel holds the event loop for 100-170 ms on a loaded machine
(measured in this pty: the layout of its ~90 widgets), and the link's heartbeat with it: at 2x the
device's watchdog (250 ms of wall time, heartbeat every 125 ms) would expire on some openings."""


def three_increments(tmp_path: Path) -> Path:
    """3 x 0.1 mL at 3 mL/min: each increment takes 2 s of simulated time."""
    return write_plan(
        tmp_path,
        "bench-session",
        flow_ml_min="flow_ml_min = 3.0",
        increment_ml="increment_ml = 0.1",
        volume_limit_ml="volume_limit_ml = 0.3",
    )


def report_rows(page: str) -> dict[str, str]:
    """The report's key-value rows (summary, device, ...), as written."""
    rows = re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", page)
    return {html.unescape(k): html.unescape(v) for k, v in rows}


def test_a_whole_bench_session_from_the_keyboard_and_its_report(
    tmp_path: Path, terminals: list[Terminal]
) -> None:
    plan = three_increments(tmp_path)
    rec_root = tmp_path / "rec"
    with simulator("--pty", "--time-scale", str(TIME_SCALE), "--serial", "BENCH-E2E") as (_sim, port):
        argv = [str(CEMENTGUARD), "dashboard", "--port", port, "--plan", str(plan), "--mixed-ago", "240"]
        argv += ["--time-scale", str(TIME_SCALE), "--record", str(rec_root), "--record-tail", "1"]
        term = Terminal(argv, tmp_path)
        terminals.append(term)
        term.wait_for(banner("IDLE"), timeout_s=20.0)  # connected, handshake done

        # setup: syringe, zero, prime
        term.wait_for(b"ready: 1-6 syringe", term.press(b"u"))
        term.wait_for(b"syringe 2.5ml: bore 7.29 mm", term.press(b"2"))
        term.wait_for(b"zeroed: offset", term.press(b"z"))
        at = term.press(b"p")
        term.wait_for(b"PRIMING: ", at)  # its progress, from MOTION_STATUS
        term.wait_for(b"prime done: 0.05", at)

        # the injection: record, arm, an increment, resume, STOP in the next
        term.wait_for(b"Arm a", term.press(b"u"))
        term.wait_for(REC_ON, term.press(b"r"))
        term.wait_for(banner("ARMED"), term.press(b"a"))
        at = term.press(b"s")
        paused = term.wait_for(banner("PAUSED"), at)
        term.wait_for(b"INCREMENT_DONE", paused)
        term.wait_for(b"check the image, then space resumes", paused)
        at = term.press(SPACE)
        term.wait_for(banner("INJECTING"), at)
        stopped = term.wait_for(banner("STOPPED"), term.press(b"x"))
        term.wait_for(b"OPERATOR_STOP  (source: operator)", stopped)
        term.wait_for(b"recording saved", term.press(b"r"))

        # after it: clear the latched stop, withdraw, quit
        term.wait_for(b"Clear the controller?", term.press(b"c"))
        term.wait_for(banner("IDLE"), term.press(b"y"))
        term.wait_for(b"ready: 1-6 syringe", term.press(b"u"))
        at = term.press(b"w")
        term.wait_for(b"WITHDRAWING: ", at)
        term.wait_for(b"withdraw done: 0.05", at)
        term.wait_for(b"Arm a", term.press(b"u"))
        at = term.press(b"q")
        assert term.proc.wait(timeout=10) == 0
        check_the_terminal_is_restored(term, at)

    recording = only_recording(rec_root)
    setup = recording.meta["extra"]["device_setup"]
    assert setup["syringe"] == "2.5ml", setup
    assert setup["bore_mm"] == 7.29, setup
    assert setup["zero_utc_s"] > 0, "the zero is recorded with the run"

    samples = recording.samples
    delivered_ml = float(samples["delivered_nl"].max()) / 1e6
    assert 0.1 < delivered_ml < 0.2, "one increment, then stopped in the second; the prime not counted"
    valid = (samples["flags"] & int(Flags.SENSOR_FAULT)) == 0
    peak_kpa = float(samples["pressure_pa"][valid].max()) / 1000
    stops = recording.stop_events()
    assert [(s.record.reason, s.record.source) for s in stops] == [
        (StopReason.INCREMENT_DONE, StopSource.CONTROLLER),
        (StopReason.OPERATOR_STOP, StopSource.OPERATOR),
    ]
    assert stops[-1].record.state == State.STOPPED
    assert stops[-1].annotations["stop_origin"] == "dashboard key x"

    done = subprocess.run(
        [str(CEMENTGUARD), "report", str(recording.path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    page = (recording.path / "report.html").read_text(encoding="utf-8")
    rows = report_rows(page)
    assert rows["delivered volume"] == f"{delivered_ml:.6f} mL", rows
    assert rows["peak pressure"].startswith(f"{peak_kpa:.3f} kPa"), (rows["peak pressure"], peak_kpa)
    assert rows["stops"] == "2 (1 latched)", rows
    stop_cells = re.findall(r"<td>(INCREMENT_DONE|OPERATOR_STOP)</td>", page)
    assert stop_cells == ["INCREMENT_DONE", "OPERATOR_STOP"], stop_cells
    assert (recording.path / "report.pdf").stat().st_size > 0
    assert np.all(np.diff(samples["delivered_nl"].astype(np.int64)) >= 0)

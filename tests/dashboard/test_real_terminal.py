"""The real dashboard program in a real pseudo-terminal, driven by key bytes as a person would.

The pilot tests (`run_test`) drive the app object inside the test's own event loop; these run the
installed console program (`cementguard dashboard`, `cementguard demo`) as a child process whose
stdin, stdout and stderr are a 160x48 pty (TERM=xterm-256color, the pty its controlling terminal),
write the keys to the pty's master side, and judge from outside the program only: what it drew
(the state banner's words in the byte stream), the recording it wrote, its exit status, and the
terminal it leaves behind (alternate screen left, cursor shown, the line discipline restored). The
signals a dashboard meets outside the keyboard (SIGTERM, SIGHUP, the terminal window closed) are
sent as the system sends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from host.client import DeviceClient
from host.recording import Recording
from protocol import State, StopReason, StopSource
from tests.dashboard.conftest import write_plan
from tests.support.wire_client import simulator

COLS, ROWS = 160, 48
TIME_SCALE = 2.0
"""The whole-run test's simulator and dashboard run 2x faster than wall time: the host's watchdog
(500 ms of controller time) is then 250 ms of wall time, a margin a loaded machine still keeps."""
CEMENTGUARD = Path(sys.executable).with_name("cementguard")
"""The installed console script, what `make demo` runs."""
CTTY_EXEC = "; ".join(
    (
        "import fcntl, os, sys, termios",
        "fcntl.ioctl(0, termios.TIOCSCTTY, 0)",
        "os.execv(sys.argv[1], sys.argv[1:])",
    )
)
"""Make the pty (stdin) the controlling terminal of the new session, then become the program."""
ALT_SCREEN_ON, ALT_SCREEN_OFF, CURSOR_SHOWN = b"\x1b[?1049h", b"\x1b[?1049l", b"\x1b[?25h"
CURSOR_MOVE = re.compile(rb"\x1b\[(\d+);(\d+)H")
ESCAPE, SPACE, CTRL_Q = b"\x1b", b" ", b"\x11"


def banner(word: str) -> bytes:
    """The state banner's headline as drawn: the letters spaced out (widgets/banner.py)."""
    return f" {' '.join(word)} ".encode()


REC_ON = "\u25cf REC".encode()
"""The recording indicator while recording (widgets/panels.py RecordingIndicator)."""


class Terminal:
    """One program running in a pseudo-terminal of a set size; everything it writes is read
    continuously (a full pty would block the program) into a buffer the test waits on."""

    def __init__(self, argv: Sequence[str], cwd: Path) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        self.cooked = termios.tcgetattr(self.slave)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
        env["TERM"] = "xterm-256color"
        self.output = bytearray()
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CTTY_EXEC, *argv],
            stdin=self.slave,
            stdout=self.slave,
            stderr=self.slave,
            start_new_session=True,
            cwd=cwd,
            env=env,
        )
        self._reader = threading.Thread(target=self._read, name="pty-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            with self._changed:
                self.output.extend(data)
                self._changed.notify_all()

    def mark(self) -> int:
        with self._changed:
            return len(self.output)

    def press(self, key: bytes) -> int:
        """Type `key`; returns the output position before it, to look for its effect after."""
        at = self.mark()
        os.write(self.master, key)
        return at

    def wait_for(self, text: bytes, since: int = 0, timeout_s: float = 10.0) -> int:
        """Position of `text` in the output after `since`, once it has been drawn."""
        with self._changed:
            found = self._changed.wait_for(lambda: self.output.find(text, since) >= 0, timeout_s)
            if not found:
                tail = self.screen_text(since)[-3000:]
                raise AssertionError(f"{text!r} not drawn within {timeout_s} s; output since:\n{tail}")
            return self.output.find(text, since)

    def screen_text(self, since: int = 0) -> str:
        """The output decoded, escape sequences dropped (for messages and plain-text checks)."""
        with self._changed:
            raw = bytes(self.output[since:])
        return re.sub(r"\x1b\[[0-9;?<>=]*[A-Za-z]", "", raw.decode("utf-8", "replace"))

    def hang_up(self) -> None:
        """Close the terminal window: stop reading, close the master side. The kernel then sends
        SIGHUP to the program (the session's controlling process) and its writes to the terminal
        fail (EIO)."""
        self._stop.set()
        self._reader.join(timeout=5)
        os.close(self.master)
        self.master = -1

    def close(self) -> None:
        """Kill whatever is left of the program's process group (it leads its own session: the
        demo's simulator is in it too), then stop reading."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self.master >= 0:
            self.hang_up()
        os.close(self.slave)


@pytest.fixture
def terminal() -> Iterator[list[Terminal]]:
    """Terminals opened by a test (append to the list); each one's program is killed at the end."""
    opened: list[Terminal] = []
    yield opened
    for term in opened:
        term.close()


def two_increments(tmp_path: Path) -> Path:
    """2 x 0.1 mL at 6 mL/min: each increment takes a second of simulated time."""
    return write_plan(
        tmp_path,
        "two-increments",
        flow_ml_min="flow_ml_min = 6.0",
        increment_ml="increment_ml = 0.1",
        volume_limit_ml="volume_limit_ml = 0.2",
    )


def run_the_plan_by_keys(term: Terminal) -> None:
    """What the operator does: record, arm, start, resume after each increment, quit at the end."""
    term.wait_for(banner("IDLE"), timeout_s=20.0)  # connected, handshake done, plan loaded
    term.wait_for(REC_ON, term.press(b"r"))
    term.wait_for(banner("ARMED"), term.press(b"a"))
    at = term.press(b"s")
    term.wait_for(banner("INJECTING"), at)
    paused = term.wait_for(banner("PAUSED"), at)
    term.wait_for(b"INCREMENT_DONE", paused)
    term.wait_for(b"check the image, then space resumes", paused)
    at = term.press(SPACE)
    term.wait_for(banner("INJECTING"), at)
    done = term.wait_for(banner("DONE"), at)
    term.wait_for(b"VOLUME_LIMIT", done)


def quit_and_check_the_terminal(term: Terminal, key: bytes = b"q") -> None:
    """Quit by `key`: the program exits 0 in bounded time and leaves the terminal as it found it."""
    at = term.press(key)
    assert term.proc.wait(timeout=10) == 0
    check_the_terminal_is_restored(term, at)


def check_the_terminal_is_restored(term: Terminal, at: int) -> None:
    """The program (exited) left the terminal as it found it; `at`: where to show output from."""
    out = bytes(term.output)
    assert ALT_SCREEN_ON in out, "the app never entered the alternate screen"
    assert out.rfind(ALT_SCREEN_OFF) > out.rfind(ALT_SCREEN_ON), "the alternate screen was not left"
    assert out.rfind(CURSOR_SHOWN) > out.rfind(ALT_SCREEN_OFF), "the cursor was not shown again"
    for mode in (b"1000", b"1003", b"1006", b"2004"):  # mouse reporting, bracketed paste
        assert out.rfind(b"\x1b[?" + mode + b"l") > out.rfind(b"\x1b[?" + mode + b"h"), mode
    assert termios.tcgetattr(term.slave) == term.cooked, "the terminal's modes were not restored"
    assert "Traceback" not in term.screen_text(), term.screen_text(at)[-3000:]
    moves = [(int(r), int(c)) for r, c in CURSOR_MOVE.findall(out)]
    assert max(r for r, _ in moves) == ROWS, "drawn for another window height"
    assert max(c for _, c in moves) <= COLS


def injecting(tmp_path: Path, port: str, terminal: list[Terminal]) -> Terminal:
    """The dashboard on `port` with a 1.5 mL continuous plan (30 s of flow), recording, injecting."""
    plan = write_plan(tmp_path, "continuous", mode='mode = "continuous"', increment_ml="")
    argv = [str(CEMENTGUARD), "dashboard", "--port", port, "--plan", str(plan), "--mixed-ago", "240"]
    term = Terminal([*argv, "--record", str(tmp_path / "rec"), "--record-tail", "1"], tmp_path)
    terminal.append(term)
    term.wait_for(banner("IDLE"), timeout_s=20.0)
    term.wait_for(REC_ON, term.press(b"r"))
    term.wait_for(banner("ARMED"), term.press(b"a"))
    term.wait_for(banner("INJECTING"), term.press(b"s"))
    return term


def only_recording(root: Path) -> Recording:
    runs = [p for p in root.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    recording = Recording.open(runs[0])
    assert recording.is_complete, "closed.json missing: the recording was not closed on quit"
    return recording


def assert_whole_incremental_run(recording: Recording) -> None:
    assert recording.plan["increment_ml"] == 0.1
    assert recording.plan["volume_limit_ml"] == 0.2
    stops = recording.stop_events()
    assert [s.record.reason for s in stops] == [StopReason.INCREMENT_DONE, StopReason.VOLUME_LIMIT]
    assert [s.record.state for s in stops] == [State.PAUSED, State.DONE]
    assert all(s.record.source == StopSource.CONTROLLER for s in stops)
    # The event is at the trigger, one braking distance (~2 uL at 6 mL/min) before the mark; the
    # plunger comes to rest on it (docs/controller.md, DeliveryMonitor).
    for stop, mark_ml in zip(stops, (0.1, 0.2), strict=True):
        assert mark_ml - 0.005 <= stop.record.delivered_ml <= mark_ml + 0.001, (stop.record, mark_ml)
    delivered_ml = float(recording.samples["delivered_nl"].max()) / 1e6
    assert delivered_ml == pytest.approx(0.2, rel=0.01)


def test_dashboard_runs_a_whole_incremental_injection_from_the_keyboard(
    tmp_path: Path, terminal: list[Terminal]
) -> None:
    plan = two_increments(tmp_path)
    with simulator("--pty", "--time-scale", str(TIME_SCALE), "--serial", "PTY-E2E") as (_sim, port):
        argv = [str(CEMENTGUARD), "dashboard", "--port", port, "--plan", str(plan), "--mixed-ago", "240"]
        argv += ["--time-scale", str(TIME_SCALE), "--record", str(tmp_path / "rec"), "--record-tail", "1"]
        term = Terminal(argv, tmp_path)
        terminal.append(term)
        run_the_plan_by_keys(term)
        quit_and_check_the_terminal(term)
    assert_whole_incremental_run(only_recording(tmp_path / "rec"))


def test_demo_runs_a_whole_incremental_injection_and_takes_its_simulator_down(
    tmp_path: Path, terminal: list[Terminal]
) -> None:
    """`make demo` is `cementguard demo`: its own simulator, at real time, with a short plan."""
    plan = two_increments(tmp_path)
    term = Terminal(
        [str(CEMENTGUARD), "demo", "--plan", str(plan), "--record", str(tmp_path / "rec")], tmp_path
    )
    terminal.append(term)
    run_the_plan_by_keys(term)
    quit_and_check_the_terminal(term)
    with pytest.raises(ProcessLookupError):  # the demo's simulator went with it: the group is empty
        os.killpg(term.proc.pid, 0)
    assert_whole_incremental_run(only_recording(tmp_path / "rec"))


def test_escape_from_the_real_terminal_stops_the_injection(tmp_path: Path, terminal: list[Terminal]) -> None:
    with simulator("--pty", "--serial", "PTY-E2E") as (_sim, port):
        term = injecting(tmp_path, port, terminal)
        stopped = term.wait_for(banner("STOPPED"), term.press(ESCAPE))
        term.wait_for(b"OPERATOR_STOP  (source: operator)", stopped)
        term.wait_for(b"latched: c clears", stopped)
        quit_and_check_the_terminal(term)
    recording = only_recording(tmp_path / "rec")
    stops = recording.stop_events()
    assert [(s.record.reason, s.record.source) for s in stops] == [
        (StopReason.OPERATOR_STOP, StopSource.OPERATOR)
    ]
    notes = stops[0].annotations
    assert notes["stop_source"] == "operator"
    assert notes["stop_origin"] == "dashboard key escape"
    assert notes["stop_latency_ms"] > 0
    assert 0 < stops[0].record.delivered_ml < 1.5


def status_of(port: str) -> tuple[State, StopReason, StopSource]:
    """The controller's own state, read over the port once the dashboard has let go of it."""

    async def read() -> tuple[State, StopReason, StopSource]:
        async with DeviceClient.open(port) as ctl:
            status = await ctl.get_status()
            return State(status.state), StopReason(status.stop_reason), StopSource(status.stop_source)

    return asyncio.run(read())


@pytest.mark.parametrize(("key", "name"), [(b"q", "q"), (CTRL_Q, "ctrl+q")], ids=["q", "ctrl+q"])
def test_quitting_while_injecting_stops_first(
    tmp_path: Path, terminal: list[Terminal], key: bytes, name: str
) -> None:
    """q, and Textual's own ctrl+q, send STOP before leaving: the controller latches the operator's
    STOP, not the HOST_LOST its watchdog would raise some time after a host that just went away."""
    with simulator("--pty", "--serial", "PTY-E2E") as (_sim, port):
        term = injecting(tmp_path, port, terminal)
        term.wait_for(b"Stop and quit (y)", term.press(key))  # asked first
        at = term.press(b"y")
        assert term.proc.wait(timeout=10) == 0
        check_the_terminal_is_restored(term, at)
        # said on the terminal after the app has left it: what was done, and where the run is
        after = bytes(term.output)[bytes(term.output).rfind(ALT_SCREEN_OFF) :].decode(errors="replace")
        assert "STOP sent before quitting: acknowledged" in after, after
        assert "controller: STOPPED, OPERATOR_STOP (source: operator)" in after, after
        assert f"recording: {tmp_path / 'rec'}" in after, after
        assert "delivered: 0." in after, after
        assert status_of(port) == (State.STOPPED, StopReason.OPERATOR_STOP, StopSource.OPERATOR)
    stops = only_recording(tmp_path / "rec").stop_events()
    assert [(s.record.reason, s.annotations.get("stop_origin")) for s in stops] == [
        (StopReason.OPERATOR_STOP, f"dashboard key {name}")
    ]


def signal_the_program(term: Terminal, how: str) -> None:
    """SIGTERM to the program (a shutdown, `kill`); SIGHUP to its process group (the shell that
    started it exiting); or the terminal window closed (its master side), the kernel's SIGHUP."""
    if how == "SIGTERM":
        term.proc.send_signal(signal.SIGTERM)
    elif how == "SIGHUP":
        os.killpg(term.proc.pid, signal.SIGHUP)
    else:
        term.hang_up()


@pytest.mark.parametrize(
    ("how", "name"),
    [("SIGTERM", "SIGTERM"), ("SIGHUP", "SIGHUP"), ("window closed", "SIGHUP")],
    ids=["SIGTERM", "SIGHUP", "window-closed"],
)
def test_a_quit_signal_while_injecting_stops_first(
    tmp_path: Path, terminal: list[Terminal], how: str, name: str
) -> None:
    """A signal ends the dashboard as q does: STOP first (the controller latches the operator's
    STOP, not its watchdog's HOST_LOST), the recording closed with that STOP and its origin, an
    exit in bounded time, and (while there is a terminal) the terminal restored."""
    with simulator("--pty", "--serial", "PTY-E2E") as (_sim, port):
        term = injecting(tmp_path, port, terminal)
        at = term.mark()
        signal_the_program(term, how)
        assert term.proc.wait(timeout=10) == 0
        if how != "window closed":
            check_the_terminal_is_restored(term, at)
        assert status_of(port) == (State.STOPPED, StopReason.OPERATOR_STOP, StopSource.OPERATOR)
    stops = only_recording(tmp_path / "rec").stop_events()
    assert [(s.record.reason, s.record.source) for s in stops] == [
        (StopReason.OPERATOR_STOP, StopSource.OPERATOR)
    ]
    notes = stops[0].annotations
    assert notes["stop_origin"] == f"dashboard signal {name}"
    assert notes["stop_source"] == "operator"
    assert notes["stop_latency_ms"] > 0

"""`cementguard run` when the recording fails, the recording's tail after a stop, and the live view
showing the device as it is (issue 12, items 3, 4 and 5), against the simulator on a pty."""

from __future__ import annotations

import asyncio
import errno
import io
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

import host.recording
from host.client import DeviceClient, LinkOptions
from host.plan import load_plan
from host.recording import Recording
from host.run import RecordPolicy, run_plan
from protocol import EventKind, State, StopReason, StopSource
from protocol.enums import Flags
from tests.host.test_run_cli import FAST_PLAN, _cli
from tests.support.wire_client import simulator

CONTINUOUS = FAST_PLAN.replace('mode = "incremental"', 'mode = "continuous"').replace(
    "increment_ml = 0.1\n", ""
)
RUN_TIMEOUT_S = 60.0
"""A bound on the whole run: the defect was a run that never returned."""


def _plan(tmp_path: Path, text: str, name: str = "plan.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def _status(port: str) -> tuple[State | int, StopReason | int, StopSource | int]:
    async with DeviceClient.open(port) as ctl:
        status = await ctl.get_status()
    return status.state, status.stop_reason, status.stop_source


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A directory on a 64 kB tmpfs: a recording fills it within a second or two at 1 kHz."""
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True
    )
    assert mounted.returncode == 0, f"this test mounts a tmpfs (as root): {mounted.stderr!r}"
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


async def test_a_full_disk_during_the_injection_stops_it_and_run_returns(
    full_disk: Path, tmp_path: Path
) -> None:
    out = io.StringIO()
    plan = load_plan(_plan(tmp_path, CONTINUOUS.replace("volume_limit_ml = 0.2", "volume_limit_ml = 1.0")))
    closes: list[str] = []
    with simulator("--pty") as (_proc, port):
        original = DeviceClient.close

        async def counting_close(self: DeviceClient) -> None:
            closes.append(self.url)
            await original(self)

        DeviceClient.close = counting_close  # type: ignore[method-assign]
        try:
            code = await asyncio.wait_for(
                run_plan(
                    port, plan, mixed_ago_s=240.0, record_root=full_disk, auto_resume_s=None,
                    console=Console(file=out, width=120),
                    record=RecordPolicy(tail_s=1.0, min_free_bytes=0),
                ),
                RUN_TIMEOUT_S,
            )  # fmt: skip
        finally:
            DeviceClient.close = original  # type: ignore[method-assign]
        state, reason, source = await _status(port)
    text = out.getvalue()
    assert code == 3, text
    assert "recording failed" in text
    assert "injection stopped: the recording failed" in text
    assert "recording saved" not in text
    assert closes == [port], "the link is closed on the way out"
    assert (state, reason, source) == (State.STOPPED, StopReason.OPERATOR_STOP, StopSource.OPERATOR)


async def test_a_full_disk_with_continue_warns_and_completes_the_plan(
    full_disk: Path, tmp_path: Path
) -> None:
    out = io.StringIO()
    plan = load_plan(_plan(tmp_path, CONTINUOUS.replace("volume_limit_ml = 0.2", "volume_limit_ml = 0.4")))
    with simulator("--pty") as (_proc, port):
        code = await asyncio.wait_for(
            run_plan(
                port, plan, mixed_ago_s=240.0, record_root=full_disk, auto_resume_s=None,
                console=Console(file=out, width=160),
                record=RecordPolicy(tail_s=1.0, on_error="continue", min_free_bytes=0),
            ),
            RUN_TIMEOUT_S,
        )  # fmt: skip
    text = out.getvalue()
    assert code == 0, text
    assert "plan completed" in text
    assert "WARNING: the recording failed; the injection goes on UNRECORDED" in text
    assert "recording saved" not in text


async def test_a_read_only_recording_stops_the_injection_and_closing_does_not_raise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory turning read-only under the recorder (EROFS from write): the injection stops,
    and closing the recorder (whose final flush fails too) reports instead of raising out of the
    `finally`, where it used to mask the run's result and skip the link's close."""
    writes = 0
    real = host.recording._write_all

    def failing_write(fd: int, data: bytes) -> None:
        nonlocal writes
        writes += 1
        if writes > 3:  # meta.json and the first flushes go through, then the filesystem is read-only
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        real(fd, data)

    monkeypatch.setattr(host.recording, "_write_all", failing_write)
    out = io.StringIO()
    plan = load_plan(_plan(tmp_path, CONTINUOUS.replace("volume_limit_ml = 0.2", "volume_limit_ml = 1.0")))
    with simulator("--pty") as (_proc, port):
        code = await asyncio.wait_for(
            run_plan(
                port, plan, mixed_ago_s=240.0, record_root=tmp_path / "rec", auto_resume_s=None,
                console=Console(file=out, width=120), record=RecordPolicy(tail_s=1.0),
            ),
            RUN_TIMEOUT_S,
        )  # fmt: skip
        state, _reason, _source = await _status(port)
    text = out.getvalue()
    assert code == 3, text
    assert "Read-only file system" in text
    assert "recording saved" not in text
    assert state == State.STOPPED


async def test_start_is_refused_below_the_free_space_bound(tmp_path: Path) -> None:
    out = io.StringIO()
    plan = load_plan(_plan(tmp_path, CONTINUOUS))
    with simulator("--pty") as (_proc, port):
        code = await run_plan(
            port, plan, mixed_ago_s=240.0, record_root=tmp_path / "rec", auto_resume_s=None,
            console=Console(file=out, width=200), record=RecordPolicy(min_free_bytes=1 << 62),
        )  # fmt: skip
        state, _reason, _source = await _status(port)
    assert code == 2, out.getvalue()
    assert "MB free at" in out.getvalue()
    assert state == State.IDLE, "nothing was armed or started"
    assert not (tmp_path / "rec").exists() or not any((tmp_path / "rec").iterdir())


def test_the_recording_keeps_the_tail_after_a_stop(tmp_path: Path) -> None:
    """An occlusion stops the pump (PRESSURE_RISE); relief backs the plunger off and the after-flow
    settles: the recording holds all of it, its last event is the RELIEF_DONE after the stop, and
    the telemetry runs on for the default tail (6 s of device time) after the stop."""
    scenario = tmp_path / "occlusion.toml"
    scenario.write_text('[plant]\n[[plant.events]]\nkind = "occlusion"\nat_volume_ml = 0.06\n')
    plan = _plan(tmp_path, CONTINUOUS)
    with simulator("--pty", "--scenario", str(scenario), "--time-scale", "5") as (_proc, port):
        done = _cli(
            "--log-level", "INFO", "run", "--port", port, "--plan", str(plan), "--mixed-ago", "240",
            "--time-scale", "5", "--record", str(tmp_path / "rec"),
        )  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    (run_dir,) = (tmp_path / "rec").iterdir()
    rec = Recording.open(run_dir)
    assert rec.is_complete
    (stop,) = rec.stop_events()
    assert stop.record.reason == StopReason.PRESSURE_RISE
    kinds = [e.record.kind for e in rec.events]
    assert EventKind.RELIEF_DONE in kinds[kinds.index(EventKind.STOP) :], kinds
    assert rec.events[-1].record.kind == EventKind.RELIEF_DONE, "replay reaches the final event"
    t_s = rec.samples["t_us"] / 1e6
    after = t_s >= stop.record.t_s
    assert t_s[-1] - stop.record.t_s >= 5.0, "at least 5 s of device time after the stop"
    volume = rec.samples["delivered_nl"][after]
    plunger = rec.samples["plunger_um"][after]
    flags = rec.samples["flags"][after]
    motor = rec.samples["motor_um_s"][after]
    relieving = (flags & Flags.RELIEF_ACTIVE) != 0
    assert relieving.any(), "the relief is recorded"
    assert (motor[relieving] < 0).any(), "the relief's back-off is recorded"
    last_second = t_s[after] >= t_s[-1] - 1.0
    assert not relieving[last_second].any(), "the relief has ended before the end of the tail"
    assert plunger[last_second].min() == plunger[last_second].max(), "the plunger has settled"
    assert volume[-1] >= volume[0], "delivered volume after the stop (after-flow) is recorded"
    log = (run_dir / "host.log").read_text()
    assert "recording" in log, log
    assert "closed" in log, log


class _Screen(io.StringIO):
    """The terminal `run` draws on; `when` is called with what is on it after every write."""

    def __init__(self) -> None:
        super().__init__()
        self.watchers: list[tuple[str, threading.Event, int]] = []
        self.lock = threading.Lock()

    def isatty(self) -> bool:
        return True

    def write(self, s: str) -> int:
        with self.lock:
            n = super().write(s)
            text = self.getvalue()
            for needle, seen, since in self.watchers:
                if needle in text[since:]:
                    seen.set()
        return n

    def watch(self, needle: str) -> threading.Event:
        seen = threading.Event()
        with self.lock:
            self.watchers.append((needle, seen, len(self.getvalue())))
        return seen


async def test_the_live_view_shows_the_device_during_the_pause_prompt_and_after_the_stop(
    tmp_path: Path,
) -> None:
    """The view used to be frozen at its last frame (INJECTING) while the increment-pause prompt
    waited, and drew its last frame from before the STOP event after a stop."""
    screen = _Screen()
    seen_paused = threading.Event()

    def operator(prompt: str) -> str:
        # New frames keep coming while the operator is asked, and they say PAUSED
        if screen.watch("PAUSED").wait(10.0):
            seen_paused.set()
        return "s"

    plan = load_plan(_plan(tmp_path, FAST_PLAN))
    console = Console(file=screen, force_terminal=True, width=100, height=20)
    with simulator("--pty") as (_proc, port):
        code = await asyncio.wait_for(
            run_plan(
                port, plan, mixed_ago_s=240.0, record_root=None, auto_resume_s=None,
                console=console, ask=operator, options=LinkOptions(),
            ),
            RUN_TIMEOUT_S,
        )  # fmt: skip
    assert code == 3
    assert seen_paused.is_set(), "no frame showing PAUSED was drawn while the prompt waited"
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    last_state = text.rsplit("state", 1)[1].split("\n", 1)[0]
    assert "STOPPED" in last_state, text[-600:]


async def test_after_ctrl_c_the_last_frame_shows_the_stopped_device(tmp_path: Path) -> None:
    screen = _Screen()
    injecting = screen.watch("INJECTING")
    plan = load_plan(_plan(tmp_path, CONTINUOUS.replace("flow_ml_min = 6.0", "flow_ml_min = 1.0")))
    console = Console(file=screen, force_terminal=True, width=100, height=20)
    loop = asyncio.get_running_loop()
    with simulator("--pty") as (_proc, port):
        run = asyncio.ensure_future(
            run_plan(port, plan, mixed_ago_s=240.0, record_root=None, auto_resume_s=None, console=console)
        )
        assert await loop.run_in_executor(None, injecting.wait, 20.0)
        os.kill(os.getpid(), signal.SIGINT)  # run_plan's own handler takes it, as Ctrl-C
        code = await asyncio.wait_for(run, RUN_TIMEOUT_S)
    assert code == 3
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "stopped by the operator" in text
    frames = text.split("state")
    last_state = frames[-1].split("\n", 1)[0]
    assert "STOPPED" in last_state, text[-600:]
    last_flow = frames[-1].split("flow", 1)[1].split("mL/min", 1)[0]
    assert float(last_flow) <= 0.0 + 1e-9, f"the last frame shows the plunger still: flow {last_flow}"


def test_the_command_line_refuses_a_small_disk_and_stops_when_it_fills(
    full_disk: Path, tmp_path: Path
) -> None:
    """`cementguard run --record` on a 64 kB filesystem: refused before START by default (exit 2,
    nothing armed); with the bound lowered it starts, the disk fills, and the injection is stopped
    (exit 3) with the failure named."""
    plan = _plan(tmp_path, CONTINUOUS.replace("volume_limit_ml = 0.2", "volume_limit_ml = 1.0"))
    args = [
        "run",
        "--plan",
        str(plan),
        "--mixed-ago",
        "240",
        "--record",
        str(full_disk),
        "--record-tail",
        "1",
    ]
    with simulator("--pty") as (_proc, port):
        refused = _cli(*args, "--port", port)
        started = _cli(*args, "--port", port, "--min-free-mb", "0")
        status = _cli("status", "--port", port)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "MB free at" in refused.stdout
    assert started.returncode == 3, started.stdout + started.stderr
    assert "recording failed" in started.stdout
    assert "injection stopped: the recording failed" in started.stdout
    assert "No space left on device" in started.stdout
    assert "OPERATOR_STOP" in status.stdout


async def test_cancelling_a_run_whose_recording_failed_raises_the_cancellation_and_closes_the_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing a failed recorder used to raise RecorderError out of run_plan's `finally`, masking
    the CancelledError and skipping the link's close."""

    writes = 0
    real = host.recording._write_all

    def filling_up(fd: int, data: bytes) -> None:
        nonlocal writes
        writes += 1
        if writes > 3:  # meta.json and the first flushes go through, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    monkeypatch.setattr(host.recording, "_write_all", filling_up)
    screen = _Screen()
    warned = screen.watch("UNRECORDED")
    closes: list[str] = []
    original = DeviceClient.close

    async def counting_close(self: DeviceClient) -> None:
        closes.append(self.url)
        await original(self)

    monkeypatch.setattr(DeviceClient, "close", counting_close)
    plan = load_plan(_plan(tmp_path, CONTINUOUS.replace("flow_ml_min = 6.0", "flow_ml_min = 1.0")))
    loop = asyncio.get_running_loop()
    with simulator("--pty") as (_proc, port):
        run = asyncio.ensure_future(
            run_plan(
                port, plan, mixed_ago_s=240.0, record_root=tmp_path / "rec", auto_resume_s=None,
                console=Console(file=screen, width=120),
                record=RecordPolicy(tail_s=1.0, on_error="continue", min_free_bytes=0),
            )
        )  # fmt: skip
        assert await loop.run_in_executor(None, warned.wait, 20.0)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(run, RUN_TIMEOUT_S)
    assert closes == [port]

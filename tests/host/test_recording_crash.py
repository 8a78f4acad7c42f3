"""Crash safety for real: a child process records 1 kHz telemetry from the virtual rig in wall time and
is killed with SIGKILL mid-run. The recording must open, say it is incomplete, hold everything the
child reported durable, be a byte-exact prefix of what the rig produced, and reach to within 0.5 s of
the kill.

No sleep synchronises anything: the child reports a T0 line, one FLUSH line per flush (what became
durable) and one DATA line per batch handed to the recorder; the parent kills it on a given report:
once more than a second of data is durable, either at once or when the data handed over is 180 ms
newer than the last flush (the next flush, every 200 ms, is then due: the worst case). Both processes
read CLOCK_MONOTONIC (system-wide on Linux), so the parent states the kill time in the child's sample
clock. The child paces the rig to wall time, as a serial link would deliver the samples.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware_sim.virtual_rig import VirtualRig
from host.recording import FlushInfo, Recorder, Recording
from protocol import Ack
from protocol.models import DeviceInfoRecord, EventRecord

REPO = Path(__file__).resolve().parents[2]
LOSS_BOUND_US = 500_000
KILL_AFTER_US = 1_000_000
"""Kill once the child reports this much durable data after T0."""


def child_main(directory: str, background: bool) -> None:
    """Runs in the child: a nominal injection on the virtual rig, recorded, until killed."""

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")  # one write per line: the writer thread and main thread share stdout
        sys.stdout.flush()

    def on_flush(info: FlushInfo) -> None:
        say(f"FLUSH {info.samples} {info.last_t_us} {info.events}")

    rig = VirtualRig()
    info = rig.connect()
    rec = Recorder.create(
        directory,
        rig.plan_for_plant(),
        DeviceInfoRecord.from_message(info),
        background=background,
        on_flush=on_flush,
    )
    assert isinstance(rig.arm(), Ack)
    assert isinstance(rig.start(), Ack)
    taken_samples = taken_events = 0
    t0_mono_ns, t0_us = time.monotonic_ns(), rig.now_us
    say(f"T0 {t0_mono_ns} {t0_us}")
    while True:
        target_us = t0_us + (time.monotonic_ns() - t0_mono_ns) // 1000
        while rig.now_us < target_us:
            rig.step()
        samples = rig.samples
        for event in rig.events[taken_events:]:
            rec.add_event(event)
        taken_events = len(rig.events)
        if len(samples) > taken_samples:
            rec.add_samples(samples[taken_samples:])
            taken_samples = len(samples)
            say(f"DATA {int(samples['t_us'][-1])}")
        time.sleep(0.005)  # pacing: the data arrives at the rate a 1 kHz link delivers it


def replay(n_samples: int) -> VirtualRig:
    """The same run in virtual time: the rig is deterministic, so this is what the child produced."""
    rig = VirtualRig()
    rig.connect()
    assert isinstance(rig.arm(), Ack)
    assert isinstance(rig.start(), Ack)
    rig.run(60.0, until=lambda r: len(r.samples) >= n_samples)
    return rig


@pytest.mark.parametrize("kill_at_us", [0, 180_000], ids=["just-after-a-flush", "just-before-the-next"])
@pytest.mark.parametrize("background", [True, False], ids=["writer-thread", "inline"])
def test_sigkill_mid_run_leaves_a_readable_recording_missing_at_most_half_a_second(
    tmp_path: Path, background: bool, kill_at_us: int
) -> None:
    """kill_at_us: how much newer than the last reported flush the data handed to the recorder must be
    when the parent kills: 0 kills at once after a flush, 180 ms kills when the next flush (every
    200 ms) is due, so the loss is near its worst case."""
    directory = tmp_path / "run"
    code = (
        "from tests.host.test_recording_crash import child_main; "
        f"child_main({str(directory)!r}, background={background})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,  # `python -c` puts the working directory on sys.path
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[list[str]] = []
    t0: tuple[int, int] | None = None  # (monotonic ns, sample t_us) at the same instant in the child
    flushed_t_us: int | None = None  # newest durable sample the child reported, once past KILL_AFTER_US
    kill_mono_ns = 0
    try:
        for line in proc.stdout:  # blocks on the child's reports; pytest-timeout bounds a hung child
            words = line.split()
            lines.append(words)
            if words[0] == "T0":
                t0 = int(words[1]), int(words[2])
            elif words[0] == "FLUSH" and t0 is not None and words[2] != "None":
                if int(words[2]) - t0[1] >= KILL_AFTER_US:
                    flushed_t_us = int(words[2])
            elif (
                words[0] == "DATA" and flushed_t_us is not None and int(words[1]) - flushed_t_us >= kill_at_us
            ):
                kill_mono_ns = time.monotonic_ns()
                os.kill(proc.pid, signal.SIGKILL)
                break
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert kill_mono_ns, f"the child ended before it was killed:\n{err}"
    assert proc.returncode == -signal.SIGKILL, err
    lines += [line.split() for line in rest.splitlines()]
    assert t0 is not None
    flushes = [(int(f[1]), int(f[2]), int(f[3])) for f in lines if f[0] == "FLUSH" and f[2] != "None"]

    rec = Recording.open(directory)
    assert not rec.is_complete
    assert rec.device is not None
    assert rec.device.serial == "VIRTUAL-1"

    # everything the child reported durable is there ...
    reported_samples, reported_last_t_us, reported_events = max(flushes)
    assert len(rec.samples) >= reported_samples
    assert len(rec.events) >= reported_events
    # ... exactly as the rig produced it ...
    rig = replay(len(rec.samples))
    assert rec.samples.tobytes() == rig.samples[: len(rec.samples)].tobytes()
    assert [e.record for e in rec.events] == [
        EventRecord.from_message(e) for e in rig.events[: len(rec.events)]
    ]
    assert len(rec.events) >= 3, "POWER_UP, ARMED, INJECTING"
    # ... and it reaches to within 0.5 s of the kill
    kill_t_us = t0[1] + (kill_mono_ns - t0[0]) // 1000
    last_t_us = int(rec.samples["t_us"][-1])
    assert last_t_us >= reported_last_t_us
    lost_us = kill_t_us - last_t_us
    assert lost_us <= LOSS_BOUND_US, f"lost {lost_us / 1000:.0f} ms of data before the kill"

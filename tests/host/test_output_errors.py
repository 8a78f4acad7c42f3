"""The terminal cannot break a run (issue 13 item 7).

- `run ... | head -c 100`: stdout closes early; the run used to die on the next display refresh
  (exit 1, no message, the device latched HOST_LOST half-way). It now says once on stderr that its
  output stopped, and the injection and recording go on to the plan's end (exit 0).
- `PYTHONIOENCODING=ascii`: the progress bar raised UnicodeEncodeError after the plan completed.
- `--record` naming a regular file: a clear message and exit 2 (usage), nothing started.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from host.recording import Recording
from host.safe_output import ClosedOutputGuard
from protocol import StopReason
from tests.host.test_run_cli import FAST_PLAN
from tests.support.wire_client import REPO, simulator


def _run_argv(port: str, plan: Path, record: Path) -> list[str]:
    return [sys.executable, "-m", "host.cli", "run", "--port", port, "--plan", str(plan),
            "--mixed-ago", "240", "--auto-resume", "0.2", "--record", str(record)]  # fmt: skip


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text(FAST_PLAN)
    return path


def _completed_recording(root: Path) -> Recording:
    (run_dir,) = root.iterdir()
    rec = Recording.open(run_dir)
    assert rec.is_complete
    assert [e.record.reason for e in rec.stop_events()] == [
        StopReason.INCREMENT_DONE,
        StopReason.VOLUME_LIMIT,
    ]
    return rec


def test_a_closed_stdout_does_not_disturb_the_injection_or_the_recording(plan: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    with simulator("--pty") as (_sim, port):
        run = subprocess.Popen(
            _run_argv(port, plan, tmp_path / "rec"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=REPO, env=env,
        )  # fmt: skip
        assert run.stdout is not None
        assert run.stderr is not None
        run.stdout.read(100)  # as `| head -c 100`: read 100 bytes, then go away
        run.stdout.close()
        err = run.stderr.read().decode()
        assert run.wait(timeout=60) == 0, err
    assert "standard output was closed" in err
    assert "Traceback" not in err
    _completed_recording(tmp_path / "rec")


def test_an_ascii_only_terminal_degrades_the_output_without_a_traceback(plan: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONIOENCODING="ascii")
    with simulator("--pty") as (_sim, port):
        done = subprocess.run(
            _run_argv(port, plan, tmp_path / "rec"), capture_output=True, cwd=REPO, env=env, timeout=60
        )
    out, err = done.stdout.decode("ascii"), done.stderr.decode("ascii")  # nothing but ASCII was written
    assert done.returncode == 0, out + err
    assert "plan completed" in out
    assert "Traceback" not in out + err
    _completed_recording(tmp_path / "rec")


def test_record_naming_a_regular_file_is_a_usage_error(plan: Path, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with simulator("--pty") as (_sim, port):
        done = subprocess.run(
            _run_argv(port, plan, not_a_dir), capture_output=True, text=True, cwd=REPO, env=env
        )
    assert done.returncode == 2
    assert "cannot record" in done.stdout
    assert "Not a directory" in " ".join(done.stdout.split())
    assert "Traceback" not in done.stdout + done.stderr


def test_the_guard_passes_writes_until_the_reader_is_gone() -> None:
    class Pipe(io.StringIO):
        gone = False

        def write(self, text: str) -> int:
            if self.gone:
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

        def fileno(self) -> int:
            raise io.UnsupportedOperation("no fd")

    inner, notice = Pipe(), io.StringIO()
    guard = ClosedOutputGuard(inner, notice)  # type: ignore[arg-type]
    guard.write("before\n")
    inner.gone = True
    assert guard.write("after\n") == len("after\n")
    guard.write("more\n")
    guard.flush()
    assert guard.lost
    assert inner.getvalue() == "before\n"
    assert notice.getvalue().count("standard output was closed") == 1

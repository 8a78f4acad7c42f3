"""`cementguard run --frames URL`: the guard must be watching before anything is armed; its options
are checked like every other number option."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.host.test_run_cli import FAST_PLAN, _cli
from tests.support.wire_client import simulator


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text(FAST_PLAN)
    return path


def test_a_guard_that_never_sees_a_frame_keeps_the_plan_from_being_armed(plan: Path) -> None:
    with simulator("--pty") as (_proc, port):
        done = _cli(
            "run", "--port", port, "--plan", str(plan), "--mixed-ago", "240",
            "--frames", "mem://nothing", "--guard-ready-timeout", "1",
        )  # fmt: skip
        status = _cli("status", "--port", port)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "not started: the fluoroscopic guard is BLIND(" in done.stdout
    assert "(--guard-ready-timeout)" in done.stdout
    assert "IDLE" in status.stdout, "nothing was armed"


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--guard-posterior-fraction", "nan", "nan is not a finite number; allowed 0.5..0.95"),
        ("--guard-confirm-frames", "0", "0 is outside the range; allowed 1..10 frames"),
        ("--guard-region", "1,2,3", "is not X0,Y0,X1,Y1"),
    ],
)
def test_bad_guard_options_are_usage_errors_naming_them(
    plan: Path, option: str, value: str, says: str
) -> None:
    port = "/dev/null-no-such"
    done = _cli("run", "--port", port, "--plan", str(plan), "--frames", "mem://x", option, value)
    assert done.returncode == 2
    assert option in done.stderr
    assert says in done.stderr


def test_a_frame_source_that_cannot_be_opened_is_refused_before_arming(plan: Path, tmp_path: Path) -> None:
    with simulator("--pty") as (_proc, port):
        done = _cli(
            "run", "--port", port, "--plan", str(plan), "--mixed-ago", "240",
            "--frames", str(tmp_path / "no-such-folder"),
        )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "not started: frame source" in done.stdout


def test_a_run_with_the_guard_records_its_frames_and_decisions(plan: Path, tmp_path: Path) -> None:
    """The whole path on the simulator's frames: `run --frames sim://... --record` leaves frames/ beside
    the telemetry, decimated, on the recording's time axis (issue 15, "Where people see it")."""
    from host.frame_recording import FrameLog
    from host.recording import Recording

    sock = tmp_path / "f.sock"
    args = ("--pty", "--power-on", "now", "--scenario", "hil/scenarios/spatial-posterior-quarter.toml")
    args += ("--frames-out", str(sock), "--frames-size", "256x256", "--frames-fps", "10")
    with simulator(*args) as (proc, port):
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[1]
        done = _cli(
            "run", "--port", port, "--plan", str(plan), "--mixed-ago", "240", "--frames", url,
            "--record", str(tmp_path / "rec"), "--auto-resume", "0.2", "--guard-ready-timeout", "5",
        )  # fmt: skip
    assert done.returncode in (0, 3), done.stdout + done.stderr
    (path,) = (tmp_path / "rec").iterdir()
    log = FrameLog.open(path)
    assert log is not None, done.stdout + done.stderr
    assert log.frames, "frames were kept"
    assert log.decisions, "the guard's state changes were kept"
    times = [f.device_t_us or 0 for f in log.frames]
    span_s = (times[-1] - times[0]) / 1e6
    around = 41 * len(log.stops())  # every frame of 10/s from 2 s before to 2 s after a guard's stop
    assert len(times) <= 2 * span_s + 1 + around  # at most 2 frames/s otherwise
    rec = Recording.open(path)
    t = rec.samples["t_us"]
    assert int(t[0]) - 1_000_000 <= (times[0] or 0) <= int(t[-1]) + 1_000_000  # on the telemetry's axis


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--frames-ap", "mem://ap"), "--frames-ap mem://ap: needs --frames URL (the lateral view's source)"),
        (
            ("--frames", "mem://a", "--frames-ap", "mem://a"),
            "--frames-ap mem://a: the same source as --frames",
        ),
        (
            ("--frames", "sim:///tmp/lat.sock", "--frames-ap", "/dev/video1"),
            "--frames-ap /dev/video1: its frames are stamped with the host's clock, --frames "
            "sim:///tmp/lat.sock's with the device's; allowed two sources on one clock",
        ),
    ],
)
def test_a_biplane_pair_that_cannot_be_one_picture_is_a_usage_error(
    plan: Path, args: tuple[str, ...], says: str
) -> None:
    done = _cli("run", "--port", "/dev/null-no-such", "--plan", str(plan), "--mixed-ago", "240", *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in " ".join((done.stdout + done.stderr).split())  # the console wraps long lines


def test_a_biplane_run_guards_both_views_and_records_both_streams(plan: Path, tmp_path: Path) -> None:
    """`sim --frames-out L --frames-out-ap A` is a biplane C-arm's two outputs; `run --frames sim://L
    --frames-ap sim://A` watches both (START waits for both baselines) and keeps both streams."""
    from host.frame_recording import FrameLog

    args = ("--pty", "--power-on", "now", "--scenario", "hil/scenarios/spatial-posterior-quarter.toml")
    args += ("--frames-out", str(tmp_path / "l.sock"), "--frames-out-ap", str(tmp_path / "a.sock"))
    args += ("--frames-size", "192x192", "--frames-fps", "4")
    with simulator(*args) as (proc, port):
        assert proc.stdout is not None
        kind, lateral = proc.stdout.readline().split()
        kind_ap, ap = proc.stdout.readline().split()
        assert (kind, kind_ap) == ("FRAMES", "FRAMES-AP")
        done = _cli(
            "run", "--port", port, "--plan", str(plan), "--mixed-ago", "240", "--frames", lateral,
            "--frames-ap", ap, "--record", str(tmp_path / "rec"), "--auto-resume", "0.2",
            "--guard-ready-timeout", "10",
        )  # fmt: skip
    assert done.returncode in (0, 3), done.stdout + done.stderr
    (path,) = (tmp_path / "rec").iterdir()
    log = FrameLog.open(path)
    assert log is not None, done.stdout + done.stderr
    assert log.views == ["lateral", "ap"]
    files = {f.view: f.file for f in log.frames}
    assert files["ap"].endswith("-ap.png")
    assert not files["lateral"].endswith("-ap.png")
    for view in ("lateral", "ap"):  # each view decimated on its own: at most 2 frames/s
        times = [f.device_t_us or 0 for f in log.frames if f.view == view]
        span_s = (times[-1] - times[0]) / 1e6
        assert len(times) <= 2 * span_s + 1 + 41 * len(log.stops())

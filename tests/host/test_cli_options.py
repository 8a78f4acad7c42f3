"""Every duration, rate and scale option refuses non-finite and out-of-range values (issue 13 item 1).

`--auto-resume -1` or `nan` used to be accepted and skipped the imaging pause (the cement moved
again ~0.1 s after each increment); `--time-scale 0`, `-1`, `nan` was a traceback. Each is now a
usage error from the parser: exit 2, naming the option, the value and the allowed range.
"""

from __future__ import annotations

import argparse
import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from host.cli import main
from host.cli_types import AUTO_RESUME, finite_float
from host.plan import load_plan
from host.recording import Recording
from host.run import run_plan
from protocol import StopReason
from tests.host.test_run_cli import FAST_PLAN
from tests.support.wire_client import simulator

BAD_FLOATS = ["-1", "nan", "inf", "-inf", "0", "1e400", "abc"]

# (command line before the option, option, allowed range as printed)
FLOAT_OPTIONS = [
    (["run", "--port", "p", "--plan", "x.toml"], "--auto-resume", "0.1..3600 s"),
    (["run", "--port", "p", "--plan", "x.toml"], "--time-scale", "1..100 x"),
    (["run", "--port", "p", "--plan", "x.toml"], "--mixed-ago", "0..7200 s"),
    (["demo"], "--auto-resume", "0.1..3600 s"),
    (["demo"], "--mixed-ago", "0..7200 s"),
    (["dashboard", "--port", "p"], "--time-scale", "1..100 x"),
    (["dashboard", "--port", "p"], "--mixed-ago", "0..7200 s"),
    (["replay", "rec"], "--speed", "0.25..64 x"),
    (["bridge"], "--time-scale", "1..100 x"),
    (["sim"], "--time-scale", "1..100 x"),
    (["hil", "run", "--junit", "j.xml", "--report-dir", "r"], "--time-scale", "1..100 x"),
]


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


CASES = [
    pytest.param(head, option, allowed, bad, id=f"{head[0]}{option}={bad}")
    for head, option, allowed in FLOAT_OPTIONS
    for bad in BAD_FLOATS
    if not (option == "--mixed-ago" and bad == "0")  # 0 s is a valid cement age
]


@pytest.mark.parametrize(("head", "option", "allowed", "bad"), CASES)
def test_float_options_refuse_non_finite_and_out_of_range_values(
    head: list[str], option: str, allowed: str, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _usage_error([*head, f"{option}={bad}"], capsys)
    assert f"argument {option}: " in err
    assert repr(bad) in err or bad in err
    assert f"allowed {allowed}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "option", "allowed"),
    [
        (["hil", "run", "--junit", "j", "--report-dir", "r", "--jobs", "0"], "--jobs", "1..64"),
        (["hil", "sweep", "--n", "0", "--report-dir", "r"], "--n", "1..10000000"),
        (["hil", "sweep", "--n", "5", "--report-dir", "r", "--jobs", "-2"], "--jobs", "1..256"),
        (["plot", "rec", "--out", "x.png", "--dpi", "0"], "--dpi", "20..600"),
        (["plot", "rec", "--out", "x.png", "--max-points", "nan"], "--max-points", "100..1000000"),
        (["sim", "--seed", "-1"], "--seed", "0..9223372036854775807"),
        (["sim", "--seed", "1e300"], "--seed", "0..9223372036854775807"),
    ],
)
def test_count_options_are_bounded_too(
    argv: list[str], option: str, allowed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _usage_error(argv, capsys)
    assert f"argument {option}: " in err
    assert f"allowed {allowed}" in err


def test_the_check_for_values_from_code_names_the_option() -> None:
    scale = finite_float("--x", 1, 2, "s")
    assert scale.check(1.5) == 1.5
    with pytest.raises(ValueError, match=r"--x: nan is not a finite number; allowed 1\.\.2 s"):
        scale.check(float("nan"))


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), 0.0])
def test_run_plan_refuses_a_pause_that_would_not_hold(tmp_path: Path, bad: float) -> None:
    """The library entry point too: a negative or NaN auto-resume never reaches the sleep."""
    path = tmp_path / "fast.toml"
    path.write_text(FAST_PLAN)
    with pytest.raises(ValueError, match="--auto-resume"):
        asyncio.run(
            run_plan(
                "/dev/cementguard-never-opened", load_plan(path), mixed_ago_s=240.0,
                record_root=None, auto_resume_s=bad, console=Console(file=io.StringIO()),
            )
        )  # fmt: skip


async def test_a_valid_auto_resume_still_runs_and_the_imaging_pause_holds(tmp_path: Path) -> None:
    """0.5 s of pause: between INCREMENT_DONE and the resume the plunger does not move forward."""
    path = tmp_path / "fast.toml"
    path.write_text(FAST_PLAN)
    pause_s = 0.5
    assert AUTO_RESUME(str(pause_s)) == pause_s
    with simulator("--pty") as (_proc, port):
        code = await run_plan(
            port, load_plan(path), mixed_ago_s=240.0, record_root=tmp_path / "rec",
            auto_resume_s=pause_s, console=Console(file=io.StringIO()),
        )  # fmt: skip
    assert code == 0
    (run_dir,) = (tmp_path / "rec").iterdir()
    rec = Recording.open(run_dir)
    (done,) = [e.record for e in rec.events if e.record.reason == StopReason.INCREMENT_DONE]
    t = rec.samples["t_us"].astype(np.int64)
    stop_us = int(done.t_s * 1e6)
    volume = rec.samples["delivered_nl"].astype(np.int64)
    # from 50 ms after the stop (the plunger decelerates) to 0.9 x the pause later: no forward motion
    window = (t >= stop_us + 50_000) & (t <= stop_us + int(0.9 * pause_s * 1e6))
    assert window.sum() > 100
    held = volume[window]
    assert np.diff(held).max() <= 0  # relief may draw back; nothing moves forward
    assert held.max() - held[0] < 1_000  # < 1 uL
    assert volume.max() >= 190_000  # and it resumed and completed afterwards


def _option(command: str, flag: str) -> argparse.Action:
    from host.cli import build_parser

    parser = build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in sub.choices[command]._actions if flag in a.option_strings)


@pytest.mark.parametrize("flag", ["--time-scale", "--record-tail"])
def test_run_and_dashboard_share_one_definition_of_each_recording_option(flag: str) -> None:
    """One place (host/cli_types.py): the same type, default and help on both commands."""
    run, dashboard = _option("run", flag), _option("dashboard", flag)
    assert (run.type, run.default, run.help, run.metavar) == (
        dashboard.type,
        dashboard.default,
        dashboard.help,
        dashboard.metavar,
    )
    assert run.default is not None, "the default is a number, stated in the help"

"""`cementguard demo`: the dashboard on the simulator, with no hardware and no broker.

Starts `cementguard sim --pty` in a subprocess and opens the dashboard on it with the example
incremental plan (plans/incremental-3x0.5ml.toml) and a cement mixed 4 minutes ago: a arms,
s starts, space resumes after each increment, x stops, r records, q quits.

`--headless` keeps the unattended run: the plan runs with a live terminal display (increment pauses
answered automatically after a few seconds, as if the imaging check passed), the run is recorded
under ./recordings and plotted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from host.cli_types import AUTO_RESUME, EXIT_USAGE, MIXED_AGO
from host.plan import PlanError, load_plan
from host.plot import plot_png
from host.recording import Recording
from host.run import EXIT_LINK, run_plan

REPO_PLANS = Path(__file__).resolve().parent.parent / "plans"
DEFAULT_PLAN = REPO_PLANS / "incremental-3x0.5ml.toml"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo", help="the dashboard on the simulator with the example plan (no hardware, no broker)"
    )
    p.add_argument("--plan", type=Path, default=DEFAULT_PLAN, help="plan to run (default: %(default)s)")
    p.add_argument("--record", type=Path, default=Path("recordings"), help="where recordings go")
    p.add_argument(
        "--mixed-ago",
        type=MIXED_AGO,
        default=240.0,
        help=f"cement age at start, s (default 240; {MIXED_AGO.allowed})",
    )
    p.add_argument(
        "--headless",
        action="store_true",
        help="no dashboard: run the plan unattended with a terminal display, record and plot it",
    )
    p.add_argument(
        "--auto-resume",
        type=AUTO_RESUME,
        default=3.0,
        help=f"--headless: imaging pause length, s (default 3; {AUTO_RESUME.allowed})",
    )
    p.set_defaults(func=_demo)


@contextlib.contextmanager
def simulator(console: Console) -> Iterator[str | None]:
    """`cementguard sim --pty` in a subprocess; yields its port (None if it did not start)."""
    sim = subprocess.Popen(
        [sys.executable, "-m", "host.cli", "sim", "--pty", "--serial", "DEMO-SIM"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert sim.stdout is not None
        line = sim.stdout.readline()
        if not line.startswith("PORT "):
            console.print(f"[bold red]the simulator did not start[/]: {line!r}")
            yield None
        else:
            yield line.split(" ", 1)[1].strip()
    finally:
        sim.terminate()
        try:
            sim.wait(timeout=5)
        except subprocess.TimeoutExpired:
            sim.kill()


def _demo(args: argparse.Namespace) -> int:
    console = Console()
    try:
        plan = load_plan(args.plan)
    except PlanError as exc:
        console.print(f"[bold red]plan error[/]\n{exc}", highlight=False)
        return EXIT_USAGE
    with simulator(console) as port:
        if port is None:
            return EXIT_LINK
        if not args.headless:
            from host.dashboard.cli import run_dashboard

            return run_dashboard(
                port, plan=plan, plan_path=args.plan, mixed_ago_s=args.mixed_ago, record_root=args.record
            )
        console.print(f"simulator on {port}; running {args.plan.name} ({plan.name})", highlight=False)
        code = asyncio.run(
            run_plan(
                port,
                plan,
                mixed_ago_s=args.mixed_ago,
                record_root=args.record,
                auto_resume_s=args.auto_resume,
                console=console,
            )
        )
        _plot_latest(args.record, console)
        return code


def _plot_latest(root: Path, console: Console) -> None:
    runs = sorted(p for p in root.glob("*") if p.is_dir()) if root.exists() else []
    if not runs:
        return
    out = runs[-1] / "run.png"
    plot_png(Recording.open(runs[-1]), out)
    console.print(f"recording: {runs[-1]}   plot: {out}", highlight=False)

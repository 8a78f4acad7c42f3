"""`cementguard demo`: the main job on the simulator, with no hardware and no broker.

Starts `cementguard sim --pty` in a subprocess, runs the example incremental plan headless against
it (increment pauses answered automatically after a few seconds, as if the imaging check passed),
records the run under ./recordings and plots it.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from host.plan import PlanError, load_plan
from host.plot import plot_png
from host.recording import Recording
from host.run import EXIT_LINK, EXIT_USAGE, run_plan

REPO_PLANS = Path(__file__).resolve().parent.parent / "plans"
DEFAULT_PLAN = REPO_PLANS / "incremental-3x0.5ml.toml"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("demo", help="run the example injection against the simulator (no hardware)")
    p.add_argument("--plan", type=Path, default=DEFAULT_PLAN, help="plan to run (default: %(default)s)")
    p.add_argument("--record", type=Path, default=Path("recordings"), help="where the recording goes")
    p.add_argument("--mixed-ago", type=float, default=240.0, help="cement age at start, s (default 240)")
    p.add_argument("--auto-resume", type=float, default=3.0, help="imaging pause length, s (default 3)")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    console = Console()
    try:
        plan = load_plan(args.plan)
    except PlanError as exc:
        console.print(f"[bold red]plan error[/]\n{exc}", highlight=False)
        return EXIT_USAGE
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
            return EXIT_LINK
        port = line.split(" ", 1)[1].strip()
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
    finally:
        sim.terminate()
        try:
            sim.wait(timeout=5)
        except subprocess.TimeoutExpired:
            sim.kill()


def _plot_latest(root: Path, console: Console) -> None:
    runs = sorted(p for p in root.glob("*") if p.is_dir()) if root.exists() else []
    if not runs:
        return
    out = runs[-1] / "run.png"
    plot_png(Recording.open(runs[-1]), out)
    console.print(f"recording: {runs[-1]}   plot: {out}", highlight=False)

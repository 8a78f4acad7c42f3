"""`cementguard hil sweep`: randomized detector runs in virtual time, across cores, and their report.

    cementguard hil sweep --n 3000 --seed 1 --report-dir build/sweep [--jobs J]
    cementguard hil sweep --n 1500 --seed 2 --kinds nominal,occlusion --set rise_arm_pa_s=200000 \
        --report-dir build/sweep-alt/rise-arm200k       # an alternative operating point
    python -m hil.sweep ...                             # the same, without the console script

Each run (hil._sweep_runs) is a pure function of (seed, index): its kind comes from the index, its
conditions, event size and plant seed from a generator seeded with [seed, index]. Results are
therefore identical whatever `--jobs` is and whichever worker finishes first. The report directory
receives sweep.md (tables), sweep.csv (detection per kind x size bin x noise level), sweep.json
(every run's parameters and outcome) and sweep.png (detection rate and latency against event size,
one panel per detector, the noise levels as series). `--kinds` restricts the run kinds (the kind
cycle keeps their weights) and `--set` overrides `ControllerConfig` fields, so that an alternative
operating point is compared with the default on the very same runs. This is how the detector
thresholds in docs/detector-thresholds.md were chosen.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil._sweep_report import markdown as report_markdown
from hil._sweep_report import write_csv, write_json, write_png
from hil._sweep_runs import KINDS, Override, RunOutcome, kind_cycle, parse_override, run_one
from host.cli_types import bounded_int

CHUNK = 8
"""Runs per task sent to a worker: enough to amortise the pickling, small enough to balance."""


@dataclass(frozen=True)
class SweepResult:
    outcomes: list[RunOutcome]
    wall_s: float
    jobs: int

    @property
    def virtual_s(self) -> float:
        return sum(o.virtual_s for o in self.outcomes)


@dataclass(frozen=True)
class _Chunk:
    seed: int
    start: int
    stop: int
    kinds: tuple[str, ...] | None
    overrides: tuple[Override, ...]


def _run_chunk(c: _Chunk) -> list[RunOutcome]:
    return [run_one(c.seed, i, c.kinds, c.overrides) for i in range(c.start, c.stop)]


def run_sweep(
    n: int,
    seed: int,
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    kinds: Sequence[str] | None = None,
    overrides: Sequence[Override] = (),
) -> SweepResult:
    """Runs 0..n-1 of master seed `seed` on `jobs` processes (default: every core; 1: in this
    process), of the given kinds only (default all) with `ControllerConfig` fields overridden. The
    outcomes come back in index order."""
    kind_cycle(kinds)  # unknown kinds fail here, not in a worker
    if n < 1:
        raise ValueError(f"--n = {n} must be >= 1")
    if seed < 0:
        raise ValueError(f"--seed = {seed} must be >= 0")
    workers = jobs if jobs is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"--jobs = {workers} must be >= 1")
    ks = tuple(kinds) if kinds is not None else None
    chunks = [_Chunk(seed, s, min(s + CHUNK, n), ks, tuple(overrides)) for s in range(0, n, CHUNK)]
    t0 = time.perf_counter()
    outcomes: list[RunOutcome] = []
    if workers == 1:
        for chunk in chunks:
            outcomes += _run_chunk(chunk)
            if progress:
                progress(len(outcomes), n)
    else:
        # spawn, not fork: the caller may hold threads (pytest, a dashboard), which fork would copy
        # mid-state; the workers import the simulator once and keep it.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), mp_context=ctx) as pool:
            for part in pool.map(_run_chunk, chunks):
                outcomes += part
                if progress:
                    progress(len(outcomes), n)
    return SweepResult(outcomes, time.perf_counter() - t0, workers)


def write_report(
    result: SweepResult, report_dir: Path, header: dict[str, Any], plot: bool = True
) -> dict[str, Path]:
    """sweep.md, sweep.csv, sweep.json and (unless `plot` is False) sweep.png into `report_dir`."""
    report_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: report_dir / f"sweep.{ext}" for ext in ("md", "csv", "json", "png")}
    paths["md"].write_text(report_markdown(result.outcomes, header))
    write_csv(paths["csv"], result.outcomes)
    write_json(paths["json"], result.outcomes, header)
    if plot:
        title = f"detector sweep: {len(result.outcomes)} runs, seed {header['seed']}"
        write_png(paths["png"], result.outcomes, title)
    else:
        del paths["png"]
    return paths


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `sweep` on the `cementguard hil` subcommand group."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "sweep",
        help="randomized detector sweep in virtual time: detection rate, latency, false stops",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _arguments(p)
    p.set_defaults(func=sweep_command)
    return p


RUNS = bounded_int("--n", 1, 10_000_000)
SEED = bounded_int("--seed", 0, 2**63 - 1)
JOBS = bounded_int("--jobs", 1, 256)


def _kinds(text: str) -> list[str]:
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    try:
        kind_cycle(kinds)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return kinds


def _override(text: str) -> Override:
    try:
        return parse_override(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=RUNS, required=True, help=f"number of runs ({RUNS.allowed})")
    p.add_argument("--seed", type=SEED, default=1, help="master seed (default 1)")
    p.add_argument("--jobs", type=JOBS, default=None, help=f"processes (default: every core; {JOBS.allowed})")
    p.add_argument("--report-dir", type=Path, required=True, help="where sweep.md/.csv/.json/.png go")
    p.add_argument(
        "--kinds",
        type=_kinds,
        default=None,
        help=f"comma-separated run kinds (default all): {', '.join(KINDS)}",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        type=_override,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a ControllerConfig field for every run (repeatable): an alternative operating point",
    )
    p.add_argument("--no-plot", action="store_true", help="skip sweep.png (matplotlib takes a few seconds)")
    p.add_argument("--quiet", action="store_true", help="no progress, only the paths written")


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this sweep (the job count does not change its results)."""
    extra = f" --jobs {args.jobs}" if args.jobs else ""
    if args.kinds:
        extra += f" --kinds {','.join(args.kinds)}"
    extra += "".join(f" --set {k}={v}" for k, v in args.overrides)
    return f"cementguard hil sweep --n {args.n} --seed {args.seed}{extra} --report-dir {args.report_dir}"


def sweep_command(args: argparse.Namespace) -> int:
    """Run the sweep, write the report, print where it went and the headline figures."""

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"\r{done}/{total} runs", end="", file=sys.stderr, flush=True)

    result = run_sweep(args.n, args.seed, args.jobs, progress, args.kinds, args.overrides)
    if not args.quiet:
        print(file=sys.stderr)
    header = {
        "command": command_line(args),
        "seed": args.seed,
        "kinds": ",".join(args.kinds) if args.kinds else "all",
        "controller_overrides": dict(args.overrides) or "none (ControllerConfig defaults)",
        "runs": len(result.outcomes),
        "jobs": result.jobs,
        "wall_s": round(result.wall_s, 2),
        "runs_per_s": round(len(result.outcomes) / result.wall_s, 2),
        "virtual_s": round(result.virtual_s, 1),
        "virtual_x_real_time": round(result.virtual_s / result.wall_s, 1),
    }
    paths = write_report(result, args.report_dir, header, plot=not args.no_plot)
    false = sum(o.false_stop for o in result.outcomes)
    print(
        f"{len(result.outcomes)} runs in {result.wall_s:.1f} s on {result.jobs} processes "
        f"({len(result.outcomes) / result.wall_s:.1f} runs/s, {result.virtual_s / 3600:.2f} h virtual); "
        f"{false} false stops"
    )
    for path in paths.values():
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hil.sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _arguments(parser)
    args = parser.parse_args(argv)
    return sweep_command(args)


if __name__ == "__main__":
    raise SystemExit(main())

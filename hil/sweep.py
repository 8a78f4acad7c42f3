"""`cementguard hil sweep`: randomized detector runs in virtual time, on local cores or a Dask cluster,
streamed to disk, and their report.

    cementguard hil sweep --n 3000 --seed 1 --report-dir build/sweep [--jobs J]
    cementguard hil sweep --n 1500 --seed 2 --kinds nominal,occlusion --set rise_arm_pa_s=200000 \
        --report-dir build/sweep-alt/rise-arm200k       # an alternative operating point
    cementguard hil sweep --n 300000 --seed 7 --kinds nominal --noise 2 \
        --scheduler tcp://HOST:8786 --report-dir build/sweep-300k     # on a Dask cluster
    python -m hil.sweep ...                             # the same, without the console script

Each run (hil._sweep_runs) is a pure function of (seed, index): its kind comes from the index, its
conditions, event size and plant seed from a generator seeded with [seed, index]. Results are
therefore identical whatever `--jobs` is, on whichever cluster, and whichever worker finishes first.
The runs go to Parquet part files in the report directory as they arrive, in index order
(hil._sweep_store), so the same command resumes an interrupted sweep. The report directory then
receives sweep.md (tables), sweep.csv (detection per kind x size bin x noise level), sweep.json
(every run's parameters and outcome) and sweep.png (detection rate and latency against event size,
one panel per detector, the noise levels as series), built from the part files in batches.
`--kinds` restricts the run kinds (the kind cycle keeps their weights), `--noise` fixes the sensor
noise level, and `--set` overrides `ControllerConfig` fields, so that an alternative operating point
is compared with the default on the very same runs. This is how the detector thresholds in
docs/detector-thresholds.md were chosen.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hil._sweep_backends import Backend, DaskBackend, InProcessBackend, LocalPoolBackend, scheduler_address
from hil._sweep_chunks import Chunk, SweepError, code_digest
from hil._sweep_progress import ProgressFn, progress_bar
from hil._sweep_report import markdown as report_markdown
from hil._sweep_report import write_csv, write_json, write_png
from hil._sweep_runs import KINDS, NOISE_LEVELS, Override, RunOutcome, check_noise, kind_cycle, parse_override
from hil._sweep_store import ROWS_PER_PART, Manifest, SweepStore, iter_runs
from hil._sweep_tally import SweepTally
from host.cli_types import bounded_int

logger = logging.getLogger(__name__)

CHUNK = 8
"""Runs per task sent to a worker: enough to amortise the pickling and the scheduler's per-task cost
(about 1 ms on Dask), small enough to balance and to lose little when a worker dies."""
IN_FLIGHT_PER_SLOT = 2
"""Chunks queued per worker slot: one running, one ready, so no worker waits for the client."""
REORDER_CHUNKS = 64
"""How far ahead of the first unfinished chunk new chunks may start: bounds the runs held in memory
while a slow chunk (or one rescheduled from a dead worker) is awaited; its results are written in
index order."""
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class SweepResult:
    directory: Path
    runs: int
    """Runs in the sweep directory now (all of 0..runs-1)."""
    resumed: int
    """Runs that were already on disk when this session started."""
    wall_s: float
    virtual_s: float
    """Virtual time of the runs made in this session."""
    workers: int
    backend: str

    @property
    def ran(self) -> int:
        return self.runs - self.resumed


def _backend(jobs: int | None, scheduler: str | None, sweep_id: str, chunks: int) -> Backend:
    if scheduler is not None:
        return DaskBackend(scheduler_address(scheduler), sweep_id)
    workers = jobs if jobs is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise ValueError(f"--jobs = {workers} must be >= 1")
    if workers == 1 or chunks == 1:
        return InProcessBackend()
    return LocalPoolBackend(min(workers, chunks))


def sweep_id(manifest: Manifest) -> str:
    """Names a sweep's tasks on a cluster: a hash of everything its runs depend on."""
    return hashlib.sha256(json.dumps(manifest.as_json(), sort_keys=True).encode()).hexdigest()[:12]


def run_sweep(
    n: int,
    seed: int,
    directory: Path,
    jobs: int | None = None,
    progress: ProgressFn | None = None,
    kinds: Sequence[str] | None = None,
    overrides: Sequence[Override] = (),
    noise: float | None = None,
    scheduler: str | None = None,
    chunk: int = CHUNK,
    rows_per_part: int = ROWS_PER_PART,
) -> SweepResult:
    """Runs 0..n-1 of master seed `seed` (kinds restricted to `kinds`, `ControllerConfig` fields
    overridden, sensor noise fixed at `noise` x the spec) into the sweep directory `directory`, on
    `jobs` local processes (default every core; 1: in this process) or on the Dask cluster whose
    scheduler is at `scheduler`. Runs already in `directory` from an interrupted sweep of the same
    configuration are kept and the sweep goes on after them; one of another configuration is refused."""
    kind_cycle(kinds)  # unknown kinds fail here, not in a worker
    check_noise(noise)
    if n < 1:
        raise ValueError(f"--n = {n} must be >= 1")
    if seed < 0:
        raise ValueError(f"--seed = {seed} must be >= 0")
    if chunk < 1:
        raise ValueError(f"chunk = {chunk} must be >= 1")
    ks = tuple(kinds) if kinds is not None else None
    manifest = Manifest(seed, ks, tuple(overrides), noise, code_digest())
    store = SweepStore(directory, manifest, rows_per_part=rows_per_part)
    if store.done > n:
        raise SweepError(
            f"{directory} already holds {store.done} runs of this sweep, more than --n {n}: "
            f"ask for --n {store.done} or more, or use another --report-dir"
        )
    if store.done:
        logger.info("resuming %s at run %d of %d", directory, store.done, n)
    t0 = time.perf_counter()
    virtual_s = 0.0
    todo = -(-(n - store.done) // chunk)
    if todo == 0:
        return SweepResult(directory, store.done, store.resumed, 0.0, 0.0, 0, "none (already complete)")
    backend = _backend(jobs, scheduler, sweep_id(manifest), todo)
    in_flight_max = IN_FLIGHT_PER_SLOT * backend.slots
    ahead_max = max(REORDER_CHUNKS, 2 * in_flight_max) * chunk
    next_start = write_pos = store.done
    pending: dict[int, list[RunOutcome]] = {}
    in_flight = 0
    try:
        while True:
            while next_start < n and in_flight < in_flight_max and next_start < write_pos + ahead_max:
                stop = min(next_start + chunk, n)
                backend.submit(Chunk(seed, next_start, stop, ks, tuple(overrides), noise))
                next_start, in_flight = stop, in_flight + 1
            if in_flight == 0:
                break
            done, outcomes = backend.next_done()
            in_flight -= 1
            pending[done.start] = outcomes
            while write_pos in pending:
                ready = pending.pop(write_pos)
                store.append(ready)
                write_pos += len(ready)
                virtual_s += sum(o.virtual_s for o in ready)
                if progress:
                    progress(write_pos, n)
    finally:
        store.flush()  # whatever is contiguous is kept, also on Ctrl-C or a failed chunk
        backend.close()
    return SweepResult(
        directory,
        store.done,
        store.resumed,
        time.perf_counter() - t0,
        virtual_s,
        backend.slots,
        backend.name,
    )


def read_outcomes(directory: Path) -> list[RunOutcome]:
    """Every run of a sweep directory, in index order, in memory (tests and small sweeps only)."""
    return [o for batch in iter_runs(directory / "runs") for o in batch]


def write_report(
    directory: Path, header: dict[str, Any], plot: bool = True, batch_rows: int | None = None
) -> tuple[dict[str, Path], SweepTally]:
    """sweep.md, sweep.csv, sweep.json and (unless `plot` is False) sweep.png into the sweep directory,
    from its runs read in batches: one pass to tally, one more to list every run in the JSON."""
    runs_dir = directory / "runs"
    kw = {} if batch_rows is None else {"batch_rows": batch_rows}
    t = SweepTally()
    for batch in iter_runs(runs_dir, **kw):
        t.add_all(batch)
    paths = {ext: directory / f"sweep.{ext}" for ext in ("md", "csv", "json", "png")}
    paths["md"].write_text(report_markdown(t, header))
    write_csv(paths["csv"], t)
    write_json(paths["json"], t, header, iter_runs(runs_dir, **kw))
    if plot:
        title = f"detector sweep: {t.runs} runs, seed {header['seed']}"
        write_png(paths["png"], t, title)
    else:
        del paths["png"]
    return paths, t


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def provenance() -> dict[str, str]:
    """The commit of this checkout and the last commit that touched the detectors (the controller),
    `+dirty` if what decides a run differs from the commit; and the code digest the runs carry."""
    dirty = "+dirty" if _git("status", "--porcelain", "--", "firmware_sim", "protocol", "hil") else ""
    return {
        "commit": (_git("rev-parse", "HEAD") or "unknown") + dirty,
        "detectors_commit": _git("log", "-1", "--format=%H %cs", "--", "firmware_sim/controller")
        or "unknown",
        "code_digest": code_digest(),
    }


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


def _scheduler(text: str) -> str:
    try:
        return scheduler_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _noise(text: str) -> float:
    try:
        return check_noise(float(text)) or 0.0
    except ValueError as e:
        raise argparse.ArgumentTypeError(
            str(e) if "--noise" in str(e) else f"{text!r} is not a number"
        ) from None


def _override(text: str) -> Override:
    try:
        return parse_override(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=RUNS, required=True, help=f"number of runs ({RUNS.allowed})")
    p.add_argument("--seed", type=SEED, default=1, help="master seed (default 1)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--jobs", type=JOBS, default=None, help=f"local processes (default: every core; {JOBS.allowed})"
    )
    where.add_argument(
        "--scheduler",
        type=_scheduler,
        default=None,
        metavar="tcp://HOST:PORT",
        help="run on the Dask cluster whose scheduler is there (needs the cluster extra: "
        "pip install 'cementguard[cluster]'; the workers need the same cementguard commit)",
    )
    p.add_argument(
        "--report-dir",
        type=Path,
        required=True,
        help="sweep directory: runs (Parquet), sweep.md/.csv/.json/.png; a partial sweep of the same "
        "configuration there is resumed",
    )
    p.add_argument(
        "--noise",
        type=_noise,
        default=None,
        help="fix the sensor noise at this multiple of the 10 kPa spec (one of "
        f"{', '.join(f'{lv:g}' for lv in NOISE_LEVELS)}; default: drawn per run)",
    )
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
    """The command that reproduces this sweep (neither the job count nor the cluster changes its
    results, so neither is part of it)."""
    extra = ""
    if args.kinds:
        extra += f" --kinds {','.join(args.kinds)}"
    if args.noise is not None:
        extra += f" --noise {args.noise:g}"
    extra += "".join(f" --set {k}={v}" for k, v in args.overrides)
    return f"cementguard hil sweep --n {args.n} --seed {args.seed}{extra} --report-dir {args.report_dir}"


def sweep_command(args: argparse.Namespace) -> int:
    """Run the sweep (or the rest of it), write the report, print where it went and the headline
    figures. Exit 1 with one line on stderr when the sweep cannot run or go on."""
    try:
        with progress_bar(args.n, enabled=False if args.quiet else None) as progress:
            result = run_sweep(
                args.n,
                args.seed,
                args.report_dir,
                args.jobs,
                progress,
                args.kinds,
                args.overrides,
                args.noise,
                args.scheduler,
            )
    except SweepError as exc:
        print(f"cementguard hil sweep: {exc}", file=sys.stderr)
        return 1
    where = f"{result.backend}, {result.workers} workers" + (
        f" at {args.scheduler}" if args.scheduler else ""
    )
    rate = result.ran / result.wall_s if result.wall_s > 0 else float("nan")
    header = {
        "command": command_line(args),
        "seed": args.seed,
        "kinds": ",".join(args.kinds) if args.kinds else "all",
        "noise": f"{args.noise:g}x the spec" if args.noise is not None else "drawn per run",
        "controller_overrides": dict(args.overrides) or "none (ControllerConfig defaults)",
        "runs": result.runs,
        "resumed_after_runs": result.resumed,
        "backend": where,
        "wall_s": round(result.wall_s, 2),
        "runs_per_s": round(rate, 2),
        "virtual_x_real_time": round(result.virtual_s / result.wall_s, 1) if result.wall_s > 0 else None,
        **provenance(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }
    paths, t = write_report(args.report_dir, header, plot=not args.no_plot)
    false = next(f for f in t.false_stop_summary() if f.noise == "all")
    resumed = f" (resumed after {result.resumed})" if result.resumed else ""
    print(
        f"{result.ran} runs{resumed} in {result.wall_s:.1f} s on {where} ({rate:.1f} runs/s, "
        f"{t.virtual_s / 3600:.2f} h virtual in all); {false.false_stops} false stops in "
        f"{false.nominal_runs} nominal runs (95 % upper bound {100 * false.rate_upper:.3g} %)"
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

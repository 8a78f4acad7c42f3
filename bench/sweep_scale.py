"""Detector sweep throughput against the number of workers: the local pool and a Dask cluster.

    .venv/bin/python bench/sweep_scale.py                   # 160 runs per point, 3 rounds, seed 1
    .venv/bin/python bench/sweep_scale.py --runs 600 --rounds 5 --json

The same sweep (seed, runs 0..N-1, every kind) is run on the local process pool with 1 process
(in-process) and with 2 and os.cpu_count() processes, then on a Dask cluster on loopback (a `dask
scheduler` and k `dask worker --nthreads 1 --no-nanny` processes, hil._sweep_cluster) with the same
worker counts. For each point: wall time of the whole `run_sweep` call (the local pool includes starting
its processes; each cluster is started, and warmed with one small sweep, before the clock, and stopped
before the next point), and the steady rate: runs written between the first and the last written chunk
over that time, which leaves start-up out. Parallel efficiency = steady rate / (workers x the 1-worker
rate of the same backend). Overhead per run is measured in CPU time, which a loaded machine does not
distort as it does wall time: the CPU seconds of every process of a point (the driver and, for Dask, its
client threads; the local pool's processes, start-up included; the scheduler and the workers) over its
runs, minus the same for the in-process point (the runs alone), and minus the local pool's at the same
worker count: the baselines measured in the same run. The points are measured in alternating rounds (the
median round is shown, every round's rate is in the JSON), and every round's runs are checked identical
to the in-process ones.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import _common

from hil._sweep_cluster import LoopbackCluster
from hil.sweep import read_outcomes, run_sweep


def _proc_cpu_s(pids: Sequence[int]) -> float:
    """User + system CPU seconds of live processes, from /proc/PID/stat (fields 14 and 15)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _cpu_s(pids: Sequence[int]) -> float:
    """CPU seconds of this process (the driver, a Dask client's threads), its waited-for children (a
    local pool's processes, after the pool closed) and the given live processes (a cluster's)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime + _proc_cpu_s(pids)


def _point(n: int, seed: int, directory: Path, pids: Sequence[int] = (), **where: Any) -> dict[str, Any]:
    marks: list[tuple[float, int]] = []

    def progress(done: int, _total: int) -> None:
        marks.append((time.perf_counter(), done))

    cpu0 = _cpu_s(pids)
    t0 = time.perf_counter()
    result = run_sweep(n, seed, directory, progress=progress, **where)
    wall = time.perf_counter() - t0
    cpu = _cpu_s(pids) - cpu0
    (t_first, first), (t_last, last) = marks[0], marks[-1]
    steady = (last - first) / (t_last - t_first) if t_last > t_first else float("nan")
    runs = [json.dumps(asdict(o), sort_keys=True) for o in read_outcomes(directory)]
    return {
        "backend": result.backend,
        "workers": result.workers,
        "wall_s": wall,
        "runs_per_s_wall": n / wall,
        "runs_per_s_steady": steady,
        "cpu_ms_per_run": 1000.0 * cpu / n,
        "_runs": runs,
    }


def _median(group: list[dict[str, Any]]) -> dict[str, Any]:
    """The point of median steady rate among its rounds, with every round's steady rate."""
    ordered = sorted(group, key=lambda p: p["runs_per_s_steady"])
    mid = dict(ordered[len(ordered) // 2])
    mid["rounds_runs_per_s_steady"] = [round(p["runs_per_s_steady"], 2) for p in group]
    mid["cpu_ms_per_run"] = statistics.median(p["cpu_ms_per_run"] for p in group)
    mid["rounds_cpu_ms_per_run"] = [round(p["cpu_ms_per_run"], 1) for p in group]
    mid["_key"] = ("dask" if mid["backend"] == "dask" else "local", mid["workers"])
    del mid["_runs"]
    return mid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=160, help="runs per point (default 160)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every point (default 3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if args.runs < 16 or args.rounds < 1:
        parser.error(f"--runs {args.runs}, --rounds {args.rounds}: at least 16 and 1")
    counts = sorted({1, 2, os.cpu_count() or 1})
    samples: dict[tuple[str, int], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="sweep-scale-") as tmp:
        root = Path(tmp)
        # Rounds alternate the points, so that a change of the machine's load hits each point alike.
        # No cluster (nor its client's threads) is up while the local points run.
        for r in range(args.rounds):
            for k in counts:
                p = _point(args.runs, args.seed, root / f"r{r}-local{k}", jobs=k)
                samples.setdefault(("local", k), []).append(p)
            for k in counts:
                with LoopbackCluster(workers=k, directory=root / f"r{r}-cluster{k}") as cluster:
                    # every worker imports the simulator before the clock
                    run_sweep(4 * k, args.seed + 1, root / f"r{r}-warm{k}", scheduler=cluster.address)
                    pids = [p.pid for p in [*cluster.procs, cluster.scheduler] if p is not None]
                    p = _point(args.runs, args.seed, root / f"r{r}-dask{k}", pids, scheduler=cluster.address)
                samples.setdefault(("dask", k), []).append(p)
    points = [_median(group) for group in samples.values()]
    truth = samples[("local", 1)][0]["_runs"]
    for p in points:
        p["identical_to_in_process"] = all(s["_runs"] == truth for s in samples[p.pop("_key")])
    by = {(p["backend"], p["workers"]): p for p in points}
    alone = by[("in-process", 1)]["cpu_ms_per_run"]
    for p in points:
        local = "in-process" if p["workers"] == 1 else "local pool"
        one = by[("dask", 1)] if p["backend"] == "dask" else by[("in-process", 1)]
        p["efficiency"] = p["runs_per_s_steady"] / (p["workers"] * one["runs_per_s_steady"])
        p["cpu_overhead_ms_per_run_vs_in_process"] = p["cpu_ms_per_run"] - alone
        p["cpu_overhead_ms_per_run_vs_local"] = (
            p["cpu_ms_per_run"] - by[(local, p["workers"])]["cpu_ms_per_run"]
        )
    doc = {
        "bench": "sweep_scale",
        "command": _common.command_line("sweep_scale", argv),
        "runs": args.runs,
        "rounds": args.rounds,
        "seed": args.seed,
        "machine": _common.machine(),
        "points": points,
    }
    if args.json:
        _common.dump_json(doc)
        return 0
    print(
        f"{args.runs} runs per point, {args.rounds} rounds (median shown), seed {args.seed}; {doc['machine']}"
    )
    print(
        "| backend | workers | wall s | runs/s (wall) | runs/s (steady) | efficiency | CPU ms/run | "
        "CPU overhead ms/run vs in-process / vs local (same workers) | same runs |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for p in points:
        print(
            f"| {p['backend']} | {p['workers']} | {p['wall_s']:.1f} | {p['runs_per_s_wall']:.1f} | "
            f"{p['runs_per_s_steady']:.1f} | {100 * p['efficiency']:.0f} % | "
            f"{p['cpu_ms_per_run']:.1f} | {p['cpu_overhead_ms_per_run_vs_in_process']:+.1f} / "
            f"{p['cpu_overhead_ms_per_run_vs_local']:+.1f} | "
            f"{'yes' if p['identical_to_in_process'] else 'NO'} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

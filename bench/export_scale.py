"""Exports that scale: time and peak memory of `export --csv`, `export --parquet`, `cementguard.load`
and `report` on long recordings, against a raw read of the same file in the same run.

    python bench/export_scale.py                  # 10-minute and 2-hour 1 kHz recordings
    python bench/export_scale.py --minutes 1 10   # quicker
    python bench/export_scale.py --json

Each recording is synthetic 1 kHz telemetry (every field moving, a sensor-fault stretch, a stop)
written by the real `host.recording.Recorder`, in a temporary directory beside the repository (same
file system). Each task then runs in a fresh child process; its wall time is measured around the work
inside the child, and its peak resident memory is the child's `ru_maxrss` as the parent collects it
with `os.wait4` (so file pages touched count, as they would for a user). Baselines, same file, same
run: `raw_read` (`np.fromfile` of the whole telemetry.bin, what the old export started with) and
`raw_stream` (the same bytes read in the export's chunks, summed: the floor for any streaming reader),
and `idle` (the interpreter with the same imports, doing nothing). The goal (issue 16): peak RSS under
300 MB for a 2-hour recording (7.2 M samples, 288 MB of telemetry) for export and report, and time
linear in the length (time per sample at 2 h within 1.5x of that at 10 min).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

GOAL_RSS_MB = 300.0
GOAL_LINEAR = 1.5
TASKS = (
    "idle",
    "raw_read",
    "raw_stream",
    "csv",
    "parquet",
    "load",
    "load_10min",
    "report",
    "plot",
    "t_s",
    "duration",
    "hil_plot",
)


def synthetic(n: int, t0: int) -> np.ndarray[Any, Any]:
    from protocol.enums import Flags, State
    from protocol.telemetry import SAMPLE_DTYPE

    i = np.arange(t0, t0 + n, dtype=np.int64)
    s = np.zeros(n, dtype=SAMPLE_DTYPE)
    s["t_us"] = i * 1000
    s["pressure_pa"] = 800_000 + (i * 37) % 150_000 + (i // 1000) % 600 * 1000
    s["delivered_nl"] = i * 2
    s["plunger_um"] = 3_000 + i // 10
    s["flow_nl_s"] = 50_000 + (i % 7)
    s["flow_setpoint_nl_s"] = 50_000
    s["motor_um_s"] = 120
    s["viscosity_pas"] = np.where(i % 3 == 0, np.nan, 120.5 + i % 5)
    s["flags"] = int(Flags.HOST_LINK_OK | Flags.MOTOR_MOVING)
    s["flags"][(i % 600_000) < 50] |= int(Flags.SENSOR_FAULT)
    s["state"] = State.INJECTING
    return s


def make_recording(path: Path, minutes: float) -> int:
    """Write `minutes` of 1 kHz telemetry with the real Recorder; returns the sample count."""
    from host.recording import Recorder
    from protocol.enums import AlarmCode, EventKind, Flags, State, StopReason, StopSource
    from protocol.messages import Event

    n = int(minutes * 60_000)
    plan = {"name": "bench", "flow_ml_min": 3.0, "volume_limit_ml": 20.0, "soft_limit_kpa": 2500.0}
    with Recorder.create(path, plan, None, background=False, flush_interval_s=3600.0) as rec:
        for start in range(0, n, 200_000):
            rec.add_samples(synthetic(min(200_000, n - start), start))
            rec.flush()
        rec.add_event(
            Event(
                t_us=n * 1000,
                event_index=0,
                kind=EventKind.STOP,
                state=State.STOPPED,
                prev_state=State.INJECTING,
                reason=StopReason.OVERPRESSURE,
                source=StopSource.CONTROLLER,
                alarm=AlarmCode.NONE,
                flags=Flags.HOST_LINK_OK,
                pressure_pa=4_000_000,
                delivered_nl=n * 2,
                plunger_um=3_000 + n // 10,
                detail=0,
            ),
            source_latency_ms=1.0,
        )
    return n


def child(task: str, rec_dir: Path, out_dir: Path) -> None:
    """One task, in this (fresh) process; prints its seconds of work."""
    from host import export as export_module  # the imports every task shares, outside the timing
    from host.recording import Recording

    t0 = time.perf_counter()
    if task == "raw_read":
        data = np.fromfile(rec_dir / "telemetry.bin", dtype=np.uint8)
        total = int(data[::4096].sum())
    elif task == "raw_stream":
        total = 0
        for chunk in Recording.open(rec_dir).iter_samples():
            total += int(chunk["pressure_pa"].sum())
    elif task == "csv":
        total = export_module.export_csv(rec_dir, out_dir / "s.csv", metadata_header=True)
    elif task == "parquet":
        total = export_module.export_parquet(rec_dir, out_dir / "s.parquet")
    elif task == "load":  # every row, knowingly: beyond the default bound
        from host.analysis import load

        total = len(load(rec_dir, max_rows=None).samples)
    elif task == "load_10min":  # a time range: what the default bound asks for on a long run
        from host.analysis import load

        total = len(load(rec_dir, start_s=60.0, end_s=660.0).samples)
    elif task == "plot":
        from host.plot import plot_png

        plot_png(Recording.open(rec_dir), out_dir / "plot.png")
        total = 0
    elif task == "t_s":
        total = len(Recording.open(rec_dir).t_s)
    elif task == "duration":
        total = int(Recording.open(rec_dir).duration_s)
    elif task == "hil_plot":  # the HIL report's figure: host.plot's, plus the onsets
        from hil.report import plot_outcome

        total = 0 if plot_outcome(_outcome(rec_dir), out_dir / "hil.png") is None else 1
    elif task == "report":
        from host.report import write_report

        write_report(rec_dir, out_dir / "report")
        total = 0
    else:
        total = 0
    print(json.dumps({"seconds": time.perf_counter() - t0, "total": total}))


def _outcome(rec_dir: Path) -> Any:
    """A HIL outcome naming the recording, as the runner builds one (only what plot_outcome reads)."""
    from types import SimpleNamespace

    measured = SimpleNamespace(onsets=[(60.0, "occlusion")], stops=[])
    return SimpleNamespace(recording=str(rec_dir), measured=measured, status="passed", name="bench")


def run_child(task: str, rec_dir: Path, out_dir: Path) -> dict[str, float]:
    """Run one task in a fresh process; its peak RSS from the kernel's accounting of that child."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", task, str(rec_dir), str(out_dir)]
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO)
        out = proc.stdout.read() if proc.stdout is not None else ""
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, not by Popen: its rusage is ours
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{task} failed: {err.read().strip()[-2000:]}")
    doc = json.loads(out.strip().splitlines()[-1])
    return {"seconds": float(doc["seconds"]), "peak_rss_mb": usage.ru_maxrss / 1024.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, nargs="+", default=[10.0, 120.0], help="recording lengths")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--child", nargs=3, metavar=("TASK", "REC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return 0

    results: dict[str, Any] = {}
    root = Path(tempfile.mkdtemp(prefix="export_scale-", dir=REPO.parent))
    try:
        for minutes in args.minutes:
            rec_dir, out_dir = root / f"rec{minutes:g}", root / f"out{minutes:g}"
            out_dir.mkdir()
            n = make_recording(rec_dir, minutes)
            row: dict[str, Any] = {"samples": n, "telemetry_mb": n * 40 / 1e6}
            for task in args.tasks:
                row[task] = run_child(task, rec_dir, out_dir)
                if not args.json:
                    print(f"{minutes:g} min {task}: {row[task]}", file=sys.stderr, flush=True)
            raw = row.get("raw_read", {}).get("seconds")
            for task in args.tasks:
                if raw:
                    row[task]["time_vs_raw_read"] = row[task]["seconds"] / raw
                row[task]["us_per_sample"] = row[task]["seconds"] / n * 1e6
            results[f"{minutes:g}"] = row
            shutil.rmtree(rec_dir)
            shutil.rmtree(out_dir)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    longest, shortest = f"{max(args.minutes):g}", f"{min(args.minutes):g}"
    streamed = [t for t in ("csv", "parquet", "report") if t in args.tasks]
    rss_ok = all(results[longest][t]["peak_rss_mb"] < GOAL_RSS_MB for t in streamed)
    linear = {
        t: results[longest][t]["us_per_sample"] / results[shortest][t]["us_per_sample"]
        for t in streamed
        if longest != shortest
    }
    doc = {
        "goal_peak_rss_mb": GOAL_RSS_MB,
        "goal_time_per_sample_ratio": GOAL_LINEAR,
        "results": results,
        "time_per_sample_longest_vs_shortest": linear,
        "meets_goal": rss_ok and all(v <= GOAL_LINEAR for v in linear.values()),
    }
    try:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _common import machine

        doc["machine"] = machine()
    except ImportError:
        pass
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    head = ("recording", "task", "seconds", "x raw read", "us/sample", "peak RSS MB")
    print(f"{head[0]:>10} {head[1]:<11} {head[2]:>8} {head[3]:>10} {head[4]:>9} {head[5]:>11}")
    for minutes, row in results.items():
        for task in args.tasks:
            r = row[task]
            ratio = r.get("time_vs_raw_read", 0.0)
            print(
                f"{minutes + ' min':>10} {task:<11} {r['seconds']:>8.2f} {ratio:>10.1f} "
                f"{r['us_per_sample']:>9.3f} {r['peak_rss_mb']:>11.0f}"
            )
    print(f"time per sample, {longest} min vs {shortest} min: {linear}; meets goal: {doc['meets_goal']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

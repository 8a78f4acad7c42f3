"""Dashboard plot redraw time with 10 minutes of 1 kHz history, against a same-run 1 s baseline.

    python bench/dashboard_redraw.py                 # 600 s x 1 kHz = 600,000 samples, 60 frames, table
    python bench/dashboard_redraw.py --frames 20 --json

The dashboard (host.dashboard.app) runs headless at a fixed terminal size (default 160 x 48, a
full-screen terminal on a laptop) with its history filled with synthetic telemetry. One frame is
what the redraw timer does for the plots when new data has arrived: for both plots, reduce the
whole history to min/max pairs per plot column (`SignalPlot.spec`: the "data" part, on the event
loop) and draw the plot's text (`widgets.plots.draw`: plotext's `build()` + ANSI parse, the "build"
part, which the dashboard runs in a worker thread). "plots" is their sum for both plots: the work
per frame wherever it runs; "plots_cpu" is the same work in CPU time of the measuring thread
(`time.thread_time`), which leaves out the time the machine gave to other processes: on a shared,
loaded machine the wall-time tail mostly measures the neighbours. The text panels' refresh
(banner, readouts, connection, stop log) is reported separately. The app's own redraw timer is
slowed down during the measurement, so no plot worker runs beside the timed code.

Baseline, same run and machine: the same frame with 1 s of history (1,000 samples), so the ratio
shows what the history length costs. Goal (docs/design.md): <= 30 ms per frame with 10 min of history.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import _common
import numpy as np

from host.dashboard.app import DashboardApp
from host.dashboard.model import DashboardModel
from host.dashboard.widgets.banner import StateBanner
from host.dashboard.widgets.panels import ConnectionPanel, Readouts
from host.dashboard.widgets.plots import PressurePlot, VolumePlot, draw
from host.dashboard.widgets.stoplog import StopLog
from host.plan import load_plan
from host.stops import StopRequests
from protocol import State
from protocol.telemetry import SAMPLE_DTYPE

REPO = Path(__file__).resolve().parents[1]
PLAN = REPO / "plans" / "incremental-3x0.5ml.toml"
GOAL_MS = 30.0


class _Still:
    """A source that feeds nothing: the bench fills the model itself."""

    label = "bench"
    commands = None

    def __init__(self) -> None:
        self.stops = StopRequests()

    async def run(self, model: DashboardModel) -> None:
        model.on_link("replay", "bench", self.label)
        await asyncio.Event().wait()


def synthetic(seconds: float, rate_hz: int) -> np.ndarray[Any, Any]:
    """Injection-like telemetry with noise, so min/max buckets have real work to do."""
    n = int(seconds * rate_hz)
    rng = np.random.default_rng(1)
    t = np.arange(n) / rate_hz
    s = np.zeros(n, dtype=SAMPLE_DTYPE)
    s["t_us"] = np.round(t * 1e6).astype(np.uint64)
    s["pressure_pa"] = (1.5e6 * (1 - np.exp(-(t % 60) / 5)) + rng.normal(0, 5e3, n)).astype(np.int32)
    s["delivered_nl"] = np.round(t * 50_000).astype(np.int32)
    s["flow_nl_s"] = 50_000
    s["viscosity_pas"] = 120.0
    s["state"] = int(State.INJECTING)
    return s


async def measure(seconds: float, rate_hz: int, frames: int, size: tuple[int, int]) -> dict[str, list[float]]:
    model = DashboardModel()
    app = DashboardApp(_Still(), plan=load_plan(PLAN), model=model, refresh_hz=0.01)
    out: dict[str, list[float]] = {"plots": [], "plots_cpu": [], "data": [], "build": [], "panels": []}
    async with app.run_test(size=size) as pilot:
        samples = synthetic(seconds, rate_hz)
        for start in range(0, len(samples), 100_000):
            model.on_samples(samples[start : start + 100_000])
        await pilot.pause()
        plots = [app.query_one(PressurePlot), app.query_one(VolumePlot)]
        panels = (app.query_one(StateBanner), app.query_one(Readouts), app.query_one(ConnectionPanel))
        stop_log = app.query_one(StopLog)
        for _ in range(frames):
            c0 = time.thread_time()
            t0 = time.perf_counter()
            specs = [plot.spec(model) for plot in plots]
            t1 = time.perf_counter()
            for spec in specs:
                draw(spec)
            t2 = time.perf_counter()
            out["plots_cpu"].append(time.thread_time() - c0)
            for panel in panels:
                panel.show(model)
            stop_log.show(model)
            t3 = time.perf_counter()
            out["data"].append(t1 - t0)
            out["build"].append(t2 - t1)
            out["plots"].append(t2 - t0)
            out["panels"].append(t3 - t2)
            await pilot.pause()
        assert len(model.history) == min(len(samples), model.history.capacity)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--history-s", type=float, default=600.0, help="history length, s (default %(default)s)"
    )
    parser.add_argument("--rate", type=int, default=1000, help="samples per second (default %(default)s)")
    parser.add_argument("--frames", type=int, default=60, help="frames timed per case (default %(default)s)")
    parser.add_argument("--size", default="160x48", help="terminal size WxH (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))

    load_before = os.getloadavg()[0]
    cases = {"full": args.history_s, "baseline_1s": 1.0}
    results = {}
    for name, history_s in cases.items():
        timings = asyncio.run(measure(history_s, args.rate, args.frames, (width, height)))
        results[name] = {part: _common.latency_summary(values) for part, values in timings.items()}
    full, base = results["full"]["plots"], results["baseline_1s"]["plots"]
    meets = full["p99_ms"] <= GOAL_MS
    doc = {
        "benchmark": "dashboard_redraw",
        "command": _common.command_line("dashboard_redraw", argv),
        "machine": _common.machine(),
        "samples": int(args.history_s * args.rate),
        "terminal": [width, height],
        "frames": args.frames,
        "goal_ms": GOAL_MS,
        "meets_goal": meets,
        "ratio_p50_full_over_1s": full["p50_ms"] / base["p50_ms"],
        "load_avg_1min_before_after": [load_before, os.getloadavg()[0]],
        "results": results,
    }
    if args.json:
        _common.dump_json(doc)
        return 0
    print(
        f"dashboard plot redraw, {doc['samples']:,} samples of history, terminal {width}x{height}, "
        f"{args.frames} frames per case; goal p99 <= {GOAL_MS:g} ms; 1-min load {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after on {os.cpu_count()} CPUs"
    )
    print(f"{'case':<14} {'part':<8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, parts in results.items():
        for part, r in parts.items():
            print(f"{name:<14} {part:<8} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['max_ms']:>8.2f}")
    print(f"ratio p50 (plots, full / 1 s): {doc['ratio_p50_full_over_1s']:.2f}")
    print(f"goal: {_common.VERDICT[meets]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run every benchmark under bench/ and print one summary against the docs/design.md goals.

    python bench/run_all.py              # quick settings (~2 min): a smoke run of every figure
    python bench/run_all.py --full       # each benchmark's own defaults (what docs/performance.md records)
    python bench/run_all.py --only sim_speed occlusion

Every bench/*.py script (except this one and helper modules starting with "_") is run, each in its own
process with --json; its figures are read back from the JSON. A script this file does not know yet is
run with its defaults and reported by its top-level "meets_goal", if it has one. Quick
settings shorten the runs, so their figures are noisier than the recorded ones: use them to see
that nothing regressed badly, and re-run a benchmark with its defaults before updating the docs.
Exit status 1 if a benchmark failed to run (a missed goal is reported, not an error).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

QUICK: dict[str, list[str]] = {
    "telemetry_decode": ["--samples", "50000", "--repeats", "3"],
    "sim_speed": ["--seconds", "5", "--repeats", "3"],
    "spatial_convergence": ["--grids", "3", "2", "--volume-ml", "1"],
    "tick_jitter": ["--seconds", "5"],
    "occlusion": ["--quick"],
    "afterflow": ["--quick"],
    "false_stops": ["--runs", "50"],
    "stop_latency": ["--cycles", "200"],
    "telemetry_soak": ["--minutes", "0.5", "--baseline-s", "3"],
    "dashboard_redraw": ["--frames", "20"],
    "dashboard_stop_latency": ["--presses", "200", "--baseline", "30"],
    "mqtt_stop_latency": ["--cycles", "50"],
    "stop_first": ["--stops", "5"],
    "export_scale": ["--minutes", "1", "10"],
    "fluoro_render": ["--frames", "30", "--repeats", "2"],
    "guard": ["--frames", "40", "--cycles", "5"],
    "guard_sweep": ["--seeds", "1", "--doses", "1000", "--fps", "5"],
    "fluoro_panel": ["--frames", "30", "--repeats", "2"],
    "session_open_lag": ["--runs", "2"],
}

Line = tuple[str, str, str, bool | None]
"""(figure, goal, measured, goal met or None)."""


def _telemetry(doc: dict[str, Any]) -> list[Line]:
    out: list[Line] = []
    for r in doc["results"]:
        out.append(
            (
                f"telemetry decode, batch {r['batch']}",
                ">= 1,000,000 samples/s",
                f"{r['codec_samples_per_s']:,.0f} samples/s (codec/floor {r['codec_vs_floor']:.2f})",
                r["meets_goal"],
            )
        )
    return out


def _sim_speed(doc: dict[str, Any]) -> list[Line]:
    rows = {r["path"]: r for r in doc["rows"]}
    ratio = doc["ratios"]["direct_over_plant_plus_controller"]
    return [
        (
            f"controller + plant, {name}",
            ">= 100x real time",
            f"{rows[name]['x_real_time']:.0f}x ({rows[name]['us_per_tick']:.2f} us/tick)"
            + (f", direct/(plant+ctrl) {ratio:.2f}" if name == "direct" else "")
            + (
                f", {doc['ratios']['spatial_direct_over_direct']:.2f}x the lumped direct loop"
                if name == "direct_spatial"
                else ""
            ),
            rows[name]["meets_goal"],
        )
        for name in ("direct", "rig", "direct_spatial")
        if name in rows
    ]


def _jitter(doc: dict[str, Any]) -> list[Line]:
    base = next(r for r in doc["results"] if r["meets_goal"] is None)
    out: list[Line] = []
    for r in doc["results"]:
        if r["meets_goal"] is None:
            continue
        out.append(
            (
                f"tick jitter, {r['name']}",
                "p99 <= 1 ms",
                f"p99 {r['p99_us']:.0f} us, max {r['max_us']:.0f} us (bare loop p99 {base['p99_us']:.0f} us)",
                r["meets_goal"],
            )
        )
    return out


def _occlusion(doc: dict[str, Any]) -> list[Line]:
    return [
        (
            f"occlusion detection ratio, {s['threshold']}",
            "median ratio <= 0.3",
            f"{s['ratio_median']:.3f} ({s['controller_detect_median_s'] * 1000:.0f} ms vs "
            f"{s['plain_detect_median_s']:.2f} s, {s['valid']} runs)",
            s["meets_goal"],
        )
        for s in doc["summaries"]
    ]


def _afterflow(doc: dict[str, Any]) -> list[Line]:
    rows = doc["rows"]
    worst = max(r["relief_ml_max"][-1] for r in rows)
    ratio = max(r["ratio_max"] for r in rows)
    return [
        (
            "after-flow after a stop at 2 MPa",
            "<= 0.02 mL with relief, <= 0.2x plain",
            f"worst {worst:.4f} mL, worst ratio {ratio:.3f} ({len(rows)} conditions)",
            all(r["meets_goal"] for r in rows),
        )
    ]


def _false_stops(doc: dict[str, Any]) -> list[Line]:
    return [
        (
            f"false stops, noise {s['noise_kpa']:.0f} kPa",
            "0 in >= 500 nominal runs",
            f"{s['false_stops']} in {s['runs']} runs ({s['incomplete']} incomplete)",
            # fewer than 500 clean runs (quick settings) neither meet nor miss the goal
            s["meets_goal"] if not s["meets_goal"] or s["runs"] >= 500 else None,
        )
        for s in doc["summaries"]
    ]


def _stop_latency(doc: dict[str, Any]) -> list[Line]:
    rows = doc["rows"]
    read = rows["event_read"]
    base = rows.get("get_status", {}).get("p99_ms", float("nan"))
    return [
        (
            "host STOP -> STOPPED event, pty",
            f"p99 <= {doc.get('goal_p99_ms', 5.0):g} ms",
            f"p99 {read['p99_ms']:.2f} ms, max {read['max_ms']:.2f} ms (GET_STATUS p99 {base:.2f} ms)",
            doc.get("meets_goal"),
        )
    ]


def _stop_first(doc: dict[str, Any]) -> list[Line]:
    rows = doc["rows"]
    base = rows["baseline_import_serial"]["p50_ms"]
    return [
        (
            f"`cementguard stop` start -> STOPPED, {way}",
            f"<= {doc.get('goal_ms', 250.0):g} ms",
            f"p99 {rows[key]['p99_ms']:.0f} ms, p50 {rows[key]['p50_ms']:.0f} ms "
            f"({rows[key]['p50_over_baseline']:.1f}x `python -c 'import serial'`, {base:.0f} ms)",
            rows[key]["p99_ms"] <= doc.get("goal_ms", 250.0),
        )
        for way, key in (("through the endpoint", "endpoint_event"), ("directly", "direct_ack"))
    ]


def _soak(doc: dict[str, Any]) -> list[Line]:
    r = doc["result"]
    return [
        (
            "1 kHz telemetry + recording, pty",
            "no lost seq; CPU <= 10 %; RSS <= 150 MB",
            f"{r['seconds']:.0f} s: lost {r['lost_frames']} seq / {r['lost_samples']} samples, "
            f"CPU {r['host_cpu_fraction']:.1%}, RSS {r['rss_mb']:.0f} MB",
            doc.get("meets_goal"),
        )
    ]


def _dashboard_redraw(doc: dict[str, Any]) -> list[Line]:
    full = doc["results"]["full"]["plots"]
    base = doc["results"]["baseline_1s"]["plots"]
    return [
        (
            f"dashboard redraw, {doc['samples']:,} samples",
            f"<= {doc.get('goal_ms', 30.0):g} ms per frame",
            f"p99 {full['p99_ms']:.1f} ms, p50 {full['p50_ms']:.1f} ms (1 s of history: p50 "
            f"{base['p50_ms']:.1f} ms)",
            doc.get("meets_goal"),
        )
    ]


def _dashboard_stop(doc: dict[str, Any]) -> list[Line]:
    rows = doc["rows"]
    key = rows["key_event_read"]
    base = rows.get("direct", {}).get("p99_ms", float("nan"))
    return [
        (
            "dashboard key STOP -> STOPPED event, pty",
            f"p99 <= {doc.get('goal_p99_ms', 50.0):g} ms",
            f"p99 {key['p99_ms']:.2f} ms, p50 {key['p50_ms']:.2f} ms (direct stop() p99 {base:.2f} ms)",
            doc.get("meets_goal"),
        )
    ]


def _mqtt_stop(doc: dict[str, Any]) -> list[Line]:
    rows = doc["rows"]
    pub, held, base = rows["mosquitto_pub"], rows["publisher"], rows["direct"]
    return [
        (
            "MQTT fluoro stop -> STOPPED event, loopback",
            f"p99 <= {doc.get('goal_p99_ms', 25.0):g} ms",
            f"mosquitto_pub p99 {pub['p99_ms']:.2f} ms, publish() p99 {held['p99_ms']:.2f} ms "
            f"(direct p99 {base['p99_ms']:.2f} ms, x{held['ratio_p99_vs_direct']:.1f})",
            doc.get("meets_goal"),
        )
    ]


def _export_scale(doc: dict[str, Any]) -> list[Line]:
    results = doc["results"]
    longest = max(results, key=float)
    row = results[longest]
    raw = row.get("raw_read", {})
    out: list[Line] = []
    for task in ("csv", "parquet", "report", "load"):
        if task not in row:
            continue
        r = row[task]
        streamed = task != "load"
        linear = doc.get("time_per_sample_longest_vs_shortest", {}).get(task)
        out.append(
            (
                f"{task} of a {longest}-min 1 kHz recording",
                f"peak RSS < {doc['goal_peak_rss_mb']:g} MB, time linear" if streamed else "-",
                f"{r['seconds']:.1f} s (x{r.get('time_vs_raw_read', float('nan')):.0f} raw read "
                f"{raw.get('seconds', float('nan')):.2f} s), peak {r['peak_rss_mb']:.0f} MB"
                + (f", time/sample x{linear:.2f}" if linear else ""),
                (r["peak_rss_mb"] < doc["goal_peak_rss_mb"]) if streamed else None,
            )
        )
    return out


def _fluoro_render(doc: dict[str, Any]) -> list[Line]:
    return [
        (
            f"synthetic fluoroscopy, {doc['size']} x {doc['size']} frame",
            f"<= {doc['goal_ms']:.0f} ms on one core",
            f"{doc['render_cpu_ms']:.1f} ms CPU, {doc['render_ms']:.1f} ms wall "
            f"(x{doc['render_over_baseline']:.2f} exp+Poisson+blur)",
            doc["meets_goal"],
        )
    ]


def _fluoro_panel(doc: dict[str, Any]) -> list[Line]:
    cols, rows = doc["cells"]
    return [
        (
            f"dashboard fluoroscopy panel, {doc['size']} x {doc['size']} frame to {cols} x {rows} cells",
            f"<= {doc['goal_ms']:.0f} ms CPU per draw",
            f"{doc['draw_cpu_ms']:.1f} ms CPU, {doc['draw_ms']:.1f} ms wall "
            f"(x{doc['draw_over_baseline']:.1f} one resize)",
            doc["meets_goal"],
        )
    ]


def _guard(doc: dict[str, Any]) -> list[Line]:
    proc, stop = doc["processing_512"], doc["frame_to_stopped"]
    return [
        (
            "fluoroscopic guard, 512 x 512 frame",
            ">= 30 frames/s on one core",
            f"{proc['frames_per_s']:.1f} frames/s (median {proc['guard_ms']['p50_ms']:.1f} ms)",
            doc["meets_processing_goal"],
        ),
        (
            "fluoroscopic guard: frame -> STOPPED",
            "p99 <= 50 ms + one frame period",
            f"p99 {stop['p99_ms']:.1f} ms",
            doc["meets_stop_goal"],
        ),
    ]


def _generic(name: str) -> Callable[[dict[str, Any]], list[Line]]:
    def extract(doc: dict[str, Any]) -> list[Line]:
        goals = ", ".join(f"{k}={v}" for k, v in doc.items() if k.startswith("goal"))
        return [(name, goals or "-", "see its JSON / table", doc.get("meets_goal"))]

    return extract


EXTRACT: dict[str, Callable[[dict[str, Any]], list[Line]]] = {
    "telemetry_decode": _telemetry,
    "sim_speed": _sim_speed,
    "tick_jitter": _jitter,
    "occlusion": _occlusion,
    "afterflow": _afterflow,
    "false_stops": _false_stops,
    "stop_latency": _stop_latency,
    "telemetry_soak": _soak,
    "dashboard_redraw": _dashboard_redraw,
    "dashboard_stop_latency": _dashboard_stop,
    "mqtt_stop_latency": _mqtt_stop,
    "stop_first": _stop_first,
    "export_scale": _export_scale,
    "fluoro_render": _fluoro_render,
    "guard": _guard,
    "fluoro_panel": _fluoro_panel,
}


def discover() -> list[str]:
    """Known benchmarks first (in EXTRACT order, if present), then any other bench/*.py."""
    found = {p.stem for p in HERE.glob("*.py") if not p.stem.startswith("_") and p.stem != "run_all"}
    return [n for n in EXTRACT if n in found] + sorted(found - set(EXTRACT))


@dataclass
class Outcome:
    name: str
    seconds: float
    lines: list[Line]
    error: str = ""


def run_bench(name: str, full: bool) -> Outcome:
    cmd = [sys.executable, str(HERE / f"{name}.py"), *([] if full else QUICK.get(name, [])), "--json"]
    print(f"running {' '.join(['bench/' + name + '.py', *cmd[2:]])} ...", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        return Outcome(name, dt, [], proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed")
    try:
        return Outcome(name, dt, EXTRACT.get(name, _generic(name))(json.loads(proc.stdout)))
    except (ValueError, KeyError, StopIteration) as exc:
        return Outcome(name, dt, [], f"could not read its JSON: {exc!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="each benchmark's own defaults (slow)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these (script names)")
    args = parser.parse_args(argv)
    available = discover()
    unknown = set(args.only or []) - set(available)
    if unknown:
        parser.error(f"no such benchmark: {', '.join(sorted(unknown))} (have: {', '.join(available)})")
    names = args.only or available
    outcomes = [run_bench(n, args.full) for n in names]
    print()
    print(f"benchmark summary ({'full' if args.full else 'quick'} settings)")
    print(f"{'figure':<44} {'goal':<38} {'measured':<64} {'ok':>4}")
    for o in outcomes:
        if o.error:
            print(f"{o.name:<44} {'':<38} {'ERROR: ' + o.error:<64} {'':>4}")
        for figure, goal, measured, met in o.lines:
            verdict = "-" if met is None else ("ok" if met else "MISS")
            print(f"{figure:<44} {goal:<38} {measured:<64} {verdict:>4}")
    print(
        f"total {sum(o.seconds for o in outcomes):.0f} s: "
        + ", ".join(f"{o.name} {o.seconds:.0f} s" for o in outcomes)
    )
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())

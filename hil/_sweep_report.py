"""The sweep's report: per-detector tables (markdown, CSV), the false-stop statements, the plot, the JSON.

Aggregation is kept apart from writing: `hil._sweep_tally.SweepTally` turns runs (streamed from the
store, or a list in memory) into plain records, which the writers here format. Only `write_json`
reads the runs themselves, batch by batch, to list each one.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from hil._sweep_runs import KINDS, NOISE_LEVELS, KindSpec, RunOutcome
from hil._sweep_tally import ALL, SweepTally, noise_label


# -- formatting ------------------------------------------------------------------------------------
def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.0f} %"


def _ms(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.0f}"


def _reasons(reasons: dict[str, int]) -> str:
    return ", ".join(
        f"{k.replace('PRESSURE_RISE/NO_FLOW_AT_CEILING', 'NO_FLOW_AT_CEILING')} {v}"
        for k, v in reasons.items()
    )


def _bound(x: float) -> str:
    """A small rate with enough digits to read 3/N at any N up to millions."""
    return "-" if math.isnan(x) else f"{100 * x:.3g} %"


def markdown(t: SweepTally, header: dict[str, Any]) -> str:
    """The report: figures of the run, the per-detector summary, false stops (per detector, with the
    rare-event bound), then per-bin tables with the detection rate at each noise level side by side."""
    lines = ["# Detector sweep", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += ["", "## Detection per detector (all sizes, all noise levels)", ""]
    lines += [
        "Detection rates carry the two-sided 95 % Wilson score interval.",
        "",
        "| event | detector | runs | detected | rate (95 % Wilson CI) | any stop | "
        "latency p50 / p90 / max ms | first stop after onset | excluded |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in t.detector_summary():
        st = s.stats
        lines.append(
            f"| {s.kind} | {s.detector} | {st.runs} | {st.detected} | {_pct(st.rate)} "
            f"({_pct(st.rate_low)}-{_pct(st.rate_high)}) | {_pct(st.stop_rate)} | "
            f"{_ms(st.latency_p50_ms)} / {_ms(st.latency_p90_ms)} / {_ms(st.latency_max_ms)} | "
            f"{_reasons(s.reasons)} | {s.excluded} |"
        )
    lines += ["", "## False stops", ""]
    lines += [
        "A false stop is any stop of a nominal run other than its planned end. The bound is the one-sided "
        "95 % exact (Clopper-Pearson) upper bound of the rate per nominal run: 0 in N runs gives about 3/N.",
        "",
        "| noise | nominal runs | false stops | rate | 95 % upper bound | incomplete | "
        "event runs (to onset) | false stops before onset | injecting hours | reasons |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in t.false_stop_summary():
        lines.append(
            f"| {f.noise} | {f.nominal_runs} | {f.false_stops} | {_bound(f.rate)} | {_bound(f.rate_upper)} | "
            f"{f.incomplete} | {f.event_runs_before_onset} | {f.false_stops_before_onset} | "
            f"{f.injecting_hours:.2f} | {_reasons(f.reasons) or '-'} |"
        )
    per = t.detector_false_stops()
    levels = list(dict.fromkeys(d.noise for d in per))
    lines += ["", "### False stops per detector (nominal runs)", ""]
    lines += [
        "Each cell: false stops by that detector / nominal runs, and the one-sided 95 % Clopper-Pearson "
        "upper bound of its rate per run.",
        "",
        "| detector (stop reason) | " + " | ".join(f"noise {lv}" for lv in levels) + " |",
        "| --- | " + " | ".join("---" for _ in levels) + " |",
    ]
    for det in dict.fromkeys(d.detector for d in per):
        by_noise = {d.noise: d for d in per if d.detector == det}
        lines.append(
            f"| {det} | "
            + " | ".join(
                f"{d.false_stops} / {d.nominal_runs}, < {_bound(d.rate_upper)}"
                for d in (by_noise[lv] for lv in levels)
            )
            + " |"
        )
    leaks = t.leak_signatures()
    if leaks:
        lines += ["", "## Leak signatures: what the leak itself does to the syringe pressure", ""]
        lines += [
            "True syringe pressure 1 s after the leak opens, minus that of a twin run without the leak "
            "(same conditions and noise). PRESSURE_LOSS needs a fall of max(100 kPa, 25 %) within 50 ms.",
            "",
            "| leak | diameter (mm) | runs | share of flow p50 / max | dp p50 / min kPa | largest fall |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for g in leaks:
            lines.append(
                f"| {g.kind} | {g.bin} | {g.runs} | {_pct(g.share_p50)} / {_pct(g.share_max)} | "
                f"{g.dp_p50_kpa:.2f} / {g.dp_min_kpa:.1f} | {100 * g.dp_min_rel:.1f} % |"
            )
    rows = t.detection_rows()
    for spec in KINDS.values():
        mine = [r for r in rows if r.kind == spec.name]
        if not mine:
            continue
        lines += ["", f"## {spec.name}: {spec.detector}, against {spec.size_name} ({spec.size_unit})", ""]
        noise_cols = " | ".join(f"rate @ {noise_label(lv)}" for lv in NOISE_LEVELS)
        lines += [
            f"| {spec.size_name} ({spec.size_unit}) | runs | rate (95 % Wilson CI) | {noise_cols} | "
            "any stop | latency p50 / p90 / max ms | first stop after onset |",
            "| --- | --- | --- | " + " | ".join("---" for _ in NOISE_LEVELS) + " | --- | --- | --- |",
        ]
        for b in dict.fromkeys(r.bin for r in mine):
            cells = {r.noise: r for r in mine if r.bin == b}
            a = cells[ALL]
            st = a.stats
            per_noise = " | ".join(
                f"{_pct(cells[noise_label(lv)].stats.rate)} ({cells[noise_label(lv)].stats.runs})"
                if noise_label(lv) in cells
                else "-"
                for lv in NOISE_LEVELS
            )
            lines.append(
                f"| {b} | {st.runs} | {_pct(st.rate)} ({_pct(st.rate_low)}-{_pct(st.rate_high)}) | "
                f"{per_noise} | "
                f"{_pct(st.stop_rate)} | {_ms(st.latency_p50_ms)} / {_ms(st.latency_p90_ms)} / "
                f"{_ms(st.latency_max_ms)} | {_reasons(a.reasons)} |"
            )
    return "\n".join(lines) + "\n"


CSV_FIELDS = (
    "kind",
    "detector",
    "size_name",
    "size_unit",
    "bin",
    "bin_low",
    "bin_high",
    "noise",
    "runs",
    "detected",
    "rate",
    "rate_ci_low",
    "rate_ci_high",
    "stopped",
    "stop_rate",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_max_ms",
    "first_stop_reasons",
)


def write_csv(path: Path, t: SweepTally) -> None:
    """Detection per kind x size bin x noise level (rates with their 95 % Wilson interval)."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for r in t.detection_rows():
            s = r.stats
            w.writerow(
                [
                    r.kind,
                    r.detector,
                    r.size_name,
                    r.size_unit,
                    r.bin,
                    r.bin_low,
                    r.bin_high,
                    r.noise,
                    s.runs,
                    s.detected,
                    _num(s.rate),
                    _num(s.rate_low),
                    _num(s.rate_high),
                    s.stopped,
                    _num(s.stop_rate),
                    _num(s.latency_p50_ms),
                    _num(s.latency_p90_ms),
                    _num(s.latency_max_ms),
                    ";".join(f"{k}={v}" for k, v in r.reasons.items()),
                ]
            )


def _num(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.6g}"


def _clean(value: Any) -> Any:
    """JSON has no NaN: None instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json(
    path: Path, t: SweepTally, header: dict[str, Any], runs: Iterable[Iterable[RunOutcome]]
) -> None:
    """The header, the summaries, then every run (`runs`: batches in index order, streamed to the
    file one run at a time, so that the document is never built in memory)."""
    doc = {
        **header,
        "kinds": {k: s.as_json() for k, s in KINDS.items()},
        "summary": [asdict(s) for s in t.detector_summary()],
        "false_stops": [asdict(f) for f in t.false_stop_summary()],
        "false_stops_per_detector": [asdict(d) for d in t.detector_false_stops()],
        "leak_signatures": [asdict(g) for g in t.leak_signatures()],
    }
    head = json.dumps(_clean(doc), indent=1, allow_nan=False)
    with path.open("w") as f:
        f.write(head[:-2] + ',\n "runs": [')  # the head's closing "\n}" reopened for the runs
        sep = "\n  "
        for batch in runs:
            for o in batch:
                record = {**asdict(o), "detected": o.detected, "false_stop": o.false_stop}
                f.write(sep + json.dumps(_clean(record), allow_nan=False))
                sep = ",\n  "
        f.write("\n ]\n}\n")


def _centre(spec: KindSpec, low: float, high: float) -> float:
    if spec.log_x and low > 0:
        return math.sqrt(low * high)
    return (low + high) / 2.0


def write_png(path: Path, t: SweepTally, title: str) -> None:
    """Per event kind: detection rate (Wilson 95 % bars) above latency (p50, bar to p90), against the
    size bin's centre, one series per noise level."""
    rows = t.detection_rows()
    kinds = [s for s in KINDS.values() if s.name != "nominal"]
    cols = 4
    krows = math.ceil(len(kinds) / cols)
    # Fixed margins, not a constrained layout: that costs seconds for ~30 axes.
    fig = Figure(figsize=(4.2 * cols, 5.0 * krows), dpi=60)
    fig.suptitle(title, fontsize=11, x=0.3, y=0.995)
    grid = fig.add_gridspec(
        2 * krows,
        cols,
        height_ratios=[1.0, 0.8] * krows,
        left=0.05,
        right=0.99,
        bottom=0.03,
        top=0.975,
        wspace=0.25,
        hspace=0.45,
    )
    colours = {
        noise_label(lv): c for lv, c in zip(NOISE_LEVELS, ("tab:green", "tab:blue", "tab:red"), strict=False)
    }
    for k, spec in enumerate(kinds):
        top = fig.add_subplot(grid[2 * (k // cols), k % cols])
        bottom = fig.add_subplot(grid[2 * (k // cols) + 1, k % cols], sharex=top)
        for lv in NOISE_LEVELS:
            label = noise_label(lv)
            mine = [r for r in rows if r.kind == spec.name and r.noise == label]
            if not mine:
                continue
            x = [_centre(spec, r.bin_low, r.bin_high) for r in mine]
            rate = [r.stats.rate for r in mine]
            err = [
                [max(0.0, r.stats.rate - r.stats.rate_low) for r in mine],
                [max(0.0, r.stats.rate_high - r.stats.rate) for r in mine],
            ]
            top.errorbar(
                x, rate, yerr=err, marker="o", ms=4, capsize=2, color=colours[label], label=f"noise {label}"
            )
            lat = [
                (xi, r.stats.latency_p50_ms, r.stats.latency_p90_ms) for xi, r in zip(x, mine, strict=True)
            ]
            lat = [t for t in lat if not math.isnan(t[1])]
            if lat:
                bottom.errorbar(
                    [t[0] for t in lat],
                    [t[1] for t in lat],
                    yerr=[[0.0] * len(lat), [t[2] - t[1] for t in lat]],
                    marker="s",
                    ms=3,
                    capsize=2,
                    color=colours[label],
                )
        top.set_title(f"{spec.name}: {spec.detector}", fontsize=9)
        top.set_ylim(-0.05, 1.05)
        top.set_ylabel("detection rate", fontsize=8)
        bottom.set_ylabel("latency ms (p50, bar to p90)", fontsize=8)
        bottom.set_xlabel(f"{spec.size_name} ({spec.size_unit})", fontsize=8)
        if spec.log_x:
            top.set_xscale("log")
            top.xaxis.set_minor_formatter(NullFormatter())
        top.set_xlim(spec.edges[0], spec.edges[-1])
        if spec.name in ("occlusion", "sensor_drift"):
            bottom.set_yscale("log")
        for ax in (top, bottom):
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
    handles = [
        Line2D([], [], color=c, marker="o", label=f"sensor noise {lb} spec") for lb, c in colours.items()
    ]
    fig.legend(handles=handles, loc="upper right", ncols=len(handles), fontsize=8)
    fig.savefig(path)

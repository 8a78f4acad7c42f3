"""The sweep's report: per-detector tables (markdown, CSV), the false-stop summary, the plot, the JSON.

Aggregation is kept apart from writing: `detection_rows`, `detector_summary` and `false_stop_summary`
turn run outcomes into plain records, which the writers format.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from hil._sweep_runs import KINDS, NOISE_LEVELS, KindSpec, RunOutcome
from hil._sweep_stats import CellStats, bin_index, bin_label, cell_stats, percentile, wilson_interval

EVALUATED = ("detected", "other_stop", "missed")
"""Event-run statuses that count towards detection (a stop before the onset is a false stop, not a
detection trial)."""
ALL = "all"


def noise_label(level: float) -> str:
    return f"{level:g}x"


@dataclass(frozen=True)
class DetectionRow:
    """One size bin of one kind at one noise level (or all of them)."""

    kind: str
    detector: str
    size_name: str
    size_unit: str
    bin: str
    bin_low: float
    bin_high: float
    noise: str
    stats: CellStats
    reasons: dict[str, int] = field(default_factory=dict)
    """First stop after the onset, by reason (NONE: no stop in the window)."""


def _cell(runs: Sequence[RunOutcome]) -> tuple[CellStats, dict[str, int]]:
    stats = cell_stats(
        [r.detected for r in runs],
        [r.stopped_after_onset for r in runs],
        [r.latency_ms for r in runs if r.detected],
    )
    reasons = Counter(r.stop_reason if r.stopped_after_onset else "NONE" for r in runs)
    return stats, dict(sorted(reasons.items()))


def evaluated(outcomes: Sequence[RunOutcome], kind: str) -> list[RunOutcome]:
    return [o for o in outcomes if o.kind == kind and o.status in EVALUATED and not math.isnan(o.size)]


def detection_rows(outcomes: Sequence[RunOutcome]) -> list[DetectionRow]:
    """Every event kind x size bin x (each noise level, then all), bins without runs left out."""
    rows: list[DetectionRow] = []
    for spec in KINDS.values():
        if spec.name == "nominal":
            continue
        runs = evaluated(outcomes, spec.name)
        by_bin: dict[int, list[RunOutcome]] = {}
        for r in runs:
            i = bin_index(r.size, spec.edges)
            if i is not None:
                by_bin.setdefault(i, []).append(r)
        for i in sorted(by_bin):
            groups = [
                (noise_label(lv), [r for r in by_bin[i] if r.conditions.noise_level == lv])
                for lv in NOISE_LEVELS
            ]
            for label, group in [*groups, (ALL, by_bin[i])]:
                if not group:
                    continue
                stats, reasons = _cell(group)
                rows.append(
                    DetectionRow(
                        spec.name,
                        spec.detector,
                        spec.size_name,
                        spec.size_unit,
                        bin_label(spec.edges, i),
                        spec.edges[i],
                        spec.edges[i + 1],
                        label,
                        stats,
                        reasons,
                    )
                )
    return rows


@dataclass(frozen=True)
class DetectorSummary:
    kind: str
    detector: str
    stats: CellStats
    reasons: dict[str, int]
    excluded: int
    """Runs of this kind that stopped before the onset (false stops) or were refused."""


def detector_summary(outcomes: Sequence[RunOutcome]) -> list[DetectorSummary]:
    out = []
    for spec in KINDS.values():
        if spec.name == "nominal":
            continue
        runs = evaluated(outcomes, spec.name)
        total = sum(1 for o in outcomes if o.kind == spec.name)
        stats, reasons = _cell(runs)
        out.append(DetectorSummary(spec.name, spec.detector, stats, reasons, total - len(runs)))
    return out


@dataclass(frozen=True)
class FalseStopSummary:
    noise: str
    nominal_runs: int
    false_stops: int
    rate_high: float
    """Upper end of the 95 % Wilson interval of the false-stop rate per nominal run."""
    incomplete: int
    event_runs_before_onset: int
    """Event runs, counted up to their onset (a nominal injection until then)."""
    false_stops_before_onset: int
    injecting_hours: float
    """Virtual time of nominal runs plus event runs up to their onset."""
    reasons: dict[str, int]


def false_stop_summary(outcomes: Sequence[RunOutcome]) -> list[FalseStopSummary]:
    out = []
    for label, level in [*((noise_label(lv), lv) for lv in NOISE_LEVELS), (ALL, None)]:
        mine = [o for o in outcomes if level is None or o.conditions.noise_level == level]
        nominal = [o for o in mine if o.kind == "nominal" and o.status != "refused"]
        events = [o for o in mine if o.kind != "nominal" and o.status != "refused"]
        false_nominal = [o for o in nominal if o.false_stop]
        false_events = [o for o in events if o.false_stop]
        hours = sum(o.virtual_s for o in nominal) + sum(
            o.onset_s if not math.isnan(o.onset_s) else o.virtual_s for o in events
        )
        reasons = Counter(o.stop_reason for o in (*false_nominal, *false_events))
        out.append(
            FalseStopSummary(
                label,
                len(nominal),
                len(false_nominal),
                wilson_interval(len(false_nominal), len(nominal))[1],
                sum(o.status == "incomplete" for o in nominal),
                len(events),
                len(false_events),
                hours / 3600.0,
                dict(sorted(reasons.items())),
            )
        )
    return out


@dataclass(frozen=True)
class LeakSignature:
    """What a leak of one size did to the syringe pressure (against its twin run without the leak)."""

    kind: str
    bin: str
    runs: int
    share_p50: float
    share_max: float
    dp_p50_kpa: float
    dp_min_kpa: float
    dp_min_rel: float
    """Largest relative fall: leak dp / pressure at the onset."""


def leak_signatures(outcomes: Sequence[RunOutcome]) -> list[LeakSignature]:
    out = []
    for spec in KINDS.values():
        if not spec.name.startswith("leak"):
            continue
        runs = [r for r in evaluated(outcomes, spec.name) if not math.isnan(r.leak_dp_kpa)]
        for i in range(len(spec.edges) - 1):
            group = [r for r in runs if bin_index(r.size, spec.edges) == i]
            if not group:
                continue
            shares = [0.0 if math.isnan(r.leak_share) else r.leak_share for r in group]
            dps = [r.leak_dp_kpa for r in group]
            rel = [r.leak_dp_kpa / r.pressure_at_onset_kpa for r in group if r.pressure_at_onset_kpa > 0]
            out.append(
                LeakSignature(
                    spec.name,
                    bin_label(spec.edges, i),
                    len(group),
                    percentile(shares, 50),
                    max(shares),
                    percentile(dps, 50),
                    min(dps),
                    min(rel, default=math.nan),
                )
            )
    return out


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


def markdown(outcomes: Sequence[RunOutcome], header: dict[str, Any]) -> str:
    """The report: figures of the run, the per-detector summary, false stops, then per-bin tables with
    the detection rate at each noise level side by side."""
    lines = ["# Detector sweep", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()]
    lines += ["", "## Detection per detector (all sizes, all noise levels)", ""]
    lines += [
        "| event | detector | runs | detected | rate (95 % CI) | any stop | latency p50 / p90 / max ms | "
        "first stop after onset | excluded |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in detector_summary(outcomes):
        st = s.stats
        lines.append(
            f"| {s.kind} | {s.detector} | {st.runs} | {st.detected} | {_pct(st.rate)} "
            f"({_pct(st.rate_low)}-{_pct(st.rate_high)}) | {_pct(st.stop_rate)} | "
            f"{_ms(st.latency_p50_ms)} / {_ms(st.latency_p90_ms)} / {_ms(st.latency_max_ms)} | "
            f"{_reasons(s.reasons)} | {s.excluded} |"
        )
    lines += ["", "## False stops", ""]
    lines += [
        "| noise | nominal runs | false stops | rate 95 % upper bound | incomplete | event runs (to onset) | "
        "false stops before onset | injecting hours | reasons |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in false_stop_summary(outcomes):
        lines.append(
            f"| {f.noise} | {f.nominal_runs} | {f.false_stops} | {100 * f.rate_high:.2f} % | "
            f"{f.incomplete} | {f.event_runs_before_onset} | {f.false_stops_before_onset} | "
            f"{f.injecting_hours:.2f} | {_reasons(f.reasons) or '-'} |"
        )
    leaks = leak_signatures(outcomes)
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
    rows = detection_rows(outcomes)
    for spec in KINDS.values():
        mine = [r for r in rows if r.kind == spec.name]
        if not mine:
            continue
        lines += ["", f"## {spec.name}: {spec.detector}, against {spec.size_name} ({spec.size_unit})", ""]
        noise_cols = " | ".join(f"rate @ {noise_label(lv)}" for lv in NOISE_LEVELS)
        lines += [
            f"| {spec.size_name} ({spec.size_unit}) | runs | rate (95 % CI) | {noise_cols} | any stop | "
            "latency p50 / p90 / max ms | first stop after onset |",
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


def write_csv(path: Path, outcomes: Sequence[RunOutcome]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for r in detection_rows(outcomes):
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


def write_json(path: Path, outcomes: Sequence[RunOutcome], header: dict[str, Any]) -> None:
    doc = {
        **header,
        "kinds": {k: s.as_json() for k, s in KINDS.items()},
        "summary": [asdict(s) for s in detector_summary(outcomes)],
        "false_stops": [asdict(f) for f in false_stop_summary(outcomes)],
        "leak_signatures": [asdict(g) for g in leak_signatures(outcomes)],
        "runs": [{**asdict(o), "detected": o.detected, "false_stop": o.false_stop} for o in outcomes],
    }
    path.write_text(json.dumps(_clean(doc), indent=1, allow_nan=False) + "\n")


def _centre(spec: KindSpec, low: float, high: float) -> float:
    if spec.log_x and low > 0:
        return math.sqrt(low * high)
    return (low + high) / 2.0


def write_png(path: Path, outcomes: Sequence[RunOutcome], title: str) -> None:
    """Per event kind: detection rate (Wilson 95 % bars) above latency (p50, bar to p90), against the
    size bin's centre, one series per noise level."""
    rows = detection_rows(outcomes)
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

"""A run report for the lab notebook: `cementguard report REC` writes a self-contained HTML page and a
PDF (issue 16).

Contents: the run's metadata (specimen, operator, cement, ...), the device (serial, firmware, protocol,
limits), the host, the plan, a summary, the increments, the stops, and four plots: pressure, delivered
volume and flow against time, and pressure against delivered volume, with the plan's limits and every
stop marked. The HTML embeds the plots as base64 PNG (no other file); the PDF (matplotlib's PdfPages)
holds the same text on its first page and the plots on the second.

The summary's figures, as computed here (and checked against the raw samples in
tests/host/test_report.py):

- delivered volume: the largest `delivered_nl` of the recording (it never decreases);
- peak pressure: the largest valid pressure (samples flagged SENSOR_FAULT are left out), and its time;
- mean pressure: the mean valid pressure over the samples in state INJECTING;
- increments: each run of consecutive INJECTING samples: its start, duration, volume (delivered at its
  last sample minus at the sample before it, or its first sample) and mean flow;
- stops: every STOP event with its reason, source, pressure, delivered volume, the host-measured
  latency from its cause (annotation `source_latency_ms`, when recorded), and its after-flow: the
  delivered volume at the last sample after the stop and before the next INJECTING sample (or the end
  of the recording), minus the volume the event reported.

Everything is computed in one pass over the samples in chunks (`Recording.iter_samples`), and the
plots are drawn from per-bucket extremes gathered in the same pass, so memory does not grow with the
recording's length (docs/performance.md, "Exports that scale").
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import html
import io
import json
import math
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from host.cli_types import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from host.export import metadata_lines, warn_if_damaged
from host.plot import MAX_POINTS, PLANNED_ENDS, PlanLimits, plan_limits
from host.recording import DEFAULT_CHUNK_SAMPLES, Recording, RecordingError
from host.relief_notice import relief_notice
from protocol.enums import EventKind, Flags, State
from protocol.telemetry import SampleArray

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_INCREMENT_ROWS = 500
"""Rows of the increments table (a run with more keeps the count and the first ones)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Increment:
    start_s: float
    """Controller time of its first INJECTING sample (s)."""
    duration_s: float
    volume_ml: float
    mean_flow_ml_min: float


@dataclasses.dataclass(frozen=True, slots=True)
class StopRow:
    t_s: float
    reason: str
    source: str
    latched: bool
    """False for the planned ends (VOLUME_LIMIT, INCREMENT_DONE)."""
    pressure_kpa: float | None
    delivered_ml: float
    latency_ms: float | None
    after_flow_ml: float | None
    """None when no sample follows the stop in the recording."""


@dataclasses.dataclass(frozen=True, slots=True)
class Series:
    """The plots' points: every sample that is an extreme of pressure, volume or flow in its bucket."""

    t_s: np.ndarray[Any, np.dtype[np.float64]]
    pressure_kpa: np.ndarray[Any, np.dtype[np.float64]]
    delivered_ml: np.ndarray[Any, np.dtype[np.float64]]
    flow_ml_min: np.ndarray[Any, np.dtype[np.float64]]


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    samples: int
    first_t_s: float
    duration_s: float
    delivered_ml: float
    peak_pressure_kpa: float
    """NaN when there is no valid pressure."""
    peak_pressure_t_s: float
    mean_pressure_kpa: float
    """Over the INJECTING samples; NaN when there are none."""
    injecting_s: float
    increments: tuple[Increment, ...]
    increment_count: int
    stops: tuple[StopRow, ...]
    series: Series
    injecting_spans: tuple[tuple[float, float], ...]
    relief_notices: tuple[tuple[float, str], ...] = ()
    """(controller t, s; the sentence) for each ALARM RELIEF_AT_LIMIT or RELIEF_INCOMPLETE: the
    relief ended with the line still pressurised (SPEC §6.7)."""


class _Pass:
    """State carried from chunk to chunk during the one pass over the samples."""

    def __init__(self, rec: Recording, bucket: int) -> None:
        self.bucket = bucket
        self.n = 0
        self.first_t_us: int | None = None
        self.last_t_us = 0
        self.delivered_nl = 0
        self.peak_pa = -math.inf
        self.peak_t_us = 0
        self.sum_pa = 0.0
        self.count_pa = 0
        self.spans: list[tuple[int, int, int, int]] = []  # (t0_us, t1_us, delivered before, at end)
        self.open_span: list[int] | None = None  # [t0_us, t1_us, delivered before, delivered at end]
        self.prev_delivered = 0
        self.points: list[tuple[np.ndarray[Any, Any], ...]] = []
        stops = [e for e in rec.events if e.record.kind == EventKind.STOP]
        self.stop_events = stops
        self.stop_t_us = [round(e.record.t_s * 1e6) for e in stops]
        self.stop_phase = [0] * len(stops)  # 0 before the stop, 1 tracking after-flow, 2 done
        self.stop_last = [-1] * len(stops)  # delivered_nl at the last sample of the after-flow window

    def feed(self, s: SampleArray) -> None:
        if not len(s):
            return
        t = s["t_us"].astype(np.int64)
        delivered = s["delivered_nl"].astype(np.int64)
        valid = (s["flags"] & int(Flags.SENSOR_FAULT)) == 0
        pressure = s["pressure_pa"].astype(np.float64)
        injecting = s["state"] == State.INJECTING
        if self.first_t_us is None:
            self.first_t_us = int(t[0])
        self.last_t_us = int(t[-1])
        self.delivered_nl = max(self.delivered_nl, int(delivered.max()))
        if valid.any():
            masked = np.where(valid, pressure, -np.inf)
            i = int(np.argmax(masked))
            if masked[i] > self.peak_pa:
                self.peak_pa, self.peak_t_us = float(masked[i]), int(t[i])
        inj_valid = injecting & valid
        self.sum_pa += float(pressure[inj_valid].sum())
        self.count_pa += int(inj_valid.sum())
        self._spans(t, delivered, injecting)
        self._after_flow(t, delivered, injecting)
        self._points(t, pressure, valid, delivered, s["flow_nl_s"].astype(np.float64))
        self.n += len(s)

    def _spans(
        self, t: np.ndarray[Any, Any], delivered: np.ndarray[Any, Any], inj: np.ndarray[Any, Any]
    ) -> None:
        before = np.concatenate([[self.prev_delivered], delivered[:-1]])
        edges = np.flatnonzero(np.diff(np.concatenate([[0], inj.astype(np.int8), [0]])))
        for a, b in zip(edges[::2].tolist(), (edges[1::2] - 1).tolist(), strict=True):
            if a == 0 and self.open_span is not None:  # continues the span of the last chunk
                span = self.open_span
                span[1], span[3] = int(t[b]), int(delivered[b])
            else:
                self._close_span()
                start_delivered = int(before[a]) if (a > 0 or self.n > 0) else int(delivered[a])
                span = [int(t[a]), int(t[b]), start_delivered, int(delivered[b])]
            self.open_span = span
            if b != len(t) - 1:
                self._close_span()
        if not inj[-1]:
            self._close_span()
        self.prev_delivered = int(delivered[-1])

    def _close_span(self) -> None:
        if self.open_span is not None:
            self.spans.append((self.open_span[0], self.open_span[1], self.open_span[2], self.open_span[3]))
            self.open_span = None

    def _after_flow(
        self, t: np.ndarray[Any, Any], delivered: np.ndarray[Any, Any], inj: np.ndarray[Any, Any]
    ) -> None:
        for k, t_stop in enumerate(self.stop_t_us):
            if self.stop_phase[k] == 2 or t[-1] < t_stop:
                continue
            start = int(np.searchsorted(t, t_stop, side="left")) if self.stop_phase[k] == 0 else 0
            if self.stop_phase[k] == 0:
                # the window opens at the first sample at or after the stop that is not INJECTING
                quiet = np.flatnonzero(~inj[start:])
                if not len(quiet):
                    continue
                start += int(quiet[0])
                self.stop_phase[k] = 1
            resumed = np.flatnonzero(inj[start:])
            end = start + int(resumed[0]) if len(resumed) else len(t)
            if end > start:
                self.stop_last[k] = int(delivered[end - 1])
            if len(resumed):
                self.stop_phase[k] = 2

    def _points(
        self,
        t: np.ndarray[Any, Any],
        pressure: np.ndarray[Any, Any],
        valid: np.ndarray[Any, Any],
        delivered: np.ndarray[Any, Any],
        flow: np.ndarray[Any, Any],
    ) -> None:
        k = self.bucket
        n = len(t)
        pad = (-n) % k
        idx: list[np.ndarray[Any, Any]] = [np.array([0, n - 1])]
        p = np.where(valid, pressure, np.nan)
        for y in (p, delivered.astype(np.float64), flow):
            rows = np.concatenate([y, np.full(pad, np.nan)]).reshape(-1, k)
            nan = np.isnan(rows)
            base = np.arange(rows.shape[0]) * k
            has = ~nan.all(axis=1)
            lo = np.argmin(np.where(nan, np.inf, rows), axis=1)
            hi = np.argmax(np.where(nan, -np.inf, rows), axis=1)
            idx += [(base + lo)[has], (base + hi)[has]]
            idx.append(base[~has])  # keep an all-NaN bucket as a gap
        keep = np.unique(np.minimum(np.concatenate(idx), n - 1))
        self.points.append((t[keep], p[keep], delivered[keep], flow[keep]))


def summarize(
    rec: Recording, *, max_points: int = MAX_POINTS, chunk_samples: int = DEFAULT_CHUNK_SAMPLES
) -> Summary:
    """The report's figures and plot points, from one streaming pass over the samples."""
    n = rec.sample_count
    bucket = max(1, -(-n // max(1, max_points // 2)))
    chunk = max(bucket, (max(chunk_samples, bucket) // bucket) * bucket)  # whole buckets per chunk
    state = _Pass(rec, bucket)
    for part in rec.iter_samples(chunk):
        state.feed(part)
    state._close_span()
    t0 = state.first_t_us or 0
    increments = [
        Increment(
            start_s=a / 1e6,
            duration_s=(b - a) / 1e6,
            volume_ml=(v1 - v0) / 1e6,
            mean_flow_ml_min=((v1 - v0) / 1e6) / ((b - a) / 6e7) if b > a else math.nan,
        )
        for a, b, v0, v1 in state.spans
    ]
    stops = []
    for k, e in enumerate(state.stop_events):
        r = e.record
        latency = e.annotations.get("source_latency_ms")
        last = state.stop_last[k]
        stops.append(
            StopRow(
                t_s=r.t_s,
                reason=rec.enum_name("StopReason", int(r.reason)),
                source=rec.enum_name("StopSource", int(r.source)),
                latched=r.reason not in PLANNED_ENDS,
                pressure_kpa=r.pressure_kpa,
                delivered_ml=r.delivered_ml,
                latency_ms=float(latency) if isinstance(latency, int | float) else None,
                after_flow_ml=(last - round(r.delivered_ml * 1e6)) / 1e6 if last >= 0 else None,
            )
        )
    if state.points:
        cols = [np.concatenate([p[i] for p in state.points]) for i in range(4)]
    else:
        cols = [np.zeros(0)] * 4
    series = Series(
        t_s=(cols[0].astype(np.int64) - t0) / 1e6,
        pressure_kpa=cols[1] / 1e3,
        delivered_ml=cols[2] / 1e6,
        flow_ml_min=cols[3] * 6e-5,
    )
    return Summary(
        samples=state.n,
        first_t_s=t0 / 1e6,
        duration_s=(state.last_t_us - t0) / 1e6 if state.n else 0.0,
        delivered_ml=state.delivered_nl / 1e6,
        peak_pressure_kpa=state.peak_pa / 1e3 if state.peak_pa > -math.inf else math.nan,
        peak_pressure_t_s=state.peak_t_us / 1e6,
        mean_pressure_kpa=state.sum_pa / state.count_pa / 1e3 if state.count_pa else math.nan,
        injecting_s=sum((b - a) / 1e6 for a, b, _, _ in state.spans),
        increments=tuple(increments[:MAX_INCREMENT_ROWS]),
        increment_count=len(increments),
        stops=tuple(stops),
        series=series,
        injecting_spans=tuple(((a - t0) / 1e6, (b - t0) / 1e6) for a, b, _, _ in state.spans[:200]),
        relief_notices=tuple(
            (e.record.t_s, text) for e in rec.events if (text := relief_notice(e.record)) is not None
        ),
    )


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def make_figure(rec: Recording, summary: Summary) -> Figure:
    """Pressure, volume and flow against time, and pressure against delivered volume, with the plan's
    limits and the stops marked. Artists carry gids as in host.plot ("pressure", "volume", "flow",
    "pv", "soft_limit", "hard_limit", "volume_limit", "stop", "stop_pv")."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    limits: PlanLimits = plan_limits(rec.plan)
    fig = Figure(figsize=(11, 11), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(4, 1, height_ratios=[1, 1, 1, 1.3])
    ax_p = fig.add_subplot(grid[0])
    ax_v = fig.add_subplot(grid[1], sharex=ax_p)
    ax_q = fig.add_subplot(grid[2], sharex=ax_p)
    ax_pv = fig.add_subplot(grid[3])
    s = summary.series
    ax_p.plot(s.t_s, s.pressure_kpa, color="tab:blue", lw=1.0, gid="pressure", label="pressure")
    ax_v.plot(s.t_s, s.delivered_ml, color="tab:purple", lw=1.2, gid="volume", label="delivered volume")
    ax_q.plot(s.t_s, s.flow_ml_min, color="tab:cyan", lw=1.0, gid="flow", label="measured flow")
    ax_pv.plot(s.delivered_ml, s.pressure_kpa, color="tab:blue", lw=0.8, gid="pv", label="pressure")
    for ax_list, value, gid, color, text in (
        ((ax_p, ax_pv), limits.hard_kpa, "hard_limit", "tab:red", "hard limit {:g} kPa"),
        ((ax_p, ax_pv), limits.soft_kpa, "soft_limit", "tab:orange", "soft limit {:g} kPa"),
        ((ax_v,), limits.volume_ml, "volume_limit", "tab:red", "volume limit {:g} mL"),
        ((ax_q,), limits.flow_ml_min, "flow_setpoint", "0.3", "plan flow {:g} mL/min"),
    ):
        if value is not None:
            for ax in ax_list:
                ax.axhline(value, color=color, ls="--", lw=1.2, gid=gid, label=text.format(value))
    if limits.volume_ml is not None:
        ax_pv.axvline(limits.volume_ml, color="tab:red", ls="--", lw=1.2, gid="volume_limit")
    for a, b in summary.injecting_spans:
        for ax in (ax_p, ax_v, ax_q):
            ax.axvspan(a, b, color="tab:blue", alpha=0.07, lw=0, gid="injecting")
    for stop in summary.stops:
        x = stop.t_s - summary.first_t_s
        color = "tab:red" if stop.latched else "tab:green"
        for ax in (ax_p, ax_v, ax_q):
            ax.axvline(
                x, color=color, lw=1.2 if stop.latched else 0.9, ls="-" if stop.latched else "-.", gid="stop"
            )
        if stop.pressure_kpa is not None:
            ax_pv.plot(
                [stop.delivered_ml],
                [stop.pressure_kpa],
                "o" if stop.latched else "v",
                color=color,
                gid="stop_pv",
            )
            ax_pv.annotate(
                stop.reason,
                (stop.delivered_ml, stop.pressure_kpa),
                fontsize=7,
                color=color,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax_p.set_ylabel("pressure (kPa)")
    ax_v.set_ylabel("delivered (mL)")
    ax_q.set_ylabel("flow (mL/min)")
    ax_q.set_xlabel(f"time (s) since the first sample (controller t = {summary.first_t_s:.3f} s)")
    ax_pv.set_xlabel("delivered volume (mL)")
    ax_pv.set_ylabel("pressure (kPa)")
    ax_pv.set_title("pressure against delivered volume (red: latched stops, green: planned ends)", fontsize=9)
    for ax in (ax_p, ax_v, ax_q, ax_pv):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
    return fig


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def summary_rows(summary: Summary) -> list[tuple[str, str]]:
    return [
        ("samples", f"{summary.samples:,}"),
        ("duration", f"{summary.duration_s:.3f} s"),
        ("delivered volume", f"{summary.delivered_ml:.6f} mL"),
        ("peak pressure", f"{_num(summary.peak_pressure_kpa)} kPa at t = {summary.peak_pressure_t_s:.3f} s"),
        ("mean pressure while injecting", f"{_num(summary.mean_pressure_kpa)} kPa"),
        ("time injecting", f"{summary.injecting_s:.3f} s in {summary.increment_count} increment(s)"),
        ("stops", f"{len(summary.stops)} ({sum(s.latched for s in summary.stops)} latched)"),
        *(("relief", f"{text} (t = {t_s:.3f} s)") for t_s, text in summary.relief_notices),
    ]


def _device_rows(rec: Recording) -> list[tuple[str, str]]:
    device = rec.meta.get("device")
    if not isinstance(device, dict):
        return [("device", "not recorded")]
    rows = [(str(k), ", ".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in device.items()]
    setup = rec.device_setup
    if setup is None:
        rows.append(("calibration", "not reported by this device in the recording"))
        return rows
    if setup.syringe:
        syringe = (
            f"{setup.syringe}: bore {setup.bore_mm:.2f} mm, stroke {setup.stroke_mm:.2f} mm (usable "
            f"{setup.usable_stroke_mm:.2f} mm), dead volume {setup.dead_volume_ml:.3f} mL, pressure ceiling "
            f"{setup.pressure_ceiling_kpa:.0f} kPa"
        )
    else:
        syringe = "none selected (the plan's bore)"
    rows.append(("syringe", syringe))
    rows.append(("zero", f"offset {setup.zero_offset_kpa:+.1f} kPa, {_calibrated_on(setup.zero_utc_s)}"))
    span = f"gain {setup.span_gain:.6f}"
    if setup.span_utc_s:
        span += f" at {setup.span_reference_kpa:g} kPa"
    rows.append(("span", f"{span}, {_calibrated_on(setup.span_utc_s)}"))
    rows.append(("volume factor", f"{setup.volume_factor:.6f}, {_calibrated_on(setup.volume_utc_s)}"))
    rows.append(("zero check at ARM", f"|pressure| <= {setup.zero_check_kpa:g} kPa"))
    return rows


def _calibrated_on(utc_s: int) -> str:
    """A calibration's date; 0 means it was never calibrated on the device (the factory value)."""
    if not utc_s:
        return "factory value"
    return "calibrated " + datetime.fromtimestamp(utc_s, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _plan_rows(plan: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key, value in plan.items():
        if isinstance(value, dict):
            rows += _plan_rows(value, f"{prefix}{key}.")
        elif value is not None:
            rows.append((f"{prefix}{key}", json.dumps(value) if not isinstance(value, str) else value))
    return rows


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table class='kv'>{body}</table>"


def _grid(head: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table class='grid'><tr>{h}</tr>{b}</table>"


def increment_rows(summary: Summary) -> list[list[str]]:
    t0 = summary.first_t_s
    return [
        [str(i + 1), f"{inc.start_s - t0:.3f}", f"{inc.duration_s:.3f}", f"{inc.volume_ml:.6f}",
         _num(inc.mean_flow_ml_min)]
        for i, inc in enumerate(summary.increments)
    ]  # fmt: skip


def stop_rows(summary: Summary) -> list[list[str]]:
    return [
        [f"{s.t_s - summary.first_t_s:.3f}", s.reason, s.source, "latched" if s.latched else "planned",
         _num(s.pressure_kpa), f"{s.delivered_ml:.6f}", _num(s.latency_ms, "{:.1f}"),
         _num(s.after_flow_ml, "{:.6f}")]
        for s in summary.stops
    ]  # fmt: skip


INCREMENT_HEAD = ["#", "start (s)", "duration (s)", "volume (mL)", "mean flow (mL/min)"]
STOP_HEAD = [
    "t (s)",
    "reason",
    "source",
    "kind",
    "pressure (kPa)",
    "delivered (mL)",
    "latency (ms)",
    "after-flow (mL)",
]


def render_html(rec: Recording, summary: Summary, png: bytes, fluoro: str = "") -> str:
    """The page; `fluoro` is the fluoroscopy section (host/report_frames.py), empty without frames."""
    title = f"cementguard run report: {rec.path.name}"
    warn = (
        ""
        if rec.is_complete
        else "<p class='warn'>INCOMPLETE: the host stopped without closing this recording.</p>"
    )
    problems = "".join(f"<p class='warn'>{html.escape(p)}</p>" for p in rec.problems)
    run_meta = [(k, str(v)) for k, v in rec.run_metadata.items()] or [("run metadata", "none recorded")]
    more = (
        f"<p>{summary.increment_count - len(summary.increments)} more increments not listed.</p>"
        if summary.increment_count > len(summary.increments)
        else ""
    )
    host_meta = rec.meta.get("host")
    host: dict[str, Any] = host_meta if isinstance(host_meta, dict) else {}
    increments = _grid(INCREMENT_HEAD, increment_rows(summary)) if summary.increments else "<p>none</p>"
    recording_rows = [(k, v) for k, _, v in (line.partition(": ") for line in metadata_lines(rec))]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1150px; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.2em; font-size: 0.9em; }}
th, td {{ border: 1px solid #bbb; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }}
table.kv th {{ background: #f2f2f2; }} table.grid th {{ background: #e8eef7; }}
.warn {{ color: #b00; font-weight: bold; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
{warn}{problems}
<p>recorded {html.escape(rec.created_utc)}; format {html.escape(str(rec.meta.get("format_version")))};
cementguard {html.escape(str(host.get("cementguard_version", "?")))}</p>
<h2>Run</h2>{_table(run_meta)}
<h2>Summary</h2>{_table(summary_rows(summary))}
<h2>Stops</h2>{_grid(STOP_HEAD, stop_rows(summary)) if summary.stops else "<p>none</p>"}
{fluoro}
<h2>Increments</h2>{increments}{more}
<h2>Plots</h2><img alt="pressure, volume and flow against time; pressure against delivered volume"
 src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">
<h2>Device</h2>{_table(_device_rows(rec))}
<h2>Plan</h2>{_table(_plan_rows(rec.plan))}
<h2>Recording</h2>{_table(recording_rows)}
</body></html>
"""


def _text_page(rec: Recording, summary: Summary) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.27, 11.69))
    FigureCanvasAgg(fig)
    lines = [f"cementguard run report: {rec.path.name}", ""]
    lines += [f"{k}: {v}" for k, v in rec.run_metadata.items()] or ["run metadata: none recorded"]
    lines += [""] + [f"{k}: {v}" for k, v in summary_rows(summary)]
    lines += ["", "stops: " + " | ".join(STOP_HEAD)] + ["  " + " | ".join(r) for r in stop_rows(summary)[:25]]
    lines += ["", "increments: " + " | ".join(INCREMENT_HEAD)]
    lines += ["  " + " | ".join(r) for r in increment_rows(summary)[:20]]
    lines += [""] + [f"{k}: {v}" for k, v in _device_rows(rec)]
    lines += ["", *[f"plan {k}: {v}" for k, v in _plan_rows(rec.plan)[:30]]]
    if not rec.is_complete:
        lines.insert(1, "INCOMPLETE: the host stopped without closing this recording")
    fig.text(
        0.05, 0.97, "\n".join(line[:120] for line in lines[:95]), va="top", family="monospace", fontsize=6.5
    )
    return fig


@dataclasses.dataclass(frozen=True, slots=True)
class Written:
    html: Path
    pdf: Path
    summary: Summary


def write_report(
    recording: Recording | str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    chunk_samples: int = DEFAULT_CHUNK_SAMPLES,
) -> Written:
    """Write `report.html` and `report.pdf` into `out_dir` (default: the recording's directory)."""
    from matplotlib.backends.backend_pdf import PdfPages

    from host.report_frames import frames_html, frames_pages, stop_frames  # opencv: only here

    rec = recording if isinstance(recording, Recording) else Recording.open(recording)
    out = Path(out_dir) if out_dir is not None else rec.path
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(rec, chunk_samples=chunk_samples)
    fig = make_figure(rec, summary)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    frames, problem = stop_frames(rec.path, summary.stops)
    if problem is not None:
        print(f"cementguard report: fluoroscopy: {problem}", file=sys.stderr)
    html_path, pdf_path = out / "report.html", out / "report.pdf"
    page = render_html(rec, summary, buffer.getvalue(), frames_html(frames, problem))
    html_path.write_text(page, encoding="utf-8")
    with PdfPages(pdf_path, metadata={"Title": f"cementguard run report {rec.path.name}"}) as pdf:
        pdf.savefig(_text_page(rec, summary))
        pdf.savefig(fig)
        for frame_page in frames_pages(frames):
            pdf.savefig(frame_page)
    return Written(html_path, pdf_path, summary)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "report",
        help="write a run report (self-contained HTML and PDF) for the lab notebook",
        description="Write report.html (plots embedded) and report.pdf: run metadata, device, plan, a "
        "summary (volume, peak and mean pressure, increments, stops with latency and after-flow) and plots.",
    )
    p.add_argument("recording", metavar="REC", type=Path, help="recording directory")
    p.add_argument(
        "--out", type=Path, metavar="DIR", help="where to write them (default: the recording's directory)"
    )
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    try:
        rec = Recording.open(args.recording)
    except RecordingError as exc:
        print(f"cementguard report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    warn_if_damaged(rec)
    try:
        written = write_report(rec, args.out)
    except RecordingError as exc:  # a data file found damaged while reading it
        print(f"cementguard report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"cementguard report: cannot write: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {written.html}")
    print(f"wrote {written.pdf}")
    return EXIT_OK


__all__ = ["Increment", "StopRow", "Summary", "make_figure", "render_html", "summarize", "write_report"]

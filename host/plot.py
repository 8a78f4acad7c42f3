"""A recording at a glance, as a PNG; `cementguard plot`.

Three panels against time (s since the first sample): syringe pressure (kPa) with the plan's soft,
hard and relief limits; delivered volume (mL) with the volume limit, the increment marks and the
INCREMENT_DONE points; flow (mL/min) with the plan's flow. INJECTING periods are shaded. Every STOP
event is a vertical line through all panels, labelled with its reason: red for latched stops, green
for the planned ends (VOLUME_LIMIT, INCREMENT_DONE). Pressure readings flagged SENSOR_FAULT are left
out (a gap), never drawn as a value.

Limits come from the plan stored in the recording, whatever its shape: the first key found (top
level first, then nested mappings) among `soft_limit_kpa` / `soft_limit_pa`, `hard_limit_kpa` /
`hard_limit_pa`, `relief_kpa` / `relief_pa`, `volume_limit_ml` / `volume_limit_nl`, `increment_ml` /
`increment_nl`, `flow_ml_min` / `flow_nl_s`. A limit the plan does not state is not drawn.

Long recordings are reduced to min/max pairs per time bucket before plotting (`minmax_downsample`),
so peaks survive and a 10-minute 1 kHz run (600,000 samples) draws ~4,000 points per trace.

matplotlib is imported only when a figure is made, with the Agg canvas and no pyplot state, so the
CLI starts fast and this works headless and from threads.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from host.cli_types import EXIT_FAILED, EXIT_OK, EXIT_USAGE, bounded_int
from host.export import warn_if_damaged
from host.recording import Recording, RecordingError
from protocol.enums import EventKind, StopReason

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_POINTS = 4000
POINTS = bounded_int("--max-points", 100, 1_000_000)
DPI = bounded_int("--dpi", 20, 600)
"""Points per trace after downsampling: about two per pixel column of the figure."""

PLANNED_ENDS = frozenset({StopReason.VOLUME_LIMIT, StopReason.INCREMENT_DONE})
MAX_SPANS = 200

_PLAN_KEYS: dict[str, tuple[tuple[str, float], ...]] = {
    "soft_kpa": (("soft_limit_kpa", 1.0), ("soft_limit_pa", 1e-3)),
    "hard_kpa": (("hard_limit_kpa", 1.0), ("hard_limit_pa", 1e-3)),
    "relief_kpa": (("relief_kpa", 1.0), ("relief_pa", 1e-3)),
    "volume_ml": (("volume_limit_ml", 1.0), ("volume_limit_nl", 1e-6)),
    "increment_ml": (("increment_ml", 1.0), ("increment_nl", 1e-6)),
    "flow_ml_min": (("flow_ml_min", 1.0), ("flow_nl_s", 6e-5)),
}


@dataclasses.dataclass(frozen=True, slots=True)
class PlanLimits:
    soft_kpa: float | None = None
    hard_kpa: float | None = None
    relief_kpa: float | None = None
    volume_ml: float | None = None
    increment_ml: float | None = None
    flow_ml_min: float | None = None


def _find(plan: Mapping[str, Any], key: str) -> Any:
    """Breadth-first: the top-level key wins over a nested one."""
    level: list[Mapping[str, Any]] = [plan]
    while level:
        for m in level:
            if key in m:
                return m[key]
        level = [v for m in level for v in m.values() if isinstance(v, Mapping)]
    return None


def plan_limits(plan: Mapping[str, Any]) -> PlanLimits:
    found: dict[str, float] = {}
    for field, candidates in _PLAN_KEYS.items():
        for key, factor in candidates:
            value = _find(plan, key)
            if isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value):
                found[field] = float(value) * factor
                break
    return PlanLimits(**found)


def minmax_downsample(
    x: np.ndarray[Any, Any], y: np.ndarray[Any, Any], max_points: int = MAX_POINTS
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """At most `max_points` points that keep each bucket's minimum and maximum, in time order.
    NaN is ignored within a bucket; an all-NaN bucket stays NaN (a gap in the line)."""
    n = len(y)
    if n <= max_points or max_points < 2:
        return x, y
    buckets = max_points // 2
    k = -(-n // buckets)
    buckets = -(-n // k)
    pad = buckets * k - n
    yf = np.asarray(y, dtype=np.float64)
    yy = np.concatenate([yf, np.full(pad, np.nan)]) if pad else yf
    rows = yy.reshape(buckets, k)
    nan = np.isnan(rows)
    lo = np.argmin(np.where(nan, np.inf, rows), axis=1)
    hi = np.argmax(np.where(nan, -np.inf, rows), axis=1)
    base = np.arange(buckets) * k
    idx = np.stack([base + np.minimum(lo, hi), base + np.maximum(lo, hi)], axis=1).ravel()
    idx = np.minimum(idx, n - 1)
    return x[idx], yf[idx]


def _title(rec: Recording, limits: PlanLimits) -> str:
    device = rec.device
    who = f"{device.serial} fw {device.firmware_version}" if device is not None else "no device info"
    parts = [f"{rec.path.name}  |  {who}  |  {rec.created_utc}"]
    plan = []
    if limits.flow_ml_min is not None:
        plan.append(f"flow {limits.flow_ml_min:g} mL/min")
    if limits.volume_ml is not None:
        plan.append(f"volume {limits.volume_ml:g} mL")
    if limits.increment_ml:
        plan.append(f"increments {limits.increment_ml:g} mL")
    if limits.soft_kpa is not None:
        plan.append(f"soft {limits.soft_kpa:g} kPa")
    if limits.hard_kpa is not None:
        plan.append(f"hard {limits.hard_kpa:g} kPa")
    if plan:
        parts.append("plan: " + ", ".join(plan))
    return "\n".join(parts)


def make_figure(rec: Recording, *, max_points: int = MAX_POINTS) -> Figure:
    """The figure object (Agg canvas attached): tests inspect it, `plot_png` saves it.

    Artists carry a gid to find them: "pressure", "volume", "flow", "soft_limit", "hard_limit",
    "relief", "volume_limit", "increment_mark", "increment_done", "flow_setpoint", "stop" (one vertical
    line per STOP event and panel), "stop_label" (its reason, on the pressure panel), "injecting".
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    fig = Figure(figsize=(12, 9), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax_p, ax_v, ax_q = fig.subplots(3, 1, sharex=True)
    axes: list[Axes] = [ax_p, ax_v, ax_q]
    limits = plan_limits(rec.plan)

    # One streaming pass over the samples (host.report's: it imports this module, hence here): the
    # extremes of each trace in its bucket, the injecting spans. A third of the points per trace each,
    # since every trace also keeps the others' extremes.
    from host.report import summarize

    summary = summarize(rec, max_points=max(2, max_points // 3))
    series = summary.series
    if summary.samples:
        t0_us = round(summary.first_t_s * 1e6)
    elif rec.events:
        t0_us = round(rec.events[0].record.t_s * 1e6)
    else:
        t0_us = 0
    t = series.t_s
    pressure = series.pressure_kpa  # NaN while SENSOR_FAULT
    ax_p.plot(
        t,
        pressure,
        color="tab:blue",
        lw=1.0,
        label="pressure",
        gid="pressure",
    )
    ax_v.plot(
        t,
        series.delivered_ml,
        color="tab:purple",
        lw=1.2,
        label="delivered volume",
        gid="volume",
    )
    ax_q.plot(
        t,
        series.flow_ml_min,
        color="tab:cyan",
        lw=1.0,
        label="measured flow",
        gid="flow",
    )

    if limits.hard_kpa is not None:
        ax_p.axhline(
            limits.hard_kpa,
            color="tab:red",
            ls="--",
            lw=1.3,
            gid="hard_limit",
            label=f"hard limit {limits.hard_kpa:g} kPa",
        )
    if limits.soft_kpa is not None:
        ax_p.axhline(
            limits.soft_kpa,
            color="tab:orange",
            ls="--",
            lw=1.3,
            gid="soft_limit",
            label=f"soft limit {limits.soft_kpa:g} kPa",
        )
    if limits.relief_kpa:
        ax_p.axhline(
            limits.relief_kpa,
            color="0.55",
            ls=":",
            lw=1.0,
            gid="relief",
            label=f"relief {limits.relief_kpa:g} kPa",
        )
    if limits.volume_ml is not None:
        ax_v.axhline(
            limits.volume_ml,
            color="tab:red",
            ls="--",
            lw=1.3,
            gid="volume_limit",
            label=f"volume limit {limits.volume_ml:g} mL",
        )
    if limits.increment_ml and limits.increment_ml > 0:
        top = (
            limits.volume_ml
            if limits.volume_ml is not None
            else float(np.nanmax(series.delivered_ml, initial=0.0))
        )
        k = 1
        while k * limits.increment_ml < top - 1e-9 and k <= 100:
            label = f"increments of {limits.increment_ml:g} mL" if k == 1 else None
            ax_v.axhline(
                k * limits.increment_ml, color="tab:green", ls=":", lw=1.0, gid="increment_mark", label=label
            )
            k += 1
    if limits.flow_ml_min is not None:
        ax_q.axhline(
            limits.flow_ml_min,
            color="0.3",
            ls="--",
            lw=1.0,
            gid="flow_setpoint",
            label=f"plan flow {limits.flow_ml_min:g} mL/min",
        )

    for i, (a, b) in enumerate(summary.injecting_spans[:MAX_SPANS]):
        for ax in axes:
            ax.axvspan(
                a,
                b,
                color="tab:blue",
                alpha=0.07,
                lw=0,
                gid="injecting",
                label="injecting" if (i == 0 and ax is ax_p) else None,
            )

    done = [
        e
        for e in rec.events
        if e.record.kind == EventKind.STOP and e.record.reason == StopReason.INCREMENT_DONE
    ]
    if done:
        ax_v.plot(
            [e.record.t_s - t0_us / 1e6 for e in done],
            [e.record.delivered_ml for e in done],
            "v",
            color="tab:green",
            ms=7,
            gid="increment_done",
            label="increment done",
        )

    label_transform = blended_transform_factory(ax_p.transData, ax_p.transAxes)
    for e in rec.stop_events():
        x = e.record.t_s - t0_us / 1e6
        planned = e.record.reason in PLANNED_ENDS
        color = "tab:green" if planned else "tab:red"
        name = rec.enum_name("StopReason", int(e.record.reason))
        for ax in axes:
            ax.axvline(
                x, color=color, lw=1.4 if not planned else 1.0, ls="-" if not planned else "-.", gid="stop"
            )
        ax_p.text(
            x,
            0.97,
            f" {name} ",
            transform=label_transform,
            rotation=90,
            va="top",
            ha="right",
            fontsize=8.5,
            color=color,
            fontweight="bold" if not planned else "normal",
            gid="stop_label",
            bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1.0},
        )

    ax_p.set_ylabel("syringe pressure (kPa)")
    ax_v.set_ylabel("delivered volume (mL)")
    ax_q.set_ylabel("flow (mL/min)")
    ax_q.set_xlabel(f"time (s) since the first sample (controller t = {t0_us / 1e6:.3f} s)")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
    ax_p.set_ylim(bottom=min(0.0, float(np.nanmin(pressure, initial=0.0))))
    ax_v.set_ylim(bottom=min(0.0, float(np.nanmin(series.delivered_ml, initial=0.0))))
    if not summary.samples:
        ax_p.text(0.5, 0.5, "no telemetry", transform=ax_p.transAxes, ha="center", va="center", fontsize=14)

    title = _title(rec, limits)
    if rec.is_complete:
        fig.suptitle(title, fontsize=10)
    else:
        banner = "INCOMPLETE: the host stopped without closing this recording"
        fig.suptitle(f"{banner}\n{title}", fontsize=10, color="tab:red")
    return fig


def plot_png(
    recording: Recording | str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    max_points: int = MAX_POINTS,
    dpi: int = 100,
) -> Figure:
    """Write the figure as a PNG; returns the figure (for inspection)."""
    rec = recording if isinstance(recording, Recording) else Recording.open(recording)
    fig = make_figure(rec, max_points=max_points)
    fig.savefig(path, dpi=dpi, format="png")
    return fig


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "plot",
        help="plot a recording to a PNG (pressure, volume, flow with limits and stops)",
        description="Draw a recording's pressure, volume and flow against time, with the plan's limits "
        "and every stop marked, as a PNG.",
    )
    p.add_argument("recording", metavar="REC", type=Path, help="recording directory")
    p.add_argument("--out", required=True, type=Path, metavar="FILE.png", help="PNG to write")
    p.add_argument(
        "--max-points",
        type=POINTS,
        default=MAX_POINTS,
        help=f"points per trace (default {MAX_POINTS}; {POINTS.allowed})",
    )
    p.add_argument(
        "--dpi", type=DPI, default=100, help=f"resolution (default 100: 1200 x 900 pixels; {DPI.allowed})"
    )
    p.set_defaults(func=_plot)


def _plot(args: argparse.Namespace) -> int:
    try:
        rec = Recording.open(args.recording)
    except RecordingError as exc:
        print(f"cementguard plot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    warn_if_damaged(rec)
    try:
        plot_png(rec, args.out, max_points=args.max_points, dpi=args.dpi)
    except RecordingError as exc:
        print(f"cementguard plot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"cementguard plot: cannot write: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {args.out}")
    return EXIT_OK

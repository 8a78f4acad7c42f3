"""What one HIL run showed (`Measured`), its verdict (`Outcome`), and how the verdict is reached:
`judge` compares each expectation with the figures, `harness_lag` says whether the harness itself
kept its clock (docs/hil.md, "Harness lag and the rerun at time scale 1")."""

from __future__ import annotations

from dataclasses import dataclass, field

from firmware_sim.plant.spatial_truth import SpatialTruth
from hil.scenario import Range, Scenario

WATCHDOG_S = 0.5
"""The reference firmware's watchdog (ControllerConfig.watchdog_ms): the scaled budget of the harness."""
HARNESS_BUDGET_FRAC = 0.4
"""A harness that fell behind by more than this share of the scaled watchdog did not test the product."""


@dataclass
class Measured:
    """What one run showed. Times in device seconds unless named otherwise; None: not measured."""

    final_state: str | None = None
    final_reason: str | None = None
    final_source: str | None = None
    trigger: str | None = None
    onset_s: float | None = None
    stop_s: float | None = None
    latency_ms: float | None = None
    latency_clock: str | None = None
    after_flow_ml: float | None = None
    delivered_ml: float | None = None
    delivered_truth_ml: float | None = None
    peak_pressure_kpa: float | None = None
    false_stops: int = 0
    increments_done: int = 0
    refused: str | None = None
    timed_out: bool = False
    link_quality: str | None = None
    """The host link's quality over the run (host.link_quality: damaged and lost frames and samples)."""
    stops_read_from_status: int = 0
    """Stops the runner took from the device's STATUS because their STOP event was lost on the line."""
    final_t_s: float | None = None
    """Device time of the final STATUS; stops after it (teardown closing the port) are not the run's."""
    stops: list[tuple[float, str, str]] = field(default_factory=list)
    """(device s, reason, source) of every STOP event up to the final STATUS, planned ends included."""
    onsets: list[tuple[float, str]] = field(default_factory=list)
    """(device s, kind) of every scenario event that took effect."""
    wall_s: float = 0.0
    sim_overruns: int | None = None
    """Simulator ticks that started more than one period late (harness health, not the product's)."""
    sim_max_late_ms: float | None = None
    host_max_lag_ms: float | None = None
    """Largest delay of the runner's event loop (a 5 ms timer's overshoot): harness health."""
    runner_session_closed: bool = False
    """The device refused one of the runner's own commands with NAK NO_SESSION: its watchdog closed
    the runner's session because the runner's heartbeats came late (harness health, on a simulator)."""
    host_max_lag_at_s: float | None = None
    """Device time (estimated) when that delay ended."""
    image_rule: str | None = None
    """The fluoroscopic guard's rule named by the final stop (FLUORO_IMAGE's detail), if it stopped."""
    guard_state: str | None = None
    """The guard's state at the end of the run (WATCHING, BLIND(reason), STOPPED(rule))."""
    guard_frames: int | None = None
    """Frames the guard judged."""
    truth: SpatialTruth | None = None
    """The spatial body's ground truth at the end of the run (the simulator's last `TRACE spatial`
    line up to the final STATUS); None without the spatial body or on a real rig."""


@dataclass
class Outcome:
    """One scenario's verdict, its figures and where its plot and recording are."""

    name: str
    path: str
    status: str
    """passed, failed, error or skipped."""
    message: str = ""
    measured: Measured = field(default_factory=Measured)
    recording: str | None = None
    png: str | None = None
    time_scale: float = 1.0
    port: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    rerun: str = ""
    """Why the verdict comes from a second run at time scale 1 (the harness fell behind), or "" ."""
    description: str = ""


def harness_lag(m: Measured, scale: float) -> str:
    """Why the harness could not keep a `scale`x clock in this run, or "" (healthy)."""
    budget_ms = HARNESS_BUDGET_FRAC * WATCHDOG_S * 1000.0 / scale
    why = []
    if m.host_max_lag_ms is not None and m.host_max_lag_ms > budget_ms:
        why.append(f"host event loop {m.host_max_lag_ms:g} ms late")
    if m.sim_max_late_ms is not None and m.sim_max_late_ms > budget_ms:
        why.append(f"simulator tick {m.sim_max_late_ms:g} ms late")
    if m.runner_session_closed:
        why.append("the device's watchdog closed the runner's session (NO_SESSION): its heartbeats came late")
    return f"{' and '.join(why)} (> {budget_ms:g} ms, 40 % of the scaled watchdog)" if why else ""


def judge(scenario: Scenario, m: Measured, real_rig: bool) -> list[str]:
    """One line per expectation the run broke: what was expected and what was measured."""
    e = scenario.expect
    out: list[str] = []
    got = f"{m.final_state} ({m.final_reason or '-'}, source {m.final_source or '-'})"
    if m.timed_out and e.state not in ("INJECTING", "PAUSED"):
        out.append(
            f"timed out: no final stop within max_duration_s = {scenario.max_duration_s:g} s; state {got}"
        )
    if m.final_state != e.state:
        out.append(f"final state: expected {e.state}, measured {got}")
    if e.reason is not None and m.final_reason != e.reason:
        out.append(f"stop reason: expected {e.reason}, measured {got}")
    if e.source is not None and m.final_source != e.source:
        out.append(f"stop source: expected {e.source}, measured {got}")
    if e.refused != m.refused:
        out.append(f"START/RESUME refusal: expected {e.refused or 'none'}, measured {m.refused or 'none'}")
    if e.max_latency_ms is not None:
        if m.latency_ms is None:
            out.append(
                f"detection latency: expected <= {e.max_latency_ms:g} ms, measured none "
                f"(trigger {m.trigger}, onset {m.onset_s}, stop {m.stop_s})"
            )
        elif m.latency_ms > e.max_latency_ms:
            out.append(
                f"detection latency: expected <= {e.max_latency_ms:g} ms, measured {m.latency_ms:.1f} ms"
            )
    if e.max_after_flow_ml is not None and not real_rig:
        if m.after_flow_ml is None:
            out.append(f"after-flow: expected <= {e.max_after_flow_ml:g} mL, measured none")
        elif m.after_flow_ml > e.max_after_flow_ml:
            out.append(
                f"after-flow: expected <= {e.max_after_flow_ml:g} mL, measured {m.after_flow_ml:.4f} mL"
            )
    if e.delivered_ml is not None:
        low, high = e.delivered_ml
        if m.delivered_ml is None or not low <= m.delivered_ml <= high:
            shown = "none" if m.delivered_ml is None else f"{m.delivered_ml:.4f} mL"
            out.append(f"delivered volume: expected {low:g}..{high:g} mL, measured {shown}")
    if e.no_false_stop and m.false_stops:
        out.append(f"false stop: a stop before the trigger event's onset ({m.onset_s} s): stops {m.stops}")
    if e.image_rule is not None and m.image_rule != e.image_rule:
        out.append(
            f"guard rule: expected {e.image_rule}, measured {m.image_rule or 'none'} "
            f"(guard {m.guard_state}, {m.guard_frames} frames)"
        )
    if e.increments_done is not None and m.increments_done != e.increments_done:
        out.append(f"increments done: expected {e.increments_done}, measured {m.increments_done}")
    if e.truth is not None and not real_rig:
        out += judge_truth(scenario, m.truth)
    return out


def _outside(what: str, r: Range | None, value: float, unit: str) -> list[str]:
    if r is None or r[0] <= value <= r[1]:
        return []
    return [f"{what}: expected {r[0]:g}..{r[1]:g}{unit}, measured {value:.4g}{unit}"]


def judge_truth(scenario: Scenario, t: SpatialTruth | None) -> list[str]:
    """The `[expect.truth]` lines: the spatial body's ground truth against the scenario's claims."""
    e = scenario.expect.truth
    if e is None:
        return []
    if t is None:
        return ["ground truth: expected the simulator's spatial truth (TRACE spatial), measured none"]
    out = _outside("truth front_ap_fraction", e.front_ap_fraction, t.front_ap_fraction, "")
    if e.posterior_quarter is not None:
        crossed = t.posterior_quarter_t_s is not None
        if crossed != e.posterior_quarter:
            when = f"at {t.posterior_quarter_t_s:.1f} s" if crossed else "never"
            out.append(
                f"truth posterior_quarter: expected {'crossed' if e.posterior_quarter else 'not crossed'}, "
                f"measured {when} (front at {t.front_ap_fraction:.3f})"
            )
    for name, r in (e.leak_ml or {}).items():
        leak = t.leaks.get(name)
        if leak is None:
            out.append(f"truth leak_ml.{name}: no such leak path; this body has {sorted(t.leaks)}")
        else:
            out += _outside(f"truth leak_ml.{name}", r, leak.volume_ml, " mL")
    out += _outside("truth total_leak_ml", e.total_leak_ml, t.leaked_ml, " mL")
    out += _outside("truth peak_temperature_c", e.peak_temperature_c, t.peak_temperature_c, " degC")
    out += _outside("truth canal_peak_c", e.canal_peak_c, t.canal_peak_c, " degC")
    return out

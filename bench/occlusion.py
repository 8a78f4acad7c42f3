"""Occlusion detection time and bolus, the controller's detectors against a plain pressure threshold.

    python bench/occlusion.py                  # full grid, table per condition + summary
    python bench/occlusion.py --quick          # one seed, flows 1/3/6 mL/min
    python bench/occlusion.py --json

Adapted from the occlusion test of IEC 60601-2-24 (time to occlusion alarm and bolus released after
the occlusion is cleared, at the lowest and highest occlusion alarm threshold). Every condition is run
twice on identical plants (same PlantConfig, same seed, so the same sensor noise):

- controller: the default `ControllerConfig` (PRESSURE_RISE, OVERPRESSURE, the soft-limit throttle...).
- plain: the same controller with `rise_enabled=False, throttle_enabled=False`: it stops only by
  OVERPRESSURE at the plan's hard limit, i.e. a plain pressure-threshold detector.

A run: HELLO, ARM (`VirtualRig.plan_for_plant`, relief on, the threshold's limits), START, 10 s of
injection to steady state, then the cannula blocks (plant event `occlusion`, factor 1e4, at once).
Detection time = the controller's STOP event time - the occlusion time. The occlusion is cleared
5 s after the stop (relief, if any, is over by then: its timeout is 3 s) and the run goes on 30 s;
the bolus is the volume out of the cannula tip from the stop to the end (truth from the plant).

Thresholds: the plan's default (soft 2.5 MPa, hard 4 MPa) and the IEC-style lowest / highest
occlusion threshold, hard 2 MPa and 6 MPa (soft = hard there, so the throttle acts only right at the
threshold). A condition is valid for a threshold only if the run is nominal there: in both runs the
injection is still INJECTING at the occlusion and the controller run has not throttled (steady
pressure below the throttle band); others are listed as excluded, not counted.
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, replace

import _common

from firmware_sim.controller import ControllerConfig
from firmware_sim.plant import PlantConfig
from firmware_sim.plant.events import Occlusion
from firmware_sim.virtual_rig import VirtualRig
from protocol import Flags, State

GOAL_RATIO = 0.3
CEMENTS = {"low_viscosity": 300.0, "high_viscosity": 180.0, "fast_setting": 240.0}
"""Cement profile -> time since mixing at the start of the run (inside each one's working window at
22 degC: low-viscosity in Krebs' early group, the dough cement early, the fast one at 4 min)."""
FLOWS_ML_MIN = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
GAUGES = (11, 13)
SEEDS = (0, 1, 2)
THRESHOLDS: dict[str, tuple[int, int]] = {
    "default 4 MPa": (2_500_000, 4_000_000),
    "IEC low 2 MPa": (2_000_000, 2_000_000),
    "IEC high 6 MPa": (6_000_000, 6_000_000),
}
"""name -> (soft limit, hard limit) of the plan."""
STEADY_S = 10.0
RELEASE_AFTER_S = 5.0
SETTLE_S = 30.0
MAX_DETECT_S = 60.0
OCCLUSION_FACTOR = 1e4
PLAIN = replace(ControllerConfig(), rise_enabled=False, throttle_enabled=False)


@dataclass(frozen=True)
class Case:
    cement: str
    flow_ml_min: float
    gauge: int
    seed: int
    threshold: str

    @property
    def condition(self) -> tuple[str, float, int, int]:
        return (self.cement, self.flow_ml_min, self.gauge, self.seed)


@dataclass(frozen=True)
class RunResult:
    detector: str
    valid: bool
    why_invalid: str
    steady_pa: float
    throttled_before: bool
    stop_reason: str
    detect_s: float
    """Stop time - occlusion time (NaN: no stop within MAX_DETECT_S)."""
    peak_pa: float
    """Highest true syringe pressure from the occlusion to the release."""
    stop_pa: float
    bolus_ml: float
    """Tip volume from the stop to the end of the settle time (occlusion cleared 5 s after the stop)."""
    stored_at_release_ml: float


def run_one(case: Case, detector: str) -> RunResult:
    soft, hard = THRESHOLDS[case.threshold]
    plant = PlantConfig(
        cement=case.cement,  # type: ignore[arg-type]
        mixed_ago_s=CEMENTS[case.cement],
        cannula_gauge=case.gauge,  # type: ignore[arg-type]
        seed=case.seed,
    )
    config = ControllerConfig() if detector == "controller" else PLAIN
    rig = _common.injecting_rig(
        plant, config, flow_nl_s=round(case.flow_ml_min * 1e6 / 60), soft_limit_pa=soft, hard_limit_pa=hard
    )
    rig.run(STEADY_S, until=rig.state_is(*_common.ENDED))
    steady = rig.plant.syringe_pressure_pa
    throttled = bool((rig.samples["flags"].astype(int) & int(Flags.THROTTLING)).any())
    nan = float("nan")
    if rig.controller.state != State.INJECTING:
        why = f"stopped before the occlusion ({_common.reason_name(rig.stop_events()[-1])})"
        return RunResult(detector, False, why, steady, throttled, "", nan, nan, nan, nan, nan)
    rig.plant.schedule(Occlusion(factor=OCCLUSION_FACTOR))
    t_occ = rig.plant.fired_events[-1].t_s
    peak = [steady]

    def track(r: VirtualRig) -> bool:
        p = r.plant.syringe_pressure_pa
        if p > peak[0]:
            peak[0] = p
        return False

    def ended(r: VirtualRig) -> bool:
        track(r)
        return r.controller.state in _common.ENDED

    stopped = rig.run(MAX_DETECT_S, until=ended)
    if not stopped:
        why = "no stop" if not throttled else "throttled: no stop"
        return RunResult(detector, not throttled, why, steady, throttled, "NONE", nan, peak[0], nan, nan, nan)
    stop = rig.stop_events()[-1]
    detect = stop.t_us / 1e6 - t_occ
    delivered_at_stop = rig.plant.delivered_volume_m3
    stop_pa = rig.plant.syringe_pressure_pa
    rig.run(RELEASE_AFTER_S, until=track)
    stored = rig.plant.stored_volume_m3
    rig.plant.schedule(Occlusion(factor=1.0))  # cleared
    rig.run(SETTLE_S)
    bolus = (rig.plant.delivered_volume_m3 - delivered_at_stop) * 1e6
    return RunResult(
        detector,
        not throttled,
        "throttled before the occlusion" if throttled else "",
        steady,
        throttled,
        _common.reason_name(stop),
        detect,
        peak[0],
        stop_pa,
        bolus,
        stored * 1e6,
    )


def run_case(case: Case) -> tuple[Case, RunResult, RunResult]:
    return case, run_one(case, "controller"), run_one(case, "plain")


def grid(quick: bool) -> list[Case]:
    flows = (1.0, 3.0, 6.0) if quick else FLOWS_ML_MIN
    seeds = SEEDS[:1] if quick else SEEDS
    return [
        Case(c, f, g, s, t) for t, c, g, f, s in itertools.product(THRESHOLDS, CEMENTS, GAUGES, flows, seeds)
    ]


@dataclass(frozen=True)
class Summary:
    threshold: str
    valid: int
    excluded: int
    controller_detect_median_s: float
    controller_detect_max_s: float
    plain_detect_median_s: float
    plain_detect_min_s: float
    ratio_median: float
    ratio_max: float
    controller_reasons: dict[str, int]
    plain_reasons: dict[str, int]
    controller_bolus_median_ml: float
    controller_bolus_max_ml: float
    plain_bolus_median_ml: float
    plain_bolus_max_ml: float
    plain_peak_median_mpa: float
    meets_goal: bool
    throttled_no_stop: int
    """Excluded conditions where the controller was already throttling and never stopped."""
    controller_missed: int
    """Valid conditions in which the controller did not stop within MAX_DETECT_S (a miss)."""
    plain_missed: int
    throttled_runs: int
    """Conditions (x seeds) already throttled at the soft limit when the cannula blocked and stopped
    after the occlusion: reported apart, not in the goal ratio (the plain run has no throttle, so its
    line was at a higher pressure: not the same run)."""
    throttled_detect_median_s: float
    throttled_detect_max_s: float
    throttled_reasons: dict[str, int]
    throttled_plain_detect_median_s: float
    throttled_plain_compared: int
    """Of those, runs whose plain twin was still injecting at the occlusion (steady below its limit)."""


def summarise(rows: list[tuple[Case, RunResult, RunResult]], threshold: str) -> Summary:
    mine = [(c, a, b) for c, a, b in rows if c.threshold == threshold]
    both = [(c, a, b) for c, a, b in mine if a.valid and b.valid]
    valid = [(c, a, b) for c, a, b in both if math.isfinite(a.detect_s) and math.isfinite(b.detect_s)]
    ratios = [a.detect_s / b.detect_s for _, a, b in valid if b.detect_s > 0]
    reasons: dict[str, int] = {}
    plain_reasons: dict[str, int] = {}
    for _, a, b in valid:
        reasons[a.stop_reason] = reasons.get(a.stop_reason, 0) + 1
        plain_reasons[b.stop_reason] = plain_reasons.get(b.stop_reason, 0) + 1
    med = _common.median
    thr = [(c, a, b) for c, a, b in mine if a.throttled_before and math.isfinite(a.detect_s)]
    thr_plain = [b.detect_s for _, _, b in thr if b.valid and math.isfinite(b.detect_s)]
    thr_reasons: dict[str, int] = {}
    for _, a, _ in thr:
        thr_reasons[a.stop_reason] = thr_reasons.get(a.stop_reason, 0) + 1
    return Summary(
        threshold=threshold,
        valid=len(valid),
        excluded=len(mine) - len(valid),
        controller_detect_median_s=med([a.detect_s for _, a, _ in valid]),
        controller_detect_max_s=max((a.detect_s for _, a, _ in valid), default=float("nan")),
        plain_detect_median_s=med([b.detect_s for _, _, b in valid]),
        plain_detect_min_s=min((b.detect_s for _, _, b in valid), default=float("nan")),
        ratio_median=med(ratios),
        ratio_max=max(ratios, default=float("nan")),
        controller_reasons=reasons,
        plain_reasons=plain_reasons,
        controller_bolus_median_ml=med([a.bolus_ml for _, a, _ in valid]),
        controller_bolus_max_ml=max((a.bolus_ml for _, a, _ in valid), default=float("nan")),
        plain_bolus_median_ml=med([b.bolus_ml for _, _, b in valid]),
        plain_bolus_max_ml=max((b.bolus_ml for _, _, b in valid), default=float("nan")),
        plain_peak_median_mpa=med([b.peak_pa / 1e6 for _, _, b in valid]),
        meets_goal=bool(ratios)
        and med(ratios) <= GOAL_RATIO
        and not any(not math.isfinite(a.detect_s) for _, a, _ in both),
        throttled_no_stop=sum(1 for _, a, _ in mine if a.throttled_before and a.stop_reason == "NONE"),
        controller_missed=sum(1 for _, a, _ in both if not math.isfinite(a.detect_s)),
        plain_missed=sum(1 for _, _, b in both if not math.isfinite(b.detect_s)),
        throttled_runs=len(thr),
        throttled_detect_median_s=med([a.detect_s for _, a, _ in thr]),
        throttled_detect_max_s=max((a.detect_s for _, a, _ in thr), default=float("nan")),
        throttled_reasons=thr_reasons,
        throttled_plain_detect_median_s=med(thr_plain),
        throttled_plain_compared=len(thr_plain),
    )


def print_conditions(rows: list[tuple[Case, RunResult, RunResult]], threshold: str) -> None:
    print(f"per condition, threshold '{threshold}' (median over seeds; detection s, bolus mL)")
    print(
        f"{'cement':<15} {'G':>3} {'mL/min':>6} {'P ss MPa':>8} {'ctrl s':>7} {'plain s':>8} {'ratio':>6} "
        f"{'ctrl reason':<14} {'ctrl bolus':>10} {'plain bolus':>11} {'note'}"
    )
    mine = [r for r in rows if r[0].threshold == threshold]
    keyed: dict[tuple[str, int, float], list[tuple[Case, RunResult, RunResult]]] = {}
    for r in mine:
        keyed.setdefault((r[0].cement, r[0].gauge, r[0].flow_ml_min), []).append(r)
    med = _common.median
    for (cement, gauge, flow), group in keyed.items():
        ok = [
            (a, b)
            for _, a, b in group
            if a.valid and b.valid and math.isfinite(a.detect_s) and math.isfinite(b.detect_s)
        ]
        steady = med([a.steady_pa / 1e6 for _, a, _ in group])
        throttled = [a for _, a, _ in group if a.throttled_before and math.isfinite(a.detect_s)]
        if ok:
            note = "" if len(ok) == len(group) else f"{len(group) - len(ok)} seed(s) excluded"
            ctrl = [a for a, _ in ok]
            plain = [b for _, b in ok]
        elif throttled:
            ctrl = throttled
            plain = [b for _, _, b in group if b.valid and math.isfinite(b.detect_s)]
            note = "ctrl throttled before the occlusion: not in the ratio"
            if not plain:
                note += "; plain " + "; ".join(sorted({b.why_invalid for _, _, b in group}))
        else:
            notes = sorted({a.why_invalid or b.why_invalid for _, a, b in group})
            print(f"{cement:<15} {gauge:>3} {flow:>6.0f} {steady:>8.2f} not compared: {'; '.join(notes)}")
            continue
        nan = float("nan")
        ca = med([a.detect_s for a in ctrl])
        pb = med([b.detect_s for b in plain]) if plain else nan
        ratio = med([a.detect_s / b.detect_s for a, b in ok]) if ok else ca / pb
        bolus_a = med([a.bolus_ml for a in ctrl])
        bolus_b = med([b.bolus_ml for b in plain]) if plain else nan
        reasons = ",".join(sorted({a.stop_reason.replace("/NO_FLOW_AT_CEILING", "/NO_FLOW") for a in ctrl}))
        print(
            f"{cement:<15} {gauge:>3} {flow:>6.0f} {steady:>8.2f} {ca:>7.3f} {pb:>8.3f} {ratio:>6.3f} "
            f"{reasons:<14} {bolus_a:>10.4f} {bolus_b:>11.4f} {note}"
        )


def print_summary(summaries: list[Summary]) -> None:
    print(f"summary (goal: median ratio <= {GOAL_RATIO})")
    print(
        f"{'threshold':<15} {'valid':>5} {'excl':>4} {'ctrl med s':>10} {'ctrl max s':>10} "
        f"{'plain med s':>11} {'ratio med':>9} {'ratio max':>9} {'goal':>4} {'bolus ctrl med/max mL':>22} "
        f"{'bolus plain med/max mL':>23}"
    )
    for s in summaries:
        print(
            f"{s.threshold:<15} {s.valid:>5} {s.excluded:>4} {s.controller_detect_median_s:>10.3f} "
            f"{s.controller_detect_max_s:>10.3f} {s.plain_detect_median_s:>11.3f} {s.ratio_median:>9.3f} "
            f"{s.ratio_max:>9.3f} {_common.VERDICT[s.meets_goal]:>4} "
            f"{s.controller_bolus_median_ml:>10.4f}/{s.controller_bolus_max_ml:<11.4f} "
            f"{s.plain_bolus_median_ml:>11.4f}/{s.plain_bolus_max_ml:<11.4f}"
        )
    for s in summaries:
        extra = f"; {s.throttled_no_stop} throttled condition(s) never stopped" if s.throttled_no_stop else ""
        if s.controller_missed or s.plain_missed:
            extra += f"; MISSED (no stop in {MAX_DETECT_S:g} s): controller {s.controller_missed}, "
            extra += f"plain {s.plain_missed}"
        print(
            f"  {s.threshold}: stop reasons controller {s.controller_reasons}, plain {s.plain_reasons}{extra}"
        )
        if s.throttled_runs:
            print(
                f"  {s.threshold}: {s.throttled_runs} run(s) throttled at the soft limit before the "
                f"occlusion (not in the ratio): controller {s.throttled_reasons}, "
                f"median {s.throttled_detect_median_s:.2f} s, "
                f"max {s.throttled_detect_max_s:.2f} s; plain (no throttle) median "
                f"{s.throttled_plain_detect_median_s:.2f} s "
                f"(over the {s.throttled_plain_compared} still injecting at the occlusion)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one seed, flows 1, 3, 6 mL/min")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: cores)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    args = parser.parse_args(argv)
    cases = grid(args.quick)
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        rows = pool.map(run_case, cases, chunksize=1)
    wall = time.perf_counter() - t0
    summaries = [summarise(rows, t) for t in THRESHOLDS]
    if args.json:
        _common.dump_json(
            {
                "benchmark": "occlusion",
                "command": _common.command_line("occlusion", argv),
                "goal_ratio": GOAL_RATIO,
                "wall_s": wall,
                "machine": _common.machine(),
                "summaries": [asdict(s) for s in summaries],
                "runs": [
                    {"case": asdict(c), "controller": asdict(a), "plain": asdict(b)} for c, a, b in rows
                ],
            }
        )
        return 0
    print(
        f"occlusion (factor {OCCLUSION_FACTOR:g}) after {STEADY_S:g} s of injection; {len(cases)} conditions "
        f"x 2 detectors, {wall:.0f} s wall on {args.workers} processes"
    )
    for t in THRESHOLDS:
        print()
        print_conditions(rows, t)
    print()
    print_summary(summaries)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

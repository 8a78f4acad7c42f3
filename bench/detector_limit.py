"""Occlusion stop latency of the product's PRESSURE_RISE against the ideal detector, on the same traces.

    python bench/detector_limit.py              # full grid: 6 flows x 2 noises x 3 cements x 10 phases
    python bench/detector_limit.py --quick      # flows 1, 3, 6 mL/min, phases 0 and 5
    python bench/detector_limit.py --json

The ideal is the likelihood-ratio test for a change in the pressure slope that tolerates nominal
ramps of up to `rise_nominal_pa_s` (200 kPa/s), fed the very samples the controller saw: the
generalized likelihood ratio for "the last w samples lie on a line steeper than 200 kPa/s" (unknown
intercept, white noise of the plant's *true* sigma), maximized over *every* window w = 3..1000
samples (the unknown onset), checked at every sample from the onset on. It is held to the product's
threshold c (the false-alarm budget of one per 1000 h at 1 kHz over the product's bank of windows,
`glr_threshold`): with its ~1000 windows the same budget would need a higher threshold, so its
latency here is a lower bound on the ideal's and the ratio an upper bound. It knows sigma exactly and
never has to arm; the product measures sigma online, tests 6 windows, and arms after the start-up ramp.

Every condition runs twice on identical plants (same PlantConfig, seed, sensor noise): the product
(default `ControllerConfig`), and a twin with the rise detector off, whose trace the ideal reads (the
product's run brakes at its stop; the twin's line stays blocked). The two traces are checked to be
sample for sample the same up to the product's stop. The plan's limits are soft 6 / hard 8 MPa so
that neither the throttle nor OVERPRESSURE acts first. The occlusion (cannula x 1e4) comes after
`STEADY_S` of injection at onset phase 0..9 ms into the controller's 10-sample block. A condition is
reported as not compared when the product was not armed at the onset or stopped before it, or the ideal
alarmed in the second before the onset (the trace was not nominal there).
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, replace

import _common
import numpy as np

from firmware_sim.controller import ControllerConfig
from firmware_sim.controller.detectors import glr_threshold, pa_per_count
from firmware_sim.hal import REFERENCE_RIG, SensorFrame
from firmware_sim.ideal_detector import ideal_alarm
from firmware_sim.plant import PlantConfig
from firmware_sim.plant.events import Occlusion
from firmware_sim.virtual_rig import VirtualRig

GOAL_RATIO = 1.3
CEMENTS = {"low_viscosity": 300.0, "high_viscosity": 180.0, "fast_setting": 240.0}
"""Cement profile -> time since mixing at START (as bench/occlusion.py)."""
FLOWS_ML_MIN = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
NOISE_X = (1.0, 2.0)
PHASES = tuple(range(10))
SPEC_NOISE_KPA = 10.0
STEADY_S = 8.0
AFTER_S = 1.0
PRE_ONSET = 1000
"""Samples before the onset on which the ideal must stay quiet."""
OCCLUSION_FACTOR = 1e4
SOFT_PA, HARD_PA = 6_000_000, 8_000_000
PRODUCT = ControllerConfig()
TWIN = replace(PRODUCT, rise_enabled=False)


@dataclass(frozen=True)
class Case:
    cement: str
    flow_ml_min: float
    noise_x: float
    phase_ms: int
    seed: int


@dataclass(frozen=True)
class Result:
    case: Case
    compared: bool
    why_not: str
    steady_pa: float
    product_ms: float
    ideal_ms: float
    product_reason: str
    traces_equal: bool

    @property
    def ratio(self) -> float:
        return self.product_ms / self.ideal_ms if self.compared else float("nan")


def _recording_rig(case: Case, config: ControllerConfig) -> tuple[VirtualRig, list[int]]:
    plant = PlantConfig(
        cement=case.cement,  # type: ignore[arg-type]
        mixed_ago_s=CEMENTS[case.cement],
        sensor_noise_kpa=SPEC_NOISE_KPA * case.noise_x,
        seed=case.seed,
    )
    rig = _common.injecting_rig(
        plant,
        config,
        flow_nl_s=round(case.flow_ml_min * 1e6 / 60),
        soft_limit_pa=SOFT_PA,
        hard_limit_pa=HARD_PA,
    )
    adc: list[int] = []
    sense = rig.plant.sense

    def recording_sense() -> SensorFrame:
        frame = sense()
        adc.append(frame.pressure_adc)
        return frame

    rig.plant.sense = recording_sense  # type: ignore[method-assign]
    return rig, adc


def _to_onset(rig: VirtualRig, phase_ms: int) -> float | None:
    """Run the steady stretch, then to the next tick at `phase_ms` into a block; occlude. Returns
    the onset time (s), None when the run ended first."""
    if rig.run(STEADY_S, until=rig.state_is(*_common.ENDED)):
        return None
    while (rig.now_us // 1000) % PRODUCT.block_samples != phase_ms:
        rig.step()
    rig.plant.schedule(Occlusion(factor=OCCLUSION_FACTOR))
    return rig.plant.fired_events[-1].t_s


def run_case(case: Case) -> Result:
    nan = float("nan")
    gain = pa_per_count(REFERENCE_RIG)
    beta = PRODUCT.rise_nominal_pa_s / PRODUCT.sample_rate_hz / gain
    sigma = SPEC_NOISE_KPA * case.noise_x * 1e3 / gain
    c = glr_threshold(PRODUCT.rise_false_alarms_per_h, PRODUCT.sample_rate_hz, len(set(PRODUCT.rise_windows)))

    rig, adc = _recording_rig(case, PRODUCT)
    onset = _to_onset(rig, case.phase_ms)
    if onset is None:
        why = f"product stopped before the onset ({_common.reason_name(rig.stop_events()[-1])})"
        return Result(case, False, why, nan, nan, nan, "", True)
    steady = rig.plant.syringe_pressure_pa
    armed = rig.controller.rise_armed
    n_onset = len(adc)  # the first sample read after the occlusion fired
    rig.run(AFTER_S, until=rig.state_is(*_common.ENDED))
    stops = rig.stop_events()
    product_ms = (stops[-1].t_us / 1e6 - onset) * 1e3 if stops else nan
    reason = _common.reason_name(stops[-1]) if stops else "NONE"

    twin, twin_adc = _recording_rig(case, TWIN)
    twin_onset = _to_onset(twin, case.phase_ms)
    assert twin_onset == onset, (twin_onset, onset)
    twin.run(AFTER_S, until=twin.state_is(*_common.ENDED))
    upto = n_onset + (round(product_ms) if stops else len(adc) - n_onset)
    equal = adc[:upto] == twin_adc[:upto]
    x = np.asarray(twin_adc)
    pre = ideal_alarm(x, max(3, n_onset - PRE_ONSET), n_onset, beta, sigma, c)
    hit = ideal_alarm(x, n_onset, len(x), beta, sigma, c)
    # sample n_onset is the one the controller reads at the onset tick (time `onset`), so sample
    # n is read (n - n_onset) ms after the onset, as the product's stop is timed
    ideal_ms = float(hit - n_onset) if hit is not None else nan
    why = ""
    if not armed:
        why = "product not armed at the onset"
    elif pre is not None:
        why = "ideal alarmed before the onset (ramp > 200 kPa/s)"
    elif not stops or reason != "PRESSURE_RISE":
        why = f"product stop {reason}"
    elif hit is None:
        why = "ideal did not alarm"
    return Result(case, not why, why, steady, product_ms, ideal_ms, reason, equal)


def grid(quick: bool, seeds: int) -> list[Case]:
    flows = (1.0, 3.0, 6.0) if quick else FLOWS_ML_MIN
    phases = (0, 5) if quick else PHASES
    return [
        Case(cem, f, nx, ph, s)
        for cem, f, nx, ph, s in itertools.product(CEMENTS, flows, NOISE_X, phases, range(seeds))
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="flows 1, 3, 6 mL/min, phases 0 and 5")
    parser.add_argument("--seeds", type=int, default=1, help="plant seeds per condition (default 1)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: cores)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    args = parser.parse_args(argv)
    cases = grid(args.quick, args.seeds)
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        results = pool.map(run_case, cases, chunksize=1)
    wall = time.perf_counter() - t0
    compared = [r for r in results if r.compared]
    ratios = [r.ratio for r in compared]
    worst = max(ratios, default=float("nan"))
    ok = bool(compared) and worst <= GOAL_RATIO and len(compared) == len(results)
    if args.json:
        _common.dump_json(
            {
                "benchmark": "detector_limit",
                "command": _common.command_line("detector_limit", argv),
                "goal_ratio": GOAL_RATIO,
                "wall_s": wall,
                "machine": _common.machine(),
                "worst_ratio": worst,
                "meets_goal": ok,
                "runs": [dict(asdict(r), ratio=r.ratio) for r in results],
            }
        )
        return 0
    print(
        f"occlusion (x{OCCLUSION_FACTOR:g}) after {STEADY_S:g} s, {len(cases)} runs x 2 plants, "
        f"{wall:.0f} s wall on {args.workers} processes"
    )
    print("per condition (over onset phases and seeds): product / ideal stop latency, ms")
    print(
        f"{'cement':<15} {'mL/min':>6} {'noise':>5} {'P MPa':>6} {'n':>3} {'product med/max':>16} "
        f"{'ideal med/max':>14} {'ratio med':>9} {'ratio max':>9} {'note'}"
    )
    keyed: dict[tuple[str, float, float], list[Result]] = {}
    for r in results:
        keyed.setdefault((r.case.cement, r.case.flow_ml_min, r.case.noise_x), []).append(r)
    med = _common.median
    for (cement, flow, nx), group in keyed.items():
        ok_rows = [r for r in group if r.compared]
        notes = sorted({r.why_not for r in group if not r.compared})
        if not all(r.traces_equal for r in group):
            notes.append("TRACES DIFFER")
        if not ok_rows:
            print(f"{cement:<15} {flow:>6.0f} {nx:>4.0f}x not compared: {'; '.join(notes)}")
            continue
        pm = [r.product_ms for r in ok_rows]
        im = [r.ideal_ms for r in ok_rows]
        rs = [r.ratio for r in ok_rows]
        print(
            f"{cement:<15} {flow:>6.0f} {nx:>4.0f}x {med([r.steady_pa for r in ok_rows]) / 1e6:>6.2f} "
            f"{len(ok_rows):>3} {med(pm):>8.0f}/{max(pm):<7.0f} {med(im):>7.0f}/{max(im):<6.0f} "
            f"{med(rs):>9.2f} {max(rs):>9.2f} {'; '.join(notes)}"
        )
    print()
    print(
        f"compared {len(compared)} of {len(results)}; latency ratio product / ideal: median "
        f"{med(ratios):.2f}, max {worst:.2f} (goal <= {GOAL_RATIO} everywhere: {_common.VERDICT[ok]}); "
        f"traces equal up to the product's stop in {sum(r.traces_equal for r in results)} of {len(results)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""False stops in nominal injections with realistic sensor noise.

    python bench/false_stops.py                        # 500 runs at 1x noise + 500 at 2x, all cores
    python bench/false_stops.py --runs 2000 --json
    python bench/false_stops.py --replay 2 17          # re-run run #17 of noise level 2x, with a trace

Each run draws its conditions from a seeded generator (run i of noise level x always gets the same
ones), within nominal conditions:

- cement profile (low_viscosity, high_viscosity, fast_setting), cement at 20-25 degC;
- cannula 10G, 11G or 13G (125 mm), flow 1-6 mL/min, volume 1-2 mL, the 2.5 mL syringe;
- continuous, or incremental (0.2-0.5 mL increments, each followed by a 2-10 s imaging pause and a
  RESUME); plan flag RELIEF on in 3 runs of 4;
- plant seed (the sensor noise), sensor noise sigma 10 kPa (the reference transducer) x the level;
- time since mixing at START drawn inside the working window: from 180 s to the latest start that
  still ends the injection (planned duration x 1.2) 10 s before the plan's working time, which is
  80 % of the cement's cure time at its temperature.

The plan is `VirtualRig.plan_for_plant` with the plan limits of a bench engineer: soft 2.5 MPa /
hard 4 MPa (low-viscosity and fast-setting cements), soft 4 MPa / hard 6 MPa for the high-viscosity
dough (docs/design.md: it needs 2-4 MPa at 3 mL/min through 11G, i.e. a motorised delivery). A drawn
condition counts as nominal only if the steady syringe pressure predicted from the plant's own
physics at the end of the injection (cannula drop at the planned flow, / 0.95 for the cloud) is at
most 1.25 x the soft limit: throttling towards the end is nominal and allowed, a plan that could
only run against its limits is not. Rejected draws are counted, not run.

Every run goes to completion (VOLUME_LIMIT) on the virtual rig in virtual time. Any stop whose
reason is not VOLUME_LIMIT or INCREMENT_DONE is a false stop and is listed with its parameters and
the pressure trace before it; a run that has not finished within 3x its planned duration is listed
as incomplete. Runs are spread over processes with multiprocessing.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import _common
import numpy as np

from firmware_sim.controller import ControllerConfig
from firmware_sim.plant import PlantConfig
from firmware_sim.plant.cement import PROFILES
from hil._sweep_runs import (  # the sweep's nominal conditions: one definition for both
    CEMENTS,
    GAUGES,
    LIMITS_PA,
    MAX_PRESSURE_FRAC_OF_SOFT,
    WORKING_FRAC_OF_CURE,
    predicted_pressure_pa,
)
from protocol import Ack, Flags, Mode, PlanFlags, Resume, State, StopReason

NOMINAL_REASONS = {StopReason.VOLUME_LIMIT.name, StopReason.INCREMENT_DONE.name}
BASE_SEED = 20261121
NOISE_KPA = 10.0
EARLIEST_START_S = 180.0
DURATION_MARGIN = 1.2
END_MARGIN_S = 10.0
CANNULA_LENGTH_MM = 125.0
TRACE_S = 1.5


@dataclass(frozen=True)
class Params:
    level: float
    index: int
    cement: str
    temperature_c: float
    gauge: int
    flow_ml_min: float
    volume_ml: float
    mode: str
    increment_ml: float
    pause_s: float
    relief: bool
    mixed_ago_s: float
    working_time_s: float
    seed: int
    soft_pa: int
    hard_pa: int
    predicted_end_pa: float
    planned_s: float


def draw(level: float, index: int) -> tuple[Params | None, int]:
    """Nominal conditions of run `index` at noise `level`; (params, rejected draws before it)."""
    rng = np.random.default_rng([BASE_SEED, round(level * 100), index])
    rejected = 0
    while True:
        cement = CEMENTS[int(rng.integers(len(CEMENTS)))]
        temperature = round(float(rng.uniform(20.0, 25.0)), 1)
        gauge = GAUGES[int(rng.integers(len(GAUGES)))]
        flow = round(float(rng.uniform(1.0, 6.0)), 2)
        volume = round(float(rng.uniform(1.0, 2.0)), 2)
        incremental = bool(rng.random() < 0.5)
        increment = round(float(rng.uniform(0.2, 0.5)), 2) if incremental else 0.0
        pause = round(float(rng.uniform(2.0, 10.0)), 1) if incremental else 0.0
        relief = bool(rng.random() < 0.75)
        seed = int(rng.integers(2**31))
        pauses = math.ceil(volume / increment) - 1 if incremental else 0
        planned = volume / flow * 60.0 + pauses * pause
        working = WORKING_FRAC_OF_CURE * PROFILES[cement].cure_time_s(temperature)
        latest = working - planned * DURATION_MARGIN - END_MARGIN_S
        mixed = float(rng.uniform(EARLIEST_START_S, max(latest, EARLIEST_START_S)))
        soft, hard = LIMITS_PA[cement]
        end_age = mixed + planned
        p_end = predicted_pressure_pa(cement, gauge, CANNULA_LENGTH_MM, flow, end_age, temperature)
        if latest < EARLIEST_START_S or p_end > MAX_PRESSURE_FRAC_OF_SOFT * soft:
            rejected += 1
            continue
        return (
            Params(
                level=level,
                index=index,
                cement=cement,
                temperature_c=temperature,
                gauge=gauge,
                flow_ml_min=flow,
                volume_ml=volume,
                mode="incremental" if incremental else "continuous",
                increment_ml=increment,
                pause_s=pause,
                relief=relief,
                mixed_ago_s=round(mixed, 1),
                working_time_s=round(working, 1),
                seed=seed,
                soft_pa=soft,
                hard_pa=hard,
                predicted_end_pa=p_end,
                planned_s=planned,
            ),
            rejected,
        )


@dataclass
class Outcome:
    params: Params
    rejected_draws: int
    stops: list[tuple[str, float, float]] = field(default_factory=list)
    """(reason, s since START, filtered pressure Pa at the stop) of every STOP event."""
    completed: bool = False
    sim_s: float = 0.0
    peak_pa: float = 0.0
    throttled_s: float = 0.0
    false_stop: bool = False
    trace: dict[str, Any] | None = None
    """For a false stop: telemetry before it (10 ms means) and the true pressure."""


def run(
    level: float,
    index: int,
    keep_trace: bool = True,
    seed: int | None = None,
    noise_level: float | None = None,
) -> Outcome:
    """Run #index of noise `level`. For --replay, `seed` and `noise_level` replace the drawn plant seed
    and the noise (the same conditions otherwise)."""
    params, rejected = draw(level, index)
    assert params is not None
    if seed is not None:
        params = replace(params, seed=seed)
    if noise_level is not None:
        params = replace(params, level=noise_level)
    p = params
    plant = PlantConfig(
        cement=p.cement,  # type: ignore[arg-type]
        temperature_c=p.temperature_c,
        cannula_gauge=p.gauge,  # type: ignore[arg-type]
        mixed_ago_s=p.mixed_ago_s,
        sensor_noise_kpa=NOISE_KPA * p.level,
        seed=p.seed,
    )
    plan: dict[str, Any] = {
        "mode": Mode.INCREMENTAL if p.mode == "incremental" else Mode.CONTINUOUS,
        "plan_flags": PlanFlags.RELIEF if p.relief else PlanFlags.NONE,
        "flow_nl_s": round(p.flow_ml_min * 1e6 / 60.0),
        "volume_limit_nl": round(p.volume_ml * 1e6),
        "increment_nl": round(p.increment_ml * 1e6),
        "soft_limit_pa": p.soft_pa,
        "hard_limit_pa": p.hard_pa,
        "working_time_ms": round(p.working_time_s * 1000),
    }
    rig = _common.injecting_rig(plant, ControllerConfig(), **plan)
    t0 = rig.now_us
    out = Outcome(params, rejected)
    budget_s = 3.0 * p.planned_s + 30.0
    while rig.now_us - t0 < budget_s * 1e6:
        rig.run(budget_s - (rig.now_us - t0) / 1e6, until=rig.state_is(*_common.ENDED))
        state = rig.controller.state
        if state == State.PAUSED and rig.controller.stop_reason == StopReason.INCREMENT_DONE:
            rig.run(p.pause_s, until=rig.state_is(State.STOPPED, State.FAULT))
            if rig.controller.state == State.PAUSED:
                reply = rig.command(Resume)
                if not isinstance(reply, Ack):
                    raise RuntimeError(f"RESUME refused: {reply}")
                continue
        break
    if rig.controller.state in (State.DONE, State.STOPPED) and rig.controller.relief_active:
        rig.run(3.5, until=lambda r: not r.controller.relief_active)
    out.completed = rig.controller.state == State.DONE
    out.sim_s = (rig.now_us - t0) / 1e6
    for e in rig.stop_events():
        out.stops.append((_common.reason_name(e), (e.t_us - t0) / 1e6, float(e.pressure_pa)))
    s = rig.samples
    out.peak_pa = float(s["pressure_pa"].max()) if len(s) else 0.0
    out.throttled_s = float((s["flags"].astype(int) & int(Flags.THROTTLING) != 0).sum()) / 1000.0
    false = [x for x in out.stops if x[0] not in NOMINAL_REASONS]
    out.false_stop = bool(false)
    if false and keep_trace:
        t_stop_us = t0 + round(false[0][1] * 1e6)
        window = s[(s["t_us"] >= t_stop_us - TRACE_S * 1e6) & (s["t_us"] <= t_stop_us)]
        n = len(window) // 10 * 10
        blocks = window[len(window) - n :]
        out.trace = {
            "t_s": ((blocks["t_us"][9::10].astype(np.int64) - t0) / 1e6).round(3).tolist(),
            "filtered_pressure_kpa_10ms_mean": (blocks["pressure_pa"].reshape(-1, 10).mean(axis=1) / 1e3)
            .round(1)
            .tolist(),
            "flow_ml_min": (blocks["flow_nl_s"][9::10] * 60e-6).round(3).tolist(),
            "flags": blocks["flags"][9::10].astype(int).tolist(),
        }
    return out


def _job(args: tuple[float, int]) -> Outcome:
    return run(*args)


@dataclass(frozen=True)
class ReseedJob:
    """Run the conditions of (level, index) with a plant seed, at noise `noise_level`."""

    noise_level: float

    def __call__(self, args: tuple[float, int, int]) -> Outcome:
        level, index, seed = args
        return run(level, index, keep_trace=False, seed=seed, noise_level=self.noise_level)


def fmt_params(p: Params) -> str:
    inc = f" incr {p.increment_ml} mL pause {p.pause_s} s" if p.mode == "incremental" else ""
    return (
        f"{p.cement} {p.temperature_c} degC {p.gauge}G {p.flow_ml_min} mL/min {p.volume_ml} mL "
        f"{p.mode}{inc} relief={'on' if p.relief else 'off'} mixed {p.mixed_ago_s:.0f} s "
        f"(working {p.working_time_s:.0f} s) "
        f"seed {p.seed} limits {p.soft_pa / 1e6:g}/{p.hard_pa / 1e6:g} MPa, predicted end "
        f"{p.predicted_end_pa / 1e6:.2f} MPa"
    )


@dataclass(frozen=True)
class LevelSummary:
    level: float
    noise_kpa: float
    runs: int
    completed: int
    false_stops: int
    incomplete: int
    rejected_draws: int
    increments: int
    """INCREMENT_DONE stops (each followed by a RESUME)."""
    throttled_runs: int
    sim_hours: float
    by_reason: dict[str, int]
    meets_goal: bool


def summarise(outcomes: list[Outcome], level: float) -> LevelSummary:
    mine = [o for o in outcomes if o.params.level == level]
    reasons: dict[str, int] = {}
    for o in mine:
        for reason, _, _ in o.stops:
            if reason not in NOMINAL_REASONS:
                reasons[reason] = reasons.get(reason, 0) + 1
    false = sum(o.false_stop for o in mine)
    return LevelSummary(
        level=level,
        noise_kpa=NOISE_KPA * level,
        runs=len(mine),
        completed=sum(o.completed for o in mine),
        false_stops=false,
        incomplete=sum(not o.completed and not o.false_stop for o in mine),
        rejected_draws=sum(o.rejected_draws for o in mine),
        increments=sum(1 for o in mine for r, _, _ in o.stops if r == StopReason.INCREMENT_DONE.name),
        throttled_runs=sum(o.throttled_s > 0 for o in mine),
        sim_hours=sum(o.sim_s for o in mine) / 3600.0,
        by_reason=reasons,
        meets_goal=false == 0 and all(o.completed for o in mine),
    )


def print_report(outcomes: list[Outcome], summaries: list[LevelSummary], wall: float, workers: int) -> None:
    print(
        f"false stops in nominal runs (goal: 0); {len(outcomes)} runs, {wall:.0f} s wall on "
        f"{workers} processes"
    )
    print(
        f"{'noise':>9} {'runs':>5} {'done':>5} {'false':>5} {'incompl':>7} {'rejected':>8} "
        f"{'increments':>10} {'throttled':>9} {'sim h':>6} {'goal':>4}  false stops by reason"
    )
    for s in summaries:
        print(
            f"{s.noise_kpa:>5.0f} kPa {s.runs:>5} {s.completed:>5} {s.false_stops:>5} {s.incomplete:>7} "
            f"{s.rejected_draws:>8} {s.increments:>10} {s.throttled_runs:>9} {s.sim_hours:>6.2f} "
            f"{_common.VERDICT[s.meets_goal]:>4}  {s.by_reason or '-'}"
        )
    bad = [o for o in outcomes if o.false_stop or not o.completed]
    if bad:
        print()
        print("runs with a false stop or incomplete (replay with --replay LEVEL INDEX):")
    for o in bad:
        p = o.params
        print(f"- level {p.level:g} #{p.index}: {fmt_params(p)}")
        print(f"  stops: {[(r, round(t, 3), round(pa / 1e3)) for r, t, pa in o.stops]} (reason, s, kPa)")
        if o.trace:
            kpa = o.trace["filtered_pressure_kpa_10ms_mean"]
            print(f"  last {min(len(kpa), 40) * 10} ms, filtered pressure kPa (10 ms means): {kpa[-40:]}")


def replay(level: float, index: int, reseed: int, noise_levels: list[float], workers: int) -> None:
    o = run(level, index)
    print(fmt_params(o.params))
    print(
        f"completed={o.completed} sim {o.sim_s:.1f} s, peak {o.peak_pa / 1e3:.0f} kPa, "
        f"throttled {o.throttled_s:.1f} s"
    )
    print(f"stops: {o.stops}")
    if o.trace:
        for key, values in o.trace.items():
            print(f"{key}: {values}")
    if not reseed:
        return
    # The same conditions with `reseed` other plant seeds, at each noise level: how often they stop.
    print()
    print(f"same conditions, plant seeds 0..{reseed - 1}:")
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for lvl in noise_levels:
            outs = pool.map(ReseedJob(lvl), [(level, index, s) for s in range(reseed)], chunksize=4)
            reasons: dict[str, int] = {}
            for x in outs:
                for r, _, _ in x.stops:
                    if r not in NOMINAL_REASONS:
                        reasons[r] = reasons.get(r, 0) + 1
            false = sum(x.false_stop for x in outs)
            print(
                f"  noise {NOISE_KPA * lvl:.0f} kPa: {false} of {reseed} runs stopped falsely {reasons or ''}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=500, help="runs per noise level (default 500)")
    parser.add_argument(
        "--levels", type=float, nargs="+", default=[1.0, 2.0], help="noise x 10 kPa (default 1 2)"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: cores)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the report")
    parser.add_argument(
        "--replay", nargs=2, metavar=("LEVEL", "INDEX"), help="re-run one run, print its trace"
    )
    parser.add_argument(
        "--reseed",
        type=int,
        default=0,
        metavar="N",
        help="with --replay: also run its conditions with plant seeds 0..N-1 at each of --levels",
    )
    args = parser.parse_args(argv)
    if args.replay:
        replay(float(args.replay[0]), int(args.replay[1]), args.reseed, args.levels, args.workers)
        return 0
    jobs = [(level, i) for level in args.levels for i in range(args.runs)]
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        outcomes = list(pool.imap(_job, jobs, chunksize=4))
    wall = time.perf_counter() - t0
    summaries = [summarise(outcomes, level) for level in args.levels]
    if args.json:
        _common.dump_json(
            {
                "benchmark": "false_stops",
                "command": _common.command_line("false_stops", argv),
                "goal_false_stops": 0,
                "wall_s": wall,
                "machine": _common.machine(),
                "summaries": [asdict(s) for s in summaries],
                "flagged_runs": [asdict(o) for o in outcomes if o.false_stop or not o.completed],
                "runs": [
                    {
                        **asdict(o.params),
                        "stops": o.stops,
                        "completed": o.completed,
                        "peak_pa": o.peak_pa,
                        "throttled_s": o.throttled_s,
                        "sim_s": o.sim_s,
                    }
                    for o in outcomes
                ],
            }
        )
    else:
        print_report(outcomes, summaries, wall, args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

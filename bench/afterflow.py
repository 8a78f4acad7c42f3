"""After-flow volume after a stop at 2 MPa, with pressure relief against a plain stop.

    python bench/afterflow.py                  # table
    python bench/afterflow.py --quick          # two seeds
    python bench/afterflow.py --json

Each condition (cement, time since mixing, flow, gauge, optionally a partial occlusion that raises
the line's resistance) is run on the virtual rig with limits raised out of the way (soft 3 MPa,
hard 5 MPa), so the throttle and the detectors do not act before the stop. When the true syringe
pressure crosses 2 MPa the host sends STOP (OPERATOR); the after-flow is the volume out of the
cannula tip (plant truth) from the moment the STOP is sent, read 1 s, 5 s and 60 s later. Every
condition and seed runs twice on identical plants: plan_flags RELIEF (back off until the filtered
pressure is below relief_pa, 200 kPa) and plan_flags NONE (the plunger decelerates and stays).

The compliance of the line (0.05 mL/MPa by default) stores 0.1 mL at 2 MPa: that is what a plain
stop delivers, slowly (power-law outflow at falling pressure); the "left" column is what the line
still stores at 60 s.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass

import _common

from firmware_sim.controller import ControllerConfig
from firmware_sim.plant import PlantConfig
from firmware_sim.plant.events import Occlusion
from firmware_sim.virtual_rig import VirtualRig
from protocol import Ack, EventKind, PlanFlags, Stop, StopSource

GOAL_RELIEF_ML = 0.02
GOAL_RATIO = 0.2
STOP_AT_PA = 2_000_000
SOFT_PA = 3_000_000
HARD_PA = 5_000_000
READ_AT_S = (1.0, 5.0, 60.0)
SEEDS = (0, 1, 2, 3, 4)


@dataclass(frozen=True)
class Condition:
    name: str
    cement: str
    mixed_ago_s: float
    flow_ml_min: float
    gauge: int
    occlusion_factor: float = 1.0
    """A partial occlusion from the start (x the cannula's resistance), to reach 2 MPa."""


CONDITIONS = (
    Condition("low-visc 13G 3 mL/min", "low_viscosity", 300.0, 3.0, 13),
    Condition("high-visc 11G 3 mL/min", "high_viscosity", 180.0, 3.0, 11),
    Condition("high-visc 13G 1 mL/min", "high_viscosity", 180.0, 1.0, 13),
    Condition("low-visc 11G 1 mL/min, partial occl. x4", "low_viscosity", 300.0, 1.0, 11, 4.0),
    Condition("low-visc 11G 3 mL/min, partial occl. x1.9", "low_viscosity", 300.0, 3.0, 11, 1.9),
    Condition("low-visc 11G 6 mL/min, partial occl. x2", "low_viscosity", 300.0, 6.0, 11, 2.0),
    Condition("fast-set 11G 6 mL/min, 7 min", "fast_setting", 420.0, 6.0, 11),
)


@dataclass(frozen=True)
class Run:
    condition: str
    seed: int
    relief: bool
    t_stop_s: float
    """Plant time at which STOP was sent (since the rig started)."""
    pressure_at_stop_pa: float
    stopped_from_steady: bool
    """True if the pressure had levelled off (< 0.1 MPa/s) when it crossed 2 MPa."""
    after_ml: list[float]
    """After-flow at READ_AT_S after the stop."""
    left_in_line_ml: float
    """Volume still stored in the line's compliance at the last reading."""
    relief_done_s: float
    """RELIEF_DONE event time after the stop (NaN without relief)."""


def run_one(cond: Condition, seed: int, relief: bool) -> Run:
    events = [] if cond.occlusion_factor == 1.0 else [Occlusion(factor=cond.occlusion_factor)]
    plant = PlantConfig(
        cement=cond.cement,  # type: ignore[arg-type]
        mixed_ago_s=cond.mixed_ago_s,
        cannula_gauge=cond.gauge,  # type: ignore[arg-type]
        seed=seed,
        events=tuple(events),
    )
    rig = _common.injecting_rig(
        plant,
        ControllerConfig(),
        flow_nl_s=round(cond.flow_ml_min * 1e6 / 60),
        soft_limit_pa=SOFT_PA,
        hard_limit_pa=HARD_PA,
        plan_flags=PlanFlags.RELIEF if relief else PlanFlags.NONE,
    )
    history: list[float] = []

    def crossed(r: VirtualRig) -> bool:
        history.append(r.plant.syringe_pressure_pa)
        return r.plant.syringe_pressure_pa >= STOP_AT_PA or r.controller.state in _common.ENDED

    rig.run(120.0, until=crossed)
    if rig.plant.syringe_pressure_pa < STOP_AT_PA:
        raise RuntimeError(f"{cond.name}: never reached 2 MPa ({rig.controller.state.name})")
    slope = (history[-1] - history[-101]) / 0.1 if len(history) > 100 else float("inf")
    t_stop = rig.plant.t_s
    p_stop = rig.plant.syringe_pressure_pa
    delivered0 = rig.plant.delivered_volume_m3
    events_before = len(rig.events)
    if not isinstance(rig.command(lambda i: Stop(i, StopSource.OPERATOR)), Ack):
        raise RuntimeError("STOP not acknowledged")
    after: list[float] = []
    for at in READ_AT_S:
        rig.run(t_stop + at - rig.plant.t_s)
        after.append((rig.plant.delivered_volume_m3 - delivered0) * 1e6)
    done = [e.t_us / 1e6 - t_stop for e in rig.events[events_before:] if e.kind == EventKind.RELIEF_DONE]
    return Run(
        cond.name,
        seed,
        relief,
        t_stop,
        p_stop,
        abs(slope) < 100_000.0,
        after,
        rig.plant.stored_volume_m3 * 1e6,
        done[0] if done else float("nan"),
    )


def run_pair(job: tuple[Condition, int]) -> tuple[Run, Run]:
    cond, seed = job
    return run_one(cond, seed, True), run_one(cond, seed, False)


@dataclass(frozen=True)
class Row:
    condition: str
    seeds: int
    t_stop_s: float
    from_steady: bool
    relief_ml_max: list[float]
    plain_ml_min: list[float]
    plain_left_ml: float
    ratio_max: float
    """Worst (largest) relief / plain after-flow at 60 s over the seeds."""
    relief_done_s: float
    meets_goal: bool


def summarise(pairs: list[tuple[Run, Run]]) -> list[Row]:
    rows = []
    for cond in CONDITIONS:
        mine = [(a, b) for a, b in pairs if a.condition == cond.name]
        if not mine:
            continue
        relief_max = [max(a.after_ml[i] for a, _ in mine) for i in range(len(READ_AT_S))]
        plain_min = [min(b.after_ml[i] for _, b in mine) for i in range(len(READ_AT_S))]
        ratio = max(a.after_ml[-1] / b.after_ml[-1] for a, b in mine)
        rows.append(
            Row(
                condition=cond.name,
                seeds=len(mine),
                t_stop_s=_common.median([a.t_stop_s for a, _ in mine]),
                from_steady=all(a.stopped_from_steady for a, _ in mine),
                relief_ml_max=relief_max,
                plain_ml_min=plain_min,
                plain_left_ml=max(b.left_in_line_ml for _, b in mine),
                ratio_max=ratio,
                relief_done_s=max(a.relief_done_s for a, _ in mine),
                meets_goal=relief_max[-1] <= GOAL_RELIEF_ML and ratio <= GOAL_RATIO,
            )
        )
    return rows


def print_table(rows: list[Row], wall: float, workers: int) -> None:
    reads = "/".join(f"{t:g}" for t in READ_AT_S)
    print(
        f"after-flow after STOP at {STOP_AT_PA / 1e6:g} MPa (true syringe pressure), tip volume in mL at "
        f"{reads} s; relief: worst seed, plain: smallest seed; {wall:.0f} s wall on {workers} processes"
    )
    print(f"goal: relief <= {GOAL_RELIEF_ML} mL and relief/plain <= {GOAL_RATIO}")
    print(
        f"{'condition':<42} {'seeds':>5} {'t stop s':>8} {'ramp':>4} {'relief mL':>22} {'plain mL':>22} "
        f"{'left':>6} {'ratio':>6} {'relief done s':>13} {'goal':>4}"
    )
    for r in rows:
        relief = "/".join(f"{v:.4f}" for v in r.relief_ml_max)
        plain = "/".join(f"{v:.4f}" for v in r.plain_ml_min)
        print(
            f"{r.condition:<42} {r.seeds:>5} {r.t_stop_s:>8.2f} {'no' if r.from_steady else 'yes':>4} "
            f"{relief:>22} {plain:>22} {r.plain_left_ml:>6.4f} {r.ratio_max:>6.3f} {r.relief_done_s:>13.3f} "
            f"{_common.VERDICT[r.meets_goal]:>4}"
        )
    worst = max(rows, key=lambda r: r.relief_ml_max[-1])
    worst_ratio = max(rows, key=lambda r: r.ratio_max)
    print(
        f"worst with relief: {worst.relief_ml_max[-1]:.4f} mL ({worst.condition}); worst ratio "
        f"{worst_ratio.ratio_max:.3f} ({worst_ratio.condition})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="two seeds instead of five")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: cores)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    seeds = SEEDS[:2] if args.quick else SEEDS
    jobs = list(itertools.product(CONDITIONS, seeds))
    t0 = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(args.workers) as pool:
        pairs = pool.map(run_pair, jobs, chunksize=1)
    wall = time.perf_counter() - t0
    rows = summarise(pairs)
    if args.json:
        _common.dump_json(
            {
                "benchmark": "afterflow",
                "command": _common.command_line("afterflow", argv),
                "goal_relief_ml": GOAL_RELIEF_ML,
                "goal_ratio": GOAL_RATIO,
                "read_at_s": READ_AT_S,
                "wall_s": wall,
                "machine": _common.machine(),
                "rows": [asdict(r) for r in rows],
                "runs": [asdict(r) for pair in pairs for r in pair],
            }
        )
    else:
        print_table(rows, wall, args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

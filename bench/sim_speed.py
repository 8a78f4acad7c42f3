"""Virtual-time speed of controller + plant at a 1 kHz tick, as x real time on one core.

    python bench/sim_speed.py                 # table
    python bench/sim_speed.py --json          # machine-readable
    python bench/sim_speed.py --profile       # cProfile of one pass of the direct loop
    python bench/sim_speed.py --cpu           # CPU time instead of wall time (a shared machine)

Workload: the nominal injection of the virtual rig (low-viscosity cement, 11G, 3 mL/min, sensor
noise on, telemetry at 1 kHz in batches of 20), brought to INJECTING and 2 s into the injection
(not timed), then `--seconds` of simulated time are timed. Every pass starts from a fresh rig in
the same state, so all passes compute exactly the same ticks (checked).

Paths measured (best of --repeats, same run):

- direct: `Controller.tick` + `Plant.sense` + `Plant.step` in a plain loop, a HEARTBEAT frame object
  handed to the controller every 100 ms; the messages it returns are dropped (no codec).
- runtime: `DeviceRuntime.step` over a `LoopbackTransport`: commands decoded, every outgoing
  message encoded and framed; the host side only drains the bytes and injects heartbeat bytes.
- rig: `VirtualRig.run`: the runtime plus the host side, which decodes every frame and keeps the
  telemetry (what integration tests and sweeps use).

Spatial body (issue 14): the same direct loop and plant-alone loop with ``vertebra = "spatial"``
(the grid body with flow, leaks and heat at its default rates), recorded and checked the same way;
`spatial_direct_over_direct` is its cost relative to today's lumped plant in the same run.

Baselines, same run, same ticks: plant alone (`sense` + `step` fed the motor commands recorded from
the direct loop) and controller alone (`tick` fed the recorded sensor frames). Their sum is what the
direct loop should cost; direct / (plant + controller) is the ratio to compare across noisy runs.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import math
import pstats
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import _common

from firmware_sim.controller import Controller, ControllerConfig
from firmware_sim.hal import MotorCommand, SensorFrame
from firmware_sim.plant import Plant, PlantConfig
from firmware_sim.virtual_rig import HEARTBEAT_PERIOD_US, VirtualRig
from protocol import PROTOCOL_VERSION, Frame, Heartbeat, MsgType, State, encode_frame
from protocol.codec import Header, Rejected

_clock = time.perf_counter
"""Wall time by default; `--cpu` makes it the process's CPU time (`time.process_time`), the figure
that survives a machine shared with other jobs (it still counts their cache and memory pressure)."""
GOAL_X_REAL_TIME = 100.0
TICK_US = 1000
WARMUP_S = 2.0
HB_EVERY = HEARTBEAT_PERIOD_US // TICK_US


def fresh_rig(seed: int, spatial: bool = False) -> VirtualRig:
    config = PlantConfig(seed=seed, vertebra="spatial" if spatial else "lumped")
    rig = _common.injecting_rig(config, ControllerConfig())
    rig.run(WARMUP_S)
    if rig.controller.state != State.INJECTING:
        raise RuntimeError(f"nominal run left INJECTING during warm-up: {rig.controller.state.name}")
    return rig


def heartbeat_frame() -> list[Frame | Rejected]:
    return [Frame(Header(PROTOCOL_VERSION, int(MsgType.HEARTBEAT), 0), Heartbeat(uptime_ms=0))]


@dataclass
class Recording:
    sensors: list[SensorFrame]
    motors: list[MotorCommand]
    final: tuple[float, float, float]
    """(controller volume, controller pressure, plant delivered volume) at the end."""
    spatial: bool = False


def _final(ctrl: Controller, plant: Plant) -> tuple[float, float, float]:
    return (ctrl.volume_m3, ctrl.pressure_pa, plant.delivered_volume_m3)


def record(seed: int, ticks: int, spatial: bool = False) -> Recording:
    rig = fresh_rig(seed, spatial)
    ctrl, plant, now = rig.controller, rig.plant, rig.now_us
    hb: list[Frame | Rejected] = heartbeat_frame()
    none: list[Frame | Rejected] = []
    sensors: list[SensorFrame] = []
    motors: list[MotorCommand] = []
    for k in range(ticks):
        s = plant.sense()
        out = ctrl.tick(now, s, hb if k % HB_EVERY == 0 else none, True)
        sensors.append(s)
        motors.append(out.motor)
        plant.step(out.motor, 1e-3)
        now += TICK_US
    if ctrl.state != State.INJECTING:
        raise RuntimeError(f"the timed stretch left INJECTING: {ctrl.state.name}; shorten --seconds")
    return Recording(sensors, motors, _final(ctrl, plant), spatial)


# ---------------------------------------------------------------------------------------------
# the timed loops: each gets a fresh rig and returns (seconds, final state for the check)
# ---------------------------------------------------------------------------------------------

Pass = Callable[[int, Recording], tuple[float, tuple[float, float, float] | None]]


def pass_direct(seed: int, rec: Recording) -> tuple[float, tuple[float, float, float] | None]:
    rig = fresh_rig(seed, rec.spatial)
    ctrl, plant, now = rig.controller, rig.plant, rig.now_us
    tick, sense, step = ctrl.tick, plant.sense, plant.step
    hb: list[Frame | Rejected] = heartbeat_frame()
    none: list[Frame | Rejected] = []
    n = len(rec.motors)
    t0 = _clock()
    for k in range(n):
        out = tick(now, sense(), hb if k % HB_EVERY == 0 else none, True)
        step(out.motor, 1e-3)
        now += TICK_US
    dt = _clock() - t0
    return dt, _final(ctrl, plant)


def pass_controller(seed: int, rec: Recording) -> tuple[float, tuple[float, float, float] | None]:
    rig = fresh_rig(seed, rec.spatial)
    ctrl, now = rig.controller, rig.now_us
    tick = ctrl.tick
    hb: list[Frame | Rejected] = heartbeat_frame()
    none: list[Frame | Rejected] = []
    t0 = _clock()
    for k, s in enumerate(rec.sensors):
        tick(now, s, hb if k % HB_EVERY == 0 else none, True)
        now += TICK_US
    dt = _clock() - t0
    return dt, (ctrl.volume_m3, ctrl.pressure_pa, rec.final[2])


def pass_plant(seed: int, rec: Recording) -> tuple[float, tuple[float, float, float] | None]:
    rig = fresh_rig(seed, rec.spatial)
    plant = rig.plant
    sense, step = plant.sense, plant.step
    t0 = _clock()
    for m in rec.motors:
        sense()
        step(m, 1e-3)
    dt = _clock() - t0
    return dt, (rec.final[0], rec.final[1], plant.delivered_volume_m3)


def pass_runtime(seed: int, rec: Recording) -> tuple[float, tuple[float, float, float] | None]:
    rig = fresh_rig(seed, rec.spatial)
    runtime, link = rig.runtime, rig.link
    hb_bytes = encode_frame(Heartbeat(uptime_ms=0), 0)
    n = len(rec.motors)
    step = runtime.step
    t0 = _clock()
    for k in range(n):
        if k % HB_EVERY == 0:
            link.to_device(hb_bytes)
        step()
        link.take_from_device()
    dt = _clock() - t0
    return dt, _final(rig.controller, rig.plant)


def pass_rig(seed: int, rec: Recording) -> tuple[float, tuple[float, float, float] | None]:
    rig = fresh_rig(seed, rec.spatial)
    seconds = len(rec.motors) * TICK_US / 1e6
    t0 = _clock()
    rig.run(seconds)
    dt = _clock() - t0
    return dt, _final(rig.controller, rig.plant)


PASSES: dict[str, tuple[Pass, str]] = {
    "direct": (pass_direct, "controller.tick + plant.sense/step, no codec"),
    "runtime": (pass_runtime, "DeviceRuntime.step over loopback: device codec, host drains"),
    "rig": (pass_rig, "VirtualRig.run: runtime + host decode + telemetry kept"),
    "plant": (pass_plant, "baseline: plant alone, recorded motor commands"),
    "controller": (pass_controller, "baseline: controller alone, recorded sensor frames"),
}


@dataclass(frozen=True)
class Row:
    path: str
    what: str
    best_s: float
    us_per_tick: float
    x_real_time: float
    meets_goal: bool | None


def best_of(fn: Pass, seed: int, rec: Recording, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        gc.collect()
        dt, final = fn(seed, rec)
        best = min(best, dt)
        if final is not None and final != rec.final:
            raise RuntimeError(f"{fn.__name__} did not reproduce the recorded run: {final} != {rec.final}")
    return best


def measure(seconds: float, repeats: int, seed: int) -> tuple[list[Row], dict[str, float]]:
    ticks = round(seconds * 1e6 / TICK_US)
    rec = record(seed, ticks)
    rows = []
    best: dict[str, float] = {}
    for name, (fn, what) in PASSES.items():
        dt = best_of(fn, seed, rec, repeats)
        best[name] = dt
        x = seconds / dt
        goal = x >= GOAL_X_REAL_TIME if name in ("direct", "runtime", "rig") else None
        rows.append(Row(name, what, dt, dt / ticks * 1e6, x, goal))
    spatial_rec = record(seed, ticks, spatial=True)
    for name, fn, what in (
        ("direct_spatial", pass_direct, "controller.tick + plant.sense/step, spatial body"),
        ("rig_spatial", pass_rig, "VirtualRig.run with the spatial body: runtime + host decode"),
        ("plant_spatial", pass_plant, "plant alone with the spatial body, recorded motor commands"),
    ):
        dt = best_of(fn, seed, spatial_rec, repeats)
        best[name] = dt
        x = seconds / dt
        rows.append(
            Row(
                name,
                what,
                dt,
                dt / ticks * 1e6,
                x,
                x >= GOAL_X_REAL_TIME if name in ("direct_spatial", "rig_spatial") else None,
            )
        )
    ratios = {
        "spatial_direct_over_direct": best["direct_spatial"] / best["direct"],
        "spatial_plant_over_plant": best["plant_spatial"] / best["plant"],
        "direct_over_plant_plus_controller": best["direct"] / (best["plant"] + best["controller"]),
        "runtime_over_direct": best["runtime"] / best["direct"],
        "rig_over_direct": best["rig"] / best["direct"],
        "controller_share_of_parts": best["controller"] / (best["plant"] + best["controller"]),
    }
    return rows, ratios


def profile(seconds: float, seed: int) -> None:
    rec = record(seed, round(seconds * 1e6 / TICK_US))
    prof = cProfile.Profile()
    prof.enable()
    pass_direct(seed, rec)
    prof.disable()
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="simulated seconds timed (default 20)")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many passes (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="plant seed (sensor noise) (default 0)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--profile", action="store_true", help="cProfile one direct pass and exit")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time with the process's CPU time instead of the wall clock (a shared, loaded machine)",
    )
    args = parser.parse_args(argv)
    global _clock
    if args.cpu:
        _clock = time.process_time
    if not 0 < args.seconds <= 30:
        parser.error("--seconds must be in (0, 30]: the nominal 2 mL plan ends at ~40 s")
    if args.profile:
        profile(args.seconds, args.seed)
        return 0
    rows, ratios = measure(args.seconds, args.repeats, args.seed)
    if args.json:
        _common.dump_json(
            {
                "benchmark": "sim_speed",
                "command": _common.command_line("sim_speed", argv),
                "goal_x_real_time": GOAL_X_REAL_TIME,
                "seconds": args.seconds,
                "repeats": args.repeats,
                "clock": "process_time" if args.cpu else "perf_counter",
                "machine": _common.machine(),
                "rows": [asdict(r) for r in rows],
                "ratios": ratios,
            }
        )
        return 0
    print(
        f"controller + plant in virtual time, 1 kHz tick, nominal injection, {args.seconds:g} s simulated, "
        f"best of {args.repeats}{', CPU time' if args.cpu else ''}; goal >= {GOAL_X_REAL_TIME:.0f}x real time"
    )
    print(f"{'path':<15} {'us/tick':>8} {'x real time':>12} {'goal':>5}  what")
    for r in rows:
        goal = "" if r.meets_goal is None else _common.VERDICT[r.meets_goal]
        print(f"{r.path:<15} {r.us_per_tick:>8.2f} {r.x_real_time:>12.0f} {goal:>5}  {r.what}")
    print()
    print(f"direct / (plant + controller) = {ratios['direct_over_plant_plus_controller']:.2f}")
    print(
        f"runtime / direct = {ratios['runtime_over_direct']:.2f}, "
        f"rig / direct = {ratios['rig_over_direct']:.2f}"
    )
    print(f"controller share of plant + controller = {ratios['controller_share_of_parts']:.0%}")
    print(
        f"spatial body: direct_spatial / direct = {ratios['spatial_direct_over_direct']:.2f}, "
        f"plant_spatial / plant = {ratios['spatial_plant_over_plant']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Figures of the controller core quoted in docs/controller.md, measured on the fake plant.

    .venv/bin/python -m tests.controller.measure [--runs 500]

Not a test: timings are measured, never asserted (docs/design.md). Prints the tick cost, the false-stop
count over nominal noisy runs, occlusion detection against a plain threshold, and after-flow.
"""

from __future__ import annotations

import argparse
import time

from firmware_sim.controller import ControllerConfig
from firmware_sim.hal import MotorCommand
from protocol import Heartbeat, PlanFlags, State, Stop, StopSource
from tests.controller.fakeplant import FakePlant
from tests.controller.harness import DT, frame, nominal_run, started, with_config


def tick_cost(ticks: int = 3000, repeats: int = 5) -> tuple[float, float]:
    """us per tick of the controller alone in INJECTING, telemetry at 1 kHz, no commands; and of
    the loop with the fake plant. Best of `repeats`; the plant's own cost is subtracted."""
    rig = started(plant=FakePlant(position_m=0.001), seconds=1.0, volume_limit_nl=2_400_000)
    c, plant = rig.c, rig.plant
    tick, sense, step = c.tick, plant.sense, plant.step
    heartbeat = [frame(Heartbeat(uptime_ms=0))]
    none: list[object] = []
    now = rig.now_us
    loop = plant_only = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(ticks):
            out = tick(now, sense(), heartbeat if i % 100 == 0 else none, True)  # type: ignore[arg-type]
            step(out.motor, DT)
            now += 1000
        loop = min(loop, (time.perf_counter() - t0) / ticks * 1e6)
        cmd = MotorCommand(c.step_rate_hz)
        alone = FakePlant(position_m=0.001)
        t0 = time.perf_counter()
        for _ in range(ticks):
            alone.sense()
            alone.step(cmd, DT)
        plant_only = min(plant_only, (time.perf_counter() - t0) / ticks * 1e6)
    assert c.state == State.INJECTING, (c.state, c.stop_reason)
    return loop - plant_only, loop


def false_stops(runs: int) -> list[tuple[int, str]]:
    out = []
    for seed in range(runs):
        rig = nominal_run(seed)
        if rig.c.state == State.STOPPED:
            out.append((seed, rig.c.stop_reason.name))
    return out


def occlusion(flow_nl_s: int, seed: int = 11) -> tuple[float, float]:
    """Seconds from blocking the cannula to the stop: PRESSURE_RISE, and a plain hard threshold."""
    times = []
    for config in (ControllerConfig(), with_config(rise_enabled=False, throttle_enabled=False)):
        rig = started(config=config, plant=FakePlant(seed=seed), seconds=3.0, flow_nl_s=flow_nl_s)
        rig.plant.occluded = True
        t0 = rig.now_us
        rig.run_until_state(State.STOPPED, seconds=20.0)
        times.append((rig.now_us - t0) / 1e6)
    return times[0], times[1]


def after_flow(flow_nl_s: int) -> tuple[float, float]:
    """uL delivered after a STOP at 2 MPa: with relief, and a plain stop."""
    viscosity = 2.0e6 / (flow_nl_s * 1e-12) * 6.385e-12
    out = []
    for relief in (True, False):
        plant = FakePlant(viscosity_pas=viscosity)
        flags = PlanFlags.RELIEF if relief else PlanFlags.NONE
        rig = started(
            plant=plant, seconds=6.0, flow_nl_s=flow_nl_s, soft_limit_pa=3_000_000, plan_flags=flags
        )
        before = plant.outflow_m3
        rig.ok(lambda i: Stop(i, StopSource.OPERATOR))
        rig.run(5.0)
        out.append((plant.outflow_m3 - before) * 1e9)
    return out[0], out[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=500, help="nominal runs for the false-stop count")
    args = parser.parse_args()
    controller_us, loop_us = tick_cost()
    print(
        f"tick cost, INJECTING, 1 kHz telemetry: controller {controller_us:.2f} us/tick, "
        f"with the fake plant {loop_us:.2f} us/tick"
    )
    for flow in (100_000, 30_000):
        rise, plain = occlusion(flow)
        print(
            f"occlusion at {flow} nL/s: PRESSURE_RISE {rise * 1e3:.0f} ms, "
            f"plain threshold {plain * 1e3:.0f} ms, ratio {rise / plain:.3f}"
        )
    for flow in (60_000, 100_000):
        relief, plain = after_flow(flow)
        print(
            f"after-flow, stop at 2 MPa, {flow} nL/s: relief {relief:.1f} uL, plain {plain:.1f} uL, "
            f"ratio {relief / plain:.2f}"
        )
    bad = false_stops(args.runs)
    print(f"false stops: {len(bad)} in {args.runs} nominal runs {bad if bad else ''}")


if __name__ == "__main__":
    main()

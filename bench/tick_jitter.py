"""Real-time tick jitter of the simulator runtime: lateness of each 1 kHz tick against its schedule.

    python bench/tick_jitter.py                        # 30 s loopback run + 30 s baseline
    python bench/tick_jitter.py --seconds 10 --json
    python bench/tick_jitter.py --transport pty        # a host process on a real pty

`DeviceRuntime.run_realtime` runs a nominal injection (3 mL/min, telemetry at 1 kHz) so that every
tick does real work (sensor sample, detectors, throttle, telemetry batching and encoding, plant
integration). Lateness is what the runtime itself records (`runtime.stats.lateness_us`: wall time
at which tick k starts minus start + k ms), over the injecting stretch only.

Transports:
- loopback: `LoopbackTransport`; the host's part (a HEARTBEAT every 100 ms, draining the device's
  bytes) runs in the `should_stop` callback between ticks, in the same thread.
- pty: `PtyTransport`; a separate host process (this script with --host-for) opens the pty, sends
  HELLO, ARM, START and heartbeats, and reads everything the device writes.

Baseline, same run: a bare loop that sleeps to the same 1 ms schedule with the same code as
`run_realtime` and does no work: the OS scheduler and `time.sleep` granularity alone. The diagnosis
columns say where lateness comes from: the work of the tick itself (timed around `runtime.step`) and
the garbage collector (timed with `gc.callbacks`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import select
import subprocess
import sys
import time
import tty
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import _common

from firmware_sim.controller import Controller, ControllerConfig, FirmwareIdentity
from firmware_sim.device import DeviceRuntime, PtyTransport, TickStats
from firmware_sim.device.runtime import TICK_US
from firmware_sim.plant import Plant, PlantConfig
from firmware_sim.virtual_rig import HEARTBEAT_PERIOD_US, NOMINAL_PLAN
from protocol import PROTOCOL_VERSION, Arm, Heartbeat, Hello, Start, State, encode_frame

GOAL_P99_US = 1000
QS = (0.5, 0.99, 0.999)


@dataclass
class GcLog:
    """Durations of garbage collections while enabled, per generation."""

    durations_us: dict[int, list[float]] = field(default_factory=lambda: {0: [], 1: [], 2: []})
    stats_at_start: list[dict[str, int]] = field(default_factory=list)
    stats_at_end: list[dict[str, int]] = field(default_factory=list)
    """`gc.get_stats()` when logging started and ended: a cross-check of the callback counts."""
    _t0: int = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter_ns()
        else:
            self.durations_us[info["generation"]].append((time.perf_counter_ns() - self._t0) / 1000)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for gen, d in self.durations_us.items():
            runs = len(d)
            if self.stats_at_end:
                runs = self.stats_at_end[gen]["collections"] - self.stats_at_start[gen]["collections"]
            out[f"gen{gen}"] = {
                "count": len(d),
                "collections_get_stats": runs,
                "max_us": max(d) if d else 0.0,
                "total_ms": sum(d) / 1000,
            }
        return out


@dataclass(frozen=True)
class Result:
    name: str
    ticks: int
    p50_us: float
    p99_us: float
    p999_us: float
    max_us: float
    over_1ms: int
    """Ticks that started more than one period late (the runtime's `overruns`)."""
    meets_goal: bool | None
    work_p50_us: float | None = None
    work_p99_us: float | None = None
    work_max_us: float | None = None
    gc: dict[str, Any] | None = None


def summarise(
    name: str,
    lateness: list[int],
    goal: bool,
    work_ns: list[int] | None = None,
    gc_log: GcLog | None = None,
) -> Result:
    p50, p99, p999 = _common.quantiles(lateness, QS)
    work = _common.quantiles([w / 1000 for w in work_ns], (0.5, 0.99, 1.0)) if work_ns else [None] * 3
    return Result(
        name=name,
        ticks=len(lateness),
        p50_us=p50,
        p99_us=p99,
        p999_us=p999,
        max_us=float(max(lateness)),
        over_1ms=sum(1 for x in lateness if x > TICK_US),
        meets_goal=p99 <= GOAL_P99_US if goal else None,
        work_p50_us=work[0],
        work_p99_us=work[1],
        work_max_us=work[2],
        gc=gc_log.summary() if gc_log is not None else None,
    )


# ---------------------------------------------------------------------------------------------
# baseline: the run_realtime schedule, no work
# ---------------------------------------------------------------------------------------------


def bare_loop(seconds: float) -> list[int]:
    """Same schedule code as DeviceRuntime.run_realtime, the tick replaced by nothing."""
    period_ns = TICK_US * 1000
    n = round(seconds * 1e6 / TICK_US)
    lateness = [0] * n
    start = time.monotonic_ns()
    for k in range(n):
        due = start + k * period_ns
        now = time.monotonic_ns()
        if now < due:
            time.sleep((due - now) / 1e9)
            now = time.monotonic_ns()
        lateness[k] = (now - due) // 1000
    return lateness


# ---------------------------------------------------------------------------------------------
# the runtime under test
# ---------------------------------------------------------------------------------------------


def plan_fields(plant: PlantConfig, seconds: float) -> dict[str, Any]:
    """NOMINAL_PLAN, with a flow low enough that the 2 mL injection outlasts the measurement."""
    flow = min(int(NOMINAL_PLAN["flow_nl_s"]), int(0.85 * NOMINAL_PLAN["volume_limit_nl"] / (seconds + 2)))
    return {
        **NOMINAL_PLAN,
        "mode": int(NOMINAL_PLAN["mode"]),
        "plan_flags": int(NOMINAL_PLAN["plan_flags"]),
        "flow_nl_s": flow,
        "mixed_ago_ms": round(plant.mixed_ago_s * 1000),
    }


def make_runtime(transport: Any, seed: int) -> tuple[DeviceRuntime, Controller, PlantConfig]:
    config = PlantConfig(seed=seed)
    controller = Controller(ControllerConfig(), identity=FirmwareIdentity.simulator("JITTER-1"))
    runtime = DeviceRuntime(controller, Plant(config), transport)
    return runtime, controller, config


def instrument(runtime: DeviceRuntime) -> list[int]:
    """Time every runtime.step (shadowing the method on the instance); returns the list it fills."""
    work: list[int] = []
    step = runtime.step
    clock = time.perf_counter_ns

    def timed_step() -> None:
        t0 = clock()
        step()
        work.append(clock() - t0)

    runtime.step = timed_step  # type: ignore[method-assign]
    return work


def run_measured(
    runtime: DeviceRuntime,
    controller: Controller,
    seconds: float,
    host_work: Callable[[], None],
    setup_timeout_s: float = 5.0,
) -> tuple[list[int], list[int], GcLog, int]:
    """run_realtime until `seconds` after the controller entered INJECTING. Lateness and work are
    kept from that moment on only. Returns (lateness, work ns, gc log, injecting ticks)."""
    work = instrument(runtime)
    gc_log = GcLog()
    state: dict[str, Any] = {"t_inj": None, "work_from": 0}
    t_begin = time.monotonic()

    def should_stop() -> bool:
        host_work()
        now = time.monotonic()
        if state["t_inj"] is None:
            if controller.state == State.INJECTING:
                state["t_inj"] = now
                runtime.stats = TickStats()
                state["work_from"] = len(work)
                gc_log.stats_at_start = gc.get_stats()
                gc.callbacks.append(gc_log)
            return now - t_begin > setup_timeout_s
        if controller.state != State.INJECTING:
            raise RuntimeError(f"injection ended during the measurement: {controller.stop_reason.name}")
        return bool(now - state["t_inj"] >= seconds)

    try:
        runtime.run_realtime(should_stop)
    finally:
        if gc_log in gc.callbacks:
            gc.callbacks.remove(gc_log)
            gc_log.stats_at_end = gc.get_stats()
    if state["t_inj"] is None:
        raise RuntimeError("the controller never reached INJECTING")
    stats = runtime.stats
    if stats.ticks > len(stats.lateness_us):
        raise RuntimeError("the lateness ring wrapped: shorten --seconds")
    return list(stats.lateness_us), work[state["work_from"] :], gc_log, stats.ticks


def run_loopback(seconds: float, seed: int) -> Result:
    from firmware_sim.device.loopback import LoopbackTransport

    link = LoopbackTransport()
    runtime, controller, config = make_runtime(link, seed)
    plan = plan_fields(config, seconds)
    script = [Hello(1, PROTOCOL_VERSION), Arm(cmd_id=2, **plan), Start(3)]
    seq = [0]
    clock: dict[str, int] = {"tick": 0}

    def send(message: Any) -> None:
        link.to_device(encode_frame(message, seq[0]))
        seq[0] = (seq[0] + 1) & 0xFFFF

    def host_work() -> None:
        k = clock["tick"]
        clock["tick"] = k + 1
        if k < 3 * 20 and k % 20 == 0:  # HELLO, ARM, START 20 ms apart
            send(script[k // 20])
        if k % (HEARTBEAT_PERIOD_US // TICK_US) == 0:
            send(Heartbeat(uptime_ms=k))
        link.take_from_device()

    lateness, work, gc_log, _ = run_measured(runtime, controller, seconds, host_work)
    return summarise("runtime, loopback", lateness, True, work, gc_log)


def run_pty(seconds: float, seed: int) -> Result:
    pty = PtyTransport()
    runtime, controller, config = make_runtime(pty, seed)
    plan = plan_fields(config, seconds)
    host = subprocess.Popen(
        [sys.executable, __file__, "--host-for", pty.address, "--plan", json.dumps(plan)],
        stdout=subprocess.DEVNULL,
    )
    try:
        if not runtime.wait_for_host(lambda: host.poll() is not None or False):
            raise RuntimeError("the host process exited before it opened the pty")
        lateness, work, gc_log, _ = run_measured(runtime, controller, seconds, lambda: None)
    finally:
        host.terminate()
        host.wait(timeout=5)
        pty.close()
    return summarise("runtime, pty + host process", lateness, True, work, gc_log)


def host_process(path: str, plan_json: str) -> int:
    """The host side for --transport pty: HELLO, ARM, START, then heartbeats; reads everything."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    plan = json.loads(plan_json)
    seq = 0

    def send(message: Any) -> None:
        nonlocal seq
        os.write(fd, encode_frame(message, seq))
        seq = (seq + 1) & 0xFFFF

    script = [Hello(1, PROTOCOL_VERSION), Arm(cmd_id=2, **plan), Start(3)]
    t0 = time.monotonic()
    next_hb = t0
    sent = 0
    while True:
        now = time.monotonic()
        if sent < len(script) and now - t0 >= 0.05 * (sent + 1):
            send(script[sent])
            sent += 1
        if now >= next_hb:
            send(Heartbeat(uptime_ms=int((now - t0) * 1000)))
            next_hb += HEARTBEAT_PERIOD_US / 1e6
        ready, _, _ = select.select([fd], [], [], 0.01)
        if ready:
            try:
                os.read(fd, 65536)
            except OSError:
                return 0


# ---------------------------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------------------------


def print_table(results: list[Result], seconds: float, baseline_s: float) -> None:
    print(
        f"real-time tick jitter at 1 kHz: lateness of tick start vs schedule, {seconds:g} s injecting "
        f"(baseline {baseline_s:g} s); goal p99 <= {GOAL_P99_US} us"
    )
    print(
        f"{'loop':<28} {'ticks':>6} {'p50 us':>7} {'p99 us':>7} {'p99.9 us':>9} {'max us':>8} {'>1 ms':>6} "
        f"{'goal':>5} {'work p50/p99/max us':>21}"
    )
    for r in results:
        goal = "" if r.meets_goal is None else _common.VERDICT[r.meets_goal]
        work = (
            f"{r.work_p50_us:.0f}/{r.work_p99_us:.0f}/{r.work_max_us:.0f}"
            if r.work_p50_us is not None
            else "-"
        )
        print(
            f"{r.name:<28} {r.ticks:>6} {r.p50_us:>7.0f} {r.p99_us:>7.0f} {r.p999_us:>9.0f} {r.max_us:>8.0f} "
            f"{r.over_1ms:>6} {goal:>5} {work:>21}"
        )
    for r in results:
        if r.gc:
            parts = [
                f"{gen}: {v['count']} runs ({v['collections_get_stats']} per gc.get_stats), "
                f"max {v['max_us']:.0f} us, total {v['total_ms']:.1f} ms"
                for gen, v in r.gc.items()
            ]
            print(f"gc during '{r.name}': " + "; ".join(parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="injecting seconds measured (default 30)")
    parser.add_argument(
        "--baseline-seconds", type=float, default=None, help="bare loop seconds (default: same)"
    )
    parser.add_argument("--transport", choices=["loopback", "pty", "both"], default="loopback")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--host-for", help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.host_for:
        return host_process(args.host_for, args.plan)
    if not 0 < args.seconds <= 60:
        parser.error("--seconds must be in (0, 60] (the runtime keeps 65,536 lateness samples)")
    baseline_s = args.seconds if args.baseline_seconds is None else args.baseline_seconds
    results = [summarise("baseline: bare sleep loop", bare_loop(baseline_s), False)]
    if args.transport in ("loopback", "both"):
        results.append(run_loopback(args.seconds, args.seed))
    if args.transport in ("pty", "both"):
        results.append(run_pty(args.seconds, args.seed))
    if args.json:
        _common.dump_json(
            {
                "benchmark": "tick_jitter",
                "command": _common.command_line("tick_jitter", argv),
                "goal_p99_us": GOAL_P99_US,
                "seconds": args.seconds,
                "baseline_seconds": baseline_s,
                "gc_enabled_during_run": gc.isenabled(),
                "machine": _common.machine(),
                "results": [asdict(r) for r in results],
            }
        )
    else:
        print_table(results, args.seconds, baseline_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

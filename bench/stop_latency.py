"""Host STOP -> STOPPED event round trip over a pty against `cementguard sim --pty`, with baselines.

    python bench/stop_latency.py                  # 1000 cycles (about 20 s), table
    python bench/stop_latency.py --random-phase   # STOP at a random point of the device's 1 ms tick
    python bench/stop_latency.py --cycles 200 --json

The simulator runs in its own process on a pseudo-terminal, in real time at its 1 kHz tick, streaming
1 kHz telemetry (20 samples per batch), exactly as `cementguard sim --pty` serves a host. The host side
is `host.client.DeviceClient`. Each cycle: ARM (continuous, no relief), GET_STATUS (the baseline), START,
wait for a telemetry batch that shows the plunger moving, STOP, wait for the STOP event, CLEAR.

Tick phase: the device applies a command in the first tick after its last byte arrives. By default the
STOP is written as soon as a telemetry batch has been read, i.e. just after a device tick, so it waits
almost a whole tick: the slow end of the 0-1 ms tick wait, a conservative figure. With
--random-phase the host first spins for a uniformly random 0-1 ms (a busy wait: asyncio sleeps have
millisecond granularity), so STOPs land at every point of the tick, as an operator's would.

Measured per STOP, all from `time.perf_counter()` taken just before `await ctl.stop()` (the link writes
the frame synchronously inside that call, before its first suspension):

- **event read**: until the bytes carrying EVENT{STOP} were read from the port (the link stamps each
  chunk it reads; `Subscription.received_at`). This is the figure of the docs/design.md goal.
- **event delivered**: until the consumer's `await events.get()` returned it (adds the asyncio wake-up).
- **ACK**: until `await ctl.stop()` returned (ACK read and the caller resumed).

Baselines, same run, same machine load:

- **GET_STATUS -> STATUS**: `await ctl.get_status()` round trip through the same link, pty and
  simulator tick; the floor a STOP cannot beat with this device (a command is applied in the tick
  after it arrives: up to 1 ms of waiting, 0.5 ms on average).
- **pty echo**: a 12-byte frame written to a pty and echoed back by a process doing nothing else; the
  transport floor (two pty hops, two process wake-ups), without the protocol or the tick.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import _common
import serial_asyncio_fast

from host.client import DeviceClient
from protocol import Arm, Event, EventKind, Mode, PlanFlags, State, StopReason, encode_frame
from protocol.messages import Heartbeat

REPO = Path(__file__).resolve().parents[1]
GOAL_P99_MS = 5.0
PLAN = Arm(
    cmd_id=0,
    mode=Mode.CONTINUOUS,
    plan_flags=PlanFlags.NONE,  # no relief: CLEAR is accepted as soon as the plunger is still
    flow_nl_s=10_000,  # 0.6 mL/min: ~1000 short runs move the plunger only a few mm in total
    increment_nl=0,
    volume_limit_nl=1_000_000,
    soft_limit_pa=2_500_000,
    hard_limit_pa=4_000_000,
    relief_pa=200_000,
    mixed_ago_ms=300_000,
    working_time_ms=1_200_000,
    viscosity_min_pas=0.0,
    viscosity_max_pas=1_000_000.0,
    cannula_length_um=125_000,
    cannula_id_um=2388,
    syringe_bore_um=7290,
)


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    return _common.start_simulator("BENCH-STOP")


def stop_process(proc: subprocess.Popen[Any]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def stop_cycles(path: str, cycles: int, random_phase: bool) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"event_read": [], "event_delivered": [], "ack": [], "get_status": []}
    async with DeviceClient.open(path) as ctl:
        events, telemetry = ctl.events(), ctl.telemetry()
        for _ in range(cycles):
            await ctl.arm(PLAN)
            t0 = time.perf_counter()
            await ctl.get_status()
            out["get_status"].append(time.perf_counter() - t0)
            await ctl.start()
            while True:  # until a batch shows the plunger moving forward
                batch = await telemetry.get(timeout=2)
                last = batch.samples[-1]
                if int(last["state"]) == State.INJECTING and int(last["motor_um_s"]) > 0:
                    break
            if random_phase:
                spin(random.uniform(0.0, 0.001))
            t0 = time.perf_counter()
            await ctl.stop()
            t_ack = time.perf_counter()
            while True:
                event: Event = await events.get(timeout=2)
                if event.kind == EventKind.STOP:
                    break
            t_delivered = time.perf_counter()
            if event.reason != StopReason.OPERATOR_STOP:
                raise SystemExit(f"unexpected stop: {event}")
            assert events.received_at is not None
            out["ack"].append(t_ack - t0)
            out["event_read"].append(events.received_at - t0)
            out["event_delivered"].append(t_delivered - t0)
            await _common.clear_at_rest(ctl)
        counters = ctl.counters
    if counters.framing_errors or counters.retries or counters.link_losses:
        raise SystemExit(f"the link was not clean during the run: {counters}")
    return out


ECHO = textwrap.dedent(
    """
    import os, select, sys, tty
    master, slave = os.openpty()
    tty.setraw(slave)
    print(os.ttyname(slave), flush=True)
    os.close(slave)
    while True:
        select.select([master], [], [])
        try:
            data = os.read(master, 4096)
        except OSError:
            continue  # no one has the slave open yet
        os.write(master, data)
    """
)


def start_echo() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", ECHO], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


async def pty_echo(path: str, n: int) -> list[float]:
    reader, writer = await serial_asyncio_fast.open_serial_connection(url=path)
    frame = encode_frame(Heartbeat(uptime_ms=1), 0)
    out: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        writer.write(frame)
        await reader.readexactly(len(frame))
        out.append(time.perf_counter() - t0)
    writer.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cycles", type=int, default=1000, help="ARM/START/STOP/CLEAR cycles (default %(default)s)"
    )
    parser.add_argument(
        "--random-phase", action="store_true", help="send each STOP at a random point of the device tick"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    proc, path = start_simulator()
    try:
        t0 = time.monotonic()
        results = asyncio.run(stop_cycles(path, args.cycles, args.random_phase))
        wall = time.monotonic() - t0
    finally:
        stop_process(proc)
    echo, echo_path = start_echo()
    try:
        results["pty_echo"] = asyncio.run(pty_echo(echo_path, args.cycles))
    finally:
        stop_process(echo)

    rows = {name: _common.latency_summary(values) for name, values in results.items()}
    meets = rows["event_read"]["p99_ms"] <= GOAL_P99_MS
    doc = {
        "benchmark": "stop_latency",
        "command": _common.command_line("stop_latency", argv),
        "machine": _common.machine(),
        "cycles": args.cycles,
        "random_phase": args.random_phase,
        "wall_s": wall,
        "load_avg_1min_before_after": [load_before, os.getloadavg()[0]],
        "goal_p99_ms": GOAL_P99_MS,
        "meets_goal": meets,
        "rows": rows,
    }
    if args.json:
        _common.dump_json(doc)
        return 0
    labels = {
        "event_read": "STOP -> EVENT STOP read (goal)",
        "event_delivered": "STOP -> EVENT STOP delivered",
        "ack": "STOP -> ACK, call returned",
        "get_status": "baseline: GET_STATUS -> STATUS",
        "pty_echo": "baseline: pty echo, 12 bytes",
    }
    phase = "random tick phase" if args.random_phase else "STOP just after a device tick"
    print(
        f"host STOP latency over a pty, {args.cycles} cycles in {wall:.1f} s ({phase}); "
        f"goal p99 <= {GOAL_P99_MS} ms; 1-min load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after on {os.cpu_count()} CPUs"
    )
    print(f"{'what':<34} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8}")
    for key, label in labels.items():
        r = rows[key]
        print(
            f"{label:<34} {r['n']:>6.0f} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
            f"{r['max_ms']:>8.3f} {r['mean_ms']:>8.3f}"
        )
    print(f"goal: {_common.VERDICT[meets]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

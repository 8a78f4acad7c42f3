"""`cementguard stop` from a second terminal: wall time from starting the process to STOPPED.

    python bench/stop_first.py                 # 20 stops each way (about 30 s), table
    python bench/stop_first.py --stops 5 --json

Against `cementguard sim --pty` (real time, 1 kHz tick). Two ways, as an operator meets them:

- **through the endpoint**: this process holds the port like `cementguard run` does (a DeviceClient and
  `serve_control`), ARMs and STARTs a continuous plan (no relief) so the pump is injecting, then
  starts `cementguard stop --port P` as a new process. Measured from just before the process is
  started (`time.perf_counter()`) to the moment the bytes carrying the device's EVENT STOP were read
  by the holding session (`Subscription.received_at`: same process, same clock), and to the stop
  process's exit. Then CLEAR, and again.
- **directly**: nothing holds the port; the pump was ARMED by a session that then closed. `cementguard
  stop` opens the port, sends STOP before anything else (no handshake), and prints the state from
  its ACK. Measured from just before the process is started to the moment its line "STOP
  acknowledged ... state STOPPED" was read from its stdout, and to its exit.

Baseline, same run: `python -c 'import serial'` (the interpreter's start-up and the one library no
stop can do without), start to exit. The goal (docs/design.md): at most 250 ms from process start to
STOPPED on this machine; the ratio to the baseline says how much of it is ours.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common

from host.client import DeviceClient
from host.control import serve_control
from protocol import Arm, EventKind, Mode, PlanFlags, State, StopReason

REPO = Path(__file__).resolve().parents[1]
GOAL_MS = 250.0
PLAN = Arm(
    cmd_id=0,
    mode=Mode.CONTINUOUS,
    plan_flags=PlanFlags.NONE,  # no relief: CLEAR is accepted as soon as the plunger is still
    flow_nl_s=50_000,
    increment_nl=0,
    volume_limit_nl=2_000_000,
    soft_limit_pa=2_500_000,
    hard_limit_pa=4_000_000,
    relief_pa=200_000,
    mixed_ago_ms=240_000,
    working_time_ms=1_200_000,
    viscosity_min_pas=1.0,
    viscosity_max_pas=100_000.0,
    cannula_length_um=125_000,
    cannula_id_um=2388,
    syringe_bore_um=7290,
)


def _cementguard() -> list[str]:
    """The console script a bench engineer types, from this interpreter's environment."""
    script = Path(sys.executable).parent / "cementguard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "host.cli"]


async def _clear(ctl: DeviceClient) -> None:
    while True:
        state = (await ctl.get_status()).state
        if state in (State.IDLE,):
            return
        try:
            await ctl.clear()
            return
        except Exception:  # BUSY while the plunger brakes: try again shortly
            await asyncio.sleep(0.02)


async def through_endpoint(port: str, stops: int, env: dict[str, str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"endpoint_event": [], "endpoint_exit": []}
    async with DeviceClient.open(port) as ctl, serve_control(ctl), ctl.events() as events:
        for _ in range(stops):
            await _clear(ctl)
            await ctl.arm(PLAN)
            await ctl.start()
            await ctl.wait_for_state(State.INJECTING, timeout=2)
            while events.get_nowait() is not None:
                pass
            t0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                *_cementguard(), "stop", "--port", port, env=env, stdout=asyncio.subprocess.PIPE
            )
            while True:
                event = await events.get(timeout=5)
                if event.kind == EventKind.STOP and event.reason == StopReason.OPERATOR_STOP:
                    break
            assert events.received_at is not None
            out["endpoint_event"].append(events.received_at - t0)
            stdout, _ = await proc.communicate()
            out["endpoint_exit"].append(time.perf_counter() - t0)
            if proc.returncode != 0 or b"STOP acknowledged through" not in stdout:
                raise SystemExit(f"stop through the endpoint failed ({proc.returncode}): {stdout!r}")
    return out


async def directly(port: str, stops: int, env: dict[str, str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"direct_ack": [], "direct_exit": []}
    for _ in range(stops):
        async with DeviceClient.open(port) as ctl:
            await _clear(ctl)
            await ctl.arm(PLAN)
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *_cementguard(), "stop", "--port", port, env=env, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        out["direct_ack"].append(time.perf_counter() - t0)
        await proc.wait()
        out["direct_exit"].append(time.perf_counter() - t0)
        if proc.returncode != 0 or b"state STOPPED" not in line:
            raise SystemExit(f"direct stop failed ({proc.returncode}): {line!r}")
    return out


def baseline(stops: int, env: dict[str, str]) -> list[float]:
    times = []
    for _ in range(stops):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import serial"], env=env, check=True)
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stops", type=int, default=20, help="stops each way (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)

    runtime = tempfile.mkdtemp(prefix="cg-bench-")
    os.environ["XDG_RUNTIME_DIR"] = runtime  # locks and sockets of this run only, for us and the children
    env = dict(os.environ, PYTHONPATH=str(REPO))
    load_before = os.getloadavg()[0]
    sim, port = _common.start_simulator("BENCH-STOP-FIRST", env)
    try:
        results = {"baseline_import_serial": baseline(args.stops, env)}
        results.update(asyncio.run(through_endpoint(port, args.stops, env)))
        results.update(asyncio.run(directly(port, args.stops, env)))
        results["baseline_import_serial"] += baseline(args.stops, env)  # before and after: load drifts
    finally:
        sim.terminate()
        sim.wait(timeout=10)
        shutil.rmtree(runtime, ignore_errors=True)

    rows = {name: _common.latency_summary(values) for name, values in results.items()}
    base = rows["baseline_import_serial"]["p50_ms"]
    for row in rows.values():
        row["p50_over_baseline"] = row["p50_ms"] / base
    meets = max(rows["endpoint_event"]["p99_ms"], rows["direct_ack"]["p99_ms"]) <= GOAL_MS
    doc: dict[str, Any] = {
        "benchmark": "stop_first",
        "command": _common.command_line("stop_first", argv),
        "machine": _common.machine(),
        "stops": args.stops,
        "load_avg_1min_before_after": [load_before, os.getloadavg()[0]],
        "goal_ms": GOAL_MS,
        "meets_goal": meets,
        "rows": rows,
    }
    if args.json:
        _common.dump_json(doc)
        return 0
    labels = {
        "endpoint_event": "through the endpoint: start -> EVENT STOP read (goal)",
        "endpoint_exit": "through the endpoint: start -> stop process exited",
        "direct_ack": "directly: start -> 'state STOPPED' printed (goal)",
        "direct_exit": "directly: start -> stop process exited",
        "baseline_import_serial": "baseline: python -c 'import serial'",
    }
    load_after = os.getloadavg()[0]
    print(
        f"`cementguard stop` from a second terminal, {args.stops} stops each way; goal <= {GOAL_MS:.0f} ms; "
        f"1-min load average {load_before:.2f} before, {load_after:.2f} after on {os.cpu_count()} CPUs"
    )
    print(f"{'':58} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p50/base':>9}")
    for name, label in labels.items():
        r = rows[name]
        figures = f"{r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f}"
        print(f"{label:58} {figures} {r['p50_over_baseline']:9.2f}")
    print("goal met" if meets else "goal MISSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())

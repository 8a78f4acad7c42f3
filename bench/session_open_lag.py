"""Event-loop lag while a host session opens and during its first second, against `cementguard sim --pty`.

    python bench/session_open_lag.py              # 5 sessions per case, table
    python bench/session_open_lag.py --runs 10 --json

A probe task in the host's event loop sleeps 5 ms again and again and records how late each wake-up
is: the loop's lag, the time it could not have sent a HEARTBEAT. The device's watchdog (500 ms) ends
a session whose loop is late by more than 500 ms less the heartbeat interval (docs/design.md,
"Heartbeat and a stalled event loop"). Each session runs in a fresh interpreter (an import happens
once per process), against its own simulator, from just before `DeviceClient.open` to one second
after it returned. Cases:

- **baseline**: open the session, nothing else (the floor, this machine, this load);
- **guard loaded after open (before the fix)**: `cementguard run --frames` as it was: the guard's
  modules (opencv, the frame sources) imported in a worker thread once the session is open;
- **guard loaded before open (the fix)**: as `host.run.run_plan` does now: imported before the port
  is opened.

The ratio is each case's p99 lag to the baseline's, same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from typing import Any

from _common import REPO, command_line, dump_json, machine, quantiles, start_simulator

CASES = {
    "baseline": "baseline",
    "guard loaded after open (before the fix)": "after",
    "guard loaded before open (the fix)": "before",
}
PROBE_S = 0.005


async def _inner(mode: str, port: str) -> dict[str, Any]:
    from host.client import DeviceClient
    from host.guard.options import load_guard_modules

    if mode == "before":
        load_guard_modules()
    lags: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(PROBE_S)
            lags.append(time.perf_counter() - t - PROBE_S)

    task = asyncio.create_task(probe())
    async with DeviceClient.open(port) as ctl:
        if mode == "after":
            await asyncio.to_thread(load_guard_modules)
        await asyncio.sleep(1.0)
        losses = ctl.counters.link_losses
    stop.set()
    await task
    return {"lags_ms": [x * 1000 for x in lags], "link_losses": losses}


def _one(mode: str) -> dict[str, Any]:
    proc, port = start_simulator("BENCH-LAG")
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--inner", mode, "--port", port],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=5, help="sessions per case (default 5)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--inner", choices=sorted(set(CASES.values())), help=argparse.SUPPRESS)
    p.add_argument("--port", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.inner:
        print(json.dumps(asyncio.run(_inner(args.inner, args.port))))
        return 0
    if not 1 <= args.runs <= 100:
        p.error(f"--runs {args.runs}: allowed 1..100")
    lags: dict[str, list[float]] = {name: [] for name in CASES}
    worst: dict[str, list[float]] = {name: [] for name in CASES}
    losses: dict[str, int] = dict.fromkeys(CASES, 0)
    for _ in range(args.runs):
        for name, mode in CASES.items():  # interleaved: every case sees the same machine load
            r = _one(mode)
            lags[name] += r["lags_ms"]
            worst[name].append(max(r["lags_ms"]))
            losses[name] += r["link_losses"]
    base_p99 = quantiles(lags["baseline"], (0.99,))[0]
    rows = []
    for name in CASES:
        p50, p99 = quantiles(lags[name], (0.5, 0.99))
        rows.append(
            {
                "case": name,
                "wakeups": len(lags[name]),
                "p50_ms": p50,
                "p99_ms": p99,
                "max_ms": max(worst[name]),
                "median_session_max_ms": float(sorted(worst[name])[len(worst[name]) // 2]),
                "p99_ratio_to_baseline": p99 / base_p99 if base_p99 > 0 else float("nan"),
                "link_losses": losses[name],
            }
        )
    doc: dict[str, Any] = {
        "command": command_line("session_open_lag", argv),
        "machine": machine(),
        "rows": rows,
    }
    if args.json:
        dump_json(doc)
        return 0
    print(f"# {doc['command']}  (load avg {doc['machine']['load_avg_1min']:.1f})")
    print("| case | wake-ups | p50 ms | p99 ms | max ms | median of session max ms | p99 / baseline |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['case']} | {r['wakeups']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.0f} | "
            f"{r['median_session_max_ms']:.0f} | {r['p99_ratio_to_baseline']:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

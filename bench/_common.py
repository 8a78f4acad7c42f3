"""Small helpers shared by the bench scripts: machine description, JSON output, rig set-up, stats.

The scripts run as ``python bench/NAME.py`` from the repository root, so this directory is on
``sys.path`` and they import this module as ``_common``.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from firmware_sim.controller import ControllerConfig
from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from host.errors import CommandRefused
from protocol import Ack, Event, NakCode, State, StopDetail, StopReason

REPO = Path(__file__).resolve().parents[1]


def start_simulator(serial: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    """`cementguard sim --pty` in a child process: (process, pty path from its PORT line). Its
    stderr (attach/detach log) is discarded so that it never interleaves with a bench's table."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "host.cli", "sim", "--pty", "--serial", serial],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env if env is not None else dict(os.environ, PYTHONPATH=str(REPO)),
        cwd=REPO,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise SystemExit(f"the simulator did not print its PORT line: {line!r}")
    return proc, line.split(" ", 1)[1].strip()


ENDED = (State.STOPPED, State.DONE, State.FAULT, State.PAUSED)
"""States in which an injection phase is over (PAUSED: an increment is done)."""

VERDICT = {True: "ok", False: "MISS"}


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "commit": commit(),
    }


def commit() -> str | None:
    """Short hash of HEAD, with "+dirty" when the simulator or protocol sources differ from it."""
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "firmware_sim", "protocol"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def command_line(name: str, argv: Sequence[str] | None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join([".venv/bin/python", f"bench/{name}.py", *args])


def dump_json(doc: dict[str, Any]) -> None:
    print(json.dumps(doc, indent=2, default=_default))


def _default(value: object) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def injecting_rig(
    plant: PlantConfig | None = None, controller: ControllerConfig | None = None, **plan: Any
) -> VirtualRig:
    """A VirtualRig after HELLO, ARM (plan overrides as keywords) and START, in INJECTING."""
    rig = VirtualRig(plant or PlantConfig(), controller or ControllerConfig())
    rig.connect()
    for step, reply in (("ARM", rig.arm(**plan)), ("START", rig.start())):
        if not isinstance(reply, Ack):
            raise RuntimeError(f"{step} refused: {reply}")
    return rig


def reason_name(stop: Event) -> str:
    """A STOP event's reason, with its detail where a reason has several signatures (StopDetail)."""
    if stop.reason == StopReason.PRESSURE_RISE and stop.detail:
        return f"{stop.reason.name}/{StopDetail(stop.detail).name}"
    return stop.reason.name


def quantiles(values: Sequence[float] | np.ndarray, qs: Sequence[float]) -> list[float]:
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return [float("nan")] * len(qs)
    return [float(x) for x in np.quantile(arr, qs)]


def latency_summary(values_s: Sequence[float]) -> dict[str, float]:
    """n, p50, p99, max and mean in ms of latencies given in seconds: the row every latency bench prints."""
    ms = np.asarray(values_s, dtype=float) * 1000.0
    p50, p99 = quantiles(ms, (0.5, 0.99))
    return {
        "n": float(len(ms)),
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": float(ms.max()) if ms.size else float("nan"),
        "mean_ms": float(ms.mean()) if ms.size else float("nan"),
    }


def median(values: Sequence[float]) -> float:
    return float(np.median(np.asarray(values, dtype=float))) if len(values) else float("nan")


async def clear_at_rest(ctl: Any, attempts: int = 50) -> None:
    """CLEAR after a stop. The device refuses it with NAK BUSY until the plunger is at rest (it brakes
    for up to 80 ms, SPEC §8.2, §9.1, and relief may follow): retry with a new command id every 10 ms."""
    for _ in range(attempts):
        try:
            await ctl.clear()
            return
        except CommandRefused as exc:
            if exc.code != NakCode.BUSY:
                raise
            await asyncio.sleep(0.01)
    raise SystemExit(f"CLEAR still refused BUSY after {attempts} attempts")


def timed(fn: Callable[[int], object], calls: int, repeats: int) -> tuple[float, float]:
    """(best wall ms per call of `fn(i)`, CPU ms per call in that same run), over `repeats` runs of
    `calls` calls: the CPU time says what the call costs on a machine shared with other work."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        for i in range(calls):
            fn(i)
        wall = (time.perf_counter() - w0) / calls * 1e3
        cpu = (time.process_time() - c0) / calls * 1e3
        if wall < best[0]:
            best = (wall, cpu)
    return best

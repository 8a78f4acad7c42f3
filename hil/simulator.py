"""`cementguard sim --pty --trace` as a subprocess of the runner, and what its trace says.

The trace (firmware_sim/cli.py `--trace`, docs/hil.md) is what only the simulator knows, in device
seconds: when a plant event really fired, the cement truly delivered at the tip, STOP events the host
never saw (a cut link), and whether the simulator kept its real-time tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware_sim.plant.spatial_truth import SpatialTruth
from hil.scenario import Scenario

SIM_START_TIMEOUT_S = 20.0


@dataclass
class Trace:
    """What the simulator's stderr said, in device seconds."""

    plant: list[tuple[float, float, str, str]] = field(default_factory=list)
    """(t_s, delivered_ml, phase, kind)."""
    stops: list[tuple[float, int, int, float]] = field(default_factory=list)
    """(t_s, reason, source, true delivered mL)."""
    truth: list[tuple[float, float, float]] = field(default_factory=list)
    """(t_s, true delivered mL, true syringe kPa)."""
    detached_s: list[float] = field(default_factory=list)
    spatial: list[SpatialTruth] = field(default_factory=list)
    """The spatial body's ground truth, once a second and at exit (`TRACE spatial`)."""
    ticks: tuple[int, int, float] | None = None
    """(ticks, overruns, max lateness ms) reported at exit."""
    other: list[str] = field(default_factory=list)
    stop_seen: asyncio.Event = field(default_factory=asyncio.Event)

    def feed(self, line: str) -> None:
        parts = line.split()
        try:
            if parts[:2] == ["TRACE", "plant"]:
                self.plant.append((float(parts[2]), float(parts[3]), parts[4], parts[5]))
            elif parts[:2] == ["TRACE", "stop"]:
                self.stops.append((float(parts[2]), int(parts[3]), int(parts[4]), float(parts[5])))
                self.stop_seen.set()
            elif parts[:2] == ["TRACE", "truth"]:
                self.truth.append((float(parts[2]), float(parts[3]), float(parts[4])))
            elif parts[:2] == ["TRACE", "spatial"]:
                self.spatial.append(SpatialTruth.parse(line))
            elif parts[:2] == ["TRACE", "ticks"]:
                self.ticks = (int(parts[2]), int(parts[4]), float(parts[6]))
            elif line.endswith("host detached"):
                self.detached_s.append(float(parts[0]))
            else:
                self.other.append(line)
        except (IndexError, ValueError):
            self.other.append(line)


class Simulator:
    """`cementguard sim --pty --trace` in a subprocess; `stop()` always ends it."""

    def __init__(
        self, plant_file: Path, scenario: Scenario, time_scale: float, extra_args: list[str] | None = None
    ) -> None:
        self.args = [
            sys.executable,
            "-m",
            "host.cli",
            "sim",
            "--pty",
            "--trace",
            "--scenario",
            str(plant_file),
            "--seed",
            str(scenario.seed),
            "--time-scale",
            f"{time_scale:g}",
            *(extra_args or []),
        ]
        self.proc: asyncio.subprocess.Process | None = None
        self.trace = Trace()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> str:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._reader = asyncio.create_task(self._read(self.proc.stderr))
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), SIM_START_TIMEOUT_S)
        except TimeoutError:
            raise RuntimeError(f"the simulator printed no PORT line within {SIM_START_TIMEOUT_S} s") from None
        text = line.decode().strip()
        if not text.startswith("PORT "):
            await self.stop()
            raise RuntimeError(
                f"the simulator did not start: {text!r}; stderr: {' | '.join(self.trace.other)}"
            )
        return text.removeprefix("PORT ")

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.trace.feed(line.decode(errors="replace").rstrip("\n"))

    async def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 2.0)


def write_plant_file(scenario: Scenario, path: Path) -> Path:
    """The simulator's `--scenario` file for this scenario (TOML written by hand: tomllib only reads)."""
    data = scenario.plant_file_data()["plant"]
    lines = ["[plant]"]
    events = data.pop("events")
    for key, value in data.items():
        lines.append(f"{key} = {_toml(value)}")
    for event in events:
        lines.append("")
        lines.append("[[plant.events]]")
        for key, value in event.items():
            lines.append(f"{key} = {_toml(value)}")
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # what we write must read back
    path.write_text(text)
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        # nested plant tables ([plant.spatial]) as inline tables; None means "not set"
        items = ", ".join(f"{k} = {_toml(v)}" for k, v in value.items() if v is not None)
        return "{ " + items + " }" if items else "{}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

"""The fluoroscopic guard: frame processing speed at 512 x 512 on one core, and frame -> STOPPED.

    OMP_NUM_THREADS=1 python bench/guard.py             # 200 frames judged, 30 stop cycles
    python bench/guard.py --frames 100 --cycles 10 --json

**Processing.** Frames come from the simulator's renderer (firmware_sim/imaging, 512 x 512, 12 bit,
1000 photons per pixel, the default C-arm), a bolus growing in the body; the guard learns its baseline
from 8 empty frames, then judges `--frames` frames. opencv is held to one thread (cv2.setNumThreads(1))
and numpy's BLAS by OMP_NUM_THREADS=1, so the figure is one core's. Baseline in the same run: the
floor every frame pays before any judgement, its conversion to a log image (np.log1p of float32),
timed on the same frames.

**Frame -> STOPPED.** `cementguard sim --pty` in its own process, a DeviceClient over the pty, the
guard's worker (its thread, the stream pump) exactly as `cementguard run --frames` runs it, frames
pushed into an in-process source. Each cycle: ARM, START, wait for INJECTING, push two frames with the
cement past the posterior-quarter line (the rule must hold on two frames), measure from the moment the
worker read the second frame to the STOP event read off the port (the `stop_latency_ms` every image
stop is recorded with, host/stops.py), CLEAR. The goal is at most 50 ms plus one frame period.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import asyncio
import time
from typing import Any

import _common
import cv2
import numpy as np
from stop_latency import PLAN

from firmware_sim.imaging.fluoro import FluoroConfig, FluoroRenderer
from firmware_sim.imaging.scene import CementScene
from firmware_sim.plant import Plant, PlantConfig
from host.client import DeviceClient
from host.frames import FluoroFrame
from host.frames.memory import PushFrameSource
from host.guard import Guard, GuardConfig
from host.guard.worker import GuardWorker
from host.pump import Consumer, StreamPump
from host.stops import StopRequests
from protocol import Event, EventKind, State, StopSource


def scenes(n: int) -> tuple[Any, FluoroRenderer, list[CementScene], CementScene]:
    """The body, a renderer, `n` scenes of a block growing from 30 % to 60 % of the depth (thinner, a
    flat slab of cement reads as a vein), and one past the posterior-quarter line."""
    spatial = Plant(PlantConfig(vertebra="spatial")).spatial
    assert spatial is not None
    renderer = FluoroRenderer(spatial.body, FluoroConfig())
    truth = spatial.frame()
    nx, ny, nz = truth.grid.flow_shape
    porosity = (spatial.body.porosity * spatial.body.inside).astype(np.float32)

    def scene(depth: int) -> CementScene:
        body = np.zeros((nx, ny, nz), np.float32)
        body[nx // 3 : 2 * nx // 3, :depth, nz // 3 : 2 * nz // 3] = 0.8
        return CementScene(t_us=0, body_cement=body * porosity, grid=truth.grid)

    grow = [scene(max(1, round(ny * (0.3 + 0.3 * i / max(1, n - 1))))) for i in range(n)]
    return spatial, renderer, [scene(0), *grow], scene(round(0.9 * ny))


def frame(renderer: FluoroRenderer, scene: CementScene, index: int) -> FluoroFrame:
    c = renderer.config
    px = renderer.render(scene, "lateral", index)
    return FluoroFrame(index, index * 100_000, "lateral", px, c.bit_depth, c.pixel_mm, "bench")


def processing(n: int) -> dict[str, Any]:
    cv2.setNumThreads(1)
    _spatial, renderer, all_scenes, _past = scenes(24)
    empty, grow = all_scenes[0], all_scenes[1:]
    guard = Guard(GuardConfig())
    for i in range(8):
        guard.frame(frame(renderer, empty, i + 1), i * 0.1, State.ARMED)
    assert guard.status.label == "WATCHING", guard.status
    frames = [frame(renderer, grow[i % len(grow)], 100 + i) for i in range(len(grow))]
    times, floor = [], []
    for i in range(n):
        f = frames[i % len(frames)]
        f = FluoroFrame(1000 + i, (1000 + i) * 100_000, f.view, f.pixels, f.bit_depth, f.pixel_mm, f.source)
        t0 = time.perf_counter()
        np.log1p(f.pixels.astype(np.float32))
        floor.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        step = guard.frame(f, 10 + i * 0.1, State.INJECTING)
        times.append(time.perf_counter() - t0)
        if step.stop is not None:
            raise SystemExit(f"the bench's nominal frames stopped the guard: {step.status.label}")
    med = _common.median(times)
    return {
        "frames": n,
        "guard_ms": _common.latency_summary(times),
        "floor_ms": _common.latency_summary(floor),
        "frames_per_s": 1.0 / med,
        "ratio_to_floor": med / _common.median(floor),
    }


class _Stops(Consumer):
    def __init__(self) -> None:
        self.notes: list[dict[str, Any]] = []
        self.stopped = asyncio.Event()
        self.injecting = asyncio.Event()
        """Set when the pump delivered INJECTING (after the guard's worker, fed first, took it)."""

    def on_event(self, event: Event, notes: dict[str, Any], received_at: float | None) -> None:
        if event.kind == EventKind.STATE_CHANGE and event.state == State.INJECTING:
            self.injecting.set()
        if event.kind == EventKind.STOP and event.source == StopSource.FLUORO_IMAGE:
            self.notes.append(notes)
            self.stopped.set()


async def stop_cycles(path: str, cycles: int) -> list[float]:
    _spatial, renderer, all_scenes, past = scenes(2)
    empty = all_scenes[0]
    baseline = [frame(renderer, empty, i + 1) for i in range(8)]
    past_px = [frame(renderer, past, 50 + i).pixels for i in range(2)]
    latencies = []
    index = 100
    async with DeviceClient.open(path) as ctl:
        source = PushFrameSource("mem://bench")
        stops = StopRequests()
        worker = GuardWorker(Guard(GuardConfig()), source, ctl, stops)
        seen = _Stops()
        async with StreamPump(ctl, [worker, seen], stops=stops) as pump:
            pump.supervisor.spawn(worker.run(), "bench: guard")
            for f in baseline:
                source.push(f)
            if not await worker.watching(10.0):
                raise SystemExit(f"the guard is not watching: {worker.status.label}")
            for _ in range(cycles):
                seen.injecting.clear()
                await ctl.arm(PLAN)
                await ctl.start()
                await asyncio.wait_for(seen.injecting.wait(), 5.0)
                seen.stopped.clear()
                for px in past_px:
                    index += 1
                    source.push(FluoroFrame(index, index * 100_000, "lateral", px, 12, 0.2, "bench"))
                await asyncio.wait_for(seen.stopped.wait(), 5.0)
                latencies.append(seen.notes[-1]["stop_latency_ms"] / 1000.0)
                await _common.clear_at_rest(ctl)
                for _ in range(2):  # the guard sees the bolus gone again (a new injection)
                    index += 1
                    source.push(
                        FluoroFrame(index, index * 100_000, "lateral", baseline[0].pixels, 12, 0.2, "b")
                    )
                    index += 1
                    source.push(
                        FluoroFrame(index, index * 100_000, "lateral", baseline[1].pixels, 12, 0.2, "b")
                    )
    return latencies


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--cycles", type=int, default=30)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    proc_figures = processing(args.frames)
    sim, port = _common.start_simulator("BENCH-GUARD")
    try:
        lat = asyncio.run(stop_cycles(port, args.cycles))
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    doc = {
        "command": _common.command_line("bench/guard.py", argv),
        "machine": _common.machine(),
        "processing_512": proc_figures,
        "frame_to_stopped": _common.latency_summary(lat),
        "meets_processing_goal": proc_figures["frames_per_s"] >= 30.0,
        "meets_stop_goal": _common.latency_summary(lat)["p99_ms"] <= 50.0,
    }
    if args.json:
        _common.dump_json(doc)
        return 0
    g, fl = proc_figures["guard_ms"], proc_figures["floor_ms"]
    print(
        f"guard, 512x512, one core: median {g['p50_ms']:.1f} ms p99 {g['p99_ms']:.1f} ms "
        f"-> {proc_figures['frames_per_s']:.1f} frames/s (goal >= 30)"
    )
    print(
        f"  floor (log of the frame): median {fl['p50_ms']:.2f} ms; guard / floor = "
        f"{proc_figures['ratio_to_floor']:.1f}"
    )
    s = doc["frame_to_stopped"]
    print(
        f"frame read -> STOPPED event read: n {s['n']:.0f} p50 {s['p50_ms']:.1f} ms p99 {s['p99_ms']:.1f} ms "
        f"max {s['max_ms']:.1f} ms (goal <= 50 ms + one frame period)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

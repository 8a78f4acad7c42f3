"""Frames in-process: the simulated C-arm on a plant driven in this process, into a host frame source.

The HIL sweeps and the tests run the rig in virtual time (`VirtualRig`), with no simulator process
and no socket. `InProcessFrames` renders the pulses due on the rig's device clock
(firmware_sim/imaging/camera.py) and pushes them, as `FluoroFrame`s, into a `PushFrameSource`
(`mem://`) that the guard reads like any other source; each frame's ground truth stays here, keyed by
frame index (`truth`), for scoring, never in the frame. `lose()` and `end()` play a feed that drops
or ends (the guard's blind paths). hil is the one layer that may import both sides.
"""

from __future__ import annotations

import json
from pathlib import Path

from firmware_sim.imaging.camera import FluoroCamera, RenderedFrame
from firmware_sim.imaging.fluoro import FluoroConfig, View
from firmware_sim.imaging.truth import FrameTruth
from firmware_sim.plant import Plant
from host.file_limits import MAX_LOG_BYTES, read_regular
from host.frames import FluoroFrame
from host.frames.memory import PushFrameSource

__all__ = ["InProcessFrames", "load_truth", "to_fluoro_frame"]


def load_truth(path: Path) -> dict[int, FrameTruth]:
    """The truth records a simulator wrote with `--frames-truth` (JSON lines), by frame index.
    Read with a size bound; a line that is not a truth record raises ValueError naming the line
    (a line cut short by a simulator that was killed mid-write, the last one, is skipped)."""
    lines = read_regular(path, MAX_LOG_BYTES).decode("utf-8").split("\n")
    out: dict[int, FrameTruth] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            record["body_box_px"] = tuple(record["body_box_px"])
            truth = FrameTruth(**record)
        except (ValueError, TypeError, KeyError) as exc:
            if number == len(lines):
                break  # the last line, unterminated: the writer was stopped mid-line
            raise ValueError(f"{path}: line {number} is not a frame truth record ({exc})") from None
        out[truth.index] = truth
    return out


def to_fluoro_frame(frame: RenderedFrame, source: str) -> FluoroFrame:
    return FluoroFrame(
        index=frame.index,
        t_us=frame.t_us,
        view=frame.view,
        pixels=frame.pixels,
        bit_depth=frame.bit_depth,
        pixel_mm=frame.pixel_mm,
        source=source,
    )


class InProcessFrames:
    """A camera on `plant`'s spatial body feeding `source`; call `tick(now_us)` as the rig runs."""

    def __init__(
        self,
        plant: Plant,
        config: FluoroConfig | None = None,
        views: tuple[View, ...] = ("lateral",),
        url: str = "mem://sim",
    ) -> None:
        if plant.spatial is None:
            raise ValueError('in-process frames need the spatial vertebra: vertebra = "spatial" in [plant]')
        self.camera = FluoroCamera(plant.spatial, config, views)
        c = self.camera.config
        self.source = PushFrameSource(url, max_fps=min(c.fps * len(views), 60.0))
        self.truth: dict[int, FrameTruth] = {}

    def tick(self, now_us: int) -> int:
        """Render and push the pulses due by `now_us`; how many."""
        shots = self.camera.capture(now_us)
        for frame, truth in shots:
            self.truth[frame.index] = truth
            self.source.push(to_fluoro_frame(frame, self.source.url))
        return len(shots)

    def lose(self, reason: str) -> None:
        self.source.lose(reason)

    def end(self) -> None:
        self.source.end()

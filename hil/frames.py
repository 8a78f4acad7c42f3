"""Frames in-process: the simulated C-arm on a plant driven in this process, into a host frame source.

The HIL sweeps and the tests run the rig in virtual time (`VirtualRig`), with no simulator process
and no socket. `InProcessFrames` renders the pulses due on the rig's device clock
(firmware_sim/imaging/camera.py) and pushes them, as `FluoroFrame`s, into a `PushFrameSource`
(`mem://`) that the guard reads like any other source; each frame's ground truth stays here, keyed by
frame index (`truth`), for scoring, never in the frame. `lose()` and `end()` play a feed that drops
or ends (the guard's blind paths). hil is the one layer that may import both sides.
"""

from __future__ import annotations

from firmware_sim.imaging.camera import FluoroCamera, RenderedFrame
from firmware_sim.imaging.fluoro import FluoroConfig, View
from firmware_sim.imaging.truth import FrameTruth
from firmware_sim.plant import Plant
from host.frames import FluoroFrame
from host.frames.memory import PushFrameSource

__all__ = ["InProcessFrames", "to_fluoro_frame"]


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

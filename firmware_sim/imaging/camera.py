"""The simulated C-arm: pulses on the device clock, a frame per pulse and view, truth beside it.

`FluoroCamera` is the one place that turns the spatial body into frames, used by both paths to the
guard: the simulator's frame stream (publisher.py, in its render thread) and the in-process path of
HIL, the sweeps and the tests (hil/frames.py pushes its frames to a host PushFrameSource).

Pulses: at `fps` on the device clock, from `start_us`. With both views (a biplane C-arm) the AP
pulse comes half a period after the lateral one: biplane systems pulse their two tubes alternately
so that neither detector sees the other's scatter, and so each frame of the stream keeps a time of
its own. Frame indices count every pulse, so a frame the renderer had no time for leaves a gap in the
indices (as a frame grabber's counter does), never a silent hole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_sim.imaging.fluoro import VIEWS, FluoroConfig, FluoroRenderer, View
from firmware_sim.imaging.scene import CementScene, scene_of
from firmware_sim.imaging.truth import FrameTruth, truth_of
from firmware_sim.plant.spatial import SpatialVertebra

__all__ = ["FluoroCamera", "PulseSchedule", "RenderedFrame"]


@dataclass(frozen=True, slots=True)
class RenderedFrame:
    """One simulated frame as the C-arm delivers it (no ground truth in here: that is `truth`)."""

    index: int
    t_us: int
    view: View
    pixels: np.ndarray
    bit_depth: int
    pixel_mm: float


@dataclass(frozen=True, slots=True)
class Pulse:
    index: int
    t_us: int
    view: View


class PulseSchedule:
    """Which pulse is due when: `due(now_us)` returns the pulses whose time has come (in order), each
    once. A caller that falls behind gets every missed pulse (so that the indices stay complete); it
    may render only the last and count the rest as dropped."""

    def __init__(self, fps: float, views: tuple[View, ...] = ("lateral",), start_us: int = 0) -> None:
        if not views or any(v not in VIEWS for v in views) or len(set(views)) != len(views):
            raise ValueError(f"views: {views!r}; allowed 'lateral', 'ap' or both, each once")
        if not 1.0 <= fps <= 30.0:
            raise ValueError(f"fps: {fps} is outside the range; allowed 1..30 frames/s")
        self.views = views
        self.period_us = round(1e6 / fps)
        self._next = start_us
        self._pulse = 0

    def _offset(self, view_pos: int) -> int:
        return view_pos * self.period_us // len(self.views)

    def due(self, now_us: int) -> list[Pulse]:
        out: list[Pulse] = []
        while True:
            view_pos = self._pulse % len(self.views)
            cycle = self._pulse // len(self.views)
            t = self._next + cycle * self.period_us + self._offset(view_pos)
            if t > now_us:
                return out
            out.append(Pulse(self._pulse, t, self.views[view_pos]))
            self._pulse += 1


class FluoroCamera:
    """Renders the pulses that are due from the body's state now, with their truth."""

    def __init__(
        self,
        vertebra: SpatialVertebra,
        config: FluoroConfig | None = None,
        views: tuple[View, ...] = ("lateral",),
    ) -> None:
        self.vertebra = vertebra
        self.config = config or FluoroConfig()
        self.renderer = FluoroRenderer(vertebra.body, self.config)
        self.schedule = PulseSchedule(self.config.fps, views)
        self.dropped = 0

    def render(self, scene: CementScene, index: int, view: View) -> tuple[RenderedFrame, FrameTruth]:
        pixels = self.renderer.render(scene, view, index)
        c = self.config
        frame = RenderedFrame(index, scene.t_us, view, pixels, c.bit_depth, c.pixel_mm)
        return frame, truth_of(scene, index, view, self.renderer.geometry(view))

    def capture(self, now_us: int) -> list[tuple[RenderedFrame, FrameTruth]]:
        """The frames due by `now_us`, rendered from the body as it is now (each stamped with its own
        pulse time: the body changes once per flow update, far slower than the pulses)."""
        pulses = self.schedule.due(now_us)
        out = []
        for pulse in pulses:
            scene = scene_of(self.vertebra, pulse.t_us)
            out.append(self.render(scene, pulse.index, pulse.view))
        return out

"""Play a recording back through the dashboard: the same screen, driven by recorded data.

`ReplaySource` feeds the model from a `host.recording.Recording` at a chosen speed, on controller
time (the recording's `t_us`): play, pause, speed and seek. A seek rebuilds the history up to the
new position in one bulk append, so it costs one numpy copy however far it jumps. The source
accepts no commands: a recording cannot be stopped or armed.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from host.dashboard.guard_view import GuardFrame, GuardView
from host.dashboard.model import DashboardModel, ReplayView
from host.errors import CementguardError
from host.plan import InjectionPlan, PlanError, parse_plan
from host.recording import Recording
from host.stops import StopRequests

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from host.frame_recording import FrameLog

TICK_S = 0.05
"""Playback step in wall time: what the model receives per step is a 50 ms slice (times speed)."""
SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)


def recorded_plan(recording: Recording) -> InjectionPlan | None:
    """The recording's plan as a validated plan, or None if it is not one (a scenario, a raw dict)."""
    try:
        return parse_plan(recording.plan, str(recording.path))
    except PlanError:
        return None


class ReplaySource:
    """A recording played back at `speed` x real time, from `position_s` (s since its first sample)."""

    commands = None

    def __init__(self, recording: Recording, *, speed: float = 1.0, playing: bool = True) -> None:
        self.recording = recording
        self.label = f"replay {recording.path}"
        self.stops = StopRequests()
        samples = recording.samples
        self._t_us = samples["t_us"].astype(np.int64) if len(samples) else np.zeros(0, np.int64)
        self._events = sorted(recording.events, key=lambda e: e.record.t_s)
        self._event_t_us = np.array([round(e.record.t_s * 1e6) for e in self._events], dtype=np.int64)
        times = [t[i] for t in (self._t_us, self._event_t_us) if len(t) for i in (0, -1)]
        self._t0_us = int(self._t_us[0]) if len(samples) else (min(times) if times else 0)
        end_us = max(times) if times else self._t0_us
        self.view = ReplayView(
            position_s=0.0,
            # to the last sample or the last event, whichever is later: an event after the last
            # sample (a recording closed just after its STOP) is still reached and shown
            duration_s=max(0.0, (end_us - self._t0_us) / 1e6),
            speed=speed,
            playing=playing,
            complete=recording.is_complete,
        )
        self._fed_samples = 0
        self._fed_events = 0
        self.frames: FrameLog | None = None
        """The guard's kept frames (host/frame_recording.py), if the recording has them."""
        from host.frame_recording import FrameLog, FrameLogError  # opencv: only here

        try:
            self.frames = FrameLog.open(recording.path)
        except FrameLogError as exc:  # the telemetry still replays; the panel says why it is empty
            log.error("replay without the guard's frames: %s", exc)
            self._frames_problem: str | None = str(exc)
        else:
            self._frames_problem = None
        self._shown_frame: tuple[tuple[str, int | None], ...] | None = None
        self._model: DashboardModel | None = None
        self._wake = asyncio.Event()

    def attach_guard(self, model: DashboardModel) -> None:
        """Give `model` a guard view when the recording kept the guard's frames (before the app is
        built: the fluoroscopy panel is laid out only for a session that has one)."""
        if self.frames is None and self._frames_problem is None:
            return
        views = tuple(self.frames.views) if self.frames is not None and self.frames.views else ("lateral",)
        view = GuardView(str(self.recording.path / "frames"), views)
        if self._frames_problem is not None:
            view.no_source(self._frames_problem)
        else:
            view.status("BLIND", "BLIND(no frame yet at this time)")
        model.guard = view

    # -- controls (called from the UI) ------------------------------------------------------------

    def toggle(self) -> None:
        if not self.view.playing and self.view.position_s >= self.view.duration_s:
            self.seek_to(0.0)  # play again from the start
        self.view.playing = not self.view.playing
        self._changed()

    def faster(self, factor: float) -> None:
        speeds = [s for s in SPEEDS if (s > self.view.speed if factor > 1 else s < self.view.speed)]
        if speeds:
            self.view.speed = min(speeds) if factor > 1 else max(speeds)
        self._changed()

    def seek(self, delta_s: float) -> None:
        self.seek_to(self.view.position_s + delta_s)

    def seek_to(self, position_s: float) -> None:
        self.view.position_s = min(max(position_s, 0.0), self.view.duration_s)
        if self._model is not None:
            self._model.clear_history()
            self._fed_samples = self._fed_events = 0
            self._advance(self._model)
        self._changed()

    def _changed(self) -> None:
        if self._model is not None:
            self._model.touch()
        self._wake.set()

    # -- feeding ----------------------------------------------------------------------------------

    async def run(self, model: DashboardModel) -> None:
        self._model = model
        model.replay = self.view
        model.on_link("replay", "recording" if self.view.complete else "recording (incomplete)", self.label)
        if self.recording.device is not None:
            model.on_device(self.recording.device)
        model.set_plan(recorded_plan(self.recording), str(self.recording.path))
        self._advance(model)
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            if not self.view.playing:
                self._wake.clear()
                await self._wake.wait()
                last = loop.time()
                continue
            await asyncio.sleep(TICK_S)  # playback cadence
            now = loop.time()
            if self.view.playing:  # not paused meanwhile: a pause holds the position it was given
                self.step(model, (now - last) * self.view.speed)
            last = now

    def step(self, model: DashboardModel, dt_s: float) -> None:
        """Advance playback by `dt_s` of recorded time (the tests call this with a fixed step)."""
        v = self.view
        v.position_s = min(v.position_s + dt_s, v.duration_s)
        self._advance(model)
        if v.position_s >= v.duration_s:
            v.playing = False
        model.touch()

    def _advance(self, model: DashboardModel) -> None:
        """Feed everything recorded up to the current position that was not fed yet."""
        limit = self._t0_us + round(self.view.position_s * 1e6)
        if model.history.t0_s is None and len(self._t_us):
            model.history.t0_s = self._t0_us / 1e6  # the plots' origin, also for events fed first
        m = int(np.searchsorted(self._event_t_us, limit, side="right"))
        for event in self._events[self._fed_events : m]:
            self._feed_event(model, event.record, event.annotations)
        self._fed_events = max(self._fed_events, m)
        # samples after the events: the last sample's state is the newest, so it is the one shown
        n = int(np.searchsorted(self._t_us, limit, side="right"))
        if n > self._fed_samples:
            model.on_samples(self.recording.samples[self._fed_samples : n])
            self._fed_samples = n
        self._show_frame(model, limit)

    def _show_frame(self, model: DashboardModel, limit_us: int) -> None:
        """The kept frame of each view at the position (the newest at or before it), with the guard's
        state then (and each view's own, for a biplane guard)."""
        view, frames = model.guard, self.frames
        if view is None or frames is None:
            return
        kept = {v: frames.at(limit_us, v) for v in view.views}
        key = tuple((v, k.index if k is not None else None) for v, k in kept.items())
        if key == self._shown_frame:
            return
        self._shown_frame = key
        newest = None
        for name, frame in kept.items():
            if frame is None:
                view.latest.pop(name, None)
                view.view_labels.pop(name, None)
                continue
            try:
                picture = frames.picture(frame)
            except (OSError, ValueError, CementguardError) as exc:
                log.warning("replay: frame %d not shown: %s", frame.index, exc)
                view.dropped += 1
                continue
            view.show(GuardFrame(frame.index, frame.t_us, picture, name))
            if view.biplane:
                view.view_status(name, frame.view_label or frame.label)
            if newest is None or (frame.device_t_us or 0) > (newest.device_t_us or 0):
                newest = frame
        if newest is None:
            view.frame = None
            view.status("BLIND", "BLIND(no frame yet at this time)")
            return
        view.frame = view.latest[newest.view]
        view.status(newest.label.split("(", 1)[0] or "BLIND", newest.label)

    @staticmethod
    def _feed_event(model: DashboardModel, record: Any, notes: dict[str, Any]) -> None:
        model.on_event(
            kind=int(record.kind),
            state=int(record.state),
            reason=int(record.reason),
            source=int(record.source),
            t_s=float(record.t_s),
            pressure_kpa=math.nan if record.pressure_kpa is None else float(record.pressure_kpa),
            delivered_ml=float(record.delivered_ml),
            notes=notes,
            alarm=int(record.alarm),
            detail=int(record.detail),
        )

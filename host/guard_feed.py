"""The guard worker's steps to what people see: the dashboard's view model and the recording's
`frames/` (host/frame_recording.py). Used by the dashboard and by `cementguard run`, which run the
same guard and worker (host/guard/worker.py: frames read and judged on their own thread, the STOP
sent at once).

The worker reports steps, not frames; `TeeSource` sits between it and the frame source and keeps the
last few frames by index, so that the step of frame N is drawn on frame N's pixels. Nothing here
waits on anything: a step that finds its frame already gone (the ring is short) is not drawn, and the
next one is.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from host.dashboard.guard_view import GuardFrame, GuardView
from host.fluoro_overlay import FluoroPicture
from host.frame_recording import FrameRecorder
from host.frames import FluoroFrame, FrameSource
from host.guard.guard import GuardStep
from host.guard.worker import GuardWorker

__all__ = ["GuardRecording", "TeeSource", "picture_of", "step_handler"]

log = logging.getLogger(__name__)

KEEP_FRAMES = 8
"""Frames kept for their steps: the worker posts a frame's step right after judging it, so the step
comes a frame or two behind the read at most."""


class TeeSource:
    """A `FrameSource` that passes every frame through and keeps the last `KEEP_FRAMES` by index."""

    def __init__(self, inner: FrameSource, on_close: Callable[[], object] | None = None) -> None:
        self.inner = inner
        self.on_close = on_close
        """Called once after the source is closed (the worker closes it when it ends): the frame
        recording finishes what it has queued then."""
        self._recent: OrderedDict[int, FluoroFrame] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, timeout_s: float) -> FluoroFrame | None:
        frame = self.inner.read(timeout_s)
        if frame is not None:
            with self._lock:
                self._recent[frame.index] = frame
                while len(self._recent) > KEEP_FRAMES:
                    self._recent.popitem(last=False)
        return frame

    def take(self, index: int) -> FluoroFrame | None:
        """Frame `index`, if still kept (and the frames before it are forgotten)."""
        with self._lock:
            frame = self._recent.get(index)
            while self._recent and next(iter(self._recent)) <= index:
                self._recent.popitem(last=False)
        return frame

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            done, self.on_close = self.on_close, None
            if done is not None:
                done()


def picture_of(frame: FluoroFrame, step: GuardStep, worker: GuardWorker) -> FluoroPicture:
    """The frame with what the guard made of it: its outline, line, front and cement mask."""
    front = step.measures.front_x if step.measures is not None else None
    return FluoroPicture(
        frame.pixels,
        frame.bit_depth,
        worker.guard.region,
        worker.guard.config.posterior_fraction,
        front,
        step.mask,
    )


class GuardRecording:
    """A `FrameHook` writing the guard's frames and decisions beside a recording (`frames/`).

    `device_t_us` gives the controller's clock now (the newest telemetry), which places a real
    source's frame on the recording's time axis (host/frame_recording.py)."""

    def __init__(self, recording: Path, device_t_us: Callable[[], int | None]) -> None:
        self.recorder = FrameRecorder(recording)
        self._device_t_us = device_t_us

    def __call__(self, step: GuardStep, frame: FluoroFrame | None, picture: FluoroPicture | None) -> None:
        stop = step.stop.name if step.stop is not None else None
        if frame is not None and picture is not None:
            self.recorder.offer(frame, picture, step.status.label, stop, self._device_t_us())
        if step.changed or stop is not None:
            self.recorder.decision(step.t_us, step.frame_index, step.status.state, step.status.label, stop)

    def close(self) -> None:
        """Waits (bounded) for the writer to finish what is queued: off the event loop where it can."""
        self.recorder.close(CLOSE_TIMEOUT_S)


CLOSE_TIMEOUT_S = 2.0
"""The longest a closing frame recording waits for its writer (a few queued PNGs: milliseconds)."""


FrameHook = Callable[[GuardStep, FluoroFrame | None, FluoroPicture | None], None]
"""Told of every step that judged a frame (with the frame and its overlay) or changed the state or
asked for a stop (then perhaps without a frame): the frame recording's feed."""


def step_handler(
    view_of: Callable[[], GuardView | None],
    on_state: Callable[[str, str], None],
    tee: TeeSource,
    worker_of: Callable[[], GuardWorker | None],
    on_frame: FrameHook | None = None,
) -> Callable[[GuardStep], None]:
    """The worker's `on_step` (on the event loop): the state to every screen, the frame to the panel
    and to `on_frame` (the frame recording)."""

    def handle(step: GuardStep) -> None:
        decided = step.changed or step.stop is not None
        if decided:
            on_state(step.status.state, step.status.label)
        view, worker = view_of(), worker_of()
        frame = tee.take(step.frame_index) if step.frame_index is not None else None
        picture = picture_of(frame, step, worker) if frame is not None and worker is not None else None
        if frame is not None and picture is not None and view is not None:
            view.show(GuardFrame(frame.index, frame.t_us, picture))
        if on_frame is not None and (decided or picture is not None):
            on_frame(step, frame, picture)

    return handle

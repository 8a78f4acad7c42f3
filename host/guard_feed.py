"""The guard of a `GuardSetup` beside a device link, and its steps to what people see: the dashboard's
view model and the recording's `frames/` (host/frame_recording.py). Used by `cementguard run`, the
dashboard and the HIL runner, which run the same guard and worker (host/guard/worker.py: frames read
and judged on their own thread, the STOP sent at once).

One source (`--frames`) is one guard, whatever view it carries; two (`--frames` lateral and
`--frames-ap`) are a `BiplaneGuard` with a source per view (host/guard/biplane.py): each view judged
by its own guard, the stop from either, the state the worst of both.

The worker hands each judged step over with its frame (`Judged`), so that the step of frame N is drawn
on frame N's pixels, with what the guard saw in it: the outline, the posterior-quarter line, the
front, the cement mask and the rule's evidence (the cement beyond the outline's margin, which the
extravasation and venous rules count).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from host.dashboard.guard_view import GuardFrame, GuardView
from host.fluoro_overlay import FluoroPicture
from host.frame_recording import FrameRecorder
from host.frames import FluoroFrame, FrameSource, open_frame_source
from host.guard.biplane import BiplaneGuard
from host.guard.guard import Guard, GuardStep
from host.guard.worker import GuardWorker, Judged

if TYPE_CHECKING:
    from host.client import DeviceClient
    from host.guard.config import GuardConfig
    from host.guard.options import GuardSetup
    from host.guard.region import BodyRegion
    from host.pump import ConsumerFailure
    from host.stops import StopRequests

__all__ = [
    "ClosingSource",
    "GuardRecording",
    "evidence_of",
    "judged_handler",
    "make_guard",
    "open_guard_worker",
    "open_sources",
    "picture_of",
]

log = logging.getLogger(__name__)


class ClosingSource:
    """A `FrameSource` that calls `on_close` once after the inner one is closed (the worker closes its
    sources when it ends): the frame recording finishes what it has queued then."""

    def __init__(self, inner: FrameSource, on_close: Callable[[], object]) -> None:
        self.inner = inner
        self._on_close: Callable[[], object] | None = on_close

    def read(self, timeout_s: float) -> FluoroFrame | None:
        return self.inner.read(timeout_s)

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            done, self._on_close = self._on_close, None
            if done is not None:
                done()


def open_sources(setup: GuardSetup) -> FrameSource | dict[str, FrameSource]:
    """The setup's frame source, or one per view with `--frames-ap`. Blocking (a socket, a device):
    off the event loop. A source that cannot be opened raises FrameSourceError naming it; the other
    is closed first. A real source on the AP side is told its view (sim:// frames carry theirs)."""
    first = open_frame_source(setup.frames_url)
    if setup.ap_url is None:
        return first
    try:
        second = open_frame_source(setup.ap_url, view="ap")
    except BaseException:
        first.close()
        raise
    return {"lateral": first, "ap": second}


def make_guard(setup: GuardSetup) -> Guard | BiplaneGuard:
    """One guard for one source; a guard per view for two (`--guard-region` is the lateral view's)."""
    if setup.ap_url is None:
        return Guard(setup.config, setup.region)
    regions = {"lateral": setup.region} if setup.region is not None else None
    return BiplaneGuard(setup.config, regions)


def region_of(guard: Guard | BiplaneGuard, view: str) -> BodyRegion | None:
    """The outline the guard judges `view`'s frames with."""
    if isinstance(guard, BiplaneGuard):
        return guard.region_of(view) if view in guard.views else None
    return guard.region


def evidence_of(
    step: GuardStep, region: BodyRegion | None, config: GuardConfig, pixel_mm: float
) -> np.ndarray | None:
    """The cement beyond the outline grown by `outline_margin_mm`: what the extravasation rule
    measures, and where the venous rule looks (every vein leaves the body). None when the step saw
    none there (its measures say so: nothing is computed for the frames of a nominal run)."""
    m, mask = step.measures, step.mask
    if m is None or mask is None or region is None or (m.outside_mm2 <= 0 and m.vein_length_mm <= 0):
        return None
    try:
        body = region.mask(mask.shape)
    except ValueError:
        return None
    r = max(1, round(config.outline_margin_mm / pixel_mm))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    grown = cv2.dilate(body.astype(np.uint8), kernel).astype(bool)
    outside: np.ndarray = mask.astype(bool) & ~grown
    return outside if outside.any() else None


def picture_of(frame: FluoroFrame, step: GuardStep, guard: Guard | BiplaneGuard) -> FluoroPicture:
    """The frame with what the guard made of it: its view's outline, the line, the front, the cement
    mask and the rule's evidence."""
    front = step.measures.front_x if step.measures is not None else None
    region = region_of(guard, frame.view)
    return FluoroPicture(
        frame.pixels,
        frame.bit_depth,
        region,
        guard.config.posterior_fraction,
        front,
        step.mask,
        evidence_of(step, region, guard.config, frame.pixel_mm),
    )


class GuardRecording:
    """A `FrameHook` writing the guard's frames and decisions beside a recording (`frames/`).

    `device_t_us` gives the controller's clock now (the newest telemetry), which places a real
    source's frame on the recording's time axis (host/frame_recording.py)."""

    def __init__(self, recording: Path, device_t_us: Callable[[], int | None]) -> None:
        self.recorder = FrameRecorder(recording)
        self._device_t_us = device_t_us

    def __call__(self, judged: Judged, picture: FluoroPicture | None) -> None:
        step, frame = judged.step, judged.frame
        stop = step.stop.name if step.stop is not None else None
        if frame is not None and picture is not None:
            own = judged.view_status.label if judged.view_status != step.status else None
            self.recorder.offer(frame, picture, step.status.label, stop, self._device_t_us(), own)
        if step.changed or stop is not None:
            self.recorder.decision(
                step.t_us, step.frame_index, step.status.state, step.status.label, stop, judged.stop_view
            )

    def close(self) -> None:
        """Waits (bounded) for the writer to finish what is queued: off the event loop where it can."""
        self.recorder.close(CLOSE_TIMEOUT_S)


CLOSE_TIMEOUT_S = 2.0
"""The longest a closing frame recording waits for its writer (a few queued PNGs: milliseconds)."""


FrameHook = Callable[[Judged, FluoroPicture | None], None]
"""Told of every step that judged a frame (with its overlay) or changed the state or asked for a
stop (then perhaps without a frame): the frame recording's feed."""


def judged_handler(
    view_of: Callable[[], GuardView | None],
    on_state: Callable[[str, str], None],
    worker_of: Callable[[], GuardWorker | None],
    on_frame: FrameHook | None = None,
) -> Callable[[Judged], None]:
    """The worker's `on_judged` (on the event loop): the state to every screen, the frame (and its
    view's own state) to the panel, and both to `on_frame` (the frame recording)."""

    def handle(judged: Judged) -> None:
        step, frame = judged.step, judged.frame
        decided = step.changed or step.stop is not None
        if decided:
            on_state(step.status.state, step.status.label)
        view, worker = view_of(), worker_of()
        picture = picture_of(frame, step, worker.guard) if frame is not None and worker is not None else None
        if view is not None and judged.view is not None:
            view.view_status(judged.view, judged.view_status.label)
        if frame is not None and picture is not None and view is not None:
            view.show(GuardFrame(frame.index, frame.t_us, picture, frame.view))
        if on_frame is not None and (decided or picture is not None):
            on_frame(judged, picture)

    return handle


def open_guard_worker(
    setup: GuardSetup,
    client: DeviceClient,
    stops: StopRequests,
    *,
    view_of: Callable[[], GuardView | None] = lambda: None,
    on_state: Callable[[str, str], None] = lambda _s, _l: None,
    on_frame: FrameHook | None = None,
    on_close: Callable[[], object] | None = None,
    on_step: Callable[[GuardStep], None] | None = None,
    on_failure: Callable[[ConsumerFailure], None] | None = None,
) -> GuardWorker:
    """The setup's sources opened (blocking: off the event loop; FrameSourceError names one that
    cannot be opened), its guard, and the worker that runs it: its steps to `view_of()`'s panel and
    to `on_frame` (the frame recording); `on_close` once the worker has closed its sources."""
    opened = open_sources(setup)
    if on_close is not None:
        if isinstance(opened, dict):
            opened["lateral"] = ClosingSource(opened["lateral"], on_close)
        else:
            opened = ClosingSource(opened, on_close)
    worker: GuardWorker | None = None
    handler = judged_handler(view_of, on_state, lambda: worker, on_frame)
    worker = GuardWorker(
        make_guard(setup), opened, client, stops, on_step=on_step, on_judged=handler, on_failure=on_failure
    )
    return worker

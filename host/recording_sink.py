"""A recorder as a consumer of the stream pump: creation off the loop, the tail, the free-space bound
and a close that reports instead of raising.

Every program that records (`run`, the dashboard, the HIL runner) uses these, so a recording behaves
the same wherever it is made (docs/recordings.md):

- **Created off the event loop** (`open_recorder`): meta.json is written with an fsync; on a slow
  disk that takes long enough to delay the link's heartbeats if done on the loop.
- **The tail** (`RecordingSink.keep_tail`): a recording stays open for `tail_s` of device time after
  the last STOP event or DONE, while the link is connected, so that the pressure decay, the relief
  and the after-flow after a stop (the figures that matter most then) are in it, and replay reaches
  the final event. The time is the device's (telemetry `t_us`): the same at any simulator time
  scale. A wall-clock bound keeps a device that stops sending telemetry from holding it open.
- **Free space** (`free_space_problem`): checked before START; below `MIN_FREE_BYTES` (by default)
  the run is refused, not started to fail half-way.
- **Closing never raises** (`close_recorder`): a failed final flush is returned (and logged) so the
  caller can say "recording failed", never "recording saved"; and an exception out of a `finally`
  can no longer mask the cancellation that was running it, nor skip the link's close.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from host import cli_types
from host.pump import Consumer
from host.recording import Recorder, RecorderError
from protocol import Event, EventKind, State, TelemetryBatch

__all__ = [
    "DEFAULT_TAIL_S",
    "MIN_FREE_BYTES",
    "RecordingSink",
    "close_recorder",
    "free_space_problem",
    "open_recorder",
]

log = logging.getLogger(__name__)

DEFAULT_TAIL_S = cli_types.DEFAULT_TAIL_S
"""Device seconds a recording stays open after the last stop or DONE (host.cli_types says why 6 s)."""
MIN_FREE_BYTES = 100_000_000
"""Free space below which START is refused while recording (100 MB): a 30-minute run at 1 kHz is
72 MB of telemetry (40 bytes a sample), plus events, counters and the log; an injection lasts
minutes, within the cement's working time."""
TAIL_WALL_MARGIN_S = 2.0
"""The wall-clock bound of the tail: tail_s / time_scale plus this, in case telemetry stops coming."""


async def open_recorder(*args: Any, **kwargs: Any) -> Recorder:
    """`Recorder.create(*args, **kwargs)` in a worker thread: the loop keeps its heartbeats."""
    return await asyncio.to_thread(Recorder.create, *args, **kwargs)


def free_space_problem(directory: str | os.PathLike[str], min_free_bytes: int = MIN_FREE_BYTES) -> str | None:
    """None when `directory`'s filesystem has at least `min_free_bytes` free; else why not, in words."""
    path = Path(directory)
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        free = shutil.disk_usage(path).free
    except OSError as exc:
        return f"cannot read the free space at {directory}: {exc}"
    if free < min_free_bytes:
        return (
            f"only {free / 1e6:.1f} MB free at {directory}, at least {min_free_bytes / 1e6:.1f} MB are "
            "needed to record a run (--min-free-mb)"
        )
    return None


async def close_recorder(recorder: Recorder, exit_status: str = "ok") -> BaseException | None:
    """Close in a worker thread (its final fsync must not stall the loop). Returns the error if the
    recording failed (the final flush, or an earlier write); logs it; never raises it."""
    try:
        await asyncio.to_thread(recorder.close, exit_status)
    except Exception as exc:
        log.error("recording %s failed on close: %s", recorder.path, exc)
        return exc
    log.info("recording %s closed", recorder.path)
    return None


class RecordingSink(Consumer):
    """Feeds a `Recorder` from the pump and knows when the recording's tail is complete."""

    name = "recording"
    critical = True

    def __init__(self, recorder: Recorder, tail_s: float = DEFAULT_TAIL_S) -> None:
        if not (math.isfinite(tail_s) and tail_s >= 0):
            raise ValueError(f"tail_s {tail_s!r} is outside the allowed range: a finite number >= 0")
        self.recorder = recorder
        self.tail_s = tail_s
        self.failed: BaseException | None = None
        self._end_t_us: int | None = None
        """Device time of the last STOP event or DONE state: the tail runs from here."""
        self._latest_t_us: int | None = None
        self._connected = True
        self._progress = asyncio.Event()
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        recorder.on_error = self._writer_failed

    def _writer_failed(self, error: BaseException) -> None:
        """On the recorder's writer thread: hand the failure to the loop, to be reported at once."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._report_writer, error)

    def _report_writer(self, error: BaseException) -> None:
        if self.failed is None:
            exc = error if isinstance(error, Exception) else RuntimeError(repr(error))
            self.failed = RecorderError(f"recording {self.recorder.path} failed: {exc!r}")
            self._progress.set()
            self.fail(self.failed)

    # -- consumer -------------------------------------------------------------------------------
    def on_samples(self, batch: TelemetryBatch, received_at: float | None) -> None:
        samples = batch.samples
        if len(samples):
            self._latest_t_us = int(samples["t_us"][-1])
            self._progress.set()
        self._guard(self.recorder.add_samples, samples)

    def on_event(self, event: Event, notes: dict[str, Any], received_at: float | None) -> None:
        if event.kind == EventKind.STOP or event.state == State.DONE:
            self._end_t_us = max(event.t_us, self._end_t_us or 0)
        self._latest_t_us = max(event.t_us, self._latest_t_us or 0)
        self._progress.set()
        self._guard(self.recorder.add_event, event, **notes)

    def on_link(self, change: Any) -> None:
        from host.link import LinkState

        self._connected = change.state is LinkState.CONNECTED
        self._progress.set()

    def _guard(self, method: Any, *args: Any, **kwargs: Any) -> None:
        try:
            method(*args, **kwargs)
        except Exception as exc:
            self.failed = exc
            raise

    @property
    def latest_t_us(self) -> int | None:
        """Device time of the newest sample or event recorded (None before any): where on the
        recording's time axis something the host saw just now belongs (the guard's frames)."""
        return self._latest_t_us

    # -- the tail -------------------------------------------------------------------------------
    def tail_left_s(self) -> float:
        """Device seconds of tail still to record (0 when no stop was seen or the tail is complete)."""
        if self._end_t_us is None or self._latest_t_us is None:
            return 0.0
        return max(0.0, (self._end_t_us + self.tail_s * 1e6 - self._latest_t_us) / 1e6)

    async def keep_tail(self, time_scale: float = 1.0, clock: Any = time.monotonic) -> float:
        """Until the tail after the last stop or DONE is recorded, the link is lost, the recording
        failed, or the wall-clock bound passes. Returns the device seconds of tail recorded."""
        bound = clock() + self.tail_s / max(time_scale, 1e-6) + TAIL_WALL_MARGIN_S
        start = self._end_t_us
        while self.tail_left_s() > 0 and self._connected and self.failed is None:
            left = bound - clock()
            if left <= 0:
                log.warning("recording tail cut short: no telemetry for %.1f s", self.tail_s)
                break
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), left)
            except TimeoutError:
                continue
        if start is None or self._latest_t_us is None or self._end_t_us is None:
            return 0.0
        return max(0.0, (self._latest_t_us - self._end_t_us) / 1e6)

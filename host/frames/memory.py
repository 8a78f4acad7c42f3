"""An in-process frame source: frames pushed by code in the same process (HIL, sweeps, tests).

The HIL runner and the sweeps drive the simulated plant in-process, without a socket: they render a
frame and `push` it here, and the guard reads this source like any other. The same checks apply as
to every source (host/frames/checks.py). Thread-safe: the producer may be another thread.
"""

from __future__ import annotations

import logging
import queue
from typing import Any

from host.frames.checks import FrameChecks, SourceOptions, read_timeout
from host.frames.frame import FluoroFrame, FrameSourceLost, FrameStreamEnded

__all__ = ["PushFrameSource"]

log = logging.getLogger(__name__)


class _End:
    def __init__(self, error: FrameSourceLost) -> None:
        self.error = error


class PushFrameSource:
    """A `FrameSource` fed by `push`. `lose(reason)` makes the next read raise FrameSourceLost (a
    simulated unplugged grabber), `end()` FrameStreamEnded. At most `capacity` frames wait: beyond
    that the oldest is dropped, counted in `dropped` and logged (a real grabber drops, never blocks)."""

    def __init__(self, url: str = "mem://frames", capacity: int = 64, **options: Any) -> None:
        if not 1 <= capacity <= 10_000:
            raise ValueError(f"capacity: {capacity} is outside the range; allowed 1..10000")
        self.url = url
        self.checks = FrameChecks(url, SourceOptions.parse(options))
        self._queue: queue.Queue[FluoroFrame | _End] = queue.Queue()
        self._capacity = capacity
        self._ended: FrameSourceLost | None = None
        self.dropped = 0

    def push(self, frame: FluoroFrame) -> None:
        while self._queue.qsize() >= self._capacity:
            try:
                old = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(old, _End):  # never drop the end marker
                self._queue.put(old)
                return
            self.dropped += 1
            log.warning("%s: the reader is behind; dropped frame %d", self.url, old.index)
        self._queue.put(frame)

    def lose(self, reason: str) -> None:
        self._queue.put(_End(FrameSourceLost(self.url, reason)))

    def end(self) -> None:
        self._queue.put(_End(FrameStreamEnded(self.url, "the producer ended the stream")))

    def read(self, timeout_s: float) -> FluoroFrame | None:
        timeout_s = read_timeout(timeout_s)
        if self._ended is not None:
            raise self._ended
        try:
            item = self._queue.get(timeout=timeout_s) if timeout_s > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if isinstance(item, _End):
            self._ended = item.error
            raise item.error
        return self.checks.check(item)

    def close(self) -> None:
        if self._ended is None:
            self._ended = FrameStreamEnded(self.url, "closed by the reader")

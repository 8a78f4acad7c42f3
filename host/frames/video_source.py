"""Video sources: a capture device (a C-arm's video output through a frame grabber) or a video file,
both through opencv's `cv2.VideoCapture` (imported here only, when such a source is opened).

- A device (`/dev/videoN`) is read by a thread that blocks on the grabber and hands frames over a
  queue, so `read(timeout)` honours its timeout whatever the driver does. Frames are stamped with
  the host's monotonic clock when they arrive. When the device stops delivering (unplugged, the
  driver gave up) the source is lost: `FrameSourceLost` naming the device, at once and on every read.
- A file is decoded on demand. Its frames are stamped with the host clock at open plus the frame's
  time in the file (`CAP_PROP_POS_MSEC`, or index / the file's rate), so the rate checks see the
  file's own timing; the end of the file is `FrameStreamEnded`.

Colour frames are converted to grey (BT.601 luma, cv2.cvtColor): a frame grabber digitises the
C-arm's monochrome video as colour more often than not.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any

import numpy as np

from host.file_limits import MAX_VIDEO_BYTES, FileRejectedError, check_regular
from host.frames.checks import FrameChecks, SourceOptions, read_timeout, split_clock
from host.frames.frame import FluoroFrame, FrameRejected, FrameSourceError, FrameSourceLost, FrameStreamEnded

__all__ = ["VideoFrameSource", "to_grey"]

log = logging.getLogger(__name__)

_QUEUE = 8
"""Frames a device may get ahead of the reader (then the oldest are dropped and counted)."""


def to_grey(image: np.ndarray) -> np.ndarray:
    """A 2-D grey image from what opencv decoded (grey, BGR or BGRA)."""
    import cv2

    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        return cv2.cvtColor(image, code)
    raise ValueError(f"shape {image.shape}")


class VideoFrameSource:
    """A FrameSource on a video device or file."""

    def __init__(self, url: str, device: bool, **options: Any) -> None:
        import cv2

        self.url = url
        self.device = device
        self._clock, rest = split_clock(options)
        self.options = SourceOptions.parse(rest)
        self.checks = FrameChecks(url, self.options)
        if not device:
            try:
                check_regular(url, MAX_VIDEO_BYTES)
            except FileNotFoundError:
                raise FrameSourceError(url, "no such video file") from None
            except FileRejectedError as exc:
                raise FrameSourceError(url, str(exc)) from None
        elif not os.path.exists(url):
            raise FrameSourceError(url, "no such video device (is the frame grabber plugged in?)")
        cap = cv2.VideoCapture(url)
        if not cap.isOpened():
            cap.release()
            what = "the device cannot be opened for capture" if device else "not a video opencv can decode"
            raise FrameSourceError(url, what)
        self._cap: Any = cap
        self._index = 0
        self._t0 = self._clock()
        self._file_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._lost: FrameSourceLost | None = None
        self.dropped = 0
        self._queue: queue.Queue[tuple[np.ndarray, float] | FrameSourceLost] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if device:
            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._grab, name=f"grab {url}", daemon=True)
            self._thread.start()

    # -- device ----------------------------------------------------------------------------------
    def _grab(self) -> None:
        assert self._queue is not None
        while not self._stop.is_set():
            ok, image = self._cap.read()
            if self._stop.is_set():
                return
            if not ok or image is None:
                self._queue.put(
                    FrameSourceLost(self.url, "the device stopped delivering frames (unplugged?)")
                )
                return
            while self._queue.qsize() >= _QUEUE:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    break
            self._queue.put((image, self._clock()))

    def _next_device(self, timeout_s: float) -> tuple[np.ndarray, float] | None:
        assert self._queue is not None
        try:
            item = self._queue.get(timeout=timeout_s) if timeout_s > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if isinstance(item, FrameSourceLost):
            log.warning("%s", item)
            self._lost = item
            raise item
        return item

    # -- file ------------------------------------------------------------------------------------
    def _next_file(self) -> tuple[np.ndarray, float]:
        import cv2

        ok, image = self._cap.read()
        if not ok or image is None:
            self._lost = FrameStreamEnded(self.url, f"end of the video after {self._index} frames")
            raise self._lost
        pos_ms = float(self._cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0)
        if pos_ms <= 0.0 and self._index > 0:
            rate = self.options.fps or self._file_fps or 25.0
            pos_ms = self._index * 1000.0 / rate
        return image, self._t0 + pos_ms / 1000.0

    def read(self, timeout_s: float) -> FluoroFrame | None:
        timeout_s = read_timeout(timeout_s)
        if self._lost is not None:
            raise self._lost
        got = self._next_device(timeout_s) if self.device else self._next_file()
        if got is None:
            return None
        image, t_s = got
        index = self._index
        self._index += 1
        try:
            grey = to_grey(image)
        except ValueError as exc:
            raise FrameRejected(self.url, "image", exc, "grey, BGR or BGRA", index) from None
        depth = 8 if grey.dtype == np.uint8 else (self.options.bit_depth or 16)
        frame = FluoroFrame(
            index=index,
            t_us=round(t_s * 1e6),
            view=self.options.view,
            pixels=np.ascontiguousarray(grey),
            bit_depth=depth,
            pixel_mm=self.options.pixel_mm,
            source=self.url,
        )
        return self.checks.check(frame)

    def close(self) -> None:
        self._stop.set()
        if self._lost is None:
            self._lost = FrameStreamEnded(self.url, "closed by the reader")
        if self._thread is not None:  # let a blocked grab return before the capture goes away
            self._thread.join(timeout=2.0)
        self._cap.release()

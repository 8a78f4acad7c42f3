"""What every frame source promises the guard, checked on every frame.

The options a caller gives `open_frame_source` (expected size, bit depth, maximum rate, and for real
sources the view and the pixel spacing the operator calibrated) are validated once here, with
messages that name the option, the value and the allowed range; then `FrameChecks.check` holds each
frame to them and to the order every source must keep (frame index and timestamp strictly
increasing). One place for both, so that the sim://, video and folder sources refuse the same
things with the same words.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from host.cli_types import finite_float
from host.frames.frame import (
    MAX_BIT_DEPTH,
    MAX_FRAME_SIDE,
    MIN_BIT_DEPTH,
    MIN_FRAME_SIDE,
    VIEWS,
    FluoroFrame,
    FrameRejected,
)

__all__ = ["MAX_FPS", "MIN_FPS", "Clock", "FrameChecks", "SourceOptions", "read_timeout", "split_clock"]

Clock = Callable[[], float]
"""Monotonic seconds: time.monotonic, or a test's clock."""


def split_clock(options: dict[str, Any]) -> tuple[Clock, dict[str, Any]]:
    """The `clock` option (default time.monotonic) and the other options."""
    rest = dict(options)
    clock = rest.pop("clock", time.monotonic)
    if not callable(clock):
        raise ValueError(f"clock: {clock!r} is not callable; allowed a function returning monotonic seconds")
    return clock, rest


MIN_FPS = 0.5
MAX_FPS = 60.0
"""Pulsed fluoroscopy runs at 1-30 frames/s; continuous video at 25-60. Beyond that is not a C-arm."""

_MAX_FPS = finite_float("max_fps", MIN_FPS, MAX_FPS, "frames/s")
_TIMEOUT = finite_float("timeout_s", 0.0, 3600.0, "s")
_FPS = finite_float("fps", MIN_FPS, MAX_FPS, "frames/s")
_PIXEL_MM = finite_float("pixel_mm", 0.01, 5.0, "mm")
_KNOWN = frozenset(
    {"expect_shape", "expect_bit_depth", "max_fps", "view", "pixel_mm", "bit_depth", "fps", "clock"}
)


def read_timeout(timeout_s: float) -> float:
    """`read()`'s timeout, checked: at most 3600 s and finite (ValueError naming it otherwise), so
    that a NaN never reaches a select or a queue wait; a negative one (a deadline already passed)
    means do not wait."""
    return _TIMEOUT.check(max(timeout_s, 0.0) if math.isfinite(timeout_s) else timeout_s)


def _int_option(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: {value!r} is not an integer; allowed {lo}..{hi}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}: {value} is outside the range; allowed {lo}..{hi}")
    return value


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """The checked options of one source. None = not constrained / not given."""

    expect_shape: tuple[int, int] | None = None
    expect_bit_depth: int | None = None
    max_fps: float | None = None
    view: str = "lateral"
    """Real sources: which projection the operator says this feed shows."""
    pixel_mm: float = 0.3
    """Real sources: the operator's calibration at the vertebral body. 0.3 mm is a 15 cm field on a
    512 px image, the usual C-arm field for a vertebra."""
    bit_depth: int | None = None
    """Real sources: the detector's depth when the file does not say (PNG, video); None = the
    container's (8 for video and 8-bit PNG, 16 for 16-bit PNG)."""
    fps: float | None = None
    """Folder sources: the rate to deliver at (None: as fast as read; timestamps from the host clock)."""

    @classmethod
    def parse(cls, options: dict[str, Any]) -> SourceOptions:
        """Checked options; ValueError naming the first bad one (unknown names included). The key
        ``clock`` is taken by the caller (an injected clock for tests) and ignored here."""
        unknown = sorted(set(options) - _KNOWN)
        if unknown:
            allowed = ", ".join(sorted(_KNOWN))
            raise ValueError(f"unknown frame source option {unknown[0]!r}; allowed {allowed}")
        shape = options.get("expect_shape")
        if shape is not None:
            if not (isinstance(shape, tuple | list) and len(shape) == 2):
                raise ValueError(f"expect_shape: {shape!r} is not (height, width)")
            shape = (
                _int_option("expect_shape height", shape[0], MIN_FRAME_SIDE, MAX_FRAME_SIDE),
                _int_option("expect_shape width", shape[1], MIN_FRAME_SIDE, MAX_FRAME_SIDE),
            )
        depth = options.get("expect_bit_depth")
        if depth is not None:
            depth = _int_option("expect_bit_depth", depth, MIN_BIT_DEPTH, MAX_BIT_DEPTH)
        bit_depth = options.get("bit_depth")
        if bit_depth is not None:
            bit_depth = _int_option("bit_depth", bit_depth, MIN_BIT_DEPTH, MAX_BIT_DEPTH)
        max_fps = options.get("max_fps")
        fps = options.get("fps")
        view = options.get("view", "lateral")
        if view not in VIEWS:
            raise ValueError(f"view: {view!r} is not a view; allowed {' or '.join(VIEWS)}")
        return cls(
            expect_shape=shape,
            expect_bit_depth=depth,
            max_fps=None if max_fps is None else _MAX_FPS.check(max_fps),
            view=view,
            pixel_mm=_PIXEL_MM.check(options.get("pixel_mm", 0.3)),
            bit_depth=bit_depth,
            fps=None if fps is None else _FPS.check(fps),
        )


class FrameChecks:
    """Holds one source's frames to its options and to strictly increasing index and timestamp.
    Without `expect_shape` / `expect_bit_depth`, the first good frame's size (per view) and bit depth
    are what the rest must match: a detector does not change mid-run, a file that does is refused.

    A rejected frame does not move the reference: the next good frame is compared with the last
    good one, so one bad frame costs one frame, not the stream."""

    def __init__(self, url: str, options: SourceOptions) -> None:
        self.url = url
        self.options = options
        self._last_index: int | None = None
        self._last_t_us: int | None = None
        # A frame may come up to 20 % early (pulse jitter, a grabber's timestamp granularity)
        # before it counts as "too fast".
        self._min_gap_us = None if options.max_fps is None else math.floor(1e6 / options.max_fps * 0.8)
        self.rejected = 0
        self._locked_shape: dict[str, tuple[int, int]] = {}
        self._locked_depth: int | None = None

    def check(self, frame: FluoroFrame) -> FluoroFrame:
        """`frame` if it keeps every promise; FrameRejected naming the first it breaks."""
        try:
            self._check(frame)
        except FrameRejected:
            self.rejected += 1
            raise
        self._last_index = frame.index
        self._last_t_us = frame.t_us
        self._locked_shape.setdefault(frame.view, frame.shape)
        if self._locked_depth is None:
            self._locked_depth = frame.bit_depth
        return frame

    def _check(self, frame: FluoroFrame) -> None:
        opts = self.options

        def bad(field: str, value: object, allowed: str) -> FrameRejected:
            return FrameRejected(self.url, field, value, allowed, frame.index)

        if opts.expect_shape is not None and frame.shape != opts.expect_shape:
            h, w = frame.shape
            eh, ew = opts.expect_shape
            raise bad("size", f"{h}x{w}", f"{eh}x{ew} (expect_shape)")
        if opts.expect_bit_depth is not None and frame.bit_depth != opts.expect_bit_depth:
            raise bad("bit_depth", frame.bit_depth, f"{opts.expect_bit_depth} (expect_bit_depth)")
        # without an expectation, the first good frame sets it: a source does not change its detector
        locked = self._locked_shape.get(frame.view)
        if opts.expect_shape is None and locked is not None and frame.shape != locked:
            h, w = frame.shape
            raise bad("size", f"{h}x{w}", f"{locked[0]}x{locked[1]} (the first {frame.view} frame's)")
        if opts.expect_bit_depth is None and self._locked_depth not in (None, frame.bit_depth):
            raise bad("bit_depth", frame.bit_depth, f"{self._locked_depth} (the first frame's)")
        if self._last_index is not None and frame.index <= self._last_index:
            raise bad("index", frame.index, f"> {self._last_index} (strictly increasing)")
        if self._last_t_us is not None:
            if frame.t_us <= self._last_t_us:
                raise bad("t_us", frame.t_us, f"> {self._last_t_us} (strictly increasing)")
            gap = frame.t_us - self._last_t_us
            if self._min_gap_us is not None and gap < self._min_gap_us:
                fps = 1e6 / gap
                raise bad("rate", f"{fps:.1f} frames/s", f"at most {opts.max_fps:g} frames/s (max_fps)")

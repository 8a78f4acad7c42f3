"""One fluoroscopy frame, and the one interface every frame source offers.

The guard (host/guard) reads frames from a `FrameSource` and never knows where they come from: the
simulator (`sim://...`), a frame grabber (`/dev/video0`), a video file, a folder of DICOM or PNG
frames. `open_frame_source(url)` picks the source from the URL, the way the serial port URL picks
the link. Each source checks what it delivers against what the guard was promised (size, bit depth,
rate, increasing timestamps) and either raises a `FrameError` naming the field, the value and what
is allowed, or reports the source lost (`FrameSourceLost`) so that the guard goes blind: a source is
never silent about a fault.

Ground truth from the simulator (front depth, leak onset, the true body outline) is never in a
`FluoroFrame`: it travels beside the frames in a separate truth record keyed by frame index, for scoring
only (docs/fluoroscopy.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from host.errors import CementguardError

__all__ = [
    "MAX_BIT_DEPTH",
    "MAX_FRAME_SIDE",
    "MIN_BIT_DEPTH",
    "MIN_FRAME_SIDE",
    "VIEWS",
    "FluoroFrame",
    "FrameError",
    "FrameRejected",
    "FrameSource",
    "FrameSourceError",
    "FrameSourceLost",
    "FrameStreamEnded",
    "open_frame_source",
]

VIEWS = ("lateral", "ap")
"""The two projections: lateral (the antero-posterior axis runs left-right in the image) and AP."""
MIN_BIT_DEPTH = 8
MAX_BIT_DEPTH = 16
MIN_FRAME_SIDE = 16
"""Smaller is not an image of a vertebral body anyone could read."""
MAX_FRAME_SIDE = 4096
"""A 43 cm flat panel at 0.1 mm is 4300 px; C-arm video is 512-1024. Bounds memory per frame (32 MiB)."""


class FrameError(CementguardError):
    """Base of every frame-source error."""


class FrameSourceError(FrameError):
    """The source could not be opened: a malformed URL, a missing device, an empty folder, a file
    that is not a video. The message names the source and why."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"frame source {source}: {reason}")
        self.source = source
        self.reason = reason


class FrameRejected(FrameError):  # noqa: N818 - names of the host API
    """A frame broke what the source promised (size, bit depth, rate, increasing timestamps, a
    corrupt file). The message names the field, the value and what is allowed. The source stays
    usable: the next read may deliver a good frame; the guard decides what a rejected frame means."""

    def __init__(
        self, source: str, field: str, value: object, allowed: str, index: int | None = None
    ) -> None:
        where = f" frame {index}" if index is not None else ""
        super().__init__(f"frame source {source}{where}: {field} {value} is not allowed; allowed {allowed}")
        self.source = source
        self.field = field
        self.value = value
        self.allowed = allowed
        self.index = index


class FrameSourceLost(FrameError):  # noqa: N818 - names of the host API
    """The source is gone (a device unplugged, the simulator's stream dropped, a read error): no
    more frames will come. The guard goes blind, says so, and stops where configured."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"frame source {source} lost: {reason}")
        self.source = source
        self.reason = reason


class FrameStreamEnded(FrameSourceLost):
    """The source ran out of frames in order: the end of a file or folder, or the simulator closed
    its stream. For the guard it is the same as lost (no more frames), but it is not a fault."""


@dataclass(frozen=True, slots=True)
class FluoroFrame:
    """One detector frame. Pixels are detector intensity: BRIGHT = more X-rays through, so bone and
    cement are DARK (a MONOCHROME1 DICOM is inverted on reading to match).

    Construction checks the fields (FrameRejected names the first one wrong), so that a frame the
    guard receives is always well-formed: 2-D, uint8/uint16, values below 2**bit_depth."""

    index: int
    """Frame number from the source, strictly increasing."""
    t_us: int
    """Timestamp in microseconds: the device clock for sim:// (the controller's clock), the host's
    monotonic clock for real sources."""
    view: str
    """"lateral" or "ap"."""
    pixels: np.ndarray
    """2-D, dtype uint8 or uint16, H x W."""
    bit_depth: int
    """8..16; every pixel is < 2**bit_depth."""
    pixel_mm: float
    """Pixel spacing at the vertebral body, mm, > 0."""
    source: str
    """The URL of the source it came from."""

    def __post_init__(self) -> None:
        px = self.pixels

        def bad(field: str, value: object, allowed: str) -> FrameRejected:
            return FrameRejected(self.source, field, value, allowed, self.index)

        if self.view not in VIEWS:
            raise bad("view", repr(self.view), " or ".join(VIEWS))
        if not isinstance(px, np.ndarray) or px.ndim != 2:
            shape = getattr(px, "shape", type(px).__name__)
            raise bad("pixels shape", shape, "a 2-D array (H x W)")
        if px.dtype not in (np.uint8, np.uint16):
            raise bad("pixels dtype", px.dtype, "uint8 or uint16")
        h, w = px.shape
        if not (MIN_FRAME_SIDE <= h <= MAX_FRAME_SIDE and MIN_FRAME_SIDE <= w <= MAX_FRAME_SIDE):
            raise bad("size", f"{h}x{w}", f"{MIN_FRAME_SIDE}..{MAX_FRAME_SIDE} pixels a side")
        if not MIN_BIT_DEPTH <= self.bit_depth <= MAX_BIT_DEPTH:
            raise bad("bit_depth", self.bit_depth, f"{MIN_BIT_DEPTH}..{MAX_BIT_DEPTH}")
        if self.bit_depth > 8 * px.dtype.itemsize:
            raise bad("bit_depth", self.bit_depth, f"at most {8 * px.dtype.itemsize} for {px.dtype}")
        if self.bit_depth < 8 * px.dtype.itemsize:
            top = int(px.max())
            if top >= 1 << self.bit_depth:
                raise bad("pixel value", top, f"below 2**{self.bit_depth} = {1 << self.bit_depth}")
        if not (math.isfinite(self.pixel_mm) and self.pixel_mm > 0):
            raise bad("pixel_mm", self.pixel_mm, "a finite spacing > 0 mm")
        if self.index < 0:
            raise bad("index", self.index, ">= 0")

    @property
    def shape(self) -> tuple[int, int]:
        h, w = self.pixels.shape
        return int(h), int(w)

    @property
    def max_value(self) -> int:
        """The largest value the detector can report: 2**bit_depth - 1."""
        return (1 << self.bit_depth) - 1


@runtime_checkable
class FrameSource(Protocol):
    """Where frames come from. One interface for every source, chosen by URL.

    `read(timeout_s)` returns the next frame, or None when none arrived within `timeout_s` (what a
    missing frame means is the guard's decision, not the source's). It raises `FrameRejected` for a
    frame that breaks the source's promises (the next read goes on), `FrameSourceLost` when no more
    frames can come (`FrameStreamEnded` at a clean end). `close()` is idempotent."""

    def read(self, timeout_s: float) -> FluoroFrame | None: ...

    def close(self) -> None: ...


def open_frame_source(url: str, **options: Any) -> FrameSource:
    """The source named by `url`:

    - ``sim:///path/to/socket`` or ``sim://host:port``: the simulator's frame stream
      (`cementguard sim --frames-out ...`, docs/fluoroscopy.md "Stream format");
    - ``/dev/videoN``: a video capture device (a C-arm's video output through a frame grabber);
    - ``file.mp4`` / ``.avi`` / ``.mkv`` / ``.mov``: a video file;
    - a folder: its ``.dcm`` (DICOM) or ``.png`` frames, in name order.

    Options common to every source (all checked: FrameSourceError/ValueError names a bad one):
    ``expect_shape=(H, W)`` and ``expect_bit_depth=N`` reject other frames; ``max_fps`` rejects a
    frame that comes sooner than 1/max_fps after the previous one; real sources also take
    ``view`` ("lateral"), ``pixel_mm`` (the operator's calibration) and ``bit_depth``.
    The heavy readers (opencv, pydicom) are imported only here, when such a source is opened."""
    from host.frames.open import open_source

    return open_source(url, **options)

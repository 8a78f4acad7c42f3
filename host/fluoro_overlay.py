"""What the fluoroscopic guard sees, drawn: the frame in grayscale with the body outline, the
posterior-quarter line, the detected front and the segmented cement on it.

One drawing for every screen that shows it: the dashboard's panel (half-block cells, a few dozen
columns wide), a replay, and the run report (a PNG at the frame's own size). The geometry is drawn
AFTER the image is scaled to its output size, in output pixels: a one-pixel line drawn on a 512 px
frame and then shrunk to 46 columns would vanish; drawn at the output size it is always one cell.

Pure numpy/opencv: no Textual, no I/O (the PNG encoding is `png_bytes`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

from host.guard.region import BodyRegion

__all__ = ["COLOURS", "FluoroPicture", "grayscale", "overlay_rgb", "png_bytes"]

log = logging.getLogger(__name__)

COLOURS: dict[str, tuple[int, int, int]] = {
    "outline": (0, 200, 0),
    "line": (255, 215, 0),
    "front": (0, 200, 255),
    "front_past": (255, 40, 40),
    "cement": (255, 120, 0),
    "evidence": (255, 0, 255),
}
"""RGB of each overlay element: outline green, posterior-quarter line yellow, front cyan (red once
past the line), cement orange (blended over the image), the rule's evidence magenta (blended, and
ringed so that a blob of a few pixels still shows)."""
CEMENT_ALPHA = 0.45
EVIDENCE_ALPHA = 0.7
LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.0
"""The grey window: the frame's 1st..99th percentile stretched to black..white. Fluoroscopy has low
contrast in a 10-12 bit range; a fixed window would show a grey fog."""
MAX_OUTPUT_SIDE = 4096


@dataclass(frozen=True, slots=True)
class FluoroPicture:
    """Everything one drawing needs: the frame's pixels and what the guard made of them."""

    pixels: np.ndarray
    """2-D uint8/uint16 detector intensity (bright = more X-rays through)."""
    bit_depth: int
    region: BodyRegion | None = None
    posterior_fraction: float | None = None
    front_x: float | None = None
    """The detected front's image column (None: no cement)."""
    mask: np.ndarray | None = None
    """The cement mask, same shape as `pixels` (None: not segmented)."""
    evidence: np.ndarray | None = None
    """The part of the cement a rule counted (beyond the outline's margin: the extravasated blob,
    the vein), same shape as `pixels` (None: none)."""


def grayscale(pixels: np.ndarray) -> np.ndarray:
    """uint8 of the same shape: the percentile window stretched to 0..255."""
    px = np.asarray(pixels)
    if px.ndim != 2 or px.size == 0:
        raise ValueError(f"pixels shape {px.shape}; allowed a non-empty 2-D image")
    lo, hi = np.percentile(px, (LOW_PERCENTILE, HIGH_PERCENTILE))
    if not hi > lo:
        hi = lo + 1.0
    out = (px.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    grey: np.ndarray = np.clip(out, 0, 255).astype(np.uint8)
    return grey


def overlay_rgb(picture: FluoroPicture, width: int, height: int) -> np.ndarray:
    """An RGB uint8 image `height` x `width` of the picture, scaled to fit (the whole frame, not
    cropped; stretched: the caller picks the aspect, e.g. 2 pixel rows per terminal cell).

    Frame column x maps to output column floor(x * width / W) (pixel centres kept): the
    posterior-quarter line is at output column floor(line_x * width / W), the front likewise."""
    if not (1 <= width <= MAX_OUTPUT_SIDE and 1 <= height <= MAX_OUTPUT_SIDE):
        raise ValueError(f"output {width}x{height}; allowed 1..{MAX_OUTPUT_SIDE} a side")
    px = picture.pixels
    h, w = px.shape
    grey = grayscale(px)
    mask = picture.mask
    if mask is not None and mask.shape != px.shape:
        log.warning("overlay: cement mask %s does not fit the frame %s: not drawn", mask.shape, px.shape)
        mask = None
    interp = cv2.INTER_AREA if width < w or height < h else cv2.INTER_NEAREST
    small = cv2.resize(grey, (width, height), interpolation=interp)
    rgb = np.repeat(small[:, :, None], 3, axis=2).astype(np.float32)
    if mask is not None and mask.any():
        cover = cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA) > 0.25
        tint = np.array(COLOURS["cement"], np.float32)
        rgb[cover] = (1 - CEMENT_ALPHA) * rgb[cover] + CEMENT_ALPHA * tint
    evidence = picture.evidence
    if evidence is not None and evidence.shape != px.shape:
        log.warning("overlay: evidence %s does not fit the frame %s: not drawn", evidence.shape, px.shape)
        evidence = None
    ring = None
    if evidence is not None and evidence.any():
        cover = cv2.resize(evidence.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA) > 0
        tint = np.array(COLOURS["evidence"], np.float32)
        rgb[cover] = (1 - EVIDENCE_ALPHA) * rgb[cover] + EVIDENCE_ALPHA * tint
        grown = cv2.dilate(cover.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        ring = grown & ~cover
    out = np.clip(rgb, 0, 255).astype(np.uint8)
    if ring is not None:
        out[ring] = COLOURS["evidence"]
    sx, sy = width / w, height / h

    def col(x: float) -> int:
        return int(min(width - 1, max(0, math.floor(x * sx))))

    def row(y: float) -> int:
        return int(min(height - 1, max(0, math.floor(y * sy))))

    region = picture.region
    if region is not None:
        pts = np.array([[col(x), row(y)] for x, y in region.polygon], np.int32)
        cv2.polylines(out, [pts], isClosed=True, color=COLOURS["outline"], thickness=1)
        top, bottom = row(region.top), row(region.bottom)
        line_col = None
        if picture.posterior_fraction is not None:
            line_col = col(region.line_x(picture.posterior_fraction))
            out[top : bottom + 1, line_col] = COLOURS["line"]
        if picture.front_x is not None and math.isfinite(picture.front_x):
            front_col = col(picture.front_x)
            past = False
            if picture.posterior_fraction is not None:
                past = float(region.ap_fraction(picture.front_x)) >= picture.posterior_fraction
            out[top : bottom + 1, front_col] = COLOURS["front_past" if past else "front"]
    return out


def png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB uint8 image as PNG bytes (for the report and the recording)."""
    if rgb.ndim == 3:
        rgb = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", rgb)
    if not ok:
        raise ValueError(f"could not encode a {rgb.shape} image as PNG")
    return bytes(buf.tobytes())

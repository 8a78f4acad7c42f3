"""When the guard cannot see: image tests that need no cement model (pure functions).

A guard that reports WATCHING over a frozen, black or shifted image is worse than no guard: the
operator trusts it. Each test names what it saw, and the guard goes BLIND with that reason at once.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["COARSE", "MOTION_SIDE", "coarse", "correlation", "exposure_fault", "mean_abs_diff", "motion_px"]

COARSE = (32, 32)
"""The outline test compares 32x32 block means: the body's shape survives, the noise averages out."""


def exposure_fault(pixels: np.ndarray, max_value: int, fraction: float) -> str | None:
    """'black image' or 'saturated image' when at least `fraction` of the pixels are at <= 1 % or
    >= 99 % of full scale (beam off / no signal, overexposed / no patient), else None."""
    n = pixels.size
    dark = int(np.count_nonzero(pixels <= max_value * 0.01))
    if dark >= fraction * n:
        return "black image"
    bright = int(np.count_nonzero(pixels >= max_value * 0.99))
    if bright >= fraction * n:
        return "saturated image"
    return None


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |a - b| of two frames of one shape (in counts)."""
    return float(cv2.norm(a, b, cv2.NORM_L1)) / a.size


def coarse(log_image: np.ndarray) -> np.ndarray:
    """Block means of a log image (float32), for the outline test."""
    return cv2.resize(log_image, COARSE, interpolation=cv2.INTER_AREA)


MOTION_SIDE = 128
"""Motion is measured on a 128 x 128 reduction: phase correlation there takes ~1 ms and still
resolves a fraction of its 4 px (at 512) cells."""


def motion_px(base_log: np.ndarray, log_image: np.ndarray, exterior: np.ndarray) -> float:
    """How far (full-resolution pixels) the image moved against the baseline; 0 when it did not.

    Phase correlation of reduced log images proposes a shift; the shift counts only if it explains
    the change outside the body: moving the baseline by it must cut the mean difference there by a
    fifth. New cement inside the body can pull the correlation peak (a large bolus is a strong
    feature), but it leaves the outside unchanged, so that proposal fails the test; a moved C-arm
    or patient changes the outside exactly as the shift says. Cement that leaves the body is local
    and no shift explains it, so it stays a leak, not motion."""
    h, w = log_image.shape
    size = (min(MOTION_SIDE, w), min(MOTION_SIDE, h))
    a = cv2.resize(base_log, size, interpolation=cv2.INTER_AREA)
    b = cv2.resize(log_image, size, interpolation=cv2.INTER_AREA)
    # Means removed, no window: the body sits mid-image, and a Hanning window would weigh the
    # moved body down exactly where it went (tried: a 40 px shift read as 2 px).
    (dx, dy), _response = cv2.phaseCorrelate(a - float(a.mean()), b - float(b.mean()))
    out = cv2.resize(exterior.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    if not out.any() or math.hypot(dx, dy) < 0.5:
        return 0.0
    shift = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], np.float32)
    moved = cv2.warpAffine(a, shift, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    before = float(np.abs(b - a)[out].mean())
    after = float(np.abs(b - moved)[out].mean())
    if not after < 0.8 * before:
        return 0.0
    return float(math.hypot(dx * w / size[0], dy * h / size[1]))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two coarse images (1: the same picture; ~0: unrelated or flat)."""
    x = a.astype(np.float64).ravel() - float(a.mean())
    y = b.astype(np.float64).ravel() - float(b.mean())
    den = float(np.sqrt((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else 0.0

"""The vertebral body's outline: set by the operator (rectangle or polygon, adjustable) or found in
the pre-cement baseline, with the side of the posterior wall in the lateral view.

The AP axis of the lateral view runs left-right in the image (host/frames contract); the anterior and
posterior walls are the outline's extreme columns, and the posterior-quarter line is the column at
`posterior_fraction` of the way from the anterior wall to the posterior wall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

__all__ = ["BodyRegion", "auto_outline"]

Side = Literal["left", "right"]

MIN_BODY_FRACTION = 0.01
MAX_BODY_FRACTION = 0.8
"""An auto outline covering less than 1 % or more than 80 % of the image is not a vertebral body."""


@dataclass(frozen=True, slots=True)
class BodyRegion:
    """A polygon in pixel coordinates (x right, y down) and the posterior side."""

    polygon: tuple[tuple[float, float], ...]
    posterior: Side = "right"

    def __post_init__(self) -> None:
        if len(self.polygon) < 3:
            raise ValueError(f"region: {len(self.polygon)} points; allowed at least 3")
        for x, y in self.polygon:
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError(f"region: point ({x}, {y}) is not finite")
        if self.posterior not in ("left", "right"):
            raise ValueError(f"region posterior: {self.posterior!r}; allowed left, right")
        if self.right - self.left < 4 or self.bottom - self.top < 4:
            raise ValueError(
                f"region: {self.right - self.left:g} x {self.bottom - self.top:g} px; allowed at least 4 x 4"
            )

    @classmethod
    def rectangle(cls, x0: float, y0: float, x1: float, y1: float, posterior: Side = "right") -> BodyRegion:
        xa, xb = sorted((x0, x1))
        ya, yb = sorted((y0, y1))
        return cls(((xa, ya), (xb, ya), (xb, yb), (xa, yb)), posterior)

    def moved(self, dx: float, dy: float) -> BodyRegion:
        """The operator's adjustment: the same outline shifted by (dx, dy) pixels."""
        return BodyRegion(tuple((x + dx, y + dy) for x, y in self.polygon), self.posterior)

    def scaled(self, factor: float) -> BodyRegion:
        """The operator's adjustment: grown or shrunk about its centre."""
        if not (math.isfinite(factor) and 0.2 <= factor <= 5.0):
            raise ValueError(f"region scale: {factor}; allowed 0.2..5")
        cx = (self.left + self.right) / 2
        cy = (self.top + self.bottom) / 2
        pts = tuple((cx + (x - cx) * factor, cy + (y - cy) * factor) for x, y in self.polygon)
        return BodyRegion(pts, self.posterior)

    @property
    def left(self) -> float:
        return min(x for x, _ in self.polygon)

    @property
    def right(self) -> float:
        return max(x for x, _ in self.polygon)

    @property
    def top(self) -> float:
        return min(y for _, y in self.polygon)

    @property
    def bottom(self) -> float:
        return max(y for _, y in self.polygon)

    @property
    def anterior_x(self) -> float:
        return self.left if self.posterior == "right" else self.right

    @property
    def posterior_x(self) -> float:
        return self.right if self.posterior == "right" else self.left

    def ap_fraction(self, x: np.ndarray | float) -> np.ndarray | float:
        """0 at the anterior wall, 1 at the posterior wall (beyond: outside the body)."""
        return (x - self.anterior_x) / (self.posterior_x - self.anterior_x)

    def line_x(self, fraction: float) -> float:
        """The image column at `fraction` of the AP depth from the anterior wall."""
        return self.anterior_x + fraction * (self.posterior_x - self.anterior_x)

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The body as a boolean image of `shape`; ValueError if the outline misses the image."""
        h, w = shape
        if self.right < 0 or self.left >= w or self.bottom < 0 or self.top >= h:
            raise ValueError(
                f"region: x {self.left:g}..{self.right:g}, y {self.top:g}..{self.bottom:g} lies outside "
                f"the {w}x{h} image"
            )
        out = np.zeros((h, w), np.uint8)
        pts = np.round(np.array(self.polygon, np.float64)).astype(np.int32)
        cv2.fillPoly(out, [pts], 1)
        return out.astype(bool)


def auto_outline(attenuation: np.ndarray, posterior: Side) -> BodyRegion | None:
    """The vertebral body in a (smoothed) attenuation image of the pre-cement baseline, or None.

    Bone attenuates more than the soft tissue around it: Otsu's threshold splits the two, the largest
    dark region that does not touch the image border is the body, and its convex hull is the outline
    (the cortex is convex in both projections; the hull also closes holes left by trabecular texture).
    """
    a = attenuation.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    if not hi > lo:
        return None
    scaled = np.clip((a - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    _t, bone = cv2.threshold(scaled, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bone = cv2.morphologyEx(bone, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    n, labels, stats, _c = cv2.connectedComponentsWithStats(bone, connectivity=8)
    h, w = a.shape
    best, best_area = 0, 0
    for i in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        touches = x == 0 or y == 0 or x + bw >= w or y + bh >= h
        if not touches and area > best_area:
            best, best_area = i, area
    if best == 0 or not MIN_BODY_FRACTION <= best_area / (h * w) <= MAX_BODY_FRACTION:
        return None
    contours, _hier = cv2.findContours(
        (labels == best).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    hull = cv2.convexHull(max(contours, key=cv2.contourArea)).reshape(-1, 2)
    if len(hull) < 3:
        return None
    try:
        return BodyRegion(tuple((float(x), float(y)) for x, y in hull), posterior)
    except ValueError:
        return None

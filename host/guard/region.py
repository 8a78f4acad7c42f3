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

__all__ = ["BodyRegion", "auto_outline", "vein_exits"]

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


BACKGROUND_MM = 25.0
"""The soft tissue's slow variation is removed with a Gaussian this wide (sigma): far wider than the
cortex's edge, about the body's own size."""
THIN_MM = 8.0
"""Structures thinner than this (the cannula, ~3 mm, blurred) are opened away
before the body is chosen, so the cannula does not join the body to the image border."""


def auto_outline(
    attenuation: np.ndarray, posterior: Side, pixel_mm: float, sharp: np.ndarray | None = None
) -> BodyRegion | None:
    """The vertebral body in a (smoothed) attenuation image of the pre-cement baseline, or None.

    Bone attenuates more than the soft tissue around it. The tissue's slow variation is removed
    first (a wide Gaussian), Otsu's threshold then splits bone from tissue, an opening removes the
    cannula, and of the bone regions the one nearest the image centre is the body (the operator
    centres the treated level; its neighbours above and below are cut by the image border). Its
    walls are the median extents of its rows and columns (`_robust_box`). None when nothing plausible
    is found: the operator sets the region. `sharp` (the same image, barely smoothed) places the
    walls, if given.
    """
    a = attenuation.astype(np.float32)
    h, w = a.shape
    side = min(h, w)
    a = a - cv2.GaussianBlur(a, (0, 0), min(BACKGROUND_MM / pixel_mm, side / 2))
    lo, hi = float(a.min()), float(a.max())
    if not hi > lo:
        return None
    found = _body_component(a, lo, hi, pixel_mm)
    if found is None:
        # The steel cannula is far more opaque than bone: in the AP view it crosses the image for its
        # whole length and is Otsu's "bone" class on its own (the bodies fall in "tissue"), and the
        # opening then leaves nothing. Everything at or above that threshold is the cannula: clipped
        # to it, a second Otsu splits bone from tissue.
        t = _otsu_level(a, lo, hi)
        found = _body_component(np.minimum(a, t), lo, t, pixel_mm)
    if found is None:
        return None
    rough = _robust_box(found, posterior)
    edges = attenuation if sharp is None else sharp
    return None if rough is None else _refine(edges.astype(np.float32), rough, pixel_mm)


def _otsu_level(a: np.ndarray, lo: float, hi: float) -> float:
    scaled = np.clip((a - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    t, _bone = cv2.threshold(scaled, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return lo + float(t) * (hi - lo) / 255.0


def _body_component(a: np.ndarray, lo: float, hi: float, pixel_mm: float) -> np.ndarray | None:
    """Otsu's bone class of `a` (scaled over lo..hi), thin parts opened away, and of its components
    of plausible size the one nearest the image centre; None if there is none."""
    h, w = a.shape
    if not hi > lo:
        return None
    scaled = np.clip((a - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    _t, bone = cv2.threshold(scaled, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    k = max(3, round(THIN_MM / pixel_mm) | 1)
    bone = cv2.morphologyEx(bone, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(bone, connectivity=8)
    best, best_d = 0, math.inf
    for i in range(1, n):
        area = int(stats[i, cv2.CC_STAT_AREA])
        if not MIN_BODY_FRACTION <= area / (h * w) <= MAX_BODY_FRACTION:
            continue
        d = math.hypot(centroids[i][0] - (w - 1) / 2, centroids[i][1] - (h - 1) / 2)
        if d < best_d:
            best, best_d = i, d
    return None if best == 0 else np.asarray(labels == best)


REFINE_MM = 2.0
"""How far from the thresholded wall the cortex is looked for."""


def _refine(a: np.ndarray, box: BodyRegion, pixel_mm: float) -> BodyRegion:
    """Each wall moved to the strongest edge of the attenuation within reach: the cortex is where the
    attenuation steps up into the body. A threshold (Otsu's, after the background was removed) puts
    the wall where the blurred step crosses it, which moves with the contrast and the background;
    the steepest point of the step does not. Median over the middle rows (columns)."""
    h, w = a.shape
    reach = max(2, round(REFINE_MM / pixel_mm))
    gx = np.diff(a, axis=1)  # gx[:, c] is the step between columns c and c + 1
    gy = np.diff(a, axis=0)
    x0, x1, y0, y1 = round(box.left), round(box.right), round(box.top), round(box.bottom)
    rows = np.arange(y0 + (y1 - y0) // 5, y1 - (y1 - y0) // 5 + 1)
    cols = np.arange(x0 + (x1 - x0) // 5, x1 - (x1 - x0) // 5 + 1)

    def edge(g: np.ndarray, at: int, lines: np.ndarray, rising: bool, n: int) -> float:
        lo, hi = max(0, at - reach), min(n - 2, at + reach)
        if hi <= lo or lines.size == 0:
            return float(at)
        band = g[lines, lo : hi + 1] if g is gx else g[lo : hi + 1, lines].T
        pick = np.argmax(band, axis=1) if rising else np.argmin(band, axis=1)
        return float(np.median(pick) + lo + 0.5)

    try:
        return BodyRegion.rectangle(
            edge(gx, x0, rows, True, w),
            edge(gy, y0, cols, True, h),
            edge(gx, x1, rows, False, w),
            edge(gy, y1, cols, False, h),
            box.posterior,
        )
    except ValueError:
        return box


def _robust_box(body: np.ndarray, posterior: Side) -> BodyRegion | None:
    """The body's walls as the median extent of its middle rows and columns: a bump where the
    cannula (or a pedicle) joins moves a few rows' extent, not the median, and a late posterior wall
    would move the posterior-quarter line backwards (a late stop). A vertebral body is a box in both
    projections (flat end plates, straight cortices), so the outline is one."""
    rows = np.nonzero(body.any(axis=1))[0]
    cols = np.nonzero(body.any(axis=0))[0]
    if rows.size < 4 or cols.size < 4:
        return None

    def middle(idx: np.ndarray) -> np.ndarray:
        n = idx.size
        return idx[n // 5 : n - n // 5] if n >= 10 else idx

    left, right, top, bottom = [], [], [], []
    for r in middle(rows):
        xs = np.nonzero(body[r])[0]
        left.append(xs[0])
        right.append(xs[-1])
    for c in middle(cols):
        ys = np.nonzero(body[:, c])[0]
        top.append(ys[0])
        bottom.append(ys[-1])
    try:
        return BodyRegion.rectangle(
            float(np.median(left)),
            float(np.median(top)),
            float(np.median(right)),
            float(np.median(bottom)),
            posterior,
        )
    except ValueError:
        return None


VEIN_EXIT_BAND = 0.5
"""The veins leave the body near its mid-height: the segmental veins through the lateral cortices
and the basivertebral vein through the posterior wall's middle (Groen, du Toit and Phillips 2004,
Spine 29; the simulator's body lays them there, firmware_sim/plant/body.py). The exit band is this
fraction of the body's height, centred."""


def vein_exits(region: BodyRegion, view: str, shape: tuple[int, int], near_px: float) -> np.ndarray:
    """Where a vein that fills leaves the outline in this view, as a boolean image: strips `near_px`
    wide just outside the walls through which veins exit, over the middle `VEIN_EXIT_BAND` of the
    height. AP: both lateral walls (the segmental veins; the basivertebral vein projects onto the
    body). Lateral: the posterior wall (the basivertebral vein, into the canal; the segmental veins
    run along the beam and project onto the body or the cannula's track)."""
    h, w = shape
    out = np.zeros((h, w), bool)
    mid = (region.top + region.bottom) / 2
    half = VEIN_EXIT_BAND * (region.bottom - region.top) / 2
    y0, y1 = max(0, math.floor(mid - half)), min(h, math.ceil(mid + half) + 1)
    walls = (region.left, region.right) if view == "ap" else (region.posterior_x,)
    for x in walls:
        outward = -1.0 if x == region.left else 1.0
        xa, xb = sorted((x, x + outward * near_px))
        out[y0:y1, max(0, math.floor(xa)) : min(w, math.ceil(xb) + 1)] = True
    return out

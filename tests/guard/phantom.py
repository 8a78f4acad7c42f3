"""A minimal lateral phantom for the guard's unit tests: a rectangular body in soft tissue, cement
drawn where the test says, Poisson noise. Known truth by construction, 256 x 256 so the tests are
fast. (The physical renderer is firmware_sim/imaging; this one exists to put the cement exactly where
a rule's edge is.)"""

from __future__ import annotations

import numpy as np

from host.frames import FluoroFrame

SIZE = 256
PIXEL_MM = 0.3
BODY = (70, 80, 190, 180)
"""x0, y0, x1, y1 of the body; anterior wall at x 70, posterior at x 190 (posterior on the right)."""


def ap_x(fraction: float) -> int:
    x0, _y0, x1, _y1 = BODY
    return round(x0 + fraction * (x1 - x0))


class Phantom:
    def __init__(self, seed: int = 0, photons: float = 4000.0, bit_depth: int = 12) -> None:
        self.rng = np.random.default_rng(seed)
        self.photons = photons
        self.bit_depth = bit_depth
        yy, xx = np.mgrid[0:SIZE, 0:SIZE]
        self.yy, self.xx = yy, xx
        x0, y0, x1, y1 = BODY
        self.attenuation = np.full((SIZE, SIZE), 0.6)
        self.attenuation[y0:y1, x0:x1] += 0.8
        self.cement = np.zeros((SIZE, SIZE))
        self.index = 0

    def bolus(self, front: float, thickness: float = 0.5) -> None:
        """An elliptic bolus from 10 % of the AP depth to `front` (fraction), centred vertically; it
        grows in height with its depth, up to 18 mm (cement spreads about the cannula tip)."""
        xa, xb = ap_x(0.1), ap_x(front)
        cx, rx = (xa + xb) / 2, max((xb - xa) / 2, 1.0)
        cy, ry = 130.0, min(30.0, 1.2 * rx)
        inside = ((self.xx - cx) / rx) ** 2 + ((self.yy - cy) / ry) ** 2 <= 1.0
        self.cement = np.maximum(self.cement, inside * thickness)

    def blob(self, cx: float, cy: float, r: float, thickness: float = 0.5) -> None:
        inside = (self.xx - cx) ** 2 + (self.yy - cy) ** 2 <= r * r
        self.cement = np.maximum(self.cement, inside * thickness)

    def vein(
        self, x0: float, y0: float, x1: float, y1: float, width_px: float = 3.0, thickness: float = 0.4
    ) -> None:
        """A straight thin opacity from (x0, y0) to (x1, y1)."""
        dx, dy = x1 - x0, y1 - y0
        length = float(np.hypot(dx, dy))
        t = ((self.xx - x0) * dx + (self.yy - y0) * dy) / (length * length)
        t = np.clip(t, 0.0, 1.0)
        dist = np.hypot(self.xx - (x0 + t * dx), self.yy - (y0 + t * dy))
        self.cement = np.maximum(self.cement, (dist <= width_px / 2) * thickness)

    def pixels(self) -> np.ndarray:
        expected = self.photons * np.exp(-(self.attenuation + self.cement))
        counts = self.rng.poisson(expected).astype(np.float64)
        full = (1 << self.bit_depth) - 1
        scaled = counts * (full * 0.9 / self.photons)
        return np.clip(np.round(scaled), 0, full).astype(np.uint16 if self.bit_depth > 8 else np.uint8)

    def frame(self, pixels: np.ndarray | None = None, view: str = "lateral") -> FluoroFrame:
        self.index += 1
        px = self.pixels() if pixels is None else pixels
        return FluoroFrame(
            index=self.index,
            t_us=self.index * 100_000,
            view=view,
            pixels=px,
            bit_depth=self.bit_depth,
            pixel_mm=PIXEL_MM,
            source="phantom",
        )

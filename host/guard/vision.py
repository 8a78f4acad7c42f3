"""From a frame to the cement: baseline subtraction, noise-normalised difference, hysteresis
segmentation, and the three measurements the rules read (front, cement outside, thin opacities).

Pure functions of arrays: no state, no clock, no I/O (the state lives in host/guard/guard.py).

Why log intensity. The detector counts what the body lets through, I = I0 exp(-sum mu t): cement adds
its attenuation to the bone's, so in log(I) it is a subtraction that does not depend on how much bone
lies in front of it. Why a noise map. Quantum noise grows where fewer photons arrive (behind bone), so
one global threshold would either miss cement in bright soft tissue or see noise behind the cortex.
The baseline frames measure the noise as a function of the intensity (`noise_model`: any mix of
quantum, electronic and quantisation noise the source has, pooled over every pixel of an intensity
class so that it does not depend on which frames made the baseline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from host.guard.config import GuardConfig
from host.guard.region import BodyRegion

__all__ = ["Baseline", "CementImage", "Measures", "class_variance", "measure", "noise_model", "segment"]

SIGMA_FLOOR = 0.2
"""The noise model is floored at this fraction of its median: a class of pixels at the top of the
scale (quantisation only) must not read every rounding as many sigmas."""
CLIPPED = 0.01
"""Baseline pixels within 1 % of black or full scale carry no image: never judged."""
NOISE_BINS = 64
"""The noise model's intensity classes (quantiles of the baseline's raw log intensity): at 256 x 256
each holds ~1000 pixels, so a class's variance is the mean of ~7000 squared deviations (8 frames)."""
EDGE_SIGMAS = 3.0
"""Pixels this many smoothing sigmas from the image's edge are never judged: the filter has no image
beyond the edge and mirrors it, so there a pixel is averaged partly with itself and its noise is up
to twice the interior's at one intensity (measured: 0.6-0.7 of the true sigma at the 0.1-5th
percentile of the edge band, where the interior's is 0.82-0.91)."""


def class_variance(
    mean: np.ndarray, var: np.ndarray, judged: np.ndarray, bins: int = NOISE_BINS
) -> np.ndarray:
    """The variance as a function of the intensity: the mean of `var` over the `judged` pixels of each
    intensity class (quantiles of `mean`, the same number of pixels each), interpolated linearly
    between the classes' centres (held beyond them) and evaluated at every pixel's `mean`."""
    values = mean[judged]
    v = var[judged]
    if values.size < 16 * bins:  # too little image to pool by class: one class
        values, v = mean.ravel(), var.ravel()
        bins = 1
    edges = np.quantile(values, np.linspace(0.0, 1.0, bins + 1))
    cls = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    count = np.bincount(cls, minlength=bins).astype(np.float64)
    filled = count > 0
    centres = np.bincount(cls, values.astype(np.float64), bins)[filled] / count[filled]
    levels = np.bincount(cls, v.astype(np.float64), bins)[filled] / count[filled]
    out: np.ndarray = np.interp(mean, centres, levels).astype(np.float32)
    return out


def noise_model(
    frames: list[np.ndarray], smoothed_var: np.ndarray, smooth_px: float, judged: np.ndarray
) -> np.ndarray:
    """The variance of each pixel of a frame's smoothed log image (`log_image(frame, smooth_px)`),
    from the baseline `frames`: what z divides by.

    Why a model. X-ray quantum noise is Poisson and the detector's is Gaussian: the variance of a raw
    pixel is a function of its mean signal (the Poisson-Gaussian model: Foi, Trimeche, Katkovnik and
    Egiazarian 2008, IEEE Trans. Image Processing 17(10)). A per-pixel variance from 8 frames has 7
    degrees of freedom, and smoothing it over the noise's own correlation length adds few: on the
    simulator's 512 px frames 1 % of the pixels had their sigma under-estimated by 38 % or more, so a
    noise blob of 3.7 true sigmas read as 6, and 10 of 60 empty frames held a "cement" region. Which
    pixels were under-estimated depended on which frames made the baseline, i.e. on the frames a
    loaded machine dropped (HIL guard-nominal's false EXTRAVASATION, docs/fluoroscopy.md).

    How. (1) The raw log pixels' variance as a function of their intensity, pooled over each
    intensity class (`class_variance`: ~1000 pixels of 7 degrees of freedom each at 256 x 256; raw
    pixels are nearly independent, so the pool has thousands of degrees of freedom). (2) The smoothed
    image is a weighted sum, whose variance is the raw variances summed with the squared weights: a
    Gaussian of sigma s has squared weights proportional to a Gaussian of s / sqrt(2), which carries
    the model across a bone's edge exactly where a class of smoothed intensities mixes both sides.
    (3) One scale factor, the pooled ratio of the measured smoothed variance to that sum, takes in
    the constant and the noise's own correlation (the detector's blur)."""
    raw = np.stack([np.log1p(f.astype(np.float32)) for f in frames])
    raw_mean = raw.mean(axis=0)
    raw_var = ((raw - raw_mean) ** 2).sum(axis=0) / (len(frames) - 1)
    model = class_variance(raw_mean, raw_var, judged)
    if smooth_px > 0:
        model = cv2.GaussianBlur(model, (0, 0), smooth_px / math.sqrt(2.0))
    pool = judged if judged.any() else np.ones(judged.shape, bool)
    scale = float(smoothed_var[pool].mean()) / max(float(model[pool].mean()), 1e-30)
    out: np.ndarray = (model * np.float32(scale)).astype(np.float32)
    return out


def log_image(pixels: np.ndarray, smooth_px: float) -> np.ndarray:
    """log(1 + I) as float32, Gaussian-smoothed with sigma `smooth_px` (0 = not smoothed)."""
    out = np.log1p(pixels.astype(np.float32))
    if smooth_px > 0:
        out = cv2.GaussianBlur(out, (0, 0), smooth_px)
    return out


@dataclass(frozen=True, slots=True)
class Baseline:
    """The pre-injection image: its smoothed log intensity and the noise of a frame's difference."""

    log_mean: np.ndarray
    """Mean smoothed log intensity of the baseline frames (float32)."""
    sigma: np.ndarray
    """Standard deviation of (log_mean - a new frame's smoothed log), per pixel (float32, > 0): the
    noise model's value at the pixel's intensity (`noise_model`)."""
    shape: tuple[int, int]
    bit_depth: int
    smooth_px: float
    sharp_log: np.ndarray
    """log of the mean baseline frame, barely smoothed (1 px): where the outline's walls are placed."""
    no_image: np.ndarray
    """Pixels that carry no image to judge: the baseline within CLIPPED of black or of full scale
    (grown by the filter's reach), and the band of EDGE_SIGMAS smoothing sigmas along the edge."""

    @classmethod
    def from_frames(cls, frames: list[np.ndarray], bit_depth: int, smooth_px: float) -> Baseline:
        if len(frames) < 2:
            raise ValueError(f"baseline: {len(frames)} frames; allowed at least 2")
        logs = np.stack([log_image(f, smooth_px) for f in frames])
        n = len(frames)
        mean = logs.mean(axis=0)
        var = ((logs - mean) ** 2).sum(axis=0) / (n - 1)
        h, w = frames[0].shape
        raw_mean = np.mean(np.stack(frames), axis=0)
        sharp = log_image(raw_mean, 1.0)
        full = (1 << bit_depth) - 1
        clipped = (raw_mean >= (1 - CLIPPED) * full) | (raw_mean <= CLIPPED * full)
        reach = max(1, math.ceil(EDGE_SIGMAS * smooth_px))
        if clipped.any():  # the filter carries a clipped edge ~3 sigma into its neighbours
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
            clipped = cv2.dilate(clipped.astype(np.uint8), kernel).astype(bool)
        no_image = clipped.copy()
        no_image[:reach, :] = no_image[-reach:, :] = True
        no_image[:, :reach] = no_image[:, -reach:] = True
        # A new frame differs from the mean by its own noise plus the mean's: (1 + 1/n) var.
        model = noise_model(frames, var, smooth_px, ~no_image) * (1.0 + 1.0 / n)
        sigma = np.sqrt(np.maximum(model, 1e-12)).astype(np.float32)
        sigma = np.maximum(sigma, np.float32(SIGMA_FLOOR * float(np.median(sigma))))
        return cls(mean.astype(np.float32), sigma, (int(h), int(w)), bit_depth, smooth_px, sharp, no_image)

    def z(self, pixels: np.ndarray) -> np.ndarray:
        """How many noise sigmas darker than the baseline each pixel is (cement: large positive)."""
        z: np.ndarray = (self.log_mean - log_image(pixels, self.smooth_px)) / self.sigma
        return z


BACKGROUND_SIDE = 128
"""The smooth part of the difference is estimated on a 128 px reduction (it has no detail)."""


def remove_background(d: np.ndarray, cut: float, sigma_px: float) -> np.ndarray:
    """`d` minus its smooth part, estimated by normalised convolution from the pixels below `cut`
    (the cement is left out, so the background under a bolus is interpolated from around it)."""
    h, w = d.shape
    scale = min(1.0, BACKGROUND_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    keep = (d < cut).astype(np.float32)
    num = cv2.resize(d * keep, size, interpolation=cv2.INTER_AREA)
    den = cv2.resize(keep, size, interpolation=cv2.INTER_AREA)
    s = max(0.5, sigma_px * scale)
    num = cv2.GaussianBlur(num, (0, 0), s)
    den = cv2.GaussianBlur(den, (0, 0), s)
    bg = num / np.maximum(den, 1e-3)
    out: np.ndarray = d - cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


OPAQUE_FACTOR = 3.0
"""A pixel is radiopaque hardware when it is darker than the bone by three times what the bone is
darker than the soft tissue. On the renderer: bone - tissue ~0.10 (log), the cortex's tangent chords
~+0.17 over the bone, the thin-walled steel cannula ~+0.43 (a factor of 5 missed it)."""
OPAQUE_GROW_MM = 1.5
"""The hardware's shadow is grown by this much: cement alongside the cannula's track is thin and
elongated and must not read as a vein."""


def opaque_mask(
    attenuation: np.ndarray, body: np.ndarray, grown: np.ndarray, pixel_mm: float, no_image: np.ndarray
) -> np.ndarray:
    """What is never judged, grown by 1 mm: the baseline's radiopaque hardware (the cannula fills with
    cement at the start; that is not a leak) and the pixels with no image to judge (`no_image`:
    clipped, or at the image's edge, Baseline.no_image)."""
    tissue = float(np.median(attenuation[~grown])) if (~grown).any() else float(attenuation.min())
    bone = float(np.median(attenuation[body])) if body.any() else tissue
    steel = (attenuation > bone + OPAQUE_FACTOR * max(bone - tissue, 1e-3)) | no_image
    steel = steel.astype(np.uint8)
    r = max(1, round(OPAQUE_GROW_MM / pixel_mm))
    grown_steel = cv2.dilate(steel, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    out: np.ndarray = grown_steel.astype(bool)
    return out


def segment(z: np.ndarray, config: GuardConfig, pixel_mm: float) -> np.ndarray:
    """The cement: connected regions of z >= z_low that hold a pixel with z >= z_high and cover at
    least min_area_mm2 (hysteresis: a weak pixel counts only when attached to a strong one)."""
    low = (z >= config.z_low).astype(np.uint8)
    n, labels, stats, _c = cv2.connectedComponentsWithStats(low, connectivity=8)
    if n <= 1:
        return np.zeros(z.shape, bool)
    strong = np.zeros(n, bool)
    strong[np.unique(labels[z >= config.z_high])] = True
    min_px = config.min_area_mm2 / (pixel_mm * pixel_mm)
    keep = strong & (stats[:, cv2.CC_STAT_AREA] >= min_px)
    keep[0] = False
    cement: np.ndarray = keep[labels]
    return cement


@dataclass(frozen=True, slots=True)
class Measures:
    """What the rules read from one frame. Lengths in mm, areas in mm2."""

    cement_mm2: float
    front_fraction: float | None
    """The posterior-most cement inside the body, as a fraction of the AP depth (None: no cement)."""
    front_x: float | None
    """Its image column."""
    outside_mm2: float
    """Cement beyond the outline grown by `outline_margin_mm`."""
    vein_length_mm: float
    """The longest venous opacity outside the outline: one that leaves the body at a vein's exit or
    is elongated (0: none)."""


@dataclass(frozen=True, slots=True)
class CementImage:
    """The segmentation of one frame, kept for drawing (the dashboard's frame view)."""

    mask: np.ndarray
    measures: Measures


def _shapes(labels: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Length and width (px) of each labelled component from the second moments of its pixels: a
    uniform bar of length L has variance L**2 / 12 along it. Index 0 (the background) is 0."""
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    cnt = np.bincount(lab, minlength=n).astype(np.float64)
    cnt[0] = 1.0
    xf, yf = xs.astype(np.float64), ys.astype(np.float64)
    mx = np.bincount(lab, xf, n) / cnt
    my = np.bincount(lab, yf, n) / cnt
    sxx = np.bincount(lab, xf * xf, n) / cnt - mx * mx
    syy = np.bincount(lab, yf * yf, n) / cnt - my * my
    sxy = np.bincount(lab, xf * yf, n) / cnt - mx * my
    half_tr = (sxx + syy) / 2
    root = np.sqrt(np.maximum(half_tr * half_tr - (sxx * syy - sxy * sxy), 0.0))
    length = np.sqrt(12.0 * np.maximum(half_tr + root, 0.0)) + 1.0  # a 1-px dot is 1 px long
    width = np.sqrt(12.0 * np.maximum(half_tr - root, 0.0)) + 1.0
    length[0] = width[0] = 0.0
    return length, width


def split_outside(
    outside: np.ndarray, exits: np.ndarray | None, elongation: float
) -> tuple[np.ndarray, float]:
    """Cement outside the outline, split into what a vein fills and the rest: a component is venous
    when it leaves the body at a vein's exit (`exits`: where the segmental and basivertebral veins
    leave, region.vein_exits) or is `elongation` times longer than wide (a vessel, not a pool).
    Returns the rest (the extravasation's pixels) and the length (px) of the longest venous part."""
    n, labels, _stats, _c = cv2.connectedComponentsWithStats(outside.astype(np.uint8), connectivity=8)
    if n <= 1:
        return outside, 0.0
    length, width = _shapes(labels, n)
    venous = length >= elongation * np.maximum(width, 1.0)
    if exits is not None:
        at_exit = np.zeros(n, bool)
        at_exit[np.unique(labels[exits & outside])] = True
        venous |= at_exit
    venous[0] = False
    rest: np.ndarray = outside & ~venous[labels]
    return rest, float(length[venous].max()) if venous.any() else 0.0


def measure(
    z: np.ndarray,
    mask: np.ndarray,
    body: np.ndarray,
    grown: np.ndarray,
    region: BodyRegion,
    config: GuardConfig,
    pixel_mm: float,
    unjudged: np.ndarray | None = None,
    exits: np.ndarray | None = None,
) -> Measures:
    """The rules' inputs. `body` is the outline's mask, `grown` the outline grown by the margin,
    `unjudged` the hardware's shadow (opaque_mask), left out of `mask` already, `exits` where the
    veins leave the body in this view (region.vein_exits; None: nowhere known). Cement outside the
    margin is either venous (its length is `vein_length_mm`; the guard's rule asks it to grow) or
    extravasated (`outside_mm2`), never both."""
    px_mm2 = pixel_mm * pixel_mm
    inside = mask & body
    plateau = float(np.percentile(z[mask], 90)) if mask.any() else 0.0
    if inside.any():
        inside = inside & (z >= config.front_level * float(np.percentile(z[inside], 90)))
    cols = np.nonzero(inside.any(axis=0))[0]
    front_x: float | None = None
    front: float | None = None
    if cols.size:
        front_x = float(cols.max() if region.posterior == "right" else cols.min())
        front = float(region.ap_fraction(front_x))
    # the blurred tail of cement that touches the cortex reaches past any margin at a high dose (where
    # 3 sigma is a tiny contrast): outside counts only what is a real part of the opacity
    outside = mask & ~grown & (z >= config.leak_level * plateau)
    vein_px = 0.0
    if "venous" in config.rules:
        outside, vein_px = split_outside(outside, exits, config.vein_elongation)
    return Measures(
        cement_mm2=float(mask.sum()) * px_mm2,
        front_fraction=front,
        front_x=front_x,
        outside_mm2=float(outside.sum()) * px_mm2,
        vein_length_mm=vein_px * pixel_mm,
    )
